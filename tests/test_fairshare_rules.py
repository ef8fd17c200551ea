"""Each decision rule of the fair-share allocator on a small hand-built alliance.

The property tests (test_fairshare_properties.py) check the promises over random
streams; these tests pin each rule to a situation where it decides the outcome, so a
rule that stops working fails here by name.
"""

from __future__ import annotations

import math

import pytest

from quota.fairshare import (
    Allocator, Config, PoolSpec, Request, Reservation, ReservationError, SchoolSpec, static_config,
)

INF = math.inf
HOUR = 3600.0


def kinds(actions, kind: str) -> list:
    return [a for a in actions if a.kind == kind]


def admitted(actions) -> list[str]:
    return [a.request_id for a in actions if a.kind == "admit"]


def fill(alloc: Allocator, school: str, count: int, t: float = 0.0, user: str | None = None, step: float = 0.0):
    """``count`` one-GPU requests of ``school``; returns their decisions."""
    return [
        alloc.submit(Request(f"{school}{k}", user or f"{school}-u{k}", school, 1000), t + k * step)[0]
        for k in range(count)
    ]


# -- borrowing ------------------------------------------------------------------------------


def test_idle_capacity_is_borrowed_beyond_the_guarantee():
    alloc = Allocator([PoolSpec("p", 4)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=INF))
    decisions = fill(alloc, "a", 4)
    assert [d.kind for d in decisions] == ["admit"] * 4
    # equal weights: 2 GPUs each guaranteed; the other two are borrowed from b's idle share
    assert [d.borrowed for d in decisions] == [False, False, True, True]


def test_borrowing_stops_at_the_school_limit_and_resumes_when_a_session_ends():
    alloc = Allocator([PoolSpec("p", 4)], [SchoolSpec("a"), SchoolSpec("b", borrowing_limit_milli=1000)],
                      Config(max_lease_s=INF))
    decisions = fill(alloc, "b", 4)
    assert [d.kind for d in decisions] == ["admit", "admit", "admit", "queue"]
    assert "borrow" in decisions[3].reason
    assert alloc.free_slices(0) == 1  # a slice idles: b may not take it
    assert admitted(alloc.release("b0", 10.0)) == ["b3"]


def test_static_partition_never_borrows():
    alloc = Allocator([PoolSpec("p", 4)], [SchoolSpec("a"), SchoolSpec("b")], static_config())
    decisions = fill(alloc, "a", 3)
    assert [d.kind for d in decisions] == ["admit", "admit", "queue"]


# -- reclaim --------------------------------------------------------------------------------


def reclaim_world(**config) -> Allocator:
    """4 GPUs, schools a and b with 2 guaranteed each; a holds all four (a2, a3 borrowed)."""
    settings = dict(max_lease_s=INF, min_runtime_s=600.0, warning_s=120.0) | config
    alloc = Allocator([PoolSpec("p", 4)], [SchoolSpec("a"), SchoolSpec("b")], Config(**settings))
    fill(alloc, "a", 4, t=0.0, step=10.0)  # a0..a3 start at 0, 10, 20, 30
    return alloc


def test_reclaim_warns_the_longest_idle_borrowed_session_then_stops_it():
    alloc = reclaim_world()
    alloc.touch("a2", 500.0)  # a2 was used recently; a3 has idled since it started at 30
    decision, actions = alloc.submit(Request("b0", "b-u0", "b", 1000), 1000.0)
    assert decision.kind == "queue"
    warns = kinds(actions, "warn")
    assert [w.session_id for w in warns] == ["a3"]
    assert warns[0].stop_at == 1000.0 + 120.0  # the warning lead time
    assert alloc.advance(1119.0) == []
    actions = alloc.advance(1120.0)
    assert [(s.session_id, s.reason) for s in kinds(actions, "stop")] == [("a3", "reclaimed")]
    assert admitted(actions) == ["b0"]


def test_reclaim_waits_for_the_minimum_runtime():
    alloc = reclaim_world()
    _, actions = alloc.submit(Request("b0", "b-u0", "b", 1000), 40.0)
    (warn,) = kinds(actions, "warn")
    victim = warn.session_id
    started = {"a2": 20.0, "a3": 30.0}[victim]
    assert warn.stop_at == started + 600.0  # later than now + warning (160)
    assert kinds(alloc.advance(warn.stop_at - 1), "stop") == []
    assert [s.session_id for s in kinds(alloc.advance(warn.stop_at), "stop")] == [victim]


