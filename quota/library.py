"""`gpu-commons library add|retire|list`: staff put the alliance's datasets and models in place.

An entry is described in the alliance file (``library``: name and description in zh-CN and
en, licence, source, exact size, SHA-256, path below the root). ``add`` copies the file into the
library root under a temporary name, checks its size and checksum while copying, and only then
renames it into place and records it in the root's ``catalogue.json``, which the workspaces'
catalogue page reads (/srv/library/catalogue.json, read-only there). So a bad file never shows:
a missing source, a wrong size or checksum, or too little free space is refused with the entry
and the fix named, and nothing is left half-copied. ``retire`` removes the file and its record.

    gpu-commons library add iris --from sklearn-data/iris.csv --alliance alliances/demo.yaml --root data/demo/library
    gpu-commons library add --all --from-dir build/library-sources --alliance ... --root ...
    gpu-commons library list --alliance ... --root ...
    gpu-commons library retire iris --alliance ... --root ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from gpu_commons_i18n import Message, _, negotiate, render
from quota.alliance import CATALOGUE_FILE, Alliance, AllianceError, LibraryEntry, load_alliance

CHUNK = 1024 * 1024
INCOMING_PREFIX = ".incoming-"  # files being copied: never in the catalogue, removed when a copy fails


class LibraryRefused(Exception):
    """An entry that cannot be added or retired; ``message`` names the entry and the fix."""

    def __init__(self, message: Message):
        super().__init__(str(message))
        self.message = message


# -- the catalogue file ------------------------------------------------------------------

def catalogue_record(entry: LibraryEntry, added_at: float) -> dict:
    """What the workspace's catalogue page shows of an entry (both languages; it picks one)."""
    return {
        "id": entry.id,
        "kind": entry.kind,
        "name": {"zh-CN": entry.name.zh_CN, "en": entry.name.en},
        "description": {"zh-CN": entry.description.zh_CN, "en": entry.description.en},
        "licence": entry.licence,
        "source": entry.source,
        "size_bytes": entry.size_bytes,
        "sha256": entry.sha256,
        "path": entry.path,
        "load_with": entry.load_with,
        "added_at": added_at,
    }


