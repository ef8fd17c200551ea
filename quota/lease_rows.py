"""The lease book's memory of the active leases, and what the allocator's actions do to them.

- :class:`Memory`: the allocator (in its :class:`~quota.fair_snapshot.Snapshot`) and the
  granted and queued lease rows as the database holds them after the last commit, with
  what was decided but is not yet durable (readers of those leases wait for its commit).
- :func:`apply_actions`: the allocator's grants (each on a free unit of the pool it chose),
  reclaim warnings, withdrawn warnings, renewals and stops, written on the rows of one
  journal entry (:mod:`quota.journal`); :func:`end` also writes the ended lease's usage
  record.
- :func:`view`: a copy of a lease's columns, what a reader gets.

Everything here takes its inputs explicitly (the memory, the journal entry, the time);
:class:`quota.leases.LeaseBook` owns the lock, the clock and the journal's thread.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace

from quota import fair_snapshot
from quota.fairshare.model import INF
from quota.journal import LEASE_COLUMNS, Entry
from quota.messages import goes_back, lent_until
from quota.messages import sentence as _sentence
from quota.tables import LeaseRow, UsageRecord
from quota.unit_holders import UnitHolders

END_STATE = {"released": "released", "reconciled": "released", "expired": "expired", "reclaimed": "expired",
             "budget_exhausted": "expired", "idle": "expired", "abandoned": "abandoned"}
# the allocator's reason for a stop -> the usage record's end reason
_STOP_REASON = {"reclaimed": "reclaimed", "budget_exhausted": "budget_exhausted", "lease_expired": "expired",
                "idle": "idle"}


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


@dataclass
class Memory:
    """The allocator and the active leases as the database holds them after the last commit."""

    snap: fair_snapshot.Snapshot
    rows: dict[str, LeaseRow]  # granted and queued leases
    by_key: dict[str, str]  # idempotency key -> id, of active leases
    withdrawn: set[str]
    units: UnitHolders  # which GPU unit each granted lease holds
    seq: int
    abandon_check_at: float = INF  # no queued lease's heartbeat runs out before this
    # queued leases not asked about since this process started writing (the book's, kept across rebuilds)
    unconfirmed: set[str] = field(default_factory=set)
    # the allocator's admissions of those leases, held back until their heartbeat comes
    deferred: dict[str, object] = field(default_factory=dict)  # lease id -> the allocator's admit action
    version: int = 0  # counts decided inputs (the queue places' cache key)
    places: tuple = (-1, 0.0, {})  # (version, time, places) of the last computation
    # inputs decided but not yet durable: what they changed, for readers to wait on
    unsettled: dict[str, Future] = field(default_factory=dict)  # active lease id -> its last change's commit
    settling: dict[str, tuple[LeaseRow, Future]] = field(default_factory=dict)  # ended or refused, not yet stored
    settling_keys: dict[str, str] = field(default_factory=dict)  # their idempotency keys -> id
    settling_order: deque = field(default_factory=deque)  # (commit, lease ids) in the order decided

    @property
    def allocator(self):
        return self.snap.allocator

    def remember(self, lease: LeaseRow) -> None:
        self.rows[lease.id] = lease
        if lease.idempotency_key:
            self.by_key[lease.idempotency_key] = lease.id

    def forget(self, lease: LeaseRow) -> None:
        self.rows.pop(lease.id, None)
        self.unconfirmed.discard(lease.id)
        self.deferred.pop(lease.id, None)
        if lease.idempotency_key:
            self.by_key.pop(lease.idempotency_key, None)

    def leave_allocator(self, lease: LeaseRow, t: float) -> list:
        """Take an ending lease out of the allocator: a session (granted, or admitted and held
        back) is released, a place in the queue cancelled. Returns the allocator's actions."""
        if lease.kind is None:
            return []
        if lease.state == "granted" or lease.id in self.deferred:
            return self.allocator.release(lease.id, t)
        return self.allocator.cancel(lease.id, t)

    def track_unsettled(self, entry: Entry, stored: Future) -> None:
        """Remember what the entry changed until its commit is durable: readers of those
        leases wait for it, and an ended lease is still found (not yet in the database)."""
        while self.settling_order and self.settling_order[0][0].done():
            done, ids = self.settling_order.popleft()
            for lease_id in ids:
                if self.unsettled.get(lease_id) is done:
                    del self.unsettled[lease_id]
                row, by = self.settling.get(lease_id, (None, None))
                if by is done:
                    del self.settling[lease_id]
                    if row.idempotency_key:
                        self.settling_keys.pop(row.idempotency_key, None)
        ids = []
        for row in entry.rows():
            ids.append(row.id)
            if row.id in self.rows:
                self.unsettled[row.id] = stored
            else:
                self.settling[row.id] = (row, stored)
                if row.idempotency_key:
                    self.settling_keys[row.idempotency_key] = row.id
        self.settling_order.append((stored, ids))


def lent_reason(mem: "Memory", lease: LeaseRow):
    """'Lent until HH:MM' for a running lease beyond its school's guaranteed share that the
    allocator lent with an end (``Config.lent_lease_s``); None for any other lease."""
    session = mem.allocator.sessions.get(lease.id)
    if session is None or not session.borrowed or mem.allocator.config.lent_lease_s is None or lease.expires_at is None:
        return None
    return lent_until(lease.expires_at)


