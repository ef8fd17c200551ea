"""The lease book's journal: what each input writes, and the group commit that stores it.

Each input (a request, a release, the passing of time, …) is decided in memory and leaves
an :class:`Entry`: its new leases, changed leases, usage records and withdrawn keys. The
entry's values are taken when it is handed over (later inputs go on changing the same
rows in memory) and queue for :class:`GroupCommit`'s thread, which writes all the entries
waiting in one transaction with one durable commit, while later inputs are decided and
queue for the next one. An input is answered only once the commit holding it is durable
(its :class:`concurrent.futures.Future`). If a commit fails, its inputs fail, and so do
the inputs queued behind it (they were decided on top of it); the book rebuilds its
memory from the database, which holds what it held before.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import insert, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from quota.tables import LeaseRow, UsageRecord, WithdrawnKey

log = logging.getLogger(__name__)

# the columns an input may change on a lease already stored
MUTABLE = ("state", "pool", "device", "unit_id", "unit_kind", "gpu_fraction", "simulated", "granted_at",
           "expires_at", "released_at", "reclaim_at", "reason")
LEASE_COLUMNS = tuple(column.key for column in LeaseRow.__table__.columns)
_USAGE_COLUMNS = tuple(column.key for column in UsageRecord.__table__.columns if column.key != "id")
WRITER_LOCK_KEY = 7461  # PostgreSQL advisory transaction lock held by every write


class JournalUnavailable(RuntimeError):
    """The database did not store an input (or the allocator could not be rebuilt from it):
    nothing was decided. Answered 503 with the reason."""


def short_reason(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def begin_write(session: Session) -> None:
    """On PostgreSQL a write holds an advisory lock, so that a second writer started by
    mistake waits instead of interleaving (there is one writer: :mod:`quota.writer`)."""
    if session.bind.dialect.name == "postgresql":
        session.execute(text(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})"))


@dataclass
class Entry:
    """What one input writes. ``session`` reads history (ended leases, stored keys) from
    the database, committed rows only; it is opened on first use."""

    sessions: sessionmaker
    added: list[LeaseRow] = field(default_factory=list)
    changed: dict[str, LeaseRow] = field(default_factory=dict)
    usage: list[UsageRecord] = field(default_factory=list)
    withdrawn: list[WithdrawnKey] = field(default_factory=list)
    granted: list[LeaseRow] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (outcome, tier), told once stored
    _reader: Session | None = None

    @property
    def session(self) -> Session:
        if self._reader is None:
            self._reader = self.sessions()
        return self._reader

    def close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def empty(self) -> bool:
        return not (self.added or self.changed or self.usage or self.withdrawn)

    def rows(self) -> list[LeaseRow]:
        return [*self.added, *self.changed.values()]


@dataclass
class Batch:
    """Entries' values, coalesced per lease (the last values win), for one transaction."""

    inserts: dict[str, dict] = field(default_factory=dict)
    updates: dict[str, dict] = field(default_factory=dict)
    usage: list[dict] = field(default_factory=list)
    withdrawn: list[dict] = field(default_factory=list)
    done: Future = field(default_factory=Future)
    entries: int = 0

    def take(self, entry: Entry) -> None:
        """Copy the entry's values now: later inputs change the same rows in memory."""
        for row in entry.added:
            self.inserts[row.id] = {name: getattr(row, name) for name in LEASE_COLUMNS}
        for lease_id, row in entry.changed.items():
            values = {name: getattr(row, name) for name in MUTABLE}
            if lease_id in self.inserts:
                self.inserts[lease_id].update(values)
            else:
                self.updates[lease_id] = {"id": lease_id, **values}
        self.usage.extend({name: getattr(record, name) for name in _USAGE_COLUMNS} for record in entry.usage)
        self.withdrawn.extend({"idempotency_key": key.idempotency_key, "withdrawn_at": key.withdrawn_at}
                              for key in entry.withdrawn)
        self.entries += 1

    def write(self, session: Session) -> None:
        if self.inserts:
            session.execute(insert(LeaseRow), list(self.inserts.values()))
        if self.updates:
            session.execute(update(LeaseRow), list(self.updates.values()))
        if self.usage:
            session.execute(insert(UsageRecord), self.usage)
        if self.withdrawn:
            session.execute(insert(WithdrawnKey), self.withdrawn)


def settled() -> Future:
    done: Future = Future()
    done.set_result(None)
    return done


class GroupCommit:
    """Writes queued entries, as many as are waiting, in one transaction each time.

    ``on_failure(error)`` is called (from the committing thread, before anyone waiting
    hears of the failure) when a commit fails: the book drops its memory there and calls
    :meth:`fail_queued`. ``on_commit(seconds, entries)`` tells the metrics."""

    def __init__(self, sessions: sessionmaker, on_failure: Callable[[JournalUnavailable], None],
                 on_commit: Callable[[float, int], None] = lambda seconds, entries: None):
        self._sessions = sessions
        self._on_failure = on_failure
        self._on_commit = on_commit
        self._ready = threading.Condition()
        self._queued = Batch()
        self._writing: Batch | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="quota-journal", daemon=True)
        self._thread.start()

    def submit(self, entry: Entry) -> Future:
        """Queue an entry (the book calls this under its lock, so entries queue in the
        order they were decided); the future is done once the entry is durable."""
        with self._ready:
            if self._closing:
                raise JournalUnavailable("the quota service is shutting down; ask again once it is back")
            self._queued.take(entry)
            self._ready.notify()
            return self._queued.done

    def fail_queued(self, error: JournalUnavailable) -> None:
        """Fail every entry not yet being written (decided on top of a failed commit)."""
        with self._ready:
            queued, self._queued = self._queued, Batch()
        if queued.entries:
            queued.done.set_exception(error)

    def settle(self) -> None:
        """Wait until everything submitted before this call is stored or has failed (batches
        are stored in order, so the newest one's end is everyone's)."""
        try:
            self.tail().result()
        except JournalUnavailable:
            pass

    def tail(self) -> Future:
        """Done once everything submitted so far is stored (or has failed)."""
        with self._ready:
            for batch in (self._queued, self._writing):
                if batch is not None and batch.entries:
                    return batch.done
        return settled()

    def idle(self) -> bool:
        with self._ready:
            return self._writing is None and not self._queued.entries

    def close(self, timeout: float = 10.0) -> None:
        """Store what is queued, then stop."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queued.entries and not self._closing:
                    self._ready.wait()
                if not self._queued.entries:
                    return  # closing, nothing left to store
                batch, self._queued = self._queued, Batch()
                self._writing = batch
            began = time.perf_counter()
            try:
                with self._sessions() as session:
                    begin_write(session)
                    batch.write(session)
                    session.commit()
            except Exception as exc:  # an SQL error, or anything else: nothing of the batch is stored
                reason = short_reason(exc) if isinstance(exc, SQLAlchemyError) else repr(exc)
                if not isinstance(exc, SQLAlchemyError):
                    log.exception("storing %d input(s) failed", batch.entries)
                error = JournalUnavailable(f"the database did not store the change: {reason}")
                self._on_failure(error)
                with self._ready:
                    self._writing = None
                batch.done.set_exception(error)
                continue
            self._on_commit(time.perf_counter() - began, batch.entries)
            with self._ready:
                self._writing = None
            batch.done.set_result(None)
