"""One simulation: an alliance, a trace and a policy in; a summary (and files) out."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from quota.alliance import Alliance
from quota.allocator_inputs import allocator_inputs
from quota.fairshare.model import Config, fcfs_config, static_config
from quota.simulator.engine import replay
from quota.simulator.metrics import allocated_in_window, served_by_school, summarize
from quota.simulator.optimum import fluid_optimum
from quota.simulator.trace import Trace

POLICIES = {
    "fair": "fair share (ours): guarantees from weights, borrowing, reclaim, decayed-usage priority",
    "fcfs": "first come, first served, as plain JupyterHub does",
    "static": "a hard partition per school, as with one ResourceQuota per namespace",
    "optimum": "offline weighted max-min water-filling over the whole trace (an upper bound, not a schedule)",
}


def base_config(policy: str) -> Config:
    return {"fair": Config(), "fcfs": fcfs_config(), "static": static_config()}[policy]


def simulate(alliance: Alliance, trace: Trace, policy: str, explain: bool = True, step_s: float = 60.0,
             resubmit: bool = True, allocator=None) -> dict:
    """Replay ``trace`` under ``policy``; returns the summary plus what the plots need.
    ``allocator``: what decides instead of an in-process :class:`quota.fairshare.Allocator`
    (see :func:`quota.simulator.engine.replay`)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    inputs = allocator_inputs(alliance, base_config("fair" if policy == "optimum" else policy))
    capacity = sum(p.capacity_milli for p in inputs.pools)
    window = (trace.arrival[0], trace.arrival[-1]) if len(trace) else (0.0, 0.0)
    smallest = {p.id: p for p in inputs.pools}
    size = [min(p.need(m) * p.slice_milli for p in smallest.values()) for m in trace.milli]
    weights = {s.id: s.weight for s in inputs.schools}
    began = time.perf_counter()
    fluid = fluid_optimum(trace.arrival, trace.duration, size, trace.patience, trace.school, weights,
                          capacity, window, step_s)
    optimum_s = time.perf_counter() - began
    timing = {"optimum_seconds": round(optimum_s, 3)}
    if policy == "optimum":
        admitted = fluid.admitted_at
        outcome = ["abandoned" if a else ("completed" if s == s else "refused")
                   for a, s in zip(fluid.abandoned, admitted)]
        waits = [(a - t) if a == a else p for a, t, p in zip(admitted, trace.arrival, trace.patience)]
        served = fluid.served_milli_s
        allocated = sum(served.values())
        timeline = (list(fluid.steps_t), [int(m) for m in fluid.steps_milli])
        violations = preemptions = 0
        estimates: list[float] = []
    else:
        began = time.perf_counter()
        result = replay(trace, inputs.pools, inputs.schools, inputs.config, inputs.reservations, explain=explain,
                        resubmit=resubmit, shapes=inputs.shapes, **({"allocator": allocator} if allocator else {}))
        timing["replay_seconds"] = round(time.perf_counter() - began, 3)
        admitted, outcome = result.admitted_at, result.outcome
        waits = [(a - t) if a == a else p for a, t, p in zip(admitted, trace.arrival, trace.patience)]
        served = served_by_school(trace, result.intervals, window)
        allocated = allocated_in_window(result.timeline_t, result.timeline_milli, window)
        timeline = (result.timeline_t, result.timeline_milli)
        violations = result.capacity_violations
        preemptions = result.stops.get("reclaimed", 0)
        # how far off the first estimate was, for requests that were queued and then got a GPU
        estimates = [e - w for e, w, a in zip(result.wait_estimate, waits, admitted)
                     if e == e and a == a and math.isfinite(e)]
        timing.update(warnings=result.warnings, leases_not_renewed=result.stops.get("lease_expired", 0),
                      budget_stops=result.stops.get("budget_exhausted", 0), resubmitted=result.resubmitted,
                      resubmit=resubmit)
    extra = {"policy": policy, "policy_description": POLICIES[policy], **timing}
    if estimates:
        estimates.sort()
        extra["wait_estimate_minus_actual_s"] = {
            "p50": estimates[len(estimates) // 2], "p05": estimates[int(len(estimates) * 0.05)],
            "queued_requests": len(estimates),
        }
    summary = summarize(trace, inputs.tier_of, waits, admitted, outcome, served, allocated, capacity, window,
                        fluid, violations, preemptions, extra)
    return {"summary": summary, "replay": None if policy == "optimum" else result, "waits": waits, "outcome": outcome,
            "served": served,
            "entitled": fluid.served_milli_s, "timeline": timeline, "fluid": fluid, "tier_of": inputs.tier_of,
            "capacity_milli": capacity, "window": window}


def write_outputs(result: dict, trace: Trace, out: Path, plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json"]
    (out / "summary.json").write_text(json.dumps(result["summary"], indent=2, sort_keys=True) + "\n")
    schools = out / "schools.csv"
    with schools.open("w") as handle:
        handle.write("school,tier,served_gpu_hours,entitled_gpu_hours\n")
        for school in sorted(result["entitled"]):
            handle.write(f"{school},{result['tier_of'].get(school, '')},"
                         f"{result['served'].get(school, 0.0) / 3.6e6:.4f},{result['entitled'][school] / 3.6e6:.4f}\n")
    written.append(schools)
    if plots:
        from quota.simulator.plots import write_plots

        written += write_plots(result, trace, out)
    return written
