"""The rebalance's index of who can give (quota/fairshare/givers.py) against a brute-force
recount of the allocator's sessions, after every call of random request streams.

Givers is an index the allocator keeps up to date through ``changed`` calls scattered over
admission, end, warning, promotion and touch; a missed call would silently change which
sessions a rebalance takes. So after every call each pool's levels must be exactly those
of the schools with an unwarned borrowed session there, and for a range of claims
``in_idle_order`` must list exactly the sessions a scan of all sessions would, in the same
order.
"""

from __future__ import annotations

import dataclasses
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.fairshare import Allocator, Config, PoolSpec, Request, SchoolSpec
from tests.fairshare_fixtures import Checker, operations, worlds


def brute_levels(alloc: Allocator, pool: int) -> dict[int, float]:
    """School -> level for every school with an unwarned borrowed session in ``pool``."""
    slice_milli = alloc.pools[pool].slice_milli
    return {
        s.school_index: (alloc.held[s.school_index] - alloc.leaving[s.school_index] - slice_milli)
        / alloc.weight[s.school_index]
        for s in alloc.sessions.values()
        if s.pool_index == pool and s.borrowed and s.stop_at is None
    }


def brute_order(alloc: Allocator, pool: int, claim: float, exclude: int) -> list[str]:
    levels = brute_levels(alloc, pool)
    sessions = [
        s for s in alloc.sessions.values()
        if s.pool_index == pool and s.borrowed and s.stop_at is None
        and s.school_index != exclude and levels[s.school_index] >= claim
    ]
    return [s.id for s in sorted(sessions, key=lambda s: (s.last_active, s.seq))]


def check_givers(alloc: Allocator) -> None:
    givers = alloc.givers
    if givers is None:
        return
    for pool in range(len(alloc.pools)):
        levels = brute_levels(alloc, pool)
        # reading the index (most, in_idle_order) first files the schools changed since
        assert givers.most(pool) == (max(levels.values()) if levels else -math.inf)
        assert givers.levels[pool] == sorted(set(levels.values())), f"pool {pool}: levels out of date"
        claims = sorted(set(levels.values())) + [-math.inf, math.inf]
        for claim in claims:
            for exclude in (-1, *levels):
                found = givers.in_idle_order(pool, claim, exclude)
                assert [s.id for s in found] == brute_order(alloc, pool, claim, exclude), (
                    f"pool {pool}, claim {claim}, without school {exclude}"
                )
        # a search stopped half-way puts everything back
        if levels:
            partial = givers.in_idle_order(pool, -math.inf, -1)
            next(partial)
            partial.close()
            assert [s.id for s in givers.in_idle_order(pool, -math.inf, -1)] == brute_order(alloc, pool, -math.inf, -1)


class GiversChecker(Checker):
    def check(self) -> None:
        super().check()
        check_givers(self.alloc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_givers_match_a_recount_after_every_call(data):
    world = data.draw(worlds(reservations=False))
    # the index exists only under the fair order with rebalancing; crowd the pools so that
    # schools borrow, get warned and give back
    world.config = dataclasses.replace(world.config, ordering="fair", reclaim=True, rebalance=True)
    ops = data.draw(operations(world, max_size=80))
    GiversChecker(world).run(ops)


def test_a_rebalance_takes_the_longest_idle_session_of_a_school_that_still_holds_more():
    # 9 GPUs, four schools of equal weight: 2,250 milli guaranteed each. c holds 3 (c2
    # borrowed), a holds 4 (a5 and a6 borrowed), b holds 2 and asks for a third: that would
    # borrow, so b's claim is 3,000 per weight. c's borrowed session has idled longest, but c
    # would keep only 2,000: it may not give. a keeps 3,000 after giving one: a gives its
    # longest-idle borrowed session (a6, since a5 was used at 50).
    alloc = Allocator([PoolSpec("p", 9)], [SchoolSpec(x) for x in "abcd"],
                      Config(max_lease_s=math.inf, min_runtime_s=0.0, warning_s=60.0))
    order = ["c0", "c1", "c2", "a3", "a4", "a5", "a6", "b7", "b8"]
    for t, rid in enumerate(order):
        decision, _ = alloc.submit(Request(rid, f"{rid[0]}-u{rid[1]}", rid[0], 1000), float(t))
        assert decision.kind == "admit"
    assert sorted(s.id for s in alloc.sessions.values() if s.borrowed) == ["a5", "a6", "c2"]
    alloc.touch("a5", 50.0)
    decision, actions = alloc.submit(Request("b9", "b-u9", "b", 1000), 100.0)
    assert decision.kind == "queue"
    assert [(a.kind, a.session_id) for a in actions] == [("warn", "a6")]
    assert "less than its fair share" in actions[0].reason
    actions = alloc.advance(160.0)
    assert [(a.kind, getattr(a, "session_id", None) or a.request_id) for a in actions] == [("stop", "a6"), ("admit", "b9")]


def test_nobody_gives_when_every_school_would_drop_below_the_claim():
    alloc = Allocator([PoolSpec("p", 9)], [SchoolSpec(x) for x in "abcd"],
                      Config(max_lease_s=math.inf, min_runtime_s=0.0, warning_s=60.0))
    for t, rid in enumerate(["c0", "c1", "c2", "a3", "a4", "a5", "b6", "b7", "d8"]):
        alloc.submit(Request(rid, f"{rid[0]}-u{rid[1]}", rid[0], 1000), float(t))
    # b's claim is 3,000; a and c hold 3 each and would keep 2,000
    decision, actions = alloc.submit(Request("b9", "b-u9", "b", 1000), 100.0)
    assert decision.kind == "queue" and actions == []
    assert alloc.advance(10_000.0) == []


def test_a_session_used_again_loses_its_place_as_its_schools_longest_idle():
    # a2 and a3 borrow (a holds 4 of a 2,000-milli guarantee), b6 borrows; a2 is used at
    # t=10, so the longest-idle order is a3, b6, a2 (not admission order), also once a is
    # filed again.
    alloc = Allocator([PoolSpec("p", 8)], [SchoolSpec(x) for x in "abcd"],
                      Config(max_lease_s=math.inf, min_runtime_s=0.0, warning_s=60.0))
    for t, rid in enumerate(["a0", "a1", "a2", "a3", "b4", "b5", "b6"]):
        decision, _ = alloc.submit(Request(rid, f"{rid[0]}-u{rid[1]}", rid[0], 1000), float(t))
        assert decision.kind == "admit"
    check_givers(alloc)  # files a by a2 and b by b6
    alloc.touch("a2", 10.0)
    alloc.givers.changed(alloc.school_index["a"])  # as any admission or end of a would
    assert [s.id for s in alloc.givers.in_idle_order(0, -math.inf, -1)] == ["a3", "b6", "a2"]
    check_givers(alloc)
