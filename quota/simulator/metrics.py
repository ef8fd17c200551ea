"""Turn a replay into the numbers staff read: utilisation, fairness, waits per tier.

* ``utilization``: GPU-seconds allocated inside the window (first to last arrival)
  divided by the capacity's GPU-seconds in that window; always within [0, 1] (anything
  else raises: see :func:`fraction_of_capacity`).
* ``jain_index``: Jain's index over the schools the optimum serves anything, of
  ``served / optimum`` (both GPU-seconds in the window); 1.0 = everyone got exactly
  their entitlement in the same proportion.
* waits: a request that was admitted waited ``admitted - arrival``; one that gave up is
  counted with the wait it endured (its patience), so the percentiles do not hide it;
  refused requests are counted apart.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from quota.simulator.optimum import Fluid
from quota.simulator.trace import Trace


def allocated_in_window(t: list[float], milli: list[int], window: tuple[float, float]) -> float:
    """Integral of the allocation step function over ``window`` (milli-GPU-seconds)."""
    lo, hi = window
    total = 0.0
    for k in range(len(t)):
        a = max(t[k], lo)
        b = min(t[k + 1] if k + 1 < len(t) else hi, hi)
        if b > a:
            total += milli[k] * (b - a)
    return total


def served_by_school(trace: Trace, intervals: list[tuple[int, float, float, int]],
                     window: tuple[float, float]) -> dict[str, float]:
    """Milli-GPU-seconds each school held inside ``window``, from the replay's attempts
    ``(request, start, end, milli)`` (end nan: still running at the end)."""
    lo, hi = window
    served: dict[str, float] = defaultdict(float)
    for i, start, end, milli in intervals:
        end = end if end == end else hi
        overlap = min(end, hi) - max(start, lo)
        if overlap > 0:
            served[trace.school[i]] += milli * overlap
    return served


def jain(values: list[float]) -> float | None:
    """Jain's fairness index; None (null in summary.json) when no school had demand the
    optimum could serve in the window, e.g. every request arrived at the same moment."""
    if not values:
        return None
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 0.0


def summarize(trace: Trace, tier_of: dict[str, str], waits: list[float], admitted: list[float],
              outcome: list[str], served: dict[str, float], allocated_milli_s: float,
              capacity_milli: int, window: tuple[float, float], fluid: Fluid,
              capacity_violations: int, preemptions: int, extra: dict | None = None) -> dict:
    lo, hi = window
    span = max(hi - lo, 1e-9)
    entitled = fluid.served_milli_s
    ratios = {s: served.get(s, 0.0) / entitled[s] for s in entitled if entitled[s] > 0}
    by_tier: dict[str, list[int]] = defaultdict(list)
    for i, school in enumerate(trace.school):
        by_tier[tier_of.get(school, "?")].append(i)
    tiers = {}
    for tier, idx in sorted(by_tier.items()):
        w = np.array([waits[i] for i in idx if outcome[i] != "refused"], dtype=float)
        tier_served = sum(1 for i in idx if admitted[i] == admitted[i])
        schools = sorted({trace.school[i] for i in idx})  # summed in one order: the same bits in every process
        tiers[tier] = {
            "requests": len(idx),
            "p50_wait_s": float(np.percentile(w, 50)) if len(w) else 0.0,
            "p95_wait_s": float(np.percentile(w, 95)) if len(w) else 0.0,
            "served_fraction": tier_served / len(idx),
            "abandoned": sum(1 for i in idx if outcome[i] == "abandoned"),
            "refused": sum(1 for i in idx if outcome[i] == "refused"),
            "gpu_hours_served": sum(served.get(s, 0.0) for s in schools) / 3.6e6,
            "gpu_hours_entitled": sum(entitled.get(s, 0.0) for s in schools) / 3.6e6,
        }
    summary = {
        "requests": len(trace),
        "window_s": [lo, hi],
        "capacity_gpus": capacity_milli / 1000,
        "demand_gpu_hours": sum(d * m for d, m in zip(trace.duration, trace.milli)) / 3.6e6,
        "utilization": fraction_of_capacity(allocated_milli_s, capacity_milli, span, "utilization"),
        "optimum_utilization": fraction_of_capacity(allocated_optimum(fluid), capacity_milli, span,
                                                    "optimum_utilization"),
        "jain_index": jain(list(ratios.values())),
        "capacity_violations": capacity_violations,
        "preemptions": preemptions,
        "tiers": tiers,
        "outcomes": {k: outcome.count(k) for k in sorted(set(outcome))},
    }
    if extra:
        summary.update(extra)
    return summary


def fraction_of_capacity(allocated_milli_s: float, capacity_milli: int, span_s: float, name: str) -> float:
    """``allocated / (capacity x span)``, which must lie in [0, 1]: anything else is a
    bookkeeping bug (an allocation below zero or above the pools), never a result to
    print. Rounding of the integral (at most a few parts in 10^12) is clipped."""
    value = allocated_milli_s / (capacity_milli * span_s)
    if not -1e-9 <= value <= 1 + 1e-9:
        raise ValueError(f"{name} {value:.6f} is outside [0, 1]: {allocated_milli_s:.0f} milli-GPU-seconds allocated "
                         f"of {capacity_milli * span_s:.0f} in the window; the replay's books do not balance")
    return min(max(value, 0.0), 1.0)


def allocated_optimum(fluid: Fluid) -> float:
    return sum(fluid.served_milli_s.values())
