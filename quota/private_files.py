"""Files only their owner may read: databases, secrets, password hashes.

The hub and the quota service run as root (or a service account) on a machine where
students' workspaces run under their own uids: a database or a token that is readable by
others hands every lease, session and password hash to any student with a terminal. So
each such file is created with mode 0600 (never world-readable, not even for a moment)
and an existing one is set to 0600 at start-up (data directories of older versions).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600
# SQLite's companions: it creates them with the database's own mode, but an older file may be wider
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def make_private(path: str | Path, create: bool = True) -> Path:
    """Make ``path`` mode 0600 (its SQLite companion files too); unless it exists, create it
    empty with that mode first (``create``), so it is never readable by others."""
    path = Path(path)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))
        except FileExistsError:
            pass
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            os.chmod(candidate, PRIVATE)
        except FileNotFoundError:
            pass
    return path


def private_dir(path: str | Path) -> Path:
    """A directory only its owner may enter (mode 0700), created if missing."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
