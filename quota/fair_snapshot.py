"""The allocator built from the quota service's database (:mod:`quota.fairshare`).

The database is the system of record; the allocator is pure and keeps its state in
memory. At start-up, when a process takes over as the writer, after a failed write and
after a change of policy, the lease book builds an allocator from the rows (pools open
now, staff's shares, weights, caps and budgets, reservations, running leases oldest
first, decayed past usage, the budget periods' usage, queued leases) and then feeds that
one allocator every input (:mod:`quota.leases`).

Mapping between the two worlds:

* a service pool with whole GPUs and MIG slices becomes two allocator pools (see
  :func:`quota.allocator_inputs.pool_specs`), each counted in slices of its kind;
  a request for a profile's kind lands only in pools of that kind;
* times are seconds since the epoch (UTC);
* per-student caps and GPU-hour budgets are the allocator's rules; the budgets' periods
  are seeded from the usage ledger;
* a lease lasts its profile's ``max_minutes`` and is renewed by the allocator's rule (at
  its end, or earlier when asked).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from quota.alliance import Alliance
from quota.fairshare import Allocator, PoolSpec, Request, Reservation, SchoolSpec
from quota.allocator_inputs import RequestShape, config_from, pool_specs_of, request_shapes
from quota.fairshare.model import INF, Action, Decision
from quota.fairshare.reservations import ReservationError
from quota.reservations import gives_back_at, holds_from
from quota.policy_store import PolicyStore
from quota.tables import LeaseRow, UsageRecord

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class QueuePlace:
    """Where a queued lease stands: 1 = next, and an upper bound of the wait in seconds
    (None when no running lease's end would make room). ``room_at``: the moment the
    estimate points at, so a place computed a moment ago answers for now."""

    position: int
    wait_estimate_s: float | None
    room_at: float | None = None

    def at(self, t: float) -> "QueuePlace":
        if self.room_at is None:
            return self
        return QueuePlace(self.position, max(0.0, self.room_at - t), self.room_at)


@dataclass(frozen=True)
class SchoolShare:
    """A school's standing in the fair share, for dashboards."""

    school: str
    tier: str
    guaranteed_gpus: float
    held_gpus: float
    priority_gpu_seconds: float  # decayed GPU usage over weight: lower is served first


@dataclass
class Snapshot:
    """An allocator holding what the database holds at ``now``, and what rebuilding it
    already decided (queued leases that fit now, reclaim warnings and stops)."""

    allocator: Allocator
    now: datetime  # when it was built
    pool_of: dict[str, tuple[str, str]]  # allocator pool id -> (service pool id, unit kind)
    milli_of_kind: dict[str, int]  # unit kind -> milli a request of it asks for
    actions: list[Action] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)  # for queued leases that could not stay queued

    reserved_class_of: dict[tuple[str, str], str] = field(default_factory=dict)  # (school, student) -> class
    shapes: dict[str, RequestShape] = field(default_factory=dict)  # GPU profile -> what its requests ask

    def request_for(self, lease_id: str, user: str, school: str, kind: str, profile: str) -> Request:
        group = self.reserved_class_of.get((school, user))
        shape = self.shapes.get(profile)
        if shape is None or shape.kind != kind:  # its kind is only on draining pools (or the profile changed)
            return Request(lease_id, user, school, self.milli_of_kind.get(kind, 1000), group=group, kind=kind)
        return shape.request(lease_id, user, school, group)

    def submit(self, lease_id: str, user: str, school: str, kind: str, profile: str,
               t: float) -> tuple[Decision, list[Action]]:
        return self.allocator.submit(self.request_for(lease_id, user, school, kind, profile), t, explain=False)

    def places(self, t: float) -> dict[str, QueuePlace]:
        places = {}
        for lease_id, queued in self.allocator.places(t).items():
            estimate = queued.wait_estimate_s
            known = estimate is not None and estimate != INF
            places[lease_id] = QueuePlace(queued.position or 1, estimate if known else None, t + estimate if known else None)
        return places

    def shares(self, t: float) -> list[SchoolShare]:
        allocator = self.allocator
        return [
            SchoolShare(school.id, school.tier, allocator.guarantee[i] / 1000, allocator.held[i] / 1000,
                        allocator.priority(school.id, t) / 1000)
            for i, school in enumerate(allocator.schools)
        ]


