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
from quota.policy_store import PolicyStore
from quota.reservations import active as active_reservations
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
        self.policy = PolicyStore(alliance)

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
            cap = self.policy.limit(session, school.id, "max_sessions_per_student") or 1
            mine = session.scalar(
                select(func.count()).select_from(LeaseRow).where(
                    LeaseRow.user == user, LeaseRow.state.in_(ACTIVE), LeaseRow.kind.is_not(None)
                )
            )
            decision = allocator.decide(
                allocator.Request(lease.id, user, kind, school.id), self._open_units(session), self._held(session),
                waiting, active_gpu_leases_of_user=mine, max_gpu_leases_per_user=cap,
                holds=self._holds(session, now), budget_spent=self._budget_spent(session, school.id, user, now) if kind else None,
                known_kinds={unit.kind for unit in self._alloc_units},
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
            select(LeaseRow.id, LeaseRow.user, LeaseRow.kind, LeaseRow.school)
            .where(LeaseRow.state == "queued")
            .order_by(LeaseRow.seq)
        )
        return [allocator.Request(lease_id, user, kind, school) for lease_id, user, kind, school in rows]

    def _open_units(self, session: Session) -> list[allocator.Unit]:
        """Units of pools open for new leases (a draining pool keeps its running leases)."""
        open_pools = self.policy.open_pools(session)
        return [unit for unit in self._alloc_units if unit.pool in open_pools]

    def _holds(self, session: Session, now: datetime) -> list[allocator.Hold]:
        """What reservations in their window still keep free for their schools."""
        reserved: dict[tuple[str, str], int] = {}
        for booking in active_reservations(self.policy.reservations(session, include_past_of=now), now):
            key = (booking.pool, booking.school)
            reserved[key] = reserved.get(key, 0) + booking.units
        holds = []
        for (pool, school), units in reserved.items():
            kind = self.policy.reservable_kind(pool)
            in_use = session.scalar(
                select(func.count()).select_from(LeaseRow).where(
                    LeaseRow.state == "granted", LeaseRow.pool == pool, LeaseRow.school == school, LeaseRow.unit_kind == kind
                )
            )
            holds.append(allocator.Hold(pool, kind, school, max(0, units - in_use)))
        return holds

    def _budget_spent(self, session: Session, school: str, user: str, now: datetime) -> allocator.BudgetSpent | None:
        """Compare GPU-seconds used in the rolling period with the school's and student's budgets."""
        period = timedelta(days=self.alliance.fairshare.budget_period_days)
        for whose, limit_name, column, who in (
            ("school", "budget_gpu_hours", LeaseRow.school, school),
            ("student", "student_budget_gpu_hours", LeaseRow.user, user),
        ):
            budget_hours = self.policy.limit(session, school, limit_name)
            if budget_hours is None:
                continue
            used, oldest = self._gpu_seconds_since(session, column, who, now - period, now)
            if used >= budget_hours * 3600:
                retry_after = max(60.0, ((oldest or now) + period - now).total_seconds())
                return allocator.BudgetSpent(whose, retry_after)
        return None

    def _gpu_seconds_since(self, session: Session, column, who: str, since: datetime, now: datetime):
        """GPU-seconds of ``who`` inside [since, now]: ended leases from the ledger plus running ones."""
        usage_column = UsageRecord.school if column is LeaseRow.school else UsageRecord.user
        used, oldest = 0.0, None
        for record in session.scalars(select(UsageRecord).where(usage_column == who, UsageRecord.ended_at > since)):
            start = max(record.started_at, since)
            fraction = record.gpu_seconds / record.held_seconds if record.held_seconds else 0.0
            used += max(0.0, (record.ended_at - start).total_seconds()) * fraction
            oldest = start if oldest is None or start < oldest else oldest
        for lease in session.scalars(select(LeaseRow).where(column == who, LeaseRow.state == "granted")):
            start = max(lease.granted_at, since)
            used += max(0.0, (now - start).total_seconds()) * lease.gpu_fraction
            oldest = start if oldest is None or start < oldest else oldest
        return used, oldest

    # -- staff and operator settings, reservations (quota.policy_store) ----------------------

    def read_policy(self, action):
        """Run ``action(session, now)`` in a read transaction."""
        with self._transaction() as session:
            return action(session, self._clock())

    def change_policy(self, action):
        """Run ``action(session, now)`` in a write transaction, then grant what the change
        made possible (a reopened pool, a cancelled reservation)."""
        with self._lock, self._transaction(write=True) as session:
            result = action(session, self._clock())
            session.flush()
            self._promote(session)
            return result

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
        grants = allocator.promote(self._waiting(session), self._open_units(session), self._held(session), self._holds(session, now))
        for request, unit in grants:
            lease = session.get(LeaseRow, request.lease_id)
            self._grant(lease, unit, now)
            self._listener.on_grant(lease.pool or "", lease.tier)
        session.flush()

    def _end(self, session: Session, lease: LeaseRow, end_reason: str, now: datetime) -> None:
        was_granted = lease.state == "granted"
        lease.state = {"released": "released", "reconciled": "released", "expired": "expired", "abandoned": "abandoned"}[end_reason]
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
