"""Build the allocator's inputs from an alliance file (:mod:`quota.alliance`).

A pool with whole GPUs becomes one allocator pool of 1000-milli slices; a pool whose
GPUs are all MIG-sliced becomes one pool of ``1000 // slices_per_gpu`` slices; a pool
with both becomes two allocator pools, ``<id>`` (the whole GPUs) and ``<id>-mig``. A pool
that shares its whole GPUs (``shared: {students_per_gpu: n}``) counts each of them as ``n``
slices of ``1000 // n``, of kind ``shared``, as it counts MIG slices.
"""

from __future__ import annotations

from dataclasses import dataclass

from quota.alliance import Alliance, Pool
from quota.fairshare.model import Config, PoolSpec, Request, Reservation, SchoolSpec
from quota.reservations import gives_back_at, holds_from


@dataclass(frozen=True)
class RequestShape:
    """What a request for one profile asks the allocator for: one unit of ``kind`` (the
    smallest slice of that kind among the pools, so one slice in every pool of it), for
    leases of ``lease_s`` each."""

    kind: str
    milli: int
    lease_s: float

    def request(self, request_id: str, user: str, school: str, group: str | None) -> Request:
        return Request(request_id, user, school, self.milli, group=group, kind=self.kind, lease_s=self.lease_s)


@dataclass(frozen=True)
class AllocatorInputs:
    pools: list[PoolSpec]
    schools: list[SchoolSpec]
    config: Config
    reservations: list[Reservation]
    tier_of: dict[str, str]
    shapes: dict[str, RequestShape]  # GPU profile id -> what its requests ask for


def request_shapes(alliance: Alliance, pools: list[PoolSpec]) -> dict[str, RequestShape]:
    """The service's rule for turning a profile into an allocator request, written once
    for the service and for traces that name profiles in the simulator. Profiles whose
    kind no pool in ``pools`` has are left out (a draining pool's kind: nothing to ask)."""
    milli_of_kind: dict[str, int] = {}
    for spec in pools:
        milli_of_kind[spec.kind] = min(milli_of_kind.get(spec.kind, spec.slice_milli), spec.slice_milli)
    return {
        profile.id: RequestShape(profile.gpu, milli_of_kind[profile.gpu], profile.max_minutes * 60)
        for profile in alliance.profiles if profile.gpu in milli_of_kind
    }


def pool_specs(alliance: Alliance) -> list[PoolSpec]:
    return [spec for pool in alliance.pools for spec in pool_specs_of(pool)]


def pool_specs_of(pool: Pool) -> list[PoolSpec]:
    """The allocator pools of one alliance pool: its whole GPUs (kind ``whole``, or
    ``shared`` in students' shares when the pool shares them) and its MIG slices (kind ``slice``)."""
    specs = []
    whole = pool.whole_gpus
    if whole and pool.shared is not None:
        n = pool.shared.students_per_gpu
        specs.append(PoolSpec(pool.id, whole * n, 1000 // n, "shared"))
    elif whole:
        specs.append(PoolSpec(pool.id, whole, 1000, "whole"))
    if pool.sliced_gpus:
        pool_id = f"{pool.id}-mig" if whole else pool.id
        specs.append(PoolSpec(pool_id, pool.sliced_gpus * pool.slices_per_gpu, 1000 // pool.slices_per_gpu, "slice"))
    return specs


def config_from(alliance: Alliance, base: Config | None = None) -> Config:
    fs = alliance.fairshare
    base = base or Config()
    return Config(
        ordering=base.ordering,
        half_life_s=fs.half_life_minutes * 60,
        entry_penalty_s=fs.entry_penalty_minutes * 60 if base.entry_penalty_s else 0.0,
        borrowing=base.borrowing,
        reclaim=base.reclaim,
        rebalance=base.rebalance,
        min_runtime_s=fs.min_runtime_minutes * 60,
        warning_s=fs.warning_minutes * 60,
        max_lease_s=fs.max_lease_minutes * 60 if base.max_lease_s != float("inf") else base.max_lease_s,
        budget_period_s=fs.budget_period_days * 86400,
        whole_slice_guarantees=base.whole_slice_guarantees,
        # lending with a known end belongs to the reclaiming policies; the baselines never take back
        lent_lease_s=None if fs.lent_lease_minutes is None or not base.reclaim else fs.lent_lease_minutes * 60,
    )


def allocator_inputs(alliance: Alliance, base: Config | None = None) -> AllocatorInputs:
    schools = []
    for school in alliance.schools:
        limit = alliance.limit_of(school, "borrowing_limit_gpus")
        schools.append(
            SchoolSpec(
                id=school.id,
                tier=school.tier,
                weight=alliance.weight_of(school),
                guaranteed_share=school.guaranteed_share,
                borrowing_limit_milli=None if limit is None else int(round(limit * 1000)),
                budget_gpu_hours=alliance.limit_of(school, "budget_gpu_hours"),
                student_budget_gpu_hours=alliance.limit_of(school, "student_budget_gpu_hours"),
                max_sessions_per_student=alliance.limit_of(school, "max_sessions_per_student"),
                idle_release_s=alliance.idle_release_s(school.tier),
            )
        )
    reservations = []
    lead_s = alliance.fairshare.reservation_lead_minutes * 60
    release = alliance.fairshare.reservation_release_minutes
    release_s = None if release is None else release * 60
    for res in alliance.reservations:
        pool = next(p for p in alliance.pools if p.id == res.pool)
        # held from its lead on, as the quota service holds it
        start = holds_from(res.start, lead_s, (o.end for o in alliance.reservations if o.pool == res.pool and o.id != res.id))
        reservations.append(Reservation(res.id, pool.id, res.school, res.slices, start, res.end, res.group,
                                        gives_back_at(res.start, res.end, release_s)))
    pools = pool_specs(alliance)
    return AllocatorInputs(
        pools=pools,
        schools=schools,
        config=config_from(alliance, base),
        reservations=reservations,
        tier_of={s.id: s.tier for s in alliance.schools},
        shapes=request_shapes(alliance, pools),
    )