@dataclass(frozen=True)
class PolicyInputs:
    """What staff's settings make of the allocator's inputs: the open pools' specs, every
    school's settings, the class reservations to hold and who is in a booked class."""

    pools: list[PoolSpec]
    pool_of: dict[str, tuple[str, str]]  # allocator pool id -> (service pool id, unit kind)
    schools: list[SchoolSpec]
    reservations: list[Reservation]
    reserved_class_of: dict[tuple[str, str], str]  # (school, student) -> class with a booking


def policy_inputs(alliance: Alliance, policy: PolicyStore, session: Session, now: datetime) -> PolicyInputs:
    """Read staff's settings as the allocator's inputs (no lease is read)."""
    open_pools = policy.open_pools(session)
    specs: list[PoolSpec] = []
    pool_of: dict[str, tuple[str, str]] = {}
    for pool in alliance.pools:
        if pool.id in open_pools:
            for spec in pool_specs_of(pool):
                specs.append(spec)
                pool_of[spec.id] = (pool.id, spec.kind)
    spec_of = {value: key for key, value in pool_of.items()}
    reservations, reserved_class_of = [], {}
    bookings = policy.reservations(session, include_past_of=now)
    lead = timedelta(minutes=alliance.fairshare.reservation_lead_minutes)
    release = alliance.fairshare.reservation_release_minutes
    release_after = None if release is None else timedelta(minutes=release)
    for booking in bookings:
        spec_id = spec_of.get((booking.pool, policy.reservable_kind(booking.pool)))
        if spec_id is None:
            continue  # its pool is draining or closed: nothing to hold there now
        # held from its lead on (the class's workspaces start before the bell: hub/prestart.py)
        begins = holds_from(booking.starts_at, lead, (b.ends_at for b in bookings if b.pool == booking.pool and b.id != booking.id))
        reservations.append(_reservation(booking, spec_id, begins,
                                         gives_back_at(booking.starts_at, booking.ends_at, release_after)))
        if booking.class_id:  # a class's booking serves only its students
            reserved_class_of.update(_class_members(alliance, booking.school, booking.class_id))
    schools = [_school_spec(policy, session, school.id, alliance) for school in alliance.schools]
    return PolicyInputs(specs, pool_of, schools, reservations, reserved_class_of)


def build(alliance: Alliance, policy: PolicyStore, session: Session, now: datetime,
          usage: dict[str, float]) -> Snapshot:
    """``usage``: each school's GPU usage of ended leases decayed to ``now``, in
    milli-GPU-seconds (:class:`quota.decayed_usage.DecayedUsage`)."""
    snapshot = _empty(alliance, policy_inputs(alliance, policy, session, now), now)
    allocator, t = snapshot.allocator, now.timestamp()
    running = session.execute(
        select(LeaseRow.id, LeaseRow.user, LeaseRow.school, LeaseRow.profile, LeaseRow.pool, LeaseRow.unit_kind,
               LeaseRow.granted_at, LeaseRow.expires_at, LeaseRow.reclaim_at)
        .where(LeaseRow.state == "granted", LeaseRow.unit_id.is_not(None)).order_by(LeaseRow.granted_at, LeaseRow.seq)
    )
    _resume(snapshot, running, t)
    for school in sorted(usage):  # ended leases' usage, decayed to now
        if school in allocator.school_index:
            allocator.seed_usage(school, usage[school], t)
    seed_budgets(allocator, session, now)
    # Leases whose end (or reclaim stop) passed while the service was down end now, before the
    # queue is back: their stops are actions the book must take (putting a queued request back
    # runs the allocator's timers and keeps no actions).
    snapshot.actions.extend(allocator.advance(t))
    queued = session.execute(
        select(LeaseRow.id, LeaseRow.user, LeaseRow.school, LeaseRow.profile, LeaseRow.kind, LeaseRow.requested_at)
        .where(LeaseRow.state == "queued", LeaseRow.kind.is_not(None)).order_by(LeaseRow.seq)
    )
    _queue_again(snapshot, queued, t)
    snapshot.actions.extend(allocator.advance(t))
    return snapshot