def test_sessions_within_their_schools_guarantee_are_never_reclaimed():
    # a class reservation takes 2 of the 4 GPUs out of general use; a and b each hold one
    # of the other two, within their guarantees (2 GPUs each), and b, still below its
    # guarantee, asks for more: it waits, and a's session is left alone
    reservation = Reservation("lab", "p", "a", 2, start=0.0, end=10 * HOUR, group="lab")
    alloc = Allocator([PoolSpec("p", 4)], [SchoolSpec("a"), SchoolSpec("b")],
                      Config(max_lease_s=INF, min_runtime_s=0.0, warning_s=0.0), [reservation])
    assert alloc.submit(Request("a0", "a-u0", "a", 1000), 0.0)[0].borrowed is False
    assert alloc.submit(Request("b0", "b-u0", "b", 1000), 1.0)[0].borrowed is False
    decision, actions = alloc.submit(Request("b1", "b-u1", "b", 1000), 2.0)
    assert decision.kind == "queue"
    actions += alloc.advance(5 * HOUR)
    assert kinds(actions, "warn") == [] and kinds(actions, "stop") == []


def test_a_request_that_would_borrow_does_not_reclaim():
    alloc = Allocator([PoolSpec("p", 6)], [SchoolSpec("a"), SchoolSpec("b"), SchoolSpec("c")],
                      Config(max_lease_s=INF, min_runtime_s=0.0, warning_s=0.0))
    fill(alloc, "a", 5)  # 2 guaranteed, 3 borrowed
    fill(alloc, "c", 1)
    # b asks for 3 GPUs, more than its 2 guaranteed: it may only take idle capacity
    decision, actions = alloc.submit(Request("b0", "b-u0", "b", 3000), 100.0)
    assert decision.kind == "queue"
    assert kinds(actions + alloc.advance(5 * HOUR), "warn") == []


def test_a_borrowed_session_that_falls_within_the_guarantee_is_no_longer_a_target():
    alloc = reclaim_world()
    alloc.release("a0", 100.0)  # a holds 3: a2 (the longest idle) now counts within its guarantee
    _, actions = alloc.submit(Request("b0", "b-u0", "b", 2000), 1000.0)
    assert [w.session_id for w in kinds(actions, "warn")] == ["a3"]


def test_touched_sessions_stay_reclaimable_in_idle_order():
    alloc = reclaim_world()
    alloc.touch("a3", 400.0)
    alloc.touch("a2", 500.0)
    _, actions = alloc.submit(Request("b0", "b-u0", "b", 2000), 1000.0)
    assert [w.session_id for w in kinds(actions, "warn")] == ["a3", "a2"]


def test_reclaim_is_off_in_the_fcfs_baseline():
    alloc = reclaim_world(reclaim=False)
    _, actions = alloc.submit(Request("b0", "b-u0", "b", 1000), 1000.0)
    assert kinds(actions, "warn") == [] and kinds(alloc.advance(10 * HOUR), "stop") == []


# -- fair-share order -----------------------------------------------------------------------


def test_decayed_usage_follows_the_half_life_and_is_divided_by_the_weight():
    h = 600.0
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a", weight=1.0), SchoolSpec("b", weight=2.0)],
                      Config(half_life_s=h, entry_penalty_s=0.0, max_lease_s=INF))
    alloc.submit(Request("a0", "a-u", "a", 1000), 0.0)
    alloc.submit(Request("b0", "b-u", "b", 1000), 0.0)
    alloc.release("a0", h)
    alloc.release("b0", h)
    # one GPU for one half-life: 1000 * integral_0^h 2^-((h-u)/h) du = 1000 * h / ln 2 * (1 - 1/2)
    used = 1000 * h / math.log(2) * 0.5
    assert alloc.priority("a", h) == pytest.approx(used)
    assert alloc.priority("b", h) == pytest.approx(used / 2)  # weight 2 counts half
    assert alloc.priority("a", 2 * h) == pytest.approx(used / 2)  # one half-life later
    assert alloc.priority("a", 11 * h) == pytest.approx(used / 1024)


def test_the_school_with_less_decayed_usage_per_weight_goes_first():
    alloc = Allocator([PoolSpec("p", 1)], [SchoolSpec("a"), SchoolSpec("b")],
                      Config(half_life_s=HOUR, entry_penalty_s=0.0, max_lease_s=INF, reclaim=False))
    alloc.submit(Request("a0", "a-u0", "a", 1000), 0.0)
    alloc.release("a0", HOUR)  # a used the GPU for an hour; b never did
    alloc.submit(Request("hold", "a-u9", "a", 1000), HOUR)
    alloc.submit(Request("a1", "a-u1", "a", 1000), HOUR + 1)  # a asks first...
    alloc.submit(Request("b1", "b-u1", "b", 1000), HOUR + 2)
    assert admitted(alloc.release("hold", HOUR + 3)) == ["b1"]  # ...b goes first


