"""Exactly one quota service process writes a database at a time.

The service keeps its allocator in memory, so a second writer would decide from a state
it does not have. Each process therefore holds a *writer lock* before it decides anything:

* SQLite: an exclusive ``flock`` on ``<database>.writer.lock``. A second process started
  by mistake on the same file refuses to start (:class:`AnotherWriter`, naming the pid
  that holds it): one machine, one process.
* PostgreSQL: a session advisory lock held on a connection of its own. A second process is
  a hot standby: it answers not-ready (``GET /api/ready`` is 503, for a Kubernetes
  readiness probe) and every call that needs the allocator with 503, and tries the lock
  every ``standby_poll_s``. When the leader dies its connection closes, the lock is free,
  and the standby rebuilds the allocator from the database and serves. A leader whose
  lock connection breaks steps down the same way (it forgets its allocator).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

from sqlalchemy import Engine, text

from quota.private_files import make_private

log = logging.getLogger(__name__)

ADVISORY_KEY = 7462  # the writer's session lock (7461 serialises write transactions)


class AnotherWriter(RuntimeError):
    """Another process already writes this SQLite database."""


class FileWriterLock:
    def __init__(self, database_path: Path):
        self.path = Path(str(database_path) + ".writer.lock")
        self._file = None

    def try_acquire(self) -> bool:
        make_private(self.path)  # beside the database, as private as it
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def still_held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None


class PostgresWriterLock:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._connection = None

    def try_acquire(self) -> bool:
        try:
            connection = self._engine.connect()
            got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}).scalar()
            connection.commit()
        except Exception as exc:  # the database is away: stay standby, try again later
            log.warning("could not ask PostgreSQL for the writer lock: %s", str(exc).splitlines()[0])
            return False
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def still_held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1")).scalar()
            self._connection.commit()
            return True
        except Exception:
            self._connection = None
            return False

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                self._connection.commit()
                self._connection.close()
            except Exception:
                pass  # a closed connection has dropped the lock already
            self._connection = None


class Leadership:
    """Who writes: holds the writer lock, becomes the leader when it gets it (the book
    rebuilds its allocator then), steps down when it loses it."""

    def __init__(self, lock, book, poll_s: float = 1.0):
        self._lock = lock
        self._book = book
        self._poll_s = poll_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.leader = False

    def is_writer(self) -> bool:
        return self.leader

    def start(self) -> None:
        """Try once now (a second SQLite writer refuses to start here)."""
        if self._lock.try_acquire():
            self.leader = True
        elif isinstance(self._lock, FileWriterLock):
            raise AnotherWriter(
                f"another quota service process (pid {self._lock.holder()}) already uses the SQLite database "
                f"beside {self._lock.path}; only one process may write it. Stop that process first, or use "
                "PostgreSQL (GPU_COMMONS_DATABASE_URL) to run a standby beside the leader."
            )
        else:
            log.warning("standby: another quota service process is the writer; taking over when it stops")

    def watch(self) -> None:
        """On PostgreSQL keep trying (standby) and keep checking (leader) until :meth:`stop`. Started
        with the service's lifespan, so an app that is built and never served leaves no thread behind."""
        if isinstance(self._lock, PostgresWriterLock) and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="quota-leadership", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self._poll_s):
            if self.leader and not self._lock.still_held():
                log.error("lost the writer lock (the database connection broke): stepping down to standby")
                self.leader = False
                self._book.drop_memory()
            elif not self.leader and self._lock.try_acquire():
                log.warning("took over as the writer: rebuilding the allocator from the database")
                self.leader = True
                try:
                    for refresh in getattr(self._book, "before_promote", ()):  # e.g. the roster's students
                        refresh()
                    self._book.promote()
                except Exception:
                    log.exception("the allocator could not be rebuilt after the takeover; the next call retries")

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.leader = False
        self._book.drop_memory()
        self._lock.release()


def writer_lock(engine: Engine):
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            return _NoLock()
        return FileWriterLock(Path(database).resolve())
    if engine.dialect.name == "postgresql":
        return PostgresWriterLock(engine)
    return _NoLock()


class _NoLock:
    def try_acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def release(self) -> None:
        pass