def with_pools(old: Snapshot, alliance: Alliance, inputs: PolicyInputs, leases: Iterable, now: datetime) -> Snapshot:
    """The allocator for a new set of open pools (one opened or drained), built from the
    running one and the book's active leases rather than from the database: the leases on
    pools still or newly open are put back (oldest first, with their warnings and last
    activity), every school keeps its decayed usage and its budget periods, and the queue
    keeps its order. Leases on a draining pool keep their unit but take nothing from the
    open pools (as at start-up)."""
    snapshot = _empty(alliance, inputs, now)
    allocator, before, t = snapshot.allocator, old.allocator, now.timestamp()
    leases = list(leases)
    running = sorted((lease for lease in leases if lease.state == "granted" and lease.unit_id is not None
                      and lease.kind is not None), key=lambda lease: (lease.granted_at, lease.seq))
    _resume(snapshot, running, t)
    for session in allocator.sessions.values():
        was = before.sessions.get(session.id)
        if was is not None and was.last_active > session.last_active:
            allocator.touch(session.id, was.last_active)
    for i, school in enumerate(allocator.schools):  # decayed usage as the running allocator counted it
        put_back = allocator.ledger.decayed(i, t)  # what the sessions just put back count
        allocator.seed_usage(school.id, before.ledger.decayed(before.school_index[school.id], t) - put_back, t)
    if allocator.track_budgets and before.track_budgets:
        for key, closed in before.budgets.closed.items():
            allocator.budgets.closed[key] = deque(closed)
        for x in before.sessions.values():  # off the open pools now: what it used so far stays counted
            if x.id not in allocator.sessions and t > x.start:
                for key in (f"school:{x.request.school}", f"user:{x.request.user}"):
                    allocator.budgets.closed.setdefault(key, deque()).append((x.start, t, x.milli))
    snapshot.actions.extend(allocator.advance(t))
    queued = sorted((lease for lease in leases if lease.state == "queued" and lease.kind is not None),
                    key=lambda lease: lease.seq)
    _queue_again(snapshot, queued, t)
    snapshot.actions.extend(allocator.advance(t))
    return snapshot


def _empty(alliance: Alliance, inputs: PolicyInputs, now: datetime) -> Snapshot:
    """An allocator with the pools, schools and reservations of ``inputs`` and nothing else."""
    shapes = request_shapes(alliance, inputs.pools)
    milli_of_kind = {shape.kind: shape.milli for shape in shapes.values()}
    t = now.timestamp()
    allocator = Allocator(inputs.pools, inputs.schools, config_from(alliance), start=t)
    snapshot = Snapshot(allocator, now, dict(inputs.pool_of), milli_of_kind, shapes=shapes,
                        reserved_class_of=dict(inputs.reserved_class_of))
    for res in inputs.reservations:
        try:
            allocator.add_reservation(res, t)
        except ReservationError as exc:  # booked before a pool shrank; staff see it in the log
            log.warning("reservation %s cannot be honoured now: %s", res.id, exc)
    return snapshot


