"""Replay a trace through the allocator on a virtual clock.

The engine is the simulator's adapter around :class:`quota.fairshare.Allocator`, the
same class the quota service uses: a request arrives -> ``submit``; a session's work is
done -> ``release``; a student's patience runs out while queued -> ``cancel``; the
allocator asked to be woken -> ``advance``. At equal times releases go first, then
arrivals (resubmissions before the trace's), then abandonments; the allocator's timers
due at that instant run in the first of those calls, after its release or withdrawal and
before its arrival (see :meth:`quota.fairshare.Allocator.release`), or in ``advance``
when nothing else happens then.

``allocator`` may be anything with those five methods (``next_wake`` too): the
equivalence test drives the real quota service over HTTP with it, through this same
loop. So that the loop decides the same whatever the order of the actions one call
returns (the service reports them as a set), a call's stops are taken first, in request
order, then its admissions, and simultaneous completions end in attempt order.

A session the allocator stops early (reclaimed, lease not renewed, budget) has work
left. With ``resubmit`` (the default) the student saves, is warned, and asks again at
once for the rest of the work, with the same patience: the discrete counterpart of the
optimum's pausable sessions. Without it the rest of the work is lost. Either way every
stop is counted.

The replay checks its own books at every event, independently of the allocator's, and
raises :class:`ReplayInvariantError` (naming the event, the time, the request and the
rule) the moment one breaks: each attempt is admitted only while it waits and ends once; a
stop is only for a running attempt; each pool holds between 0 and all of its slices. Each
check is O(1), so ``capacity_violations`` is always 0 in a replay that returns.
"""

from __future__ import annotations

import gc
import heapq
import math
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from quota.allocator_inputs import RequestShape
from quota.fairshare import Allocator, Config, PoolSpec, Request, SchoolSpec
from quota.fairshare.model import Reservation
from quota.simulator.trace import Trace

_COMPLETE, _ARRIVE, _ABANDON = 0, 2, 3
# an attempt's state: waiting in the allocator's line, running, over, not yet submitted
_WAITING, _RUNNING, _OVER, _UNSEEN = 0, 1, 2, 3
_STATE_NAMES = {_WAITING: "waiting", _RUNNING: "running", _OVER: "over", _UNSEEN: "not yet submitted"}


class ReplayInvariantError(AssertionError):
    """The replay's books do not balance: a bug in the allocator or in the engine, never in
    the trace (a trace is checked when it is read). The message names the event, the
    virtual time, the request (its trace position, and the attempt for a resubmission) and
    the rule that broke."""


