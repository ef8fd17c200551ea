"""LeaseBook: the adapter between the allocator (pure) and the database.

Every change happens inside one lock and one transaction: rebuild the fair-share
allocator from what is held and who waits (``quota.fair_snapshot``), ask it, store the
answer (grants, reclaim warnings, stops). The clock is injected so tests can move
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

from quota import fair_snapshot
from quota.alliance import Alliance
from quota.decayed_usage import DecayedUsage
from quota.errors import InvalidField
from quota.inventory import Unit
from quota.policy_store import PolicyStore
from quota.tables import LeaseRow, UsageRecord, WithdrawnKey

ACTIVE = ("granted", "queued")
NO_SUCH_KIND = "No GPU of this kind exists in the alliance; choose another profile."
END_STATE = {"released": "released", "reconciled": "released", "expired": "expired", "reclaimed": "expired",
             "abandoned": "abandoned"}
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
        self._kinds = {unit.kind for unit in self.units}
        self._gpu_fraction = _gpu_fractions(self.units)
        self._sessions = sessions
        self._clock = clock
        self._heartbeat_timeout = timedelta(seconds=heartbeat_timeout_s)
        self._listener = listener or Listener()
        self._lock = threading.Lock()
        self.policy = PolicyStore(alliance)
        fs = alliance.fairshare
        self._usage = DecayedUsage(fs.half_life_minutes * 60, fs.entry_penalty_minutes * 60)

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
            outcome = self._decide(session, lease, now)
            session.flush()
            self._listener.on_request(outcome, school.tier)
            if outcome == "granted":
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
            now = self._clock()
            if lease.reclaim_at is not None:
                raise InvalidField(
                    "lease",
                    f"this GPU share goes back to a school below its guaranteed share at {lease.reclaim_at:%H:%M} UTC, "
                    "so it cannot be renewed; save your work before then.",
                )
            if lease.unit_id is not None:
                snap = self._snapshot(session, now)
                if lease.id in snap.allocator.sessions and snap.allocator.renewal_blocked(lease.id, snap.t):
                    raise InvalidField(
                        "lease",
                        "students with a better fair-share claim are waiting for this kind of GPU, so it cannot be "
                        f"renewed; save your work: it ends at {lease.expires_at:%H:%M} UTC.",
                    )
            profile = self.alliance.profile(lease.profile)
            lease.expires_at = now + timedelta(minutes=profile.max_minutes)
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
            due = (
                (LeaseRow.state == "granted", LeaseRow.expires_at <= now, "expired"),
                (LeaseRow.state == "granted", LeaseRow.reclaim_at <= now, "reclaimed"),
                (LeaseRow.state == "queued", LeaseRow.last_seen_at <= now - self._heartbeat_timeout, "abandoned"),
            )
            for state, overdue, end_reason in due:  # autoflush: a lease ended by one line is not found again
                for lease in session.scalars(select(LeaseRow).where(state, overdue)).all():
                    self._end(session, lease, end_reason, now)
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

    def queue_positions(self) -> dict[str, fair_snapshot.QueuePlace]:
        """Each queued lease's place in the fair-share order and its wait estimate."""
        with self._transaction() as session:
            return self._snapshot(session, self._clock()).places()

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

    def fair_share(self) -> list[fair_snapshot.SchoolShare]:
        """Each school's guaranteed GPUs, GPUs held and fair-share priority now."""
        with self._transaction() as session:
            return self._snapshot(session, self._clock()).shares()

    def reclaimed_by_tier(self) -> dict[str, int]:
        """Leases ended to give their GPU share back, from the usage ledger."""
        with self._transaction() as session:
            rows = session.execute(
                select(UsageRecord.tier, func.count()).where(UsageRecord.end_reason == "reclaimed").group_by(UsageRecord.tier)
            )
            return {tier: count for tier, count in rows}

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

    def _budget_spent(self, session: Session, school: str, user: str, now: datetime) -> tuple[str, float] | None:
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
                return whose, retry_after
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

    def _decide(self, session: Session, lease: LeaseRow, now: datetime) -> str:
        """Decide a new request and add it to the session; returns the outcome."""
        if lease.kind is None:  # CPU only: no GPU share to allocate
            self._grant(lease, None, now)
            session.add(lease)
            return "granted"
        refusal = self._refusal(session, lease, now)
        if refusal is None and lease.kind not in self._kinds:
            refusal = NO_SUCH_KIND
        if refusal is not None:
            lease.state, lease.reason, lease.released_at = "refused", refusal, now
            session.add(lease)
            return "refused"
        # built before the new lease is in the session, so it is not among the queued ones
        snap = self._snapshot(session, now)
        self._apply(session, snap, snap.actions)
        if lease.kind not in snap.milli_of_kind:
            session.add(lease)
            return "queued"  # only draining pools have this kind: wait until one opens again
        decision, actions = snap.submit(lease.id, lease.user, lease.school, lease.kind)
        if decision.kind == "admit":
            pool, kind = snap.pool_of[decision.pool]
            self._grant(lease, self._free_unit(session, pool, kind), now, decision.lease_end)
        elif decision.kind == "refuse":
            lease.state, lease.reason, lease.released_at = "refused", _sentence(decision.reason), now
        session.add(lease)
        session.flush()
        self._apply(session, snap, actions)
        return {"admit": "granted", "queue": "queued", "refuse": "refused"}[decision.kind]

    def _refusal(self, session: Session, lease: LeaseRow, now: datetime) -> str | None:
        """The per-student cap and the GPU-hour budgets (they need the ledger's history)."""
        cap = self.policy.limit(session, lease.school, "max_sessions_per_student") or 1
        mine = session.scalar(
            select(func.count()).select_from(LeaseRow).where(
                LeaseRow.user == lease.user, LeaseRow.state.in_(ACTIVE), LeaseRow.kind.is_not(None),
                LeaseRow.id != lease.id,
            )
        )
        if mine >= cap:
            return (
                f"You already have {mine} GPU workspace(s) running or waiting, the most one student may have. "
                "Stop one before starting another."
            )
        spent = self._budget_spent(session, lease.school, lease.user, now)
        if spent is not None:
            whose, retry_after = spent
            return (
                f"{'Your school' if whose == 'school' else 'You'} used all GPU hours of this period. "
                f"Try again in {retry_after / 3600:.1f} hours, or choose the CPU-only profile now."
            )
        return None

    def _snapshot(self, session: Session, now: datetime) -> fair_snapshot.Snapshot:
        return fair_snapshot.build(self.alliance, self.policy, session, now, self._usage.at(session, now))

    def _apply(self, session: Session, snap: fair_snapshot.Snapshot, actions) -> None:
        """Store what the allocator decided: grants (each on a free unit of the pool it
        chose), reclaim warnings, withdrawn warnings, stops, and refusals of queued leases."""
        now = snap.now
        for refusal in snap.decisions:
            lease = session.get(LeaseRow, refusal.request_id)
            if lease is not None and lease.state == "queued":
                lease.state, lease.reason, lease.released_at = "refused", _sentence(refusal.reason), now
        snap.decisions.clear()
        for action in actions:
            if action.kind == "admit":
                lease = session.get(LeaseRow, action.request_id)
                if lease is None or lease.state != "queued":
                    continue
                pool, kind = snap.pool_of[action.pool]
                self._grant(lease, self._free_unit(session, pool, kind), now, action.lease_end)
                session.flush()
                self._listener.on_grant(lease.pool or "", lease.tier)
                continue
            lease = session.get(LeaseRow, action.session_id)
            if lease is None or lease.state != "granted":
                continue
            if action.kind == "warn":
                lease.reclaim_at = datetime.fromtimestamp(action.stop_at, timezone.utc)
                lease.reason = (
                    f"Your GPU share goes back at {lease.reclaim_at:%H:%M} UTC: {_sentence(action.reason)} "
                    "Save your work before then."
                )
            elif action.kind == "renew" and action.warning_withdrawn:
                lease.reclaim_at, lease.reason = None, None
            elif action.kind == "stop":
                self._end(session, lease, "reclaimed" if action.reason == "reclaimed" else "expired", now)
            session.flush()

    def _free_unit(self, session: Session, pool: str, kind: str) -> Unit:
        taken = set(
            session.scalars(select(LeaseRow.unit_id).where(LeaseRow.state == "granted", LeaseRow.unit_id.is_not(None)))
        )
        for unit in self.units:
            if unit.pool == pool and unit.kind == kind and unit.id not in taken:
                return unit
        raise RuntimeError(f"the allocator granted a {kind} unit of pool {pool} but none is free")

    def _grant(self, lease: LeaseRow, unit: Unit | None, now: datetime, lease_end: float = float("inf")) -> None:
        profile = self.alliance.profile(lease.profile)
        lease.state, lease.granted_at = "granted", now
        lease.expires_at = now + timedelta(minutes=profile.max_minutes)
        if lease_end < lease.expires_at.timestamp():  # a class reservation needs the unit then
            lease.expires_at = datetime.fromtimestamp(lease_end, timezone.utc)
        if unit is not None:
            lease.unit_id, lease.pool, lease.device, lease.unit_kind = unit.id, unit.pool, unit.device, unit.kind
            lease.gpu_fraction = self._gpu_fraction[unit.id]
            lease.simulated = unit.simulated

    def _promote(self, session: Session) -> None:
        session.flush()
        snap = self._snapshot(session, self._clock())
        self._apply(session, snap, snap.actions)
        session.flush()

    def _end(self, session: Session, lease: LeaseRow, end_reason: str, now: datetime) -> None:
        was_granted = lease.state == "granted"
        lease.state = END_STATE[end_reason]
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


def _sentence(text: str) -> str:
    """The allocator's reasons are phrases; a student reads sentences."""
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


__all__ = ["LeaseBook", "Listener", "ACTIVE", "utc_now"]