def entry_penalty_world(penalty_s: float) -> Allocator:
    """School c (no guarantee) borrows all 8 GPUs; a queues three requests, then b one."""
    schools = [SchoolSpec("a", guaranteed_share=0.5), SchoolSpec("b", guaranteed_share=0.5), SchoolSpec("c")]
    alloc = Allocator([PoolSpec("p", 8)], schools,
                      Config(entry_penalty_s=penalty_s, max_lease_s=INF, reclaim=False))
    fill(alloc, "c", 8)
    for k in range(3):
        alloc.submit(Request(f"a{k}", f"a-u{k}", "a", 1000), 10.0 + k)
    alloc.submit(Request("b0", "b-u0", "b", 1000), 20.0)
    return alloc


@pytest.mark.parametrize("penalty_s, second", [(0.0, "a1"), (600.0, "b0")])
def test_entry_penalty_keeps_a_burst_from_taking_every_freed_slice(penalty_s, second):
    alloc = entry_penalty_world(penalty_s)
    # two GPUs free at the same instant: a has no usage yet, so without a penalty its burst
    # keeps winning the tie; the penalty charges a0's admission at once and b gets the second
    assert admitted(alloc.release("c0", 100.0) + alloc.release("c1", 100.0)) == ["a0", second]


# -- budgets and the per-student cap ----------------------------------------------------------


def test_school_budget_refuses_with_the_time_the_budget_frees_up():
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a", budget_gpu_hours=0.5)],
                      Config(max_lease_s=INF, budget_period_s=2 * HOUR))
    alloc.submit(Request("a0", "a-u0", "a", 1000), 0.0)
    alloc.release("a0", HOUR)  # one GPU-hour, twice the budget
    decision, _ = alloc.submit(Request("a1", "a-u1", "a", 1000), HOUR)
    assert decision.kind == "refuse" and decision.code == "budget_exhausted"
    assert "school's GPU budget" in decision.reason
    # usage in the 2-hour window drops below 0.5 GPU-hours once 30 min of it have left the window
    assert decision.retry_at == 2 * HOUR + 0.5 * HOUR + 1
    assert alloc.submit(Request("a2", "a-u2", "a", 1000), decision.retry_at - 2)[0].kind == "refuse"
    assert alloc.submit(Request("a3", "a-u3", "a", 1000), decision.retry_at)[0].kind == "admit"


def test_student_budget_refuses_only_that_student():
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a", student_budget_gpu_hours=0.25)],
                      Config(max_lease_s=INF, budget_period_s=HOUR))
    alloc.submit(Request("x0", "alice", "a", 1000), 0.0)
    alloc.release("x0", 0.5 * HOUR)
    decision, _ = alloc.submit(Request("x1", "alice", "a", 1000), 0.5 * HOUR)
    assert decision.kind == "refuse" and decision.reason.startswith("your GPU budget")
    assert decision.retry_at == HOUR + 0.25 * HOUR + 1
    assert alloc.submit(Request("y0", "bob", "a", 1000), 0.5 * HOUR)[0].kind == "admit"


def test_per_student_cap_counts_running_and_waiting_workspaces():
    alloc = Allocator([PoolSpec("p", 4)], [SchoolSpec("a", max_sessions_per_student=2)], Config(max_lease_s=HOUR))
    assert alloc.submit(Request("x0", "alice", "a", 1000), 0.0)[0].kind == "admit"
    assert alloc.submit(Request("x1", "alice", "a", 1000), 1.0)[0].kind == "admit"
    decision, _ = alloc.submit(Request("x2", "alice", "a", 1000), 2.0)
    assert decision.kind == "refuse" and decision.code == "concurrency_cap"
    assert decision.retry_at == HOUR  # when her first lease ends
    assert alloc.submit(Request("y0", "bob", "a", 1000), 2.0)[0].kind == "admit"
    alloc.release("x0", 3.0)
    assert alloc.submit(Request("x3", "alice", "a", 1000), 4.0)[0].kind == "admit"


# -- reservations ---------------------------------------------------------------------------


