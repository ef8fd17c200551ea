"""The offline optimum: weighted max-min water-filling over the whole trace (a fluid bound).

Not a schedule: an entitlement and an upper bound to measure real policies against.
Time is cut into steps of ``step_s``. In each step every request that has arrived, is
not finished and has not given up is *active* and may use up to its size. The pool's
whole capacity is water-filled among the schools with active requests: every school gets
``min(its active demand, level * weight)`` with the level chosen so the capacity is used
up (weighted max-min fairness), and a school's share goes to its requests oldest first.
GPUs are treated as divisible and sessions as pausable, with no slices, leases or
reservations, which is why no real allocator can do better on utilisation. A request
that got nothing within its patience is abandoned, as in the replay. Between step
boundaries the shares are recomputed whenever a request finishes; a request arriving
inside a step is counted from the start of that step (so the bound is generous).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Fluid:
    served_milli_s: dict[str, float]  # per school, inside the window
    admitted_at: list[float]  # when each request first got a share (nan: never)
    abandoned: list[bool]
    steps_t: np.ndarray
    steps_milli: np.ndarray  # allocated milli in each step
    window: tuple[float, float]


def water_fill(capacity: float, demand: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted max-min shares of ``capacity`` with each entry capped at its demand."""
    alloc = np.zeros_like(demand, dtype=float)
    if capacity <= 0 or demand.sum() <= 0:
        return alloc
    if demand.sum() <= capacity:
        return demand.astype(float)
    order = np.argsort(demand / weight, kind="stable")
    left, weight_left = float(capacity), float(weight.sum())
    for k, i in enumerate(order):
        fair = left * weight[i] / weight_left
        if demand[i] <= fair:
            alloc[i] = demand[i]
            left -= demand[i]
            weight_left -= weight[i]
        else:
            rest = order[k:]
            alloc[rest] = left * weight[rest] / weight_left
            break
    return alloc


def fluid_optimum(
    arrival: list[float],
    duration: list[float],
    size_milli: list[int],
    patience: list[float],
    school: list[str],
    weights: dict[str, float],
    capacity_milli: int,
    window: tuple[float, float],
    step_s: float = 60.0,
) -> Fluid:
    n = len(arrival)
    names = sorted(weights)
    index = {name: k for k, name in enumerate(names)}
    weight = np.array([weights[name] for name in names], dtype=float)
    served = np.zeros(len(names))
    admitted_at = [math.nan] * n
    abandoned = [False] * n
    work = [size_milli[i] * duration[i] for i in range(n)]
    active: dict[int, list[int]] = {}  # school -> request indices, oldest first
    t0, t1 = window
    t = arrival[0] if n else t0
    steps_t: list[float] = []
    steps_m: list[float] = []
    nxt = 0
    while nxt < n or active:
        if not active and nxt < n and arrival[nxt] > t:
            t = t0 + math.floor((arrival[nxt] - t0) / step_s) * step_s
        end = t + step_s
        while nxt < n and arrival[nxt] < end:
            active.setdefault(index[school[nxt]], []).append(nxt)
            nxt += 1
        clock = t
        total = 0.0
        while active and clock < end - 1e-9:
            schools = list(active)
            demand = np.array([sum(size_milli[i] for i in active[s]) for s in schools], dtype=float)
            share = water_fill(capacity_milli, demand, weight[schools])
            gives: list[tuple[int, int, float]] = []
            span = end - clock
            for s, rate in zip(schools, share):
                for i in active[s]:
                    give = min(rate, size_milli[i])
                    if give <= 1e-12:
                        break
                    rate -= give
                    gives.append((s, i, give))
                    span = min(span, work[i] / give)
            overlap = max(0.0, min(clock + span, t1) - max(clock, t0))
            for s, i, give in gives:
                if admitted_at[i] != admitted_at[i]:
                    admitted_at[i] = max(clock, arrival[i])
                work[i] -= give * span
                served[s] += give * overlap
                total += give * span
            for s in schools:
                keep = [i for i in active[s] if work[i] > 1e-6]
                if keep:
                    active[s] = keep
                else:
                    del active[s]
            clock += span
            if not gives:
                break
        for s in list(active):
            keep = []
            for i in active[s]:
                if admitted_at[i] != admitted_at[i] and end - arrival[i] >= patience[i]:
                    abandoned[i] = True
                else:
                    keep.append(i)
            if keep:
                active[s] = keep
            else:
                del active[s]
        total /= step_s
        steps_t.append(t)
        steps_m.append(total)
        t = end
    return Fluid(
        {name: float(served[k]) for k, name in enumerate(names)}, admitted_at, abandoned,
        np.array(steps_t), np.array(steps_m), window,
    )