@dataclass
class Replay:
    """What happened to every request (index = trace position) and to the pools.

    A request that was stopped and asked again runs in several *attempts*; ``intervals``
    lists every attempt that ran as ``(request, start, end, milli)`` (end nan: still
    running when the replay ended)."""

    admitted_at: list[float]  # first admission (nan: never admitted)
    ended_at: list[float]  # end of the last attempt
    outcome: list[str]  # of the last attempt: "completed", "reclaimed", "lease_expired", "budget_exhausted", "abandoned", "refused", "running"
    refusal: list[str]
    wait_estimate: list[float]  # the allocator's estimate when it first queued the request (nan if not queued)
    intervals: list[tuple[int, float, float, int]]
    timeline_t: list[float]  # times where the allocated milli changed
    timeline_milli: list[int]  # allocated milli from that time on
    capacity_milli: int
    capacity_violations: int  # always 0: a violation raises ReplayInvariantError
    warnings: int
    stops: dict[str, int] = field(default_factory=dict)  # stop reason -> count (every attempt)
    resubmitted: int = 0
    counts: dict[str, int] = field(default_factory=dict)


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """A replay creates and drops millions of small objects and no reference cycles (a
    collection right after one finds nothing to free), so reference counting frees them
    all, and the cycle collector, run as the heap grows, would only traverse the growing
    heap again and again: about 15 % of a large replay."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def replay(
    trace: Trace,
    pools: list[PoolSpec],
    schools: list[SchoolSpec],
    config: Config,
    reservations: list[Reservation] = (),
    explain: bool = True,
    resubmit: bool = True,
    shapes: dict[str, RequestShape] | None = None,
    allocator=Allocator,
) -> Replay:
    """``shapes``: how a request naming a profile asks (:func:`quota.allocator_inputs.request_shapes`);
    ``allocator``: called as ``allocator(pools, schools, config, reservations, start=...)``."""
    with cycle_collector_paused():
        return _replay(trace, pools, schools, config, reservations, explain, resubmit, shapes or {}, allocator)


def _replay(
    trace: Trace,
    pools: list[PoolSpec],
    schools: list[SchoolSpec],
    config: Config,
    reservations: list[Reservation],
    explain: bool,
    resubmit: bool,
    shapes: dict[str, RequestShape],
    make_allocator,
) -> Replay:
    n = len(trace)
    start = trace.arrival[0] if n else 0.0
    alloc = make_allocator(pools, schools, config, reservations, start=start)
    nan = math.nan
    admitted_at = [nan] * n
    ended_at = [nan] * n
    outcome = ["queued"] * n
    refusal = [""] * n
    estimate = [nan] * n
    intervals: list[tuple[int, float, float, int]] = []
    stops: dict[str, int] = {}
    # attempts: index a; a < n is the request itself, later ones are resubmissions
    origin = list(range(n))
    work = list(trace.duration)  # work left at the attempt's submission
    began = [nan] * n  # when the attempt was admitted
    held = [0] * n
    pool_of = [0] * n
    state = [_UNSEEN] * n
    t_line: list[float] = []
    m_line: list[int] = []
    allocated = 0
    warnings = 0
    resubmitted = 0
    events: list[tuple] = []  # heap of (time, kind, seq, attempt)
    # abandonments mostly come in time order (one patience for all): those go to a plain
    # line instead of the heap; the next event is the smaller of the two heads
    abandons: deque[tuple] = deque()
    seq = 0
    slice_of = {p.id: p.slice_milli for p in pools}
    capacity = sum(p.capacity_milli for p in pools)
    pool_index = {p.id: i for i, p in enumerate(pools)}
    pool_slices = [p.slices for p in pools]
    used = [0] * len(pools)
    arrival, patience = trace.arrival, trace.patience
    users, school_ids, milli, groups = trace.user, trace.school, trace.milli, trace.group
    profiles = trace.profile if trace.profile else [None] * n
    push, pop = heapq.heappush, heapq.heappop
    event: list = ["start", -1]  # the engine's event being handled (its name, the attempt), for errors

    def broken(rule: str, a: int, now: float, pool: int | None = None) -> ReplayInvariantError:
        i = origin[a] if 0 <= a < len(origin) else a
        who = f"request {i} (trace position; {trace.user[i]} of {trace.school[i]})" if 0 <= i < n else f"id {a}"
        if a != i:
            who += f", attempt {a} (a resubmission)"
        name, b = event
        during = name if b < 0 else f"{name} of attempt {b}"
        where = f"; pool {pools[pool].id} holds {used[pool]} of {pool_slices[pool]} slices" if pool is not None else ""
        state_now = _STATE_NAMES[state[a]] if 0 <= a < len(state) else "unknown"
        return ReplayInvariantError(
            f"replay invariant broken at t={now:.3f} s during the {during}: {rule}; {who} is {state_now}{where}"
        )

    def mark(now: float) -> None:
        if t_line and t_line[-1] == now:
            m_line[-1] = allocated
        else:
            t_line.append(now)
            m_line.append(allocated)

    def finish(a: int, now: float, how: str) -> None:
        nonlocal allocated
        if state[a] != _RUNNING:
            rule = "a session ends only once" if state[a] == _OVER else "a stop only for a running session"
            raise broken(f"{rule} (here: {how})", a, now)
        i = origin[a]
        state[a] = _OVER
        allocated -= held[a]
        p = pool_of[a]
        used[p] -= held[a] // slice_size[p]
        if used[p] < 0:
            raise broken("a pool's allocation stays at 0 or more", a, now, p)
        intervals.append((i, began[a], now, held[a]))
        ended_at[i] = now
        outcome[i] = how

    slice_size = [p.slice_milli for p in pools]

    def submit(a: int, now: float) -> None:
        nonlocal seq
        i = origin[a]
        state[a] = _WAITING  # until the decision says otherwise
        profile = profiles[i]
        if profile is None:
            request = Request(str(a), users[i], school_ids[i], milli[i], groups[i])
        else:
            request = shapes[profile].request(str(a), users[i], school_ids[i], groups[i])
        decision, actions = alloc.submit(request, now, explain=explain)
        if actions:
            apply(actions, now)
        if decision.kind == "admit":
            apply([decision], now)
        elif decision.kind == "refuse":
            state[a] = _OVER
            outcome[i] = "refused"
            refusal[i] = decision.reason
        else:
            if a == i and decision.wait_estimate_s is not None:
                estimate[i] = decision.wait_estimate_s
            seq += 1
            event = (now + patience[i], _ABANDON, seq, a)
            if not abandons or abandons[-1] <= event:
                abandons.append(event)
            else:
                push(events, event)

    def in_order(actions: list) -> list:
        """What one call returns is one instant: stops of sessions that ran before it (in
        request order), then sessions both admitted and stopped in it (each admission
        right before its stop, in request order: with no warning and no minimum runtime
        a session can be admitted and reclaimed at once), then the other admissions."""
        if len(actions) < 2:
            return actions
        stops = [x for x in actions if x.kind == "stop"]
        if not stops:
            return actions
        admitted = {x.session_id: x for x in actions if x.kind == "admit"}
        stops.sort(key=lambda x: (origin[int(x.session_id)], int(x.session_id)))
        ordered = [x for x in stops if x.session_id not in admitted]
        if len(ordered) == len(stops):
            return ordered + [x for x in actions if x.kind != "stop"]
        brief = {x.session_id for x in stops if x.session_id in admitted}
        for x in stops:
            if x.session_id in brief:
                ordered += (admitted[x.session_id], x)
        return ordered + [x for x in actions if x.kind != "stop" and not (x.kind == "admit" and x.session_id in brief)]

    def apply(actions: list, now: float) -> None:
        nonlocal allocated, warnings, seq, resubmitted
        for action in in_order(actions):
            kind = action.kind
            if kind == "admit":
                a = int(action.request_id)  # an id the replay never gave: IndexError
                if state[a] != _WAITING:
                    raise broken("an admission only for a waiting request", a, now)
                i = origin[a]
                if admitted_at[i] != admitted_at[i]:
                    admitted_at[i] = now
                outcome[i] = "running"
                state[a] = _RUNNING
                began[a] = now
                p = pool_index[action.pool]
                amount = action.slices * slice_of[action.pool]
                held[a] = amount
                pool_of[a] = p
                allocated += amount
                used[p] += action.slices
                if used[p] > pool_slices[p]:  # checked here, independently of the allocator
                    raise broken("a pool's allocation stays within its capacity", a, now, p)
                push(events, (now + work[a], _COMPLETE, a, a))
            elif kind == "stop":
                a = int(action.session_id)
                finish(a, now, action.reason)  # checks that it runs
                stops[action.reason] = stops.get(action.reason, 0) + 1
                left = work[a] - (now - began[a])
                if resubmit and left > 0:
                    resubmitted += 1
                    origin.append(origin[a])
                    work.append(left)
                    began.append(nan)
                    held.append(0)
                    pool_of.append(0)
                    state.append(_UNSEEN)
                    seq += 1
                    push(events, (now, _ARRIVE, seq, len(origin) - 1))
            elif kind == "warn":
                warnings += 1
                continue
            else:
                continue
            mark(now)

    next_arrival = 0
    inf = math.inf
    t_wake = None  # the allocator's next wake-up; None: ask it (its timers change only in its calls)
    while True:
        t_arr = arrival[next_arrival] if next_arrival < n else inf
        first = events[0] if events else None
        if abandons and (first is None or abandons[0] < first):
            first = abandons[0]
        t_evt = first[0] if first is not None else inf
        if t_wake is None:
            wake = alloc.next_wake()
            t_wake = inf if wake is None else wake
        if t_arr == inf and t_evt == inf and t_wake == inf:
            break
        if t_evt <= t_wake and t_evt <= t_arr and (t_evt < t_arr or first[1] <= _ARRIVE):
            t, kind, _, a = abandons.popleft() if abandons and first is abandons[0] else pop(events)
            if kind == _COMPLETE:
                if state[a] != _RUNNING or began[a] + work[a] != t:
                    continue  # an attempt stopped before its work was done
                event[0], event[1] = "completion", a
                finish(a, t, "completed")
                mark(t)
                t_wake = None
                actions = alloc.release(str(a), t)
                if actions:
                    apply(actions, t)
            elif kind == _ARRIVE:  # a stopped student asks again for the rest
                event[0], event[1] = "resubmission", a
                t_wake = None
                submit(a, t)
            elif state[a] == _WAITING:  # patience ran out while queued
                event[0], event[1] = "abandonment", a
                t_wake = None
                actions = alloc.cancel(str(a), t)
                if actions:
                    apply(actions, t)  # an allocator that runs its timers at t first may admit it
                if state[a] == _WAITING:
                    state[a] = _OVER
                    outcome[origin[a]] = "abandoned"
        elif t_wake <= t_arr:
            t, t_wake = t_wake, None
            event[0], event[1] = "allocator wake-up", -1
            apply(alloc.advance(t), t)
        else:
            t_wake = None
            event[0], event[1] = "arrival", next_arrival
            submit(next_arrival, t_arr)
            next_arrival += 1
    for a, s in enumerate(state):
        if s == _RUNNING:  # still running: served up to its last moment on the clock
            intervals.append((origin[a], began[a], nan, held[a]))
    counts: dict[str, int] = {}
    for o in outcome:
        counts[o] = counts.get(o, 0) + 1
    return Replay(
        admitted_at, ended_at, outcome, refusal, estimate, intervals, t_line, m_line, capacity, 0,
        warnings, stops, resubmitted, counts,
    )
