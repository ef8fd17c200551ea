"""Keep the catalogues in step with the code: extract every marked sentence, update the ``.po``
files, and list what is missing (the completeness test runs :func:`problems`).

From the repository root::

    .venv/bin/python -m gpu_commons_i18n.catalogue update   # add new sentences, drop stale ones
    .venv/bin/python -m gpu_commons_i18n.catalogue check    # what lacks a translation (exit 1 if any)

``update`` gives a new sentence an empty Chinese translation (to write) and an English one equal
to its id; a translation whose sentence changed is kept but marked fuzzy (not shown) until a
person reads it again and removes the mark.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from gpu_commons_i18n import CATALOGUES, DOMAIN, placeholders

# Where sentences for people are marked: Python code and the hub's Jinja templates.
SOURCE_DIRS = ("hub", "spawner", "quota", "workspace/gpu_commons_workspace")
METHOD_MAP = [
    ("**/templates/**.html", "jinja2.ext:babel_extract"),
    ("**.py", "python"),
]
# _(msgid, **params), _n(singular, plural, n, **params); translate/ngettext take the locale after.
KEYWORDS = {"_": None, "_n": (1, 2), "translate": (1,), "ngettext": (1, 2), "text_template": (1,),
            "plural_templates": (1, 2)}
JINJA_OPTIONS = {"extensions": "", "trimmed": "true"}


# The catalogues as the checkout holds them (the installed package has a copy: `make install`).
LOCALES_IN_CHECKOUT = Path("workspace") / "gpu_commons_i18n" / "locales"


def default_root() -> Path:
    """The checkout: this file's, when run from it, else the current directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / LOCALES_IN_CHECKOUT).is_dir() else Path.cwd()


def extract(root: Path | None = None) -> Catalog:
    """Every marked sentence under ``root``'s source folders, with where it is used."""
    root = Path(root or default_root())
    template = Catalog(domain=DOMAIN, project="GPU Commons", charset="utf-8")
    for folder in SOURCE_DIRS:
        base = root / folder
        if not base.is_dir():
            continue
        found = extract_from_dir(base, METHOD_MAP, keywords=KEYWORDS, comment_tags=("Translators:",),
                                 options_map={"**/templates/**.html": JINJA_OPTIONS}, strip_comment_tags=True)
        for filename, lineno, message, comments, context in found:
            if not message or not (message[0] if isinstance(message, tuple) else message):
                continue
            template.add(message, None, [(f"{folder}/{filename}", lineno)], auto_comments=comments, context=context)
    return template


def po_path(folder: str, root: Path | None = None) -> Path:
    return Path(root or default_root()) / LOCALES_IN_CHECKOUT / folder / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalogue(folder: str, root: Path | None = None) -> Catalog:
    path = po_path(folder, root)
    if not path.exists():
        return Catalog(locale=folder, domain=DOMAIN)
    with path.open("rb") as po:
        return read_po(po, locale=folder, domain=DOMAIN)


def update(root: Path | None = None) -> dict[str, int]:
    """Bring each catalogue in step with the code; returns the number of untranslated sentences."""
    template = extract(root)
    untranslated = {}
    for folder in CATALOGUES.values():
        catalogue = read_catalogue(folder, root)
        catalogue.update(template, no_fuzzy_matching=False, update_header_comment=False)
        catalogue.obsolete.clear()
        if folder == "en":  # English: the id is the sentence
            for message in catalogue:
                if message.id and (not _translated(message) or message.fuzzy):
                    message.string = message.id if isinstance(message.id, str) else tuple(message.id)
                    message.flags.discard("fuzzy")
        catalogue.fuzzy = False
        catalogue.project, catalogue.version = "GPU Commons", "0.1.0"
        path = po_path(folder, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            write_po(out, catalogue, width=100, sort_output=False, include_previous=True)
        untranslated[folder] = sum(1 for m in catalogue if m.id and not _translated(m))
    return untranslated


def _translated(message) -> bool:
    strings = message.string if isinstance(message.string, (tuple, list)) else (message.string,)
    return bool(strings) and all(s for s in strings)


@dataclass(frozen=True)
class Problem:
    locale: str
    msgid: str
    what: str  # "missing", "untranslated", "fuzzy", "stale", "parameters"

    def __str__(self) -> str:
        return f"{self.locale}: {self.what}: {self.msgid!r}"


def problems(root: Path | None = None, catalogue_root: Path | None = None) -> list[Problem]:
    """Every sentence of the code under ``root`` without a usable translation in some catalogue
    (of ``catalogue_root``, by default the same checkout), and every translation no code uses."""
    template = extract(root)
    wanted = {_key(m.id): m for m in template if m.id}
    found = []
    for folder in CATALOGUES.values():
        catalogue = read_catalogue(folder, catalogue_root or root)
        present = {_key(m.id): m for m in catalogue if m.id}
        for key, source in wanted.items():
            message = present.get(key)
            if message is None:
                found.append(Problem(folder, key, "missing"))
            elif message.fuzzy:
                found.append(Problem(folder, key, "fuzzy"))
            elif not _translated(message):
                found.append(Problem(folder, key, "untranslated"))
            elif _parameters_differ(source.id, message.string):
                found.append(Problem(folder, key, "parameters"))
        found += [Problem(folder, key, "stale") for key in present if key not in wanted]
        if catalogue.obsolete:
            found += [Problem(folder, _key(m.id), "stale") for m in catalogue.obsolete.values()]
    return found


def _key(msgid) -> str:
    return msgid if isinstance(msgid, str) else msgid[0]


def _parameters_differ(msgid, strings) -> bool:
    ids = msgid if isinstance(msgid, (tuple, list)) else (msgid,)
    wanted = set().union(*(placeholders(i) for i in ids))
    translations = strings if isinstance(strings, (tuple, list)) else (strings,)
    # Each form may leave out {n} (Chinese has one form, "一个" needs no number), nothing else.
    return any(not placeholders(t) <= wanted or (wanted - {"n"}) - placeholders(t) for t in translations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_commons_i18n.catalogue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["update", "check"])
    parser.add_argument("--root", type=Path, default=None, help="the repository (default: this checkout)")
    args = parser.parse_args(argv)
    if args.action == "update":
        for folder, count in update(args.root).items():
            print(f"{po_path(folder, args.root)}: {count} sentence(s) to translate")
        return 0
    found = problems(args.root)
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
