"""The replay's own books (:mod:`quota.simulator.engine`): they balance on random traces,
and a broken one fails loudly.

The property replays small random traces with short leases (so renewals and lease ends
happen), budgets, reservations, schools that borrow and lose what they borrowed, and
work lengths equal to the lease length or the minimum runtime (a completion at the very
instant of a timer: the tie that once ended a session twice), with resubmission on and
off. The replay checks its invariants at every event and raises if one breaks; on top,
the results must add up: the allocation timeline within [0, capacity], utilisation in
[0, 1], each request's attempts one after another and never more work served than asked.

Example counts as in test_fairshare_properties.py: a few seconds on two cores.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.allocator_inputs import RequestShape
from quota.fairshare import Allocator, Config, PoolSpec, SchoolSpec
from quota.fairshare.model import Admit, Decision, Stop
from quota.simulator.engine import Replay, ReplayInvariantError, replay
from quota.simulator.metrics import allocated_in_window, fraction_of_capacity
from quota.simulator.trace import Trace
from tests.fairshare_fixtures import worlds

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# profiles with their own lease lengths, beside requests that take Config.max_lease_s
SHAPES = {"short": RequestShape(None, 500, 90.0), "whole": RequestShape(None, 1000, 300.0)}


@st.composite
def cases(draw, budgets: bool | None = None, resubmit: bool | None = None):
    world = draw(worlds(budgets=draw(st.booleans()) if budgets is None else budgets))
    lease = draw(st.sampled_from([60.0, 120.0, 300.0, 600.0]))
    config = dataclasses.replace(world.config, max_lease_s=lease)
    # work lengths that tie with the timers: the lease, the minimum runtime, the warning
    ties = sorted({lease, config.min_runtime_s, config.min_runtime_s + config.warning_s, 90.0, 300.0} - {0.0})
    n = draw(st.integers(1, 40))
    rows = draw(st.lists(st.tuples(
        st.integers(0, 60).map(lambda k: k * 30.0),  # arrivals on a 30 s grid: many at one instant
        st.integers(0, len(world.schools) - 1),
        st.integers(0, 3),
        st.one_of(st.sampled_from(ties), st.floats(1.0, 1800.0)),
        st.sampled_from([250, 500, 1000, 2000]),
        st.sampled_from([30.0, 120.0, 900.0]),
        st.sampled_from([None, "g1"]),
        st.sampled_from([None, None, "short", "whole"]),
    ), min_size=n, max_size=n))
    rows.sort(key=lambda r: r[0])
    schools = [world.schools[r[1]].id for r in rows]
    trace = Trace([r[0] for r in rows], [f"{s}-u{r[2]}" for s, r in zip(schools, rows)], schools,
                  [r[3] for r in rows], [r[4] for r in rows], [r[5] for r in rows], [r[6] for r in rows],
                  [r[7] for r in rows])
    return world, config, trace, draw(st.booleans()) if resubmit is None else resubmit


def replay_and_check(case) -> Replay:
    world, config, trace, resubmit = case
    result = replay(trace, world.pools, world.schools, config, world.reservations, resubmit=resubmit, shapes=SHAPES)
    capacity = result.capacity_milli
    assert result.capacity_violations == 0
    assert all(0 <= m <= capacity for m in result.timeline_milli)
    assert result.timeline_t == sorted(result.timeline_t)
    if len(trace) and trace.arrival[-1] > trace.arrival[0]:
        window = (trace.arrival[0], trace.arrival[-1])
        allocated = allocated_in_window(result.timeline_t, result.timeline_milli, window)
        assert 0.0 <= fraction_of_capacity(allocated, capacity, window[1] - window[0], "utilization") <= 1.0
    attempts: dict[int, list[tuple[float, float]]] = {}
    for i, start, end, _ in result.intervals:
        attempts.setdefault(i, []).append((start, end))
    for i, runs in attempts.items():
        runs.sort()
        assert all(end <= later for (_, end), (later, _) in zip(runs, runs[1:])), (i, runs)  # one at a time
        served = sum(end - start for start, end in runs if end == end)
        assert served <= trace.duration[i] * (1 + 1e-9) + 1e-6, (i, runs, trace.duration[i])
        assert result.admitted_at[i] == runs[0][0]
    for i, how in enumerate(result.outcome):
        assert (i in attempts) == (result.admitted_at[i] == result.admitted_at[i])
        assert how in ("completed", "reclaimed", "lease_expired", "budget_exhausted", "abandoned", "refused",
                       "running"), how
        if how == "completed":
            assert result.ended_at[i] == attempts[i][-1][1]
    if not resubmit:
        assert result.resubmitted == 0
    return result


@SETTINGS
@given(cases())
def test_the_books_balance_on_random_traces(case):
    replay_and_check(case)


def test_the_property_meets_every_kind_of_stop():
    """Not vacuous: across the examples, leases end unrenewed, sessions are reclaimed and
    stopped by budgets, students ask again, give up, and work ends at a timer's instant
    (the random property above covers resubmission off as well)."""
    seen = {"reclaimed": 0, "lease_expired": 0, "budget_exhausted": 0, "renewed": 0, "resubmitted": 0,
            "abandoned": 0, "tie": 0}

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(cases(budgets=True, resubmit=True))
    def run(case):
        result = replay_and_check(case)
        for reason, count in result.stops.items():
            seen[reason] += count
        seen["resubmitted"] += result.resubmitted
        seen["abandoned"] += result.counts.get("abandoned", 0)
        _, config, trace, _ = case
        seen["renewed"] += sum(1 for i, s, e, _ in result.intervals if e == e and e - s > config.max_lease_s)
        seen["tie"] += sum(1 for i, s, e, _ in result.intervals
                           if e == e and result.outcome[i] == "completed" and e - s in (config.max_lease_s,
                                                                                        config.min_runtime_s))

    run()
    assert all(seen.values()), seen


# -- a broken allocator is caught at the event, not in the summary -------------------------


class Scripted:
    """An allocator that admits every request at once and adds the actions a test scripts
    for a call: ``script[(call, now)]``."""

    def __init__(self, pools, schools, config, reservations, start=0.0, script=None):
        self.pool = pools[0].id
        self.script = script or {}

    def submit(self, request, now, explain=True) -> tuple[Decision, list]:
        return Admit(request.id, request.id, self.pool, 1, math.inf, False), list(self.script.get(("submit", now), ()))

    def release(self, session_id, now):
        return list(self.script.get(("release", now), ()))

    def cancel(self, request_id, now):
        return []

    def advance(self, now):
        return list(self.script.get(("advance", now), ()))

    def next_wake(self):
        return None


def scripted_replay(script: dict, slices: int = 2, n: int = 2) -> Replay:
    trace = Trace([0.0, 10.0, 20.0][:n], ["a-u", "a-v", "a-w"][:n], ["a"] * n, [100.0] * n, [1000] * n,
                  [900.0] * n, [None] * n, [])
    return replay(trace, [PoolSpec("p", slices)], [SchoolSpec("a")], Config(),
                  allocator=lambda *args, **kw: Scripted(*args, **kw, script=script))


def test_a_stop_for_a_completed_session_names_the_event_time_request_and_rule():
    with pytest.raises(ReplayInvariantError) as caught:
        scripted_replay({("release", 100.0): [Stop("0", "lease_expired", "the lease ended")]})
    message = str(caught.value)
    assert "t=100.000 s" in message and "completion of attempt 0" in message
    assert "request 0 (trace position; a-u of a)" in message and "a session ends only once" in message


def test_a_stop_for_a_request_that_never_ran():
    with pytest.raises(ReplayInvariantError, match="a stop only for a running session.*request 1 .* not yet"):
        scripted_replay({("submit", 0.0): [Stop("1", "reclaimed", "")]})


def test_an_admission_of_a_running_session():
    with pytest.raises(ReplayInvariantError, match="arrival of attempt 1: an admission only for a waiting request"):
        scripted_replay({("submit", 10.0): [Admit("0", "0", "p", 1, math.inf, False)]})


def test_an_allocation_above_the_pool():
    with pytest.raises(ReplayInvariantError, match="within its capacity.*pool p holds 2 of 1 slices"):
        scripted_replay({}, slices=1)


def test_utilisation_outside_zero_to_one_is_refused():
    assert fraction_of_capacity(1000.0 * 10 * (1 + 1e-12), 1000, 10.0, "utilization") == 1.0
    with pytest.raises(ValueError, match=r"utilization -0\.770000 is outside \[0, 1\]"):
        fraction_of_capacity(-0.77 * 4000 * 100.0, 4000, 100.0, "utilization")


def test_the_real_allocator_passes_where_the_scripted_one_fails():
    # the scenario of the first scripted test, with the allocator the simulator uses
    trace = Trace([0.0, 10.0], ["a-u", "b-u"], ["a", "b"], [300.0, 300.0], [1000, 1000], [900.0] * 2,
                  [None] * 2, [])
    result = replay(trace, [PoolSpec("p", 1)], [SchoolSpec("a"), SchoolSpec("b")], Config(max_lease_s=300.0),
                    allocator=Allocator)
    assert result.outcome == ["completed", "completed"] and result.stops == {}
