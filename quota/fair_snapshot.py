"""The quota service's adapter around the fair-share allocator (:mod:`quota.fairshare`).

The database is the system of record; the allocator is pure and keeps its state in
memory. So for each decision the lease book rebuilds an allocator from the rows inside
its transaction (pools open now, staff's shares and weights, reservations, running
leases oldest first, decayed past usage, queued leases) and asks it. That costs one pass
over the active leases and the recent usage, and means no state can drift between the
database and the allocator, and several service processes agree.

Mapping between the two worlds:

* a service pool with whole GPUs and MIG slices becomes two allocator pools (see
  :func:`quota.fairshare.from_alliance.pool_specs`), each counted in slices of its kind;
  a request for a profile's kind lands only in pools of that kind;
* times are seconds since the epoch (UTC);
* the service checks per-student caps and GPU-hour budgets itself (they need the
  ledger's history), so the schools given to the allocator carry none;
* leases have no allocator-side maximum length: the profile's length and the renew
  endpoint rule (``LeaseBook.renew``) decide it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from quota.alliance import Alliance
from quota.fairshare import Allocator, Config, PoolSpec, Request, Reservation, SchoolSpec
from quota.fairshare.from_alliance import config_from, pool_specs_of
from quota.fairshare.model import INF, Action, Decision
from quota.fairshare.reservations import ReservationError
from quota.policy_store import PolicyStore
from quota.tables import LeaseRow

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class QueuePlace:
    """Where a queued lease stands: 1 = next, and an upper bound of the wait in seconds
    (None when no running lease's end would make room)."""

    position: int
    wait_estimate_s: float | None


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
    now: datetime
    pool_of: dict[str, tuple[str, str]]  # allocator pool id -> (service pool id, unit kind)
    milli_of_kind: dict[str, int]  # unit kind -> milli a request of it asks for
    actions: list[Action] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)  # for queued leases that could not stay queued

    @property
    def t(self) -> float:
        return self.now.timestamp()

    reserved_class_of: dict[tuple[str, str], str] = field(default_factory=dict)  # (school, student) -> class

    def request_for(self, lease_id: str, user: str, school: str, kind: str) -> Request:
        group = self.reserved_class_of.get((school, user))
        return Request(lease_id, user, school, self.milli_of_kind.get(kind, 1000), group=group, kind=kind)

    def submit(self, lease_id: str, user: str, school: str, kind: str) -> tuple[Decision, list[Action]]:
        return self.allocator.submit(self.request_for(lease_id, user, school, kind), self.t)

    def places(self) -> dict[str, QueuePlace]:
        places = {}
        for lease_id in list(self.allocator.waiting):
            queued = self.allocator.explain(lease_id, self.t)
            estimate = queued.wait_estimate_s
            places[lease_id] = QueuePlace(queued.position or 1, None if estimate is None or estimate == INF else estimate)
        return places


    def shares(self) -> list[SchoolShare]:
        allocator = self.allocator
        return [
            SchoolShare(school.id, school.tier, allocator.guarantee[i] / 1000, allocator.held[i] / 1000,
                        allocator.priority(school.id, self.t) / 1000)
            for i, school in enumerate(allocator.schools)
        ]


