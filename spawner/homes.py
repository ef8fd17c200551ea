"""A home with a disk quota on the local backend: an ext4 image of the quota's size,
mounted on the student's home directory while their workspace runs.

The file systems here have no quotas of their own (this kernel is built without
CONFIG_QUOTA; XFS project quotas would need XFS), so the quota is a file system of its own:
a write past it fails with "No space left on device" in that workspace only. The image

- is sparse: it takes the disk space its files take, up to the quota;
- lives beside the homes, in ``<homes_dir>/.images/<student>.ext4`` (root only, 0700);
- is made at the student's first start with a quota; files already in the home are moved
  into it (a home larger than the quota stays a plain directory, and the hub log says so);
- grows when the quota grows (it never shrinks: that is an operator's ``resize2fs``);
- is unmounted when the workspace stops, once none of its processes is left.

Every step runs a standard tool (``mkfs.ext4``, ``e2fsck``, ``resize2fs``, ``mount``), as
root, with the image and home paths only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

IMAGES_DIR = ".images"


class HomeQuotaError(RuntimeError):
    """The home's image cannot be made or mounted; phrased for the operator."""


def image_path(home: Path) -> Path:
    return home.parent / IMAGES_DIR / f"{home.name}.ext4"


def mount_home(home: Path, quota: int, uid: int, log) -> bool:
    """Mount the home's image (made, filled or grown first) on ``home``. Returns False when
    the home is left a plain directory because its files do not fit in the quota."""
    if os.path.ismount(home):
        return True  # still mounted: the hub restarted while the workspace ran
    image = image_path(home)
    image.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(image.parent, 0o700)
    if not image.exists():
        if not _make(image, home, quota, uid, log):
            return False
    elif image.stat().st_size < quota:
        _run("e2fsck", "-f", "-p", str(image), ok=(0, 1))  # 1: small fixes made
        os.truncate(image, quota)
        _run("resize2fs", "-f", str(image))
        log.info("home of %s: quota raised to %d bytes", home.name, quota)
    elif image.stat().st_size > quota:
        log.warning("home of %s keeps its larger image (%d bytes); shrinking it to %d bytes is left to an operator "
                    "(resize2fs)", home.name, image.stat().st_size, quota)
    _run("mount", "-o", "loop,nosuid,nodev", str(image), str(home))
    os.chown(home, uid, uid)
    os.chmod(home, 0o700)
    return True


def unmount_home(home: Path, log) -> None:
    if not os.path.ismount(home):
        return
    try:
        _run("umount", str(home))
    except HomeQuotaError as exc:
        log.error("home of %s stays mounted: %s", home.name, exc)


def _make(image: Path, home: Path, quota: int, uid: int, log) -> bool:
    partial = image.with_suffix(".new")
    with open(partial, "wb") as out:
        out.truncate(quota)
    os.chmod(partial, 0o600)
    _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={uid}:{uid},lazy_itable_init=1,lazy_journal_init=1",
         str(partial))
    old_files = any(home.iterdir())
    copied = None
    with tempfile.TemporaryDirectory(dir=image.parent) as staging:
        _run("mount", "-o", "loop,nosuid,nodev", str(partial), staging)
        try:
            (Path(staging) / "lost+found").rmdir()  # e2fsck makes it again when it needs one
            if old_files:
                copied = subprocess.run(["cp", "-a", f"{home}/.", staging], capture_output=True, text=True)
                if copied.returncode != 0:
                    log.error("home of %s holds more than its quota of %d bytes (%s); it stays a plain directory "
                              "without a quota until it is smaller", home.name, quota, copied.stderr.strip())
        finally:
            _run("umount", staging)
    if copied is not None and copied.returncode != 0:
        partial.unlink()
        return False
    partial.rename(image)
    for entry in home.iterdir():  # now in the image
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    log.info("home of %s: made its %d-byte image%s", home.name, quota, " and moved its files in" if old_files else "")
    return True


def _run(*command: str, ok: tuple[int, ...] = (0,)) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HomeQuotaError(f"{' '.join(command)} failed: {exc}") from None
    if done.returncode not in ok:
        output = done.stderr.strip() or done.stdout.strip()
        raise HomeQuotaError(f"{' '.join(command)} failed ({done.returncode}): {output}")
