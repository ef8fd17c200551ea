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
