"""Bugs the property tests found, pinned as plain examples so they stay fixed."""

from __future__ import annotations

import math

from quota.fairshare import Allocator, Config, PoolSpec, Request, Reservation, SchoolSpec
from tests.fairshare_fixtures import Checker, World


def test_a_session_nobody_releases_renews_forever_but_time_always_moves_on():
    # The property tests used to "hang": their driver drained the allocator's timers up
    # to `now + 5000` while moving `now` forward, and a lease nobody releases is renewed
    # every max_lease_s forever, so the horizon ran away. The allocator must keep
    # answering with wake-ups strictly in the future, one lease length apart.
    alloc = Allocator([PoolSpec("p", 1)], [SchoolSpec("a")], Config(max_lease_s=300.0))
    alloc.submit(Request("r", "u", "a", 250), 0.0)
    now = 0.0
    for _ in range(100):
        wake = alloc.next_wake()
        assert wake == now + 300.0
        now = wake
        (renew,) = alloc.advance(now)
        assert renew.kind == "renew" and renew.lease_end == now + 300.0


def test_the_checker_drains_to_a_fixed_horizon():
    world = World([PoolSpec("p", 1)], [SchoolSpec("a")], Config(max_lease_s=300.0), [])
    log = Checker(world).run([(0.0, ("submit", 0, 0, 250, None, None))])
    assert sum(1 for _, action in log if getattr(action, "kind", "") == "renew") == 5000 // 300


def test_a_window_opens_before_any_lease_ending_at_the_same_instant_is_decided():
    # Found by hypothesis: a lease clipped to a window's start ended at that instant, and the
    # waiting request was admitted into the freed slices before the window was seen to
    # open, so general sessions sat on reserved slices for the whole window.
    res = Reservation("r0", "p0", "s0", 3, start=1.0, end=61.0)
    alloc = Allocator([PoolSpec("p0", 4, 250)], [SchoolSpec("s0"), SchoolSpec("s1")],
                      Config(max_lease_s=300.0), [res])
    first, _ = alloc.submit(Request("q1", "s1-u0", "s1", 500), 0.0)
    assert first.lease_end == 1.0
    assert alloc.submit(Request("q2", "s1-u1", "s1", 1000), 0.0)[0].kind == "queue"
    alloc.advance(1.0)
    assert alloc.general[0] <= 4 - 3
    assert "q2" in alloc.waiting


def test_a_window_booked_while_open_respects_windows_that_open_later_inside_it():
    # Found by hypothesis: booking a window that is already open only checked the present,
    # not another booking that opens inside it, leaving a general lease across both.
    alloc = Allocator([PoolSpec("p0", 8)], [SchoolSpec("s0"), SchoolSpec("s1")], Config(max_lease_s=300.0),
                      [Reservation("r0", "p0", "s0", 2, start=1.0, end=61.0)])
    alloc.submit(Request("q1", "s1-u0", "s1", 250), 0.0)
    actions = alloc.add_reservation(Reservation("x", "p0", "s0", 6, start=0.0, end=30.0), 0.0)
    assert [(a.kind, a.session_id, a.lease_end) for a in actions] == [("renew", "q1", 1.0)]
    alloc.advance(1.0)
    assert alloc.general[0] == 0


def test_priorities_survive_a_long_idle_spell():
    # 2^(elapsed / half-life) overflowed a float after ~1024 idle half-lives (six weeks of
    # holidays at a one-hour half-life): the next request crashed the allocator.
    alloc = Allocator([PoolSpec("p", 1)], [SchoolSpec("a"), SchoolSpec("b")],
                      Config(half_life_s=1.0, max_lease_s=math.inf))
    alloc.submit(Request("1", "u", "a", 1000), 0.0)
    assert alloc.submit(Request("2", "v", "b", 1000), 5000.0)[0].kind == "queue"
    assert alloc.submit(Request("3", "w", "a", 1000), 5001.0)[0].position == 2  # b used nothing yet
    assert [a.request_id for a in alloc.release("1", 6000.0) if a.kind == "admit"] == ["2"]
    assert math.isfinite(alloc.priority("a", 6000.0))


def test_a_session_released_at_the_instant_of_its_reclaim_stop_ends_as_released():
    # Found on a whole-GPU scenario (summary.json said utilisation -0.770): a pod of exactly
    # 600 s was warned, and its stop fell at start + min_runtime_s, the instant its work
    # ended. release() ran the allocator's timers due at that instant first, so it answered
    # a reclaim Stop for the very session being released, and the replay ended it twice.
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a"), SchoolSpec("b")],
                      Config(min_runtime_s=600.0, warning_s=120.0, max_lease_s=math.inf))
    alloc.submit(Request("b1", "b-u", "b", 1000), 0.0)
    assert alloc.submit(Request("b2", "b-v", "b", 1000), 0.0)[0].borrowed  # a's GPU
    decision, actions = alloc.submit(Request("a1", "a-u", "a", 1000), 10.0)
    assert decision.kind == "queue" and [(x.kind, x.session_id, x.stop_at) for x in actions] == [("warn", "b2", 600.0)]
    actions = alloc.release("b2", 600.0)
    assert [(x.kind, getattr(x, "request_id", None)) for x in actions] == [("admit", "a1")]
    assert alloc.next_wake() is None