def test_reserved_slices_serve_only_their_class_inside_the_window():
    res = Reservation("lab", "p", "a", 2, start=100.0, end=200.0, group="grade8")
    alloc = Allocator([PoolSpec("p", 3)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=INF), [res])
    alloc.advance(100.0)
    assert alloc.submit(Request("b0", "b-u0", "b", 1000), 110.0)[0].kind == "admit"
    # the general slice is taken; two reserved slices idle but b and a's other classes wait
    assert alloc.submit(Request("b1", "b-u1", "b", 1000), 111.0)[0].kind == "queue"
    assert alloc.submit(Request("a0", "a-u0", "a", 1000, group="grade9"), 112.0)[0].kind == "queue"
    member = alloc.submit(Request("a1", "a-u1", "a", 1000, group="grade8"), 113.0)[0]
    assert member.kind == "admit" and member.reservation == "lab"
    assert member.lease_end == 200.0  # a reserved session ends with the window
    stops = kinds(alloc.advance(200.0), "stop")
    assert [(s.session_id, s.reason) for s in stops] == [("a1", "lease_expired")]


def test_leases_before_a_window_end_at_its_start_when_the_slices_are_needed():
    res = Reservation("lab", "p", "a", 2, start=1000.0, end=2000.0)
    alloc = Allocator([PoolSpec("p", 3)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=HOUR), [res])
    first = alloc.submit(Request("b0", "b-u0", "b", 1000), 0.0)[0]
    second = alloc.submit(Request("b1", "b-u1", "b", 1000), 1.0)[0]
    assert first.lease_end == HOUR  # one general slice stays free of the window
    assert second.lease_end == 1000.0  # would eat into the reserved slices: ends at the start
    actions = alloc.advance(1000.0)
    assert [s.session_id for s in kinds(actions, "stop")] == ["b1"]
    assert alloc.submit(Request("a0", "a-u0", "a", 1000), 1001.0)[0].reservation == "lab"


def test_booking_a_window_shortens_leases_that_would_run_into_it():
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=HOUR))
    fill(alloc, "b", 2)
    actions = alloc.add_reservation(Reservation("lab", "p", "a", 1, start=600.0, end=1200.0), 10.0)
    (renew,) = kinds(actions, "renew")
    assert renew.session_id == "b1" and renew.lease_end == 600.0  # the latest started goes
    assert kinds(alloc.advance(600.0), "stop")[0].session_id == "b1"


def test_a_reservation_gives_back_what_its_class_does_not_hold_at_release_at():
    # 3 slices booked for a class of which one student comes; another school waits for two
    res = Reservation("lab", "p", "a", 3, start=100.0, end=3000.0, group="g", release_at=700.0)
    alloc = Allocator([PoolSpec("p", 3)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=INF), [res])
    alloc.advance(100.0)
    assert alloc.submit(Request("a0", "a-u0", "a", 1000, group="g"), 110.0)[0].reservation == "lab"
    assert [d.kind for d in fill(alloc, "b", 2, t=120.0)] == ["queue", "queue"]
    assert admitted(alloc.advance(699.0)) == []  # held for the class until release_at
    assert alloc.next_wake() == 700.0  # time alone gives them back
    assert admitted(alloc.advance(700.0)) == ["b0", "b1"]
    # a student of the class who comes later asks like anyone else: no slice is held for them
    late = alloc.submit(Request("a1", "a-u1", "a", 1000, group="g"), 800.0)[0]
    assert late.kind == "queue"
    # the member's slice goes back to the pool when it ends, not to the class
    actions = alloc.release("a0", 900.0)
    (admit,) = kinds(actions, "admit")
    assert admit.request_id == "a1" and admit.reservation is None
    assert alloc.free_slices(0) == 0


def test_a_reservation_whose_class_does_not_come_holds_nothing_after_release_at():
    res = Reservation("lab", "p", "a", 2, start=0.0, end=2700.0, release_at=600.0)
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=INF), [res])
    assert fill(alloc, "b", 1, t=10.0)[0].kind == "queue"
    assert admitted(alloc.advance(600.0)) == ["b0"]
    assert alloc.free_slices(0) == 1


def test_without_release_at_a_reservation_holds_its_slices_to_the_end():
    res = Reservation("lab", "p", "a", 2, start=0.0, end=2700.0)
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=INF), [res])
    assert fill(alloc, "b", 1, t=10.0)[0].kind == "queue"
    assert admitted(alloc.advance(2699.0)) == []
    assert admitted(alloc.advance(2700.0)) == ["b0"]


@pytest.mark.parametrize("res, fix", [
    (Reservation("early", "p", "a", 1, 100.0, 600.0, release_at=100.0), "must be after start"),
    (Reservation("big", "p", "a", 5, 0.0, 60.0), "reserve at most 4"),
    (Reservation("nowhere", "q", "a", 1, 0.0, 60.0), "use one of ['p']"),
    (Reservation("backwards", "p", "a", 1, 60.0, 0.0), "must be after start"),
])
def test_a_reservation_that_cannot_be_honoured_is_refused_with_the_fix(res, fix):
    alloc = Allocator([PoolSpec("p", 4)], [SchoolSpec("a")])
    with pytest.raises(ReservationError, match=f"reservation {res.id}:") as info:
        alloc.add_reservation(res, 0.0)
    assert fix in str(info.value)
    assert not alloc.book  # nothing was booked half-way


