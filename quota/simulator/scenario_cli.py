"""Generate school-timetable demand (trace CSV + alliance file) for `gpu-commons simulate`.

    gpu-commons scenario --county 6 --urban 4 --oversubscription 2 --out scenarios/small
    gpu-commons simulate --alliance scenarios/small/alliance.yaml --trace scenarios/small/trace.csv \\
        --policy fair --out results/fair

Session sizes and lifetimes come from the Alibaba GPU trace (``--pods``); see
:mod:`quota.simulator.scenario` for the model of county and urban demand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quota.simulator.scenario import DEFAULT_PODS, PodsError, ScenarioSpec, alliance_yaml, generate, load_pods
from quota.simulator.trace import write_trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ScenarioSpec()
    parser.add_argument("--county", type=int, default=d.county_schools, help="number of county schools")
    parser.add_argument("--urban", type=int, default=d.urban_schools, help="number of urban schools")
    parser.add_argument("--days", type=int, default=d.days, help="school days to generate")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (same seed, same files)")
    parser.add_argument("--county-devices", type=int, default=d.county_devices,
                        help="devices at a GPU per county lesson (the size of each burst)")
    parser.add_argument("--county-lessons", type=int, default=d.county_lessons_per_day,
                        help=f"GPU lessons per county school and day, out of {len(d.periods_h)} periods")
    parser.add_argument("--urban-students", type=int, default=d.urban_students, help="students per urban school")
    parser.add_argument("--urban-sessions", type=float, default=d.urban_sessions_per_student,
                        help="GPU sessions per urban student and day (average)")
    parser.add_argument("--bell-offset", type=float, default=d.bell_offset_max_minutes,
                        help="each county school rings its bells up to this many minutes after the alliance's "
                        "periods (0: all at the same time)")
    parser.add_argument("--patience", type=float, default=d.patience_s,
                        help="seconds a student waits in the queue before giving up")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--gpus", type=int, help="GPUs in the pool (default: sized from --oversubscription)")
    size.add_argument("--oversubscription", type=float, default=d.oversubscription,
                      help="demand divided by what the pool can serve while requests arrive, nights left out "
                      "(default 2)")
    parser.add_argument("--max-gpus", type=int, default=1, help="largest pod (whole GPUs) taken from the trace")
    parser.add_argument("--pods", type=Path, default=DEFAULT_PODS,
                        help="openb_pod_list_default.csv of the Alibaba GPU trace v2023")
    parser.add_argument("--out", required=True, type=Path, help="folder for trace.csv and alliance.yaml")


def run(args: argparse.Namespace) -> int:
    spec = ScenarioSpec(
        county_schools=args.county, urban_schools=args.urban, days=args.days, seed=args.seed,
        county_devices=args.county_devices, county_lessons_per_day=args.county_lessons,
        urban_students=args.urban_students, urban_sessions_per_student=args.urban_sessions,
        bell_offset_max_minutes=args.bell_offset, patience_s=args.patience, gpus=args.gpus,
        oversubscription=args.oversubscription,
    )
    try:
        spec.check()
        pods = load_pods(args.pods, args.max_gpus)
    except (ValueError, PodsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scenario = generate(spec, pods)
    args.out.mkdir(parents=True, exist_ok=True)
    write_trace(args.out / "trace.csv", scenario.rows)
    (args.out / "alliance.yaml").write_text(alliance_yaml(scenario, spec))
    print(f"{len(scenario.rows)} requests from {len(scenario.schools)} schools over {spec.days} day(s); "
          f"pool of {scenario.gpus} GPUs; demand {scenario.demand_over_capacity:.2f} x capacity")
    print(f"wrote {args.out / 'trace.csv'}, {args.out / 'alliance.yaml'}")
    return 0
