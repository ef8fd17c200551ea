"""LeaseBook: the adapter between the allocator (pure) and the database.

Every change happens inside one lock and one transaction: read what is held and who
waits, ask ``quota.allocator``, store the answer. The clock is injected so tests can move
time. Usage is written, append-only, in the same transaction that ends a lease, so a
crash can never end a lease without its record (or record one twice).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from quota import allocator
from quota.alliance import Alliance
from quota.errors import InvalidField
from quota.inventory import Unit
from quota.tables import LeaseRow, UsageRecord, WithdrawnKey

ACTIVE = ("granted", "queued")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Listener:
    """What the book tells the metrics module (all optional)."""

    on_request: Callable[[str, str], None] = lambda outcome, tier: None  # outcome, tier
    on_grant: Callable[[str, str], None] = lambda pool, tier: None


class LeaseBook:
    def __init__(
        self,
        alliance: Alliance,
        units: Iterable[Unit],
        sessions: sessionmaker,
        clock: Clock = utc_now,
        heartbeat_timeout_s: float = 120.0,
        listener: Listener | None = None,
    ):
        self.alliance = alliance
        self.units = list(units)
        self._unit_by_id = {unit.id: unit for unit in self.units}
        self._alloc_units = [allocator.Unit(unit.id, unit.pool, unit.kind) for unit in self.units]
        self._gpu_fraction = _gpu_fractions(self.units)
        self._sessions = sessions
        self._clock = clock
        self._heartbeat_timeout = timedelta(seconds=heartbeat_timeout_s)
        self._listener = listener or Listener()
        self._lock = threading.Lock()

    @property
    def simulated(self) -> bool:
        return any(unit.simulated for unit in self.units)

    # -- requests -----------------------------------------------------------------------

    def request(self, user: str, school_id: str, profile_id: str, idempotency_key: str | None) -> tuple[LeaseRow, bool]:
        """Decide a request. Returns the lease and whether it is new (False: the same
        idempotency key was seen before and its lease is returned unchanged)."""
        try:
            school = self.alliance.school(school_id)
        except KeyError:
            known = ", ".join(s.id for s in self.alliance.schools)
            raise InvalidField("school", f"unknown school '{school_id}'. Known schools: {known}.") from None
        try:
            profile = self.alliance.profile(profile_id)
        except KeyError:
            known = ", ".join(p.id for p in self.alliance.profiles)
            raise InvalidField("profile", f"unknown profile '{profile_id}'. Choose one of: {known}.") from None
        kind = None if profile.gpu == "none" else profile.gpu
        with self._lock, self._transaction(write=True) as session:
            if idempotency_key:
                existing = session.scalar(select(LeaseRow).where(LeaseRow.idempotency_key == idempotency_key))
                if existing is not None:
                    return existing, False
            now = self._clock()
            lease = LeaseRow(
                id=f"l-{uuid.uuid4().hex[:16]}", user=user, school=school.id, tier=school.tier, profile=profile.id,
                state="queued", kind=kind, requested_at=now, last_seen_at=now, idempotency_key=idempotency_key,
                seq=(session.scalar(select(func.max(LeaseRow.seq))) or 0) + 1, gpu_fraction=0.0,
                simulated=self.simulated,
            )
            if idempotency_key and session.get(WithdrawnKey, idempotency_key) is not None:
                lease.state, lease.released_at = "refused", now
                lease.reason = "This request was withdrawn by the hub before it arrived; nothing was booked."
                session.add(lease)
                self._listener.on_request("refused", school.tier)
                return lease, True
            waiting = self._waiting(session)
            cap = self.alliance.limit_of(school, "max_sessions_per_student") or 1
            mine = session.scalar(
                select(func.count()).select_from(LeaseRow).where(
                    LeaseRow.user == user, LeaseRow.state.in_(ACTIVE), LeaseRow.kind.is_not(None)
                )
            )
            decision = allocator.decide(
                allocator.Request(lease.id, user, kind), self._alloc_units, self._held(session), waiting,
                active_gpu_leases_of_user=mine, max_gpu_leases_per_user=cap,
            )
            if decision.outcome == "granted":
                self._grant(lease, decision.unit, now)
            elif decision.outcome == "refused":
                lease.state, lease.reason, lease.released_at = "refused", decision.reason, now
            session.add(lease)
            session.flush()
            self._listener.on_request(decision.outcome, school.tier)
            if decision.outcome == "granted":
                self._listener.on_grant(lease.pool or "", school.tier)
            return lease, True

    def get(self, lease_id: str, heartbeat: bool = True) -> LeaseRow | None:
        """The lease; asking about a queued lease keeps its place (heartbeat)."""
        with self._transaction() as session:
            lease = session.get(LeaseRow, lease_id)
            if lease is not None and heartbeat and lease.state == "queued":
                lease.last_seen_at = self._clock()
            return lease

    def release(self, lease_id: str, end_reason: str = "released") -> LeaseRow | None:
        with self._lock, self._transaction(write=True) as session:
            lease = session.get(LeaseRow, lease_id)
            if lease is None:
                return None
            if lease.state in ACTIVE:
                self._end(session, lease, end_reason, self._clock())
                self._promote(session)
            return lease

    def renew(self, lease_id: str) -> LeaseRow:
        """Extend a granted lease by its profile's length from now, unless someone waits
        for the same kind of unit (then InvalidField says so and when the lease ends)."""
        with self._lock, self._transaction(write=True) as session:
            lease = session.get(LeaseRow, lease_id)
            if lease is None or lease.state != "granted":
                raise InvalidField("lease", f"lease '{lease_id}' is not granted (it is {lease.state if lease else 'unknown'}); ask for a new one.")
            waiting = [request for request in self._waiting(session) if request.kind == lease.kind]
            if lease.kind is not None and waiting:
                raise InvalidField(
                    "lease",
                    f"{len(waiting)} student(s) are waiting for this kind of GPU, so it cannot be renewed; "
                    f"save your work: it ends at {lease.expires_at:%H:%M} UTC.",
                )
            profile = self.alliance.profile(lease.profile)
            lease.expires_at = self._clock() + timedelta(minutes=profile.max_minutes)
            return lease

    def release_by_key(self, idempotency_key: str) -> LeaseRow | None:
        """Release the lease made with this key. If no request with it has arrived yet,
        the key is remembered as withdrawn so the late request is refused (returns None)."""
        with self._lock, self._transaction(write=True) as session:
            lease_id = session.scalar(select(LeaseRow.id).where(LeaseRow.idempotency_key == idempotency_key))
            if lease_id is None:
                if session.get(WithdrawnKey, idempotency_key) is None:
                    session.add(WithdrawnKey(idempotency_key=idempotency_key, withdrawn_at=self._clock()))
                return None
        return self.release(lease_id)

    def sweep(self) -> int:
        """End granted leases past their expiry and queued ones nobody asks about any more.
        Returns how many leases it ended."""
        with self._lock, self._transaction(write=True) as session:
            now = self._clock()
            ended = 0
            expired = session.scalars(
                select(LeaseRow).where(LeaseRow.state == "granted", LeaseRow.expires_at <= now)
            ).all()
            for lease in expired:
                self._end(session, lease, "expired", now)
                ended += 1
            stale = session.scalars(
                select(LeaseRow).where(LeaseRow.state == "queued", LeaseRow.last_seen_at <= now - self._heartbeat_timeout)
            ).all()
            for lease in stale:
                self._end(session, lease, "abandoned", now)
                ended += 1
            if ended:
                self._promote(session)
            return ended

    def promote(self) -> None:
        """Grant what can be granted now (also run at start-up)."""
        with self._lock, self._transaction(write=True) as session:
            self._promote(session)

    # -- reading --------------------------------------------------------------------------

    def leases(self, state: str | None = None, user: str | None = None, school: str | None = None) -> list[LeaseRow]:
        query = select(LeaseRow).order_by(LeaseRow.seq)
        if state:
            query = query.where(LeaseRow.state == state)
        if user:
            query = query.where(LeaseRow.user == user)
        if school:
            query = query.where(LeaseRow.school == school)
        with self._transaction() as session:
            return list(session.scalars(query).all())

    def queue(self) -> list[LeaseRow]:
        with self._transaction() as session:
            return list(session.scalars(select(LeaseRow).where(LeaseRow.state == "queued").order_by(LeaseRow.seq)))

    def queue_positions(self) -> dict[str, int]:
        with self._transaction() as session:
            return allocator.queue_positions(self._waiting(session))

    def holders(self) -> dict[str, LeaseRow]:
        """unit id -> the granted lease holding it."""
        with self._transaction() as session:
            rows = session.scalars(select(LeaseRow).where(LeaseRow.state == "granted", LeaseRow.unit_id.is_not(None)))
            return {row.unit_id: row for row in rows}

    def usage(self, user: str | None = None, school: str | None = None) -> list[UsageRecord]:
        query = select(UsageRecord).order_by(UsageRecord.id)
        if user:
            query = query.where(UsageRecord.user == user)
        if school:
            query = query.where(UsageRecord.school == school)
        with self._transaction() as session:
            return list(session.scalars(query).all())

    def gpu_seconds_by_school(self) -> dict[tuple[str, str], float]:
        with self._transaction() as session:
            rows = session.execute(
                select(UsageRecord.school, UsageRecord.tier, func.sum(UsageRecord.gpu_seconds)).group_by(
                    UsageRecord.school, UsageRecord.tier
                )
            )
            return {(school, tier): float(total or 0) for school, tier, total in rows}

    # -- inside a transaction ---------------------------------------------------------------

    def _transaction(self, write: bool = False):
        return _Transaction(self._sessions, write)

    def _held(self, session: Session) -> set[str]:
        return set(
            session.scalars(select(LeaseRow.unit_id).where(LeaseRow.state == "granted", LeaseRow.unit_id.is_not(None)))
        )

    def _waiting(self, session: Session) -> list[allocator.Request]:
        rows = session.execute(
            select(LeaseRow.id, LeaseRow.user, LeaseRow.kind).where(LeaseRow.state == "queued").order_by(LeaseRow.seq)
        )
        return [allocator.Request(lease_id, user, kind) for lease_id, user, kind in rows]

    def _grant(self, lease: LeaseRow, unit: allocator.Unit | None, now: datetime) -> None:
        profile = self.alliance.profile(lease.profile)
        lease.state, lease.granted_at = "granted", now
        lease.expires_at = now + timedelta(minutes=profile.max_minutes)
        if unit is not None:
            real = self._unit_by_id[unit.id]
            lease.unit_id, lease.pool, lease.device, lease.unit_kind = unit.id, real.pool, real.device, real.kind
            lease.gpu_fraction = self._gpu_fraction[unit.id]
            lease.simulated = real.simulated

    def _promote(self, session: Session) -> None:
        now = self._clock()
        for request, unit in allocator.promote(self._waiting(session), self._alloc_units, self._held(session)):
            lease = session.get(LeaseRow, request.lease_id)
            self._grant(lease, unit, now)
            self._listener.on_grant(lease.pool or "", lease.tier)
        session.flush()

    def _end(self, session: Session, lease: LeaseRow, end_reason: str, now: datetime) -> None:
        was_granted = lease.state == "granted"
        lease.state = {"released": "released", "expired": "expired", "abandoned": "abandoned"}[end_reason]
        lease.released_at = now
        if not was_granted:
            return  # a queued lease held nothing: no usage to record
        held = max(0.0, (now - lease.granted_at).total_seconds())
        session.add(
            UsageRecord(
                lease_id=lease.id, user=lease.user, school=lease.school, tier=lease.tier, profile=lease.profile,
                pool=lease.pool, device=lease.device, unit_kind=lease.unit_kind, started_at=lease.granted_at,
                ended_at=now, held_seconds=held, gpu_seconds=held * lease.gpu_fraction, end_reason=end_reason,
            )
        )


class _Transaction:
    """``with`` block: one session, committed on success, rolled back on error. On
    PostgreSQL an advisory lock serialises writers across service processes."""

    def __init__(self, sessions: sessionmaker, write: bool):
        self._session = sessions()
        self._write = write

    def __enter__(self) -> Session:
        if self._write and self._session.bind.dialect.name == "postgresql":
            self._session.execute(text("SELECT pg_advisory_xact_lock(7461)"))
        return self._session

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._session.commit()
            else:
                self._session.rollback()
        finally:
            self._session.close()
        return False


def _gpu_fractions(units: list[Unit]) -> dict[str, float]:
    """How much of one GPU each unit is: 1 for a whole GPU, 1/n for one of n slices."""
    slices_per_gpu: dict[tuple[str, int], int] = {}
    for unit in units:
        if unit.kind == "slice":
            key = (unit.pool, unit.gpu_index)
            slices_per_gpu[key] = slices_per_gpu.get(key, 0) + 1
    return {
        unit.id: 1.0 if unit.kind == "whole" else 1.0 / slices_per_gpu[(unit.pool, unit.gpu_index)] for unit in units
    }


__all__ = ["LeaseBook", "Listener", "ACTIVE", "utc_now"]