def test_a_session_released_at_the_instant_its_lease_ends_is_neither_stopped_nor_renewed():
    # The same at a lease end: a session cut to the lease length (max_session_s equal to
    # max_lease_s) was told "lease expired" by the call that released it.
    alloc = Allocator([PoolSpec("p", 1)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=300.0))
    assert alloc.submit(Request("a1", "a-u", "a", 1000), 0.0)[0].lease_end == 300.0
    assert alloc.submit(Request("b1", "b-u", "b", 1000), 10.0)[0].kind == "queue"
    actions = alloc.release("a1", 300.0)
    assert [(x.kind, getattr(x, "request_id", None)) for x in actions] == [("admit", "b1")]
    # a timer due before the release still comes first (b1's lease ends at 600, renewed)
    assert [(x.kind, x.lease_end) for x in alloc.release("b1", 700.0)] == [("renew", 900.0)]


def test_a_release_at_the_instant_of_another_lease_end_frees_its_slices_first():
    # At one instant the release comes before the timers: a lease ending then is decided
    # with the released slices free, so the waiting two-GPU request gets in (the lease of
    # a2 is not renewed: b waits with a better claim and now fits).
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a"), SchoolSpec("b"), SchoolSpec("c")],
                      Config(max_lease_s=300.0))
    alloc.submit(Request("a1", "a-u", "a", 1000), 0.0)  # both borrow: a third of 2 GPUs each is theirs
    alloc.submit(Request("c1", "c-u", "c", 1000), 100.0)  # lease ends at 400
    assert alloc.submit(Request("b1", "b-u", "b", 2000), 110.0)[0].kind == "queue"
    alloc.advance(300.0)  # a1's lease: b1 cannot use one GPU, so a1 is renewed to 600
    actions = alloc.release("a1", 400.0)
    assert [(x.kind, getattr(x, "session_id", None)) for x in actions] == [("stop", "c1"), ("admit", "b1")]


def test_a_request_withdrawn_at_the_instant_a_gpu_frees_is_not_admitted():
    # The same tie for cancel(): a lease refused renewal at the instant the waiting student
    # gave up used to admit that student inside the cancel call, which then had nothing to
    # withdraw (the replay had counted the student as gone; the service ended the lease
    # while the allocator kept it running). The withdrawal comes first at its instant.
    alloc = Allocator([PoolSpec("p", 1)], [SchoolSpec("a"), SchoolSpec("b"), SchoolSpec("c")],
                      Config(max_lease_s=300.0))
    alloc.submit(Request("a1", "a-u", "a", 1000), 0.0)
    alloc.submit(Request("b1", "b-u", "b", 1000), 10.0)
    alloc.submit(Request("c1", "c-u", "c", 1000), 20.0)
    actions = alloc.cancel("b1", 300.0)
    assert [(x.kind, getattr(x, "session_id", None)) for x in actions] == [("stop", "a1"), ("admit", "c1")]
    assert "b1" not in alloc.sessions and "b1" not in alloc.waiting


def test_under_fifo_order_a_request_that_would_borrow_reclaims_nothing():
    # Found by the replay's property test, as a replay that never ended: FIFO keys put
    # requests that would borrow in class 0 too, and the reclaim took them for requests
    # within their guarantee, so two schools over their guarantees took one GPU from each
    # other at one instant, again and again (no warning, no minimum runtime, the stopped
    # student asking again at once).
    alloc = Allocator([PoolSpec("p", 3)], [SchoolSpec("a"), SchoolSpec("b")],
                      Config(ordering="fifo", min_runtime_s=0.0, warning_s=0.0))
    alloc.submit(Request("a1", "a-u", "a", 1000), 0.0)
    alloc.submit(Request("b1", "b-u", "b", 1000), 0.0)
    assert alloc.submit(Request("b2", "b-v", "b", 1000), 0.0)[0].borrowed
    decision, actions = alloc.submit(Request("a2", "a-v", "a", 1000), 1.0)  # a would hold 2 of its 1.5
    assert decision.kind == "queue" and actions == []
    # a request within its guarantee still reclaims under FIFO
    alloc = Allocator([PoolSpec("p", 3)], [SchoolSpec("a"), SchoolSpec("b")],
                      Config(ordering="fifo", min_runtime_s=0.0, warning_s=0.0))
    for k in range(3):
        alloc.submit(Request(f"b{k}", f"b-u{k}", "b", 1000), 0.0)
    decision, actions = alloc.submit(Request("a1", "a-u", "a", 1000), 1.0)
    assert decision.kind == "queue" and [(x.kind, x.session_id) for x in actions] == [("warn", "b1")]
