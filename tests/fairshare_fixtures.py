"""Helpers for the fair-share tests: hypothesis strategies for random alliances and request
streams, and a driver that replays a stream while checking the allocator's promises
against its own shadow bookkeeping (not the allocator's internals).

* :func:`worlds` -- pools, schools, config and reservations.
* :func:`operations` -- a stream of (time step, operation) pairs.
* :class:`Checker` -- runs a stream and asserts the invariants after every call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import strategies as st

from quota.fairshare import Allocator, Config, PoolSpec, Request, Reservation, ReservationError, SchoolSpec


@dataclass
class World:
    pools: list[PoolSpec]
    schools: list[SchoolSpec]
    config: Config
    reservations: list[Reservation]


@st.composite
def worlds(draw, reservations: bool = True, budgets: bool = False) -> World:
    n_pools = draw(st.integers(1, 3))
    pools = [
        PoolSpec(f"p{k}", draw(st.integers(1, 8)), draw(st.sampled_from([1000, 500, 250])))
        for k in range(n_pools)
    ]
    schools = draw(school_settings(draw(st.integers(1, 5)), budgets))
    config = Config(
        ordering=draw(st.sampled_from(["fair", "fair", "fifo"])),
        half_life_s=draw(st.sampled_from([60.0, 600.0, 3600.0])),
        entry_penalty_s=draw(st.sampled_from([0.0, 60.0, 600.0])),
        min_runtime_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
        warning_s=draw(st.sampled_from([0.0, 30.0, 120.0])),
        max_lease_s=draw(st.sampled_from([300.0, 1800.0, math.inf])),
        budget_period_s=draw(st.sampled_from([600.0, 3600.0])),
        lent_lease_s=draw(st.sampled_from([None, None, 120.0, 900.0])),
    )
    books: list[Reservation] = []
    if reservations:
        for k in range(draw(st.integers(0, 2))):
            pool = draw(st.sampled_from(pools))
            start = draw(st.floats(0, 2000))
            length = draw(st.floats(60, 1500))
            booked = sum(r.slices for r in books if r.pool == pool.id and r.start < start + length and start < r.end)
            room = pool.slices - booked
            if room >= 1:
                gives_back = draw(st.sampled_from([None, None, 0.3, 0.7]))  # after this much of the window
                books.append(Reservation(
                    f"r{k}", pool.id, draw(st.sampled_from(schools)).id, draw(st.integers(1, room)), start,
                    start + length, draw(st.sampled_from([None, "g1"])),
                    None if gives_back is None else start + gives_back * length,
                ))
    return World(pools, schools, config, books)


@st.composite
def school_settings(draw, n_schools: int, budgets: bool = False) -> list[SchoolSpec]:
    """Settings of schools ``s0`` .. ``s{n-1}``: weights, shares, limits, caps (and budgets)."""
    schools = []
    explicit_left = 1.0
    for k in range(n_schools):
        share = None
        if draw(st.booleans()) and explicit_left > 0.2:
            share = draw(st.floats(0.05, min(0.5, explicit_left - 0.1)))
            explicit_left -= share
        limit = draw(st.one_of(st.none(), st.integers(0, 4000)))
        schools.append(SchoolSpec(
            f"s{k}", draw(st.sampled_from(["county", "urban"])), draw(st.floats(0.25, 4.0)), share, limit,
            budget_gpu_hours=draw(st.one_of(st.none(), st.floats(0.1, 3.0))) if budgets else None,
            student_budget_gpu_hours=draw(st.one_of(st.none(), st.floats(0.05, 1.0))) if budgets else None,
            max_sessions_per_student=draw(st.one_of(st.none(), st.integers(1, 3))),
        ))
    return schools


def operations(world: World, max_size: int = 60, policy_changes: bool = False):
    """``policy_changes``: the stream also changes every school's settings and cancels
    class reservations (staff's inputs to a running allocator)."""
    submit = st.tuples(
        st.just("submit"),
        st.integers(0, len(world.schools) - 1),
        st.integers(0, 5),  # user number inside the school
        st.sampled_from([250, 500, 1000, 1500, 2000, 4000]),
        st.sampled_from([None, "g1", "g2"]),
        st.one_of(st.none(), st.sampled_from([p.id for p in world.pools])),
    )
    other = st.tuples(st.sampled_from(["release", "cancel", "touch", "wait"]), st.integers(0, 10_000))
    reserve = st.tuples(
        st.just("reserve"),
        st.integers(0, len(world.pools) - 1),
        st.integers(0, len(world.schools) - 1),
        st.integers(1, 8),  # slices; more than the pool has is refused
        st.floats(-100, 1500),  # start, relative to now (negative: already open)
        st.floats(30, 1500),  # length
        st.sampled_from([None, "g1"]),
        st.sampled_from([None, None, 0.3, 0.7]),  # gives back unused slices after this much of the window
    )
    kinds = [submit, submit, other, reserve]
    if policy_changes:
        kinds.append(st.tuples(st.just("schools"), school_settings(len(world.schools), budgets=True)))
        kinds.append(st.tuples(st.just("unreserve"), st.integers(0, 10_000)))
    return st.lists(st.tuples(st.floats(0, 400), st.one_of(*kinds)), max_size=max_size)


@dataclass
class Running:
    pool: str
    slices: int
    school: str
    borrowed: bool
    start: float
    reservation: str | None
    lease_end: float
    warned_at: float | None = None
    admitted: int = 0  # admission order (who is within the guarantee after a change of shares)


@dataclass
class Checker:
    """Drives an allocator and checks every promise after every call."""

    world: World
    alloc: Allocator = field(init=False)
    now: float = 0.0
    running: dict[str, Running] = field(default_factory=dict)
    waiting: dict[str, Request] = field(default_factory=dict)
    log: list = field(default_factory=list)
    seq: int = 0
    reclaims: int = 0
    admissions: int = 0

    def __post_init__(self) -> None:
        self.alloc = Allocator(self.world.pools, self.world.schools, self.world.config, self.world.reservations)
        self.reservations = list(self.world.reservations)  # plus those booked during the stream
        self.pool = {p.id: p for p in self.world.pools}
        self._shares(self.world.schools)

    def _shares(self, schools: list[SchoolSpec]) -> None:
        self.school = {s.id: s for s in schools}
        total = sum(p.capacity_milli for p in self.world.pools)
        explicit = sum(s.guaranteed_share or 0 for s in schools)
        free_weight = sum(s.weight for s in schools if s.guaranteed_share is None)
        self.guarantee = {
            s.id: total * (s.guaranteed_share if s.guaranteed_share is not None else (1 - explicit) * s.weight / free_weight)
            for s in schools
        }
        self.limit = {
            s.id: math.inf if s.borrowing_limit_milli is None else self.guarantee[s.id] + s.borrowing_limit_milli
            for s in schools
        }

    def _borrowed_again(self) -> None:
        """Shadow of the rule after a change of shares: a school's general sessions, in the
        order they were admitted, are within its guarantee while they fit."""
        within = {s: 0.0 for s in self.school}
        for run in sorted(self.running.values(), key=lambda r: r.admitted):
            if run.reservation is not None:
                continue
            milli = run.slices * self.pool[run.pool].slice_milli
            if within[run.school] + milli <= self.guarantee[run.school] + 1e-9:
                within[run.school] += milli
                run.borrowed = False
            else:
                run.borrowed = True

    # -- driving ------------------------------------------------------------------------

    def run(self, ops) -> list:
        for step, op in ops:
            target = self.now + step
            while (wake := self.alloc.next_wake()) is not None and wake <= target:
                self.now = max(self.now, wake)
                self._apply(self.alloc.advance(self.now))
            self.now = target
            self._op(op)
        # drain up to a fixed horizon: leases of sessions nobody releases renew forever
        horizon = self.now + 5000
        while (wake := self.alloc.next_wake()) is not None and wake <= horizon:
            self.now = max(self.now, wake)
            self._apply(self.alloc.advance(self.now))
        return self.log

    def _op(self, op) -> None:
        kind = op[0]
        if kind == "submit":
            _, s, user, milli, group, pool = op
            self.seq += 1
            school = self.world.schools[s].id
            request = Request(f"q{self.seq}", f"{school}-u{user}", school, milli, group, pool)
            decision, actions = self.alloc.submit(request, self.now)
            self.log.append((self.now, decision))
            if decision.kind == "queue":
                self.waiting[request.id] = request
                self._apply(actions)
                assert decision.position >= 1
                assert decision.wait_estimate_s is None or decision.wait_estimate_s >= 0
            elif decision.kind == "admit":
                self.waiting[request.id] = request
                # the new session may already be warned in the same call (it borrowed the last
                # idle slices and a school below its guarantee waits for more): admit it first
                own = [a for a in actions if getattr(a, "session_id", None) == decision.session_id]
                self._apply([a for a in actions if a not in own] + [decision] + own)
            else:
                self._apply(actions)
                assert decision.reason
                assert decision.retry_at is None or decision.retry_at > self.now
        elif kind == "release" and self.running:
            sid = sorted(self.running)[op[1] % len(self.running)]
            self.running.pop(sid)
            self.log.append((self.now, "release", sid))
            self._apply(self.alloc.release(sid, self.now))
        elif kind == "cancel" and self.waiting:
            rid = sorted(self.waiting)[op[1] % len(self.waiting)]
            self.waiting.pop(rid)
            self._apply(self.alloc.cancel(rid, self.now))
        elif kind == "touch" and self.running:
            sid = sorted(self.running)[op[1] % len(self.running)]
            self.alloc.touch(sid, self.now)
        elif kind == "reserve":
            _, p, s, slices, offset, length, group, gives_back = op
            self.seq += 1
            start = self.now + offset
            res = Reservation(f"x{self.seq}", self.world.pools[p].id, self.world.schools[s].id, slices,
                              start, start + length, group, None if gives_back is None else start + gives_back * length)
            try:
                actions = self.alloc.add_reservation(res, self.now)
            except ReservationError as exc:
                assert str(exc).startswith(f"reservation {res.id}:"), exc
                self.log.append((self.now, "refused", res.id))
            else:
                self.reservations.append(res)
                self.log.append((self.now, "booked", res.id))
                self._apply(actions)
        elif kind == "schools":
            schools = op[1]
            actions, refusals = self.alloc.set_schools(schools, self.now)
            self._shares(schools)
            self._borrowed_again()
            for refusal in refusals:
                assert refusal.reason
                self.waiting.pop(refusal.request_id)
            self.log.append((self.now, "schools", tuple(r.request_id for r in refusals)))
            withdrawn = {a.session_id for a in actions if a.kind == "renew" and a.warning_withdrawn}
            for sid, run in self.running.items():
                if run.warned_at is not None and not run.borrowed:
                    assert sid in withdrawn, f"{sid} is within its school's new guarantee and still warned"
            self._apply(actions)
        elif kind == "unreserve" and self.reservations:
            res = sorted(self.reservations, key=lambda r: r.id)[op[1] % len(self.reservations)]
            self.reservations.remove(res)
            for run in self.running.values():
                if run.reservation == res.id:
                    run.reservation = None
            self._borrowed_again()
            self.log.append((self.now, "unreserved", res.id))
            self._apply(self.alloc.cancel_reservation(res.id, self.now))
        else:
            self._apply(self.alloc.advance(self.now))
        self.check()

    def _apply(self, actions) -> None:
        for action in actions:
            self.log.append((self.now, action))
            if action.kind == "admit":
                request = self.waiting.pop(action.request_id)
                assert action.pool in self.pool
                assert request.pool in (None, action.pool)
                assert action.slices == self.pool[action.pool].need(request.milli)
                assert action.lease_end - self.now <= self.world.config.max_lease_s + 1e-6
                lent = self.world.config.lent_lease_s
                if lent is not None and action.borrowed and action.reservation is None:
                    assert action.lease_end - self.now <= lent + 1e-6, "a borrowed session's lease is longer than lent"
                if action.reservation is not None:
                    res = next(r for r in self.reservations if r.id == action.reservation)
                    assert res.joins(self.now), f"{request.id} joined reservation {res.id} after it gave back its slices"
                self.admissions += 1
                self.running[action.session_id] = Running(
                    action.pool, action.slices, request.school, action.borrowed, self.now, action.reservation,
                    action.lease_end, admitted=self.admissions,
                )
            elif action.kind == "warn":
                run = self.running[action.session_id]
                assert run.borrowed and run.reservation is None
                run.warned_at = self.now
                assert action.stop_at >= self.now + self.world.config.warning_s - 1e-6
            elif action.kind == "stop":
                run = self.running.pop(action.session_id)
                if action.reason == "reclaimed":
                    self.reclaims += 1
                    self._check_reclaim(run, action)
                elif action.reason == "lease_expired":
                    assert self.now >= run.lease_end - 1e-6, "a lease was cut before its end"
            elif action.kind == "renew":
                run = self.running[action.session_id]
                run.lease_end = action.lease_end
                if action.warning_withdrawn:
                    run.warned_at = None
        self.check()

    # -- the promises ---------------------------------------------------------------------

    def _check_reclaim(self, run: Running, action) -> None:
        config = self.world.config
        assert run.warned_at is not None, "stopped without a warning"
        assert self.now >= run.warned_at + config.warning_s - 1e-6, "stopped before the warning lead time"
        assert self.now >= run.start + config.min_runtime_s - 1e-6, "stopped before the minimum runtime"
        held = run.slices * self.pool[run.pool].slice_milli + sum(
            r.slices * self.pool[r.pool].slice_milli
            for r in self.running.values() if r.school == run.school and r.reservation is None
        )
        assert held > self.guarantee[run.school] + 1e-6, (
            f"school {run.school} held {held} milli, within its guarantee {self.guarantee[run.school]:.0f}, "
            "and still lost a session"
        )

    def reserved_now(self, pool: str) -> int:
        """Slices held out of general capacity: a reservation's all, or once it gave back its
        unused ones (release_at), those its members hold."""
        total = 0
        for r in self.reservations:
            if r.pool == pool and r.start <= self.now < r.end:
                released = r.release_at is not None and self.now >= r.release_at
                total += sum(run.slices for run in self.running.values() if run.reservation == r.id) if released else r.slices
        return total

    def check(self) -> None:
        by_pool: dict[str, int] = {p: 0 for p in self.pool}
        general: dict[str, int] = {p: 0 for p in self.pool}
        in_res: dict[str, int] = {}
        held: dict[str, float] = {s: 0.0 for s in self.school}
        for run in self.running.values():
            by_pool[run.pool] += run.slices
            if run.reservation is None:
                general[run.pool] += run.slices
                held[run.school] += run.slices * self.pool[run.pool].slice_milli
            else:
                in_res[run.reservation] = in_res.get(run.reservation, 0) + run.slices
        for pool_id, pool in self.pool.items():
            assert by_pool[pool_id] <= pool.slices, f"pool {pool_id} over capacity"
            assert general[pool_id] <= pool.slices - self.reserved_now(pool_id), (
                f"pool {pool_id}: general sessions use slices held for a reservation"
            )
        for res in self.reservations:
            assert in_res.get(res.id, 0) <= res.slices
        for request in self.waiting.values():
            for pool_id, pool in self.pool.items():
                if request.pool not in (None, pool_id):
                    continue
                need = pool.need(request.milli)
                for res in self.reservations:
                    if res.pool == pool_id and res.joins(self.now) and res.admits(request.school, request.group):
                        assert in_res.get(res.id, 0) + need > res.slices, (
                            f"{request.id} waits while its class reservation {res.id} has room"
                        )
                free = pool.slices - self.reserved_now(pool_id) - general[pool_id]
                if need <= free:
                    assert held[request.school] + need * pool.slice_milli > self.limit[request.school] + 1e-6, (
                        f"{request.id} ({request.milli} milli) waits while {free} slices of {pool_id} idle"
                    )
