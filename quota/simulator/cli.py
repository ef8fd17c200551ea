"""Replay a demand trace through an allocation policy and report fairness and waits.

    gpu-commons simulate --alliance alliance.yaml --trace trace.csv --policy fair --out results/fair

Writes ``summary.json`` (utilisation, Jain's index against the offline optimum,
capacity violations, preemptions, waits per tier), ``schools.csv`` and three PNG charts.
The alliance file and the trace are checked completely before anything runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quota.alliance import AllianceError, load_alliance
from quota.simulator.run import POLICIES, simulate, write_outputs
from quota.simulator.trace import TraceError, read_trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alliance", required=True, type=Path, help="alliance YAML (tiers, pools, schools)")
    parser.add_argument("--trace", required=True, type=Path,
                        help="CSV: arrival_s,user,school,duration_s,gpu_milli[,patience_s][,group]")
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
        trace = read_trace(args.trace, {s.id for s in alliance.schools})
    except (AllianceError, TraceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not len(trace):
        print(f"error: {args.trace}: the trace has no requests; nothing to simulate", file=sys.stderr)
        return 2
    result = simulate(alliance, trace, args.policy, explain=not args.no_explain, step_s=args.step,
                      resubmit=not args.no_resubmit)
    written = write_outputs(result, trace, args.out, plots=not args.no_plots)
    s = result["summary"]
    print(f"{args.policy}: utilisation {s['utilization']:.3f} (optimum {s['optimum_utilization']:.3f}), "
          f"Jain {s['jain_index']:.3f}, capacity violations {s['capacity_violations']}, "
          f"preemptions {s['preemptions']}")
    for tier, t in s["tiers"].items():
        print(f"  {tier}: p50 wait {t['p50_wait_s']:.0f} s, p95 {t['p95_wait_s']:.0f} s, "
              f"served {t['served_fraction']:.1%}, abandoned {t['abandoned']}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