def read_catalogue(root: Path) -> dict:
    try:
        data = json.loads((Path(root) / CATALOGUE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"entries": {}}
    return data if isinstance(data.get("entries"), dict) else {"entries": {}}


def write_catalogue(root: Path, catalogue: dict) -> None:
    """Written whole under a temporary name and renamed: a workspace never reads half a file."""
    root = Path(root)
    temporary = root / f"{INCOMING_PREFIX}{CATALOGUE_FILE}.{uuid.uuid4().hex}"
    temporary.write_text(json.dumps(catalogue, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.chmod(temporary, 0o644)
    os.replace(temporary, root / CATALOGUE_FILE)


# -- add, retire --------------------------------------------------------------------------

def add_entry(entry: LibraryEntry, source: Path, root: Path, *, now: float | None = None,
              free_bytes: int | None = None) -> Path:
    """Copy ``source`` into ``root`` as ``entry`` (checked), record it, return where it lies.
    ``free_bytes`` stands for the file system's free space (tests)."""
    source, root = Path(source), Path(root)
    if not source.is_file():
        raise LibraryRefused(_("Library entry {entry}: the file {path} does not exist; give its path with --from "
                               "(or its folder with --from-dir).", entry=entry.id, path=str(source)))
    size = source.stat().st_size
    if size != entry.size_bytes:
        raise LibraryRefused(_("Library entry {entry}: {path} has {size} bytes, the alliance file says size_bytes: "
                               "{expected}; use the right file or correct size_bytes.", entry=entry.id,
                               path=str(source), size=str(size), expected=str(entry.size_bytes)))
    target = root / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = target.parent
    while True:  # every workspace's user may pass through and list the library's folders
        os.chmod(folder, 0o755)
        if folder == root:
            break
        folder = folder.parent
    free = shutil.disk_usage(target.parent).free if free_bytes is None else free_bytes
    if size > free:
        raise LibraryRefused(_("Library entry {entry} needs {size} bytes, but the library's disk ({root}) has only "
                               "{free} free; free some space or retire an entry first.", entry=entry.id,
                               size=str(size), root=str(root), free=str(free)))
    temporary = target.parent / f"{INCOMING_PREFIX}{target.name}.{uuid.uuid4().hex}"
    try:
        digest = _copy_hashing(source, temporary)
        if digest != entry.sha256:
            raise LibraryRefused(_("Library entry {entry}: the SHA-256 of {path} is {digest}, the alliance file says "
                                   "{expected}; the file is damaged or another version: fetch it again, or correct "
                                   "sha256 once you trust it.", entry=entry.id, path=str(source), digest=digest,
                                   expected=entry.sha256))
        os.chmod(temporary, 0o444)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    catalogue = read_catalogue(root)
    catalogue["entries"][entry.id] = catalogue_record(entry, time.time() if now is None else now)
    write_catalogue(root, catalogue)
    return target


def retire_entry(entry_id: str, root: Path) -> None:
    """Take the entry out of the catalogue first (no workspace offers it any more), then its file."""
    root = Path(root)
    catalogue = read_catalogue(root)
    record = catalogue["entries"].pop(entry_id, None)
    if record is None:
        raise LibraryRefused(_("Library entry {entry} is not in the library at {root}; see gpu-commons library list.",
                               entry=entry_id, root=str(root)))
    write_catalogue(root, catalogue)
    (root / record["path"]).unlink(missing_ok=True)


def _copy_hashing(source: Path, target: Path) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(target, "xb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def entry_states(alliance: Alliance, root: Path) -> list[tuple[str, Message]]:
    """(id, state) for every entry of the file and of the root: in place, not added, retired
    from the file but still in the root, or in place with a changed checksum in the file."""
    catalogue = read_catalogue(root)["entries"]
    states = []
    for entry in alliance.library:
        record = catalogue.get(entry.id)
        if record is None:
            states.append((entry.id, _("not added")))
        elif record["sha256"] != entry.sha256 or not (Path(root) / record["path"]).is_file():
            states.append((entry.id, _("out of date: add it again")))
        else:
            states.append((entry.id, _("in place")))
    states += [(entry_id, _("not in the alliance file: retire it")) for entry_id in sorted(catalogue)
               if entry_id not in {e.id for e in alliance.library}]
    return states


# -- the command line ---------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["add", "retire", "list"], help="what to do")
    parser.add_argument("entries", nargs="*", help="ids of library entries of the alliance file")
    parser.add_argument("--alliance", required=True, help="the alliance file that describes the entries")
    parser.add_argument("--root", required=True, help="the library root (c.LocalQuotaSpawner.library_root, the "
                                                      "pools' library_host_path)")
    parser.add_argument("--from", dest="source", help="add: the file of the one entry named")
    parser.add_argument("--from-dir", help="add: a folder holding each entry at its path")
    parser.add_argument("--all", action="store_true", help="add: every entry of the alliance file")


def run(args: argparse.Namespace) -> int:
    try:
        alliance = load_alliance(args.alliance)
    except AllianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    locale = negotiate(os.environ.get("LANG", "").split(".")[0].replace("_", "-"), default=alliance.language)
    root = Path(args.root)
    try:
        if args.action == "list":
            for entry_id, state in entry_states(alliance, root):
                print(f"{entry_id:<24} {render(state, locale)}")
            return 0
        if args.action == "retire":
            for entry_id in args.entries:
                retire_entry(entry_id, root)
                print(render(_("Retired {entry}.", entry=entry_id), locale))
            return 0
        ids = [e.id for e in alliance.library] if args.all else args.entries
        for entry_id in ids:
            try:
                entry = alliance.library_entry(entry_id)
            except KeyError:
                raise LibraryRefused(_("Library entry {entry} is not in the alliance file {file}; add it under "
                                       "'library' first.", entry=entry_id, file=args.alliance)) from None
            if args.source and len(ids) == 1:
                source = Path(args.source)
            elif args.from_dir:
                source = Path(args.from_dir) / entry.path
            else:
                raise LibraryRefused(_("Library entry {entry}: say where its file is, with --from FILE or "
                                       "--from-dir FOLDER.", entry=entry_id))
            print(render(_("Added {entry}: {path}", entry=entry_id, path=str(add_entry(entry, source, root))), locale))
    except LibraryRefused as exc:
        print(f"error: {render(exc.message, locale)}", file=sys.stderr)
        return 1
    return 0