def test_a_window_that_opens_now_takes_only_free_slices():
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=HOUR))
    fill(alloc, "b", 1)
    with pytest.raises(ReservationError, match="reserve at most 1"):
        alloc.add_reservation(Reservation("now", "p", "a", 2, start=0.0, end=600.0), 5.0)
    assert alloc.add_reservation(Reservation("ok", "p", "a", 1, start=0.0, end=600.0), 5.0) == []


# -- leases ---------------------------------------------------------------------------------


def test_a_lease_is_renewed_while_nobody_with_a_better_claim_waits():
    alloc = Allocator([PoolSpec("p", 1)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=HOUR))
    alloc.submit(Request("a0", "a-u0", "a", 1000), 0.0)
    (renew,) = alloc.advance(HOUR)
    assert renew.kind == "renew" and renew.lease_end == 2 * HOUR


def test_a_lease_is_not_renewed_when_a_better_claim_waits():
    alloc = Allocator([PoolSpec("p", 1)], [SchoolSpec("a"), SchoolSpec("b")],
                      Config(max_lease_s=HOUR, reclaim=False))
    alloc.submit(Request("a0", "a-u0", "a", 1000), 0.0)
    alloc.submit(Request("b0", "b-u0", "b", 1000), 10.0)  # b has used nothing: a better claim
    actions = alloc.advance(HOUR)
    (stop,) = kinds(actions, "stop")
    assert stop.session_id == "a0" and stop.reason == "lease_expired" and "better claim" in stop.message
    assert admitted(actions) == ["b0"]


def test_fcfs_leases_never_end():
    alloc = Allocator([PoolSpec("p", 1)], [SchoolSpec("a")], Config(ordering="fifo", max_lease_s=INF))
    assert alloc.submit(Request("a0", "a-u0", "a", 1000), 0.0)[0].lease_end == INF
    assert alloc.next_wake() is None


# -- queue answers and refusals --------------------------------------------------------------


def test_a_queued_request_gets_its_place_and_an_honest_wait_estimate():
    alloc = Allocator([PoolSpec("p", 1)], [SchoolSpec("a"), SchoolSpec("b")],
                      Config(max_lease_s=HOUR, reclaim=False))
    alloc.submit(Request("a0", "a-u0", "a", 1000), 0.0)
    first = alloc.submit(Request("a1", "a-u1", "a", 1000), 600.0)[0]
    second = alloc.submit(Request("a2", "a-u2", "a", 1000), 700.0)[0]
    assert (first.position, first.wait_estimate_s) == (1, HOUR - 600.0)
    # nothing else runs that could make room for the second one: no finite promise
    assert (second.position, second.wait_estimate_s) == (2, INF)


@pytest.mark.parametrize("request_, code, advice", [
    (Request("r", "u", "nowhere", 1000), "unknown_school", "ask staff to add it"),
    (Request("r", "u", "a", 5000), "too_large", "ask for a smaller share"),
    (Request("r", "u", "a", 1000, pool="mars"), "unknown_pool", "choose one of"),
    (Request("r", "u", "a", 0), "bad_request", "positive"),
])
def test_refusals_say_why_and_what_to_do(request_, code, advice):
    alloc = Allocator([PoolSpec("p", 4)], [SchoolSpec("a")])
    decision, _ = alloc.submit(request_, 0.0)
    assert decision.kind == "refuse" and decision.code == code and advice in decision.reason
    assert decision.retry_at is None  # waiting would not help


def test_a_request_beyond_the_schools_limit_is_refused_not_queued_forever():
    alloc = Allocator([PoolSpec("p", 4)], [SchoolSpec("a", borrowing_limit_milli=0), SchoolSpec("b")])
    decision, _ = alloc.submit(Request("r", "u", "a", 3000), 0.0)
    assert decision.code == "over_limit" and "at most 2 GPU" in decision.reason


def test_a_small_request_takes_a_mig_slice_before_a_whole_gpu():
    alloc = Allocator([PoolSpec("whole", 1, 1000), PoolSpec("mig", 7, 142)], [SchoolSpec("a")])
    decision, _ = alloc.submit(Request("r", "u", "a", 250), 0.0)
    assert (decision.pool, decision.slices) == ("mig", 2)
