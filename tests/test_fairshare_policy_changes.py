"""Staff's changes fed to a running allocator (quota/fairshare/policy_changes.py).

The quota service keeps one allocator and feeds it a change of school settings or a
cancelled reservation as an input. Two kinds of checks:

* the invariants of tests/fairshare_fixtures.py hold on every call of random streams
  that also change every school's settings and cancel reservations;
* after a change, the allocator holds what one built afresh with the new settings and
  the same sessions and queue holds (the service's rebuild at start-up): the same
  guarantees and limits, the same sessions borrowed, the same requests still waiting.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.fairshare import Allocator, Config, PoolSpec, Request, Reservation, SchoolSpec
from tests.fairshare_fixtures import Checker, operations, school_settings, worlds

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def streams(draw):
    world = draw(worlds(budgets=draw(st.booleans())))
    return world, draw(operations(world, policy_changes=True))


@SETTINGS
@given(streams())
def test_invariants_hold_while_staff_change_the_rules(stream):
    world, ops = stream
    Checker(world).run(ops)


def _afresh(alloc: Allocator, schools: list[SchoolSpec], now: float) -> tuple[Allocator, set[str]]:
    """What the quota service's start-up builds: the new settings, the running sessions put
    back oldest first, then the queue in the order it came. Returns it and the refused ids."""
    fresh = Allocator(alloc.pools, schools, alloc.config, list(alloc.book.by_id.values()), start=now)
    for session in sorted(alloc.sessions.values(), key=lambda s: s.seq):
        fresh.resume(session.request, alloc.pools[session.pool_index].id, session.start, session.lease_end,
                     stop_at=session.stop_at, reservation=session.reservation)
    refused = set()
    for waiting in sorted(alloc.waiting.values(), key=lambda w: w.seq):
        if fresh.wait_again(waiting.request, waiting.arrival, now) is not None:
            refused.add(waiting.request.id)
    return fresh, refused


@SETTINGS
@given(st.data())
def test_a_change_ends_where_a_fresh_build_starts(data):
    world = data.draw(worlds(reservations=False, budgets=True))
    world.config = Config(**{**{f: getattr(world.config, f) for f in world.config.__dataclass_fields__},
                             "min_runtime_s": math.inf})  # nobody is stopped while we compare
    checker = Checker(world)
    checker.run(data.draw(operations(world)))
    alloc, now = checker.alloc, checker.now
    schools = data.draw(school_settings(len(world.schools), budgets=False))
    before = set(alloc.sessions)
    fresh, refused = _afresh(alloc, schools, now)
    actions, refusals = alloc.set_schools(schools, now)
    assert {r.request_id for r in refusals} == refused
    assert alloc.guarantee == fresh.guarantee and alloc.limit == fresh.limit
    for sid in before:  # sessions admitted by this very change are not in the fresh build
        assert alloc.sessions[sid].borrowed == fresh.sessions[sid].borrowed, sid
    assert {a.kind for a in actions} <= {"admit", "warn", "renew"}


def test_a_lower_share_makes_the_latest_sessions_borrowed_and_a_county_request_takes_them_back():
    pools = [PoolSpec("gpu", 4)]
    urban = SchoolSpec("urban", "urban", 1.0, guaranteed_share=0.75)
    county = SchoolSpec("county", "county", 1.0, guaranteed_share=0.25)
    alloc = Allocator(pools, [urban, county], Config(min_runtime_s=0.0, warning_s=60.0))
    for k in range(4):
        decision, _ = alloc.submit(Request(f"u{k}", f"urban-{k}", "urban", 1000), float(k))
        assert decision.kind == "admit"
    queued, _ = alloc.submit(Request("c0", "county-0", "county", 1000), 10.0)
    queued2, _ = alloc.submit(Request("c1", "county-1", "county", 1000), 11.0)
    assert queued2.kind == "queue"  # the county school's one GPU is taken back for c0 only
    actions, refusals = alloc.set_schools([SchoolSpec("urban", "urban", 1.0, guaranteed_share=0.5),
                                           SchoolSpec("county", "county", 1.0, guaranteed_share=0.5)], 20.0)
    assert refusals == []
    assert [alloc.sessions[f"u{k}"].borrowed for k in range(4)] == [False, False, True, True]
    assert not [a for a in actions if a.kind == "warn"]  # u3 is already on its way back for c0
    actions = alloc.advance(70.0)  # u3 stops, c0 gets it; c1 is now within the county school's share
    assert [(a.kind, getattr(a, "session_id", None)) for a in actions] == [
        ("stop", "u3"), ("admit", "c0"), ("warn", "u2")]


def test_a_higher_share_withdraws_a_warning():
    pools = [PoolSpec("gpu", 2)]
    alloc = Allocator(pools, [SchoolSpec("a", weight=1.0), SchoolSpec("b", weight=1.0)],
                      Config(min_runtime_s=0.0, warning_s=60.0))
    alloc.submit(Request("a0", "a-0", "a", 1000), 0.0)
    alloc.submit(Request("a1", "a-1", "a", 1000), 1.0)
    _, actions = alloc.submit(Request("b0", "b-0", "b", 1000), 2.0)
    assert [a.session_id for a in actions if a.kind == "warn"] == ["a1"]
    actions, _ = alloc.set_schools([SchoolSpec("a", weight=1.0, guaranteed_share=1.0), SchoolSpec("b", weight=1.0)], 3.0)
    assert [(a.session_id, a.warning_withdrawn) for a in actions if a.kind == "renew"] == [("a1", True)]
    assert alloc.sessions["a1"].stop_at is None and not alloc.sessions["a1"].borrowed


def test_a_lower_cap_refuses_queued_requests_beyond_it_and_keeps_the_first():
    alloc = Allocator([PoolSpec("gpu", 1)], [SchoolSpec("a")], Config())
    alloc.submit(Request("r0", "ann", "a", 1000), 0.0)
    alloc.submit(Request("r1", "ann", "a", 1000), 1.0)
    alloc.submit(Request("r2", "ann", "a", 1000), 2.0)
    _, refusals = alloc.set_schools([SchoolSpec("a", max_sessions_per_student=2)], 3.0)
    assert [(r.request_id, r.code) for r in refusals] == [("r2", "concurrency_cap")]
    assert set(alloc.waiting) == {"r1"}


def test_cancelling_a_reservation_gives_its_slices_to_the_queue_and_keeps_its_sessions():
    pools = [PoolSpec("gpu", 2)]
    res = Reservation("lesson", "gpu", "county", 2, 0.0, 3600.0)
    alloc = Allocator(pools, [SchoolSpec("county"), SchoolSpec("urban")], Config(), [res])
    decision, _ = alloc.submit(Request("c0", "county-0", "county", 1000), 1.0)
    assert decision.reservation == "lesson"
    queued, _ = alloc.submit(Request("u0", "urban-0", "urban", 1000), 2.0)
    assert queued.kind == "queue"  # the reserved GPU left idle serves only the class
    actions = alloc.cancel_reservation("lesson", 3.0)
    assert [(a.kind, a.request_id) for a in actions if a.kind == "admit"] == [("admit", "u0")]
    session = alloc.sessions["c0"]
    assert session.reservation is None and not session.borrowed and session.lease_end == 3600.0
    assert alloc.cancel_reservation("lesson", 4.0) == []  # twice: nothing more


def test_a_charge_taken_back_lowers_the_school_s_usage_to_an_allocator_that_never_saw_it():
    config = Config(entry_penalty_s=600.0)
    used, fresh = (Allocator([PoolSpec("gpu", 2)], [SchoolSpec("a"), SchoolSpec("b")], config) for _ in range(2))
    used.submit(Request("a0", "a-0", "a", 1000), 0.0)
    used.uncharge("a0", 500.0, 400.0)  # asked at 400 s: charged from then on, never used before
    used.release("a0", 400.0)
    assert used.priority("a", 400.0) == pytest.approx(fresh.priority("a", 400.0), abs=1e-6)
    used.submit(Request("a1", "a-1", "a", 1000), 1000.0)
    used.uncharge("a1", 1100.0, 1300.0)  # first used at 1100 s: charged from there, penalty included
    used.release("a1", 1300.0)
    fresh.submit(Request("a1", "a-1", "a", 1000), 1100.0)
    fresh.release("a1", 1300.0)
    assert used.priority("a", 1300.0) == pytest.approx(fresh.priority("a", 1300.0), rel=1e-9)


def test_schools_must_stay_the_same():
    alloc = Allocator([PoolSpec("gpu", 1)], [SchoolSpec("a"), SchoolSpec("b")], Config())
    with pytest.raises(ValueError, match="same schools"):
        alloc.set_schools([SchoolSpec("b"), SchoolSpec("a")], 0.0)
