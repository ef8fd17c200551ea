"""Replay a demand trace through an allocation policy and report fairness and waits.

    gpu-commons simulate --alliance alliance.yaml --trace trace.csv --policy fair --out results/fair

Writes ``summary.json`` (utilisation, Jain's index against the offline optimum,
capacity violations, preemptions, waits per tier), ``schools.csv`` and three PNG charts.
The alliance file and the trace are checked completely before anything runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from quota.alliance import Alliance, AllianceError, load_alliance
from quota.allocator_inputs import pool_specs_of
from quota.simulator.fits import request_limits
from quota.simulator.run import POLICIES, simulate, write_outputs
from quota.simulator.trace import Trace, TraceError, read_trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alliance", required=True, type=Path, help="alliance YAML (tiers, pools, schools)")
    parser.add_argument("--trace", required=True, type=Path,
                        help="CSV: arrival_s,user,school,duration_s,gpu_milli[,patience_s][,group][,profile]")
    parser.add_argument("--policy", required=True, choices=list(POLICIES),
                        help="; ".join(f"{k}: {v}" for k, v in POLICIES.items()))
    parser.add_argument("--out", required=True, type=Path, help="folder for summary.json, schools.csv and plots")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG charts (faster on big traces)")
    parser.add_argument("--no-explain", action="store_true",
                        help="do not compute queue positions and wait estimates (faster on big traces)")
    parser.add_argument("--no-resubmit", action="store_true",
                        help="a stopped session's rest of work is lost (default: the student asks again at once)")
    parser.add_argument("--step", type=float, default=60.0, help="time step of the offline optimum, seconds")


def run(args: argparse.Namespace) -> int:
    try:
        alliance = load_alliance(args.alliance)
        trace = read_trace(args.trace, {s.id for s in alliance.schools},
                           {p.id for p in alliance.profiles if p.gpu != "none"}, request_limits(alliance))
    except (AllianceError, TraceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = _cannot_simulate(args, alliance, trace)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    result = simulate(alliance, trace, args.policy, explain=not args.no_explain, step_s=args.step,
                      resubmit=not args.no_resubmit)
    written = _write_all_or_nothing(result, trace, args.out, plots=not args.no_plots)
    s = result["summary"]
    print(f"{args.policy}: utilisation {s['utilization']:.3f} (optimum {s['optimum_utilization']:.3f}), "
          f"Jain {'n/a' if s['jain_index'] is None else format(s['jain_index'], '.3f')}, capacity violations {s['capacity_violations']}, "
          f"preemptions {s['preemptions']}")
    for tier, t in s["tiers"].items():
        print(f"  {tier}: p50 wait {t['p50_wait_s']:.0f} s, p95 {t['p95_wait_s']:.0f} s, "
              f"served {t['served_fraction']:.1%}, abandoned {t['abandoned']}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _cannot_simulate(args: argparse.Namespace, alliance: Alliance, trace: Trace) -> str | None:
    """Problems that valid files can still have for a simulation, found before anything runs."""
    if not len(trace):
        return f"{args.trace}: the trace has no requests; add at least one line after the header"
    if not sum(pool.gpus for pool in alliance.pools):
        return (f"{args.alliance}: pools: the pools have no GPUs, so there is nothing to share; "
                "give a pool gpus: 1 or more")
    kinds = {spec.kind for pool in alliance.pools for spec in pool_specs_of(pool)}
    for profile_id in sorted({p for p in trace.profile if p is not None}):
        profile = alliance.profile(profile_id)
        if profile.gpu not in kinds:
            return (f"{args.trace}: profile {profile_id!r} asks for a {profile.gpu} GPU unit, which no pool of "
                    f"{args.alliance} has; give a pool such units or use another profile")
    if args.out.exists() and not args.out.is_dir():
        return f"{args.out}: exists and is not a folder; pass --out a new or existing folder"
    return None


def _write_all_or_nothing(result: dict, trace: Trace, out: Path, plots: bool) -> list[Path]:
    """Write into a scratch folder beside ``out`` and move the files in only once all are
    written, so a failure (a full disk, a plotting error) leaves no half set of results."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        written = write_outputs(result, trace, scratch, plots=plots)
        out.mkdir(exist_ok=True)
        for path in written:
            os.replace(path, out / path.name)
        return [out / path.name for path in written]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
