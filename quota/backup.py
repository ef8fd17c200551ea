"""Back up and restore the quota database: `gpu-commons backup create|restore`.

The database is the quota service's system of record (leases, the queue, the usage ledger,
staff's settings and their audit, reservations); the service rebuilds its allocator from it
at start. A backup is therefore all an operator needs to bring the service back.

* SQLite: SQLite's online backup (``sqlite3.Connection.backup``), consistent while the
  service runs and writes; the copy is checked (``PRAGMA integrity_check``) and mode 0600.
* PostgreSQL: ``pg_dump --format=custom``; restored with ``pg_restore --clean
  --single-transaction``, so a failed restore leaves the database as it was.

A restore refuses while a quota service writes the target (it holds the writer lock for the
whole restore, so none starts meanwhile), into a database that already holds leases unless
``--force``, and from a backup of a newer schema than this version knows. It prints what it
restored (leases by state, usage records, schema revision) for the operator to compare with
what the backup printed. Start the service afterwards: it rebuilds from the restored rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from quota.private_files import make_private, private_dir


class BackupError(RuntimeError):
    """What went wrong, naming the file or database and what to do."""


@dataclass(frozen=True)
class Contents:
    revision: str
    leases_by_state: dict[str, int]
    usage_records: int

    def describe(self) -> str:
        states = ", ".join(f"{count} {state}" for state, count in sorted(self.leases_by_state.items())) or "none"
        return f"schema {self.revision}; leases: {states}; usage records: {self.usage_records}"


def database_url_of(args: argparse.Namespace) -> str:
    from quota.settings import default_database_url

    if args.database_url:
        return args.database_url
    env = os.environ.get("GPU_COMMONS_DATABASE_URL")
    if env:
        return env
    return default_database_url(Path(args.data_dir or os.environ.get("GPU_COMMONS_DATA_DIR") or "data/quota"))


def contents(database_url: str) -> Contents:
    from quota.tables import LeaseRow, UsageRecord

    leases, usage_table = LeaseRow.__tablename__, UsageRecord.__tablename__
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        if "alembic_version" not in tables or leases not in tables:
            return Contents("", {}, 0)
        with engine.connect() as db:
            revision = db.scalar(text("SELECT version_num FROM alembic_version")) or ""
            states = dict(db.execute(text(f"SELECT state, count(*) FROM {leases} GROUP BY state")).all())
            usage = db.scalar(text(f"SELECT count(*) FROM {usage_table}")) if usage_table in tables else 0
        return Contents(revision, {str(k): int(v) for k, v in states.items()}, int(usage or 0))
    finally:
        engine.dispose()


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from quota.db import MIGRATIONS

    return {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}


# -- SQLite ---------------------------------------------------------------------------------

def _sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:":
        raise BackupError(f"{database_url}: not a SQLite file; give --data-dir or --database-url of the service's file")
    return Path(database)


def _sqlite_backup(source: Path, target: Path) -> None:
    if not source.exists():
        raise BackupError(f"{source}: no such database; give the service's --data-dir (or --database-url)")
    private_dir(target.parent)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    make_private(partial)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(partial) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        if dst.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupError(f"{partial}: the copy failed SQLite's integrity check; run the backup again")
    os.replace(partial, target)


def _sqlite_restore(backup: Path, target: Path) -> None:
    try:
        with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as src:
            if src.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError(f"{backup}: damaged (SQLite's integrity check failed); restore another backup")
            private_dir(target.parent)
            make_private(target)
            with sqlite3.connect(target) as dst:
                src.backup(dst)  # page by page into the live file, its WAL included
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{backup}: not a SQLite backup of the quota database ({exc})") from None


# -- PostgreSQL -------------------------------------------------------------------------------

def _libpq_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None)
    if not found:
        raise BackupError(f"{name} is not installed; install the PostgreSQL client (Debian: postgresql-client)")
    return found


def _pg_backup_revision(backup: Path) -> str:
    """The schema revision a pg_dump archive holds ('' when it holds none), read without restoring."""
    result = subprocess.run([_pg_tool("pg_restore"), "--data-only", "--table=alembic_version", "--file=-", str(backup)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{backup}: not a pg_dump archive of the quota database ({result.stderr.strip()}); "
                          "restore a file that `gpu-commons backup create` wrote")
    lines = result.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("COPY ") and "alembic_version" in line and i + 1 < len(lines) and lines[i + 1] != "\\.":
            return lines[i + 1].strip()
    return ""


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{what} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")


# -- the writer lock ---------------------------------------------------------------------------

class _NoServiceWrites:
    """Hold the quota service's writer lock for the restore (:mod:`quota.writer`), or refuse."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self._engine = None
        self._lock = None

    def __enter__(self):
        from quota.writer import FileWriterLock, PostgresWriterLock

        if self.database_url.startswith("sqlite"):
            self._lock = FileWriterLock(_sqlite_path(self.database_url))
        else:
            self._engine = create_engine(self.database_url)
            self._lock = PostgresWriterLock(self._engine)
        if not self._lock.try_acquire():
            self.__exit__()
            raise BackupError(f"{self.database_url}: a quota service is running on this database (it holds the "
                              "writer lock); stop it, restore, then start it again")
        return self

    def __exit__(self, *exc):
        self._lock.release()
        if self._engine is not None:
            self._engine.dispose()