def _resume(snapshot: Snapshot, running, t: float) -> None:
    """Put back running leases (oldest first): id, user, school, profile, pool, unit_kind,
    granted_at, expires_at, reclaim_at."""
    allocator = snapshot.allocator
    spec_of = {value: key for key, value in snapshot.pool_of.items()}
    for lease in running:
        spec_id = spec_of.get((lease.pool, lease.unit_kind))
        if spec_id is None or lease.school not in allocator.school_index:
            continue  # on a draining pool: it keeps its unit but takes nothing from the open ones
        request = snapshot.request_for(lease.id, lease.user, lease.school, lease.unit_kind, lease.profile)
        allocator.resume(
            request, spec_id, lease.granted_at.timestamp(),
            lease.expires_at.timestamp() if lease.expires_at else INF,
            stop_at=lease.reclaim_at.timestamp() if lease.reclaim_at else None,
            reservation=_reservation_for(allocator, spec_id, request, t),
        )


def _queue_again(snapshot: Snapshot, queued, t: float) -> None:
    """Put back queued leases in the order they came: id, user, school, profile, kind, requested_at."""
    allocator = snapshot.allocator
    for lease in queued:
        if lease.school not in allocator.school_index:
            continue
        if lease.kind not in snapshot.milli_of_kind:
            continue  # only draining pools have its kind: it waits, without a place, until one opens (as a new request does)
        request = snapshot.request_for(lease.id, lease.user, lease.school, lease.kind, lease.profile)
        decision = allocator.wait_again(request, lease.requested_at.timestamp(), t)
        if decision is not None:
            snapshot.decisions.append(decision)


def seed_budgets(allocator: Allocator, session: Session, now: datetime) -> None:
    """Count the budget period's ended leases against the GPU-hour budgets, in the order
    they ended (nothing when no school has a budget)."""
    if not allocator.track_budgets:
        return
    since = now - timedelta(seconds=allocator.config.budget_period_s)
    known_schools = allocator.school_index
    records = session.execute(
        select(UsageRecord.school, UsageRecord.user, UsageRecord.started_at, UsageRecord.ended_at,
               UsageRecord.held_seconds, UsageRecord.gpu_seconds)
        .where(UsageRecord.ended_at > since, UsageRecord.gpu_seconds > 0)
        .order_by(UsageRecord.ended_at, UsageRecord.id)
    )
    for record in records:
        if record.school in known_schools and record.held_seconds > 0:
            milli = int(round(1000 * record.gpu_seconds / record.held_seconds))
            allocator.seed_budget(record.school, record.user, record.started_at.timestamp(),
                                  record.ended_at.timestamp(), milli)


def _school_spec(policy: PolicyStore, session: Session, school_id: str, alliance: Alliance) -> SchoolSpec:
    view = policy.school(session, school_id)
    limit = view.get("borrowing_limit_gpus")
    return SchoolSpec(
        id=school_id, tier=view["tier"], weight=float(view["weight"]), guaranteed_share=view.get("guaranteed_share"),
        borrowing_limit_milli=None if limit is None else int(round(limit * 1000)),
        budget_gpu_hours=view.get("budget_gpu_hours"), student_budget_gpu_hours=view.get("student_budget_gpu_hours"),
        max_sessions_per_student=view.get("max_sessions_per_student"),
        idle_release_s=alliance.idle_release_s(view["tier"]),
    )


def _reservation(booking, spec_id: str, begins, gives_back) -> Reservation:
    return Reservation(
        booking.id, spec_id, booking.school, booking.units, begins.timestamp(), booking.ends_at.timestamp(),
        booking.class_id or None, None if gives_back is None else gives_back.timestamp(),
    )


def _class_members(alliance: Alliance, school_id: str, class_id: str) -> dict[tuple[str, str], str]:
    school = alliance.school(school_id)
    return {(school.id, student): group.id for group in school.classes if group.id == class_id for student in group.students}


def _reservation_for(allocator: Allocator, spec_id: str, request: Request, t: float) -> str | None:
    """A reservation in its window on this pool that admits the lease's student and has
    room left: a running lease counts against it, as it did when it was granted (one granted
    after the reservation gave back its unused units was granted in general)."""
    for res in allocator.book.active(spec_id, t):
        if res.joins(t) and res.admits(request.school, request.group) and allocator.book.held[res.id] < res.slices:
            return res.id
    return None