def build(alliance: Alliance, policy: PolicyStore, session: Session, now: datetime,
          usage: dict[str, float]) -> Snapshot:
    """``usage``: each school's GPU usage of ended leases decayed to ``now``, in
    milli-GPU-seconds (:class:`quota.decayed_usage.DecayedUsage`)."""
    open_pools = policy.open_pools(session)
    alliance_pools = [pool for pool in alliance.pools if pool.id in open_pools]
    specs: list[PoolSpec] = []
    pool_of: dict[str, tuple[str, str]] = {}
    for pool in alliance_pools:
        for spec in pool_specs_of(pool):
            specs.append(spec)
            pool_of[spec.id] = (pool.id, spec.kind)
    milli_of_kind = {}
    for spec in specs:  # the smallest slice of a kind: one slice in every pool of that kind
        milli_of_kind[spec.kind] = min(milli_of_kind.get(spec.kind, spec.slice_milli), spec.slice_milli)
    schools = [_school_spec(policy, session, school.id) for school in alliance.schools]
    config = config_from(alliance, Config(max_lease_s=INF))
    t = now.timestamp()
    allocator = Allocator(specs, schools, config, start=t)
    snapshot = Snapshot(allocator, now, pool_of, milli_of_kind)
    spec_of = {value: key for key, value in pool_of.items()}

    for booking in policy.reservations(session, include_past_of=now):
        spec_id = spec_of.get((booking.pool, policy.reservable_kind(booking.pool)))
        if spec_id is None:
            continue  # its pool is draining or closed: nothing to hold there now
        res = _reservation(booking, spec_id)
        if booking.class_id:  # a class's booking serves only its students
            snapshot.reserved_class_of.update(_class_members(alliance, booking.school, booking.class_id))
        try:
            allocator.add_reservation(res, t)
        except ReservationError as exc:  # booked before a pool shrank; staff see it in the log
            log.warning("reservation %s cannot be honoured now: %s", booking.id, exc)

    known_schools = set(allocator.school_index)
    running = session.scalars(
        select(LeaseRow).where(LeaseRow.state == "granted", LeaseRow.unit_id.is_not(None)).order_by(LeaseRow.granted_at, LeaseRow.seq)
    )
    for lease in running:
        spec_id = spec_of.get((lease.pool, lease.unit_kind))
        if spec_id is None or lease.school not in known_schools:
            continue  # on a draining pool: it keeps its unit but takes nothing from the open ones
        request = snapshot.request_for(lease.id, lease.user, lease.school, lease.unit_kind)
        allocator.resume(
            request, spec_id, lease.granted_at.timestamp(),
            lease.expires_at.timestamp() if lease.expires_at else INF,
            stop_at=lease.reclaim_at.timestamp() if lease.reclaim_at else None,
            reservation=_reservation_for(allocator, spec_id, request, t),
        )

    for school in sorted(usage):  # ended leases' usage, decayed to now
        if school in known_schools:
            allocator.seed_usage(school, usage[school], t)

    queued = session.scalars(
        select(LeaseRow).where(LeaseRow.state == "queued", LeaseRow.kind.is_not(None)).order_by(LeaseRow.seq)
    )
    for lease in queued:
        if lease.school not in known_schools:
            continue
        request = snapshot.request_for(lease.id, lease.user, lease.school, lease.kind)
        decision = allocator.wait_again(request, lease.requested_at.timestamp(), t)
        if decision is not None:
            snapshot.decisions.append(decision)
    snapshot.actions.extend(allocator.advance(t))
    return snapshot


def _school_spec(policy: PolicyStore, session: Session, school_id: str) -> SchoolSpec:
    view = policy.school(session, school_id)
    limit = view.get("borrowing_limit_gpus")
    return SchoolSpec(
        id=school_id, tier=view["tier"], weight=float(view["weight"]), guaranteed_share=view.get("guaranteed_share"),
        borrowing_limit_milli=None if limit is None else int(round(limit * 1000)),
    )


def _reservation(booking, spec_id: str) -> Reservation:
    return Reservation(
        booking.id, spec_id, booking.school, booking.units, booking.starts_at.timestamp(), booking.ends_at.timestamp(),
        booking.class_id or None,
    )


def _class_members(alliance: Alliance, school_id: str, class_id: str) -> dict[tuple[str, str], str]:
    school = alliance.school(school_id)
    return {(school.id, student): group.id for group in school.classes if group.id == class_id for student in group.students}


def _reservation_for(allocator: Allocator, spec_id: str, request: Request, t: float) -> str | None:
    """A reservation in its window on this pool that admits the lease's student and has
    room left: a running lease counts against it, as it did when it was granted."""
    for res in allocator.book.active(spec_id, t):
        if res.admits(request.school, request.group) and allocator.book.held[res.id] < res.slices:
            return res.id
    return None