# -- the two commands ---------------------------------------------------------------------------

def create(database_url: str, target: Path) -> Contents:
    target = Path(target)
    if database_url.startswith("sqlite"):
        _sqlite_backup(_sqlite_path(database_url), target)
        return contents(f"sqlite:///{target}")
    private_dir(target.parent)
    make_private(target)
    _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(target), _libpq_url(database_url)],
         "pg_dump")
    return contents(database_url)


def restore(backup: Path, database_url: str, force: bool = False) -> Contents:
    backup = Path(backup)
    if not backup.is_file():
        raise BackupError(f"{backup}: no such backup file")
    with _NoServiceWrites(database_url):
        present = contents(database_url)
        if present.leases_by_state and not force:
            raise BackupError(f"{database_url}: already holds leases ({present.describe()}); restore into an empty "
                              "database, or add --force to replace what it holds")
        if database_url.startswith("sqlite"):
            try:
                revision = contents(f"sqlite:///{backup}").revision
            except DBAPIError:
                raise BackupError(f"{backup}: not a SQLite backup of the quota database; restore a file that "
                                  "`gpu-commons backup create` wrote") from None
            _check_revision(revision, backup)
            _sqlite_restore(backup, _sqlite_path(database_url))
        else:
            _check_revision(_pg_backup_revision(backup), backup)
            _run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
                  "--dbname", _libpq_url(database_url), str(backup)], "pg_restore")
        return contents(database_url)


def _check_revision(revision: str, backup: Path) -> None:
    if not revision:
        raise BackupError(f"{backup}: holds no quota database (no schema revision); restore a file that "
                          "`gpu-commons backup create` wrote")
    if revision not in known_revisions():
        raise BackupError(f"{backup}: schema revision {revision} is newer than this version knows; restore with "
                          "the version of GPU Commons that wrote it, or upgrade this one")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="backup_command", required=True)
    for name, helptext in (("create", "write a backup of the quota database to a file"),
                           ("restore", "replace the quota database with a backup (the service stopped)")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--data-dir", help="the service's data directory (SQLite; default GPU_COMMONS_DATA_DIR)")
        sub.add_argument("--database-url", help="SQLAlchemy URL of the database (default GPU_COMMONS_DATABASE_URL)")
        if name == "create":
            sub.add_argument("--to", required=True, type=Path, help="backup file to write (mode 0600)")
        else:
            sub.add_argument("--from", dest="source", required=True, type=Path, help="backup file to restore")
            sub.add_argument("--force", action="store_true", help="replace a database that already holds leases")


def run(args: argparse.Namespace) -> int:
    url = database_url_of(args)
    try:
        if args.backup_command == "create":
            done = create(url, args.to)
            print(f"backed up to {args.to}: {done.describe()}")
        else:
            done = restore(args.source, url, force=args.force)
            print(f"restored {args.source}: {done.describe()}; start the quota service to serve it")
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