def apply_actions(mem: Memory, journal: Entry, actions, now: datetime) -> None:
    """Store what the allocator decided: grants (each on a free unit of the pool it
    chose), reclaim warnings, withdrawn warnings, renewals, stops."""
    for action in actions:
        if action.kind == "admit":
            lease = mem.rows.get(action.request_id)
            if lease is None or lease.state != "queued":
                continue
            if lease.id in mem.unconfirmed:  # not heard from since the restart: hold the grant back
                mem.deferred[lease.id] = action
                continue
            pool, kind = mem.snap.pool_of[action.pool]
            grant(mem, journal, lease, pool, kind, now, action.lease_end)
            continue
        lease = mem.rows.get(action.session_id)
        if lease is not None and lease.id in mem.deferred:
            if action.kind == "stop":  # its session ended before anyone confirmed it: it never ran
                lease.reason = _sentence(action.message)
                end(mem, journal, lease, "abandoned", now)
            continue
        if lease is None or lease.state != "granted":
            continue
        journal.changed[lease.id] = lease
        if action.kind == "warn":
            lease.reclaim_at = _at(action.stop_at)
            lease.reason = goes_back(_sentence(action.reason), lease.reclaim_at)
        elif action.kind == "renew":
            lease.expires_at = _at(action.lease_end) if action.lease_end < INF else None
            if action.warning_withdrawn:
                lease.reclaim_at, lease.reason = None, None
            if lease.reclaim_at is None and (lent := lent_reason(mem, lease)) is not None:
                lease.reason = lent
        elif action.kind == "stop":
            lease.reason = _sentence(action.message)
            end(mem, journal, lease, _STOP_REASON[action.reason], now)


def grant(mem: Memory, journal: Entry, lease: LeaseRow, pool: str, kind: str, now: datetime,
          lease_end: float) -> None:
    unit = mem.units.take(pool, kind, lease.id)
    lease.state, lease.granted_at = "granted", now
    lease.expires_at = _at(lease_end) if lease_end < INF else None
    lease.unit_id, lease.pool, lease.device, lease.unit_kind = unit.id, unit.pool, unit.device, unit.kind
    lease.gpu_fraction = mem.units.fraction(unit.id)
    lease.simulated = unit.simulated
    if (lent := lent_reason(mem, lease)) is not None:
        lease.reason = lent  # told at admission how long the share is theirs
    journal.changed[lease.id] = lease
    journal.granted.append(lease)


def end(mem: Memory, journal: Entry, lease: LeaseRow, end_reason: str, now: datetime,
        charge_from: datetime | None = None) -> None:
    was_granted = lease.state == "granted"
    lease.state = END_STATE[end_reason]
    lease.released_at = now
    journal.changed[lease.id] = lease
    mem.forget(lease)
    if not was_granted:
        return  # a queued lease held nothing: no usage to record
    if lease.unit_id is not None:
        mem.units.give_back(lease.unit_id, lease.id)
    charged_from = min(max(lease.granted_at, charge_from), now) if charge_from is not None else lease.granted_at
    held = max(0.0, (now - charged_from).total_seconds())
    journal.usage.append(
        UsageRecord(
            lease_id=lease.id, user=lease.user, school=lease.school, tier=lease.tier, profile=lease.profile,
            pool=lease.pool, device=lease.device, unit_kind=lease.unit_kind, started_at=charged_from,
            ended_at=now, held_seconds=held, gpu_seconds=held * lease.gpu_fraction, end_reason=end_reason,
        )
    )


def grant_confirmed(mem: Memory, journal: Entry, now: datetime) -> None:
    """Grant the held-back admissions of queued leases heard from since the restart."""
    for lease_id in [lease_id for lease_id in mem.deferred if lease_id not in mem.unconfirmed]:
        action = mem.deferred.pop(lease_id)
        lease = mem.rows.get(lease_id)
        if lease is not None and lease.state == "queued":
            pool, kind = mem.snap.pool_of[action.pool]
            grant(mem, journal, lease, pool, kind, now, action.lease_end)


def refuse_queued(mem: Memory, journal: Entry, refusal, now: datetime) -> None:
    """A queued lease that can no longer wait (its school's new limit, cap or budget)."""
    lease = mem.rows.get(refusal.request_id)
    if lease is not None and lease.state == "queued":
        lease.state, lease.reason, lease.released_at = "refused", _sentence(refusal.reason), now
        journal.changed[lease.id] = lease
        mem.forget(lease)


def view(row: LeaseRow, mem: Memory | None = None) -> SimpleNamespace:
    """A copy of a lease's columns: what a reader gets, so that no later input changes it
    under the reader's feet. With ``mem``, a granted lease also says whether it is within its
    school's guaranteed share (:func:`within_share`)."""
    copy = SimpleNamespace(**{name: getattr(row, name) for name in LEASE_COLUMNS})
    copy.within_share = within_share(mem, row) if mem is not None and row.state == "granted" else None
    return copy


def within_share(mem: Memory, lease: LeaseRow) -> bool:
    """A GPU lease within its school's guaranteed share (never reclaimed, not lent); a CPU
    lease (or one on a draining pool) when its school holds less than its share now."""
    allocator = mem.allocator
    session = allocator.sessions.get(lease.id)
    if session is not None:
        return not session.borrowed
    s = allocator.school_index.get(lease.school)
    return s is not None and allocator.held[s] < allocator.guarantee[s]
