"""Generate school-timetable demand (trace CSV + alliance file) for `gpu-commons simulate`.

    gpu-commons scenario --county 6 --urban 4 --oversubscription 2 --out scenarios/small
    gpu-commons simulate --alliance scenarios/small/alliance.yaml --trace scenarios/small/trace.csv \\
        --policy fair --out results/fair

Session sizes and lifetimes come from the Alibaba GPU trace (``--pods``); see
:mod:`quota.simulator.scenario` for the model of county and urban demand.
"""

from __future__ import annotations

import argparse
import re
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
    parser.add_argument("--county-devices-max", type=int,
                        help="draw each county lesson's class size from --county-devices to this (e.g. 12 to 30)")
    parser.add_argument("--county-max-milli", type=int,
                        help="county sessions ask only shares of at most this many milli-GPU (small shares, e.g. 500)")
    parser.add_argument("--patience", type=float, default=d.patience_s,
                        help="seconds a student waits in the queue before giving up")
    parser.add_argument("--patience-max", type=float,
                        help="draw each request's patience from --patience to this many seconds (e.g. 480 to 600)")
    parser.add_argument("--evening-end", type=float,
                        help="urban students also ask from the end of the school day (17:00) to this hour (e.g. 22)")
    parser.add_argument("--evening-sessions", type=float, default=d.evening_sessions_per_student,
                        help="GPU sessions per urban student in an evening (average; a quiet evening: 0.1)")
    parser.add_argument("--flood-schools", type=int, default=d.flood_schools,
                        help="the first N urban schools flood on exam days (--flood-days)")
    parser.add_argument("--flood-days", type=_days, default=d.flood_days,
                        help="exam days, counted from 0, comma-separated (e.g. 1,3)")
    parser.add_argument("--flood-factor", type=float, default=d.flood_factor,
                        help="on an exam day a flooding school asks this many times as often")
    parser.add_argument("--pools", type=int, default=d.pools, help="split the GPUs over this many pools")
    parser.add_argument("--sliced-share", type=float, default=d.sliced_share,
                        help="fraction of each pool's GPUs that are MIG-sliced (0: whole GPUs, 1: all sliced)")
    parser.add_argument("--slices-per-gpu", type=int, default=d.slices_per_gpu, help="MIG slices on a sliced GPU")
    parser.add_argument("--reserved-lessons", type=float, default=d.reserved_lessons,
                        help="fraction of county lessons their teacher books as a class reservation")
    parser.add_argument("--unused-reservations", type=float, default=d.unused_reservations,
                        help="fraction of booked lessons the class does not come to")
    parser.add_argument("--reservation-share", type=float, default=d.reservation_share,
                        help="a booking holds at most this fraction of its pool")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--gpus", type=int, help="GPUs in the pool (default: sized from --oversubscription)")
    size.add_argument("--oversubscription", type=float, default=d.oversubscription,
                      help="demand divided by what the pool can serve while requests arrive, nights left out "
                      "(default 2)")
    parser.add_argument("--max-gpus", type=int, default=1, help="largest pod (whole GPUs) taken from the trace")
    parser.add_argument("--pods", type=Path, default=DEFAULT_PODS,
                        help="openb_pod_list_default.csv of the Alibaba GPU trace v2023")
    parser.add_argument("--out", required=True, type=Path, help="folder for trace.csv and alliance.yaml")


# the ScenarioSpec field each option sets, so that an error names the option to change
FLAGS = {
    "county_schools": "--county", "urban_schools": "--urban", "days": "--days", "seed": "--seed",
    "county_devices": "--county-devices", "county_lessons_per_day": "--county-lessons",
    "county_devices_max": "--county-devices-max", "county_max_milli": "--county-max-milli",
    "urban_students": "--urban-students", "urban_sessions_per_student": "--urban-sessions",
    "bell_offset_max_minutes": "--bell-offset", "patience_s": "--patience", "patience_max_s": "--patience-max",
    "evening_end_h": "--evening-end", "evening_sessions_per_student": "--evening-sessions",
    "flood_schools": "--flood-schools", "flood_days": "--flood-days", "flood_factor": "--flood-factor",
    "gpus": "--gpus", "oversubscription": "--oversubscription", "pools": "--pools",
    "sliced_share": "--sliced-share", "slices_per_gpu": "--slices-per-gpu", "reserved_lessons": "--reserved-lessons",
    "unused_reservations": "--unused-reservations", "reservation_share": "--reservation-share",
}


def _days(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write day numbers counted from 0, comma-separated, e.g. 1,3")


def spec_from(args: argparse.Namespace) -> ScenarioSpec:
    return ScenarioSpec(
        county_schools=args.county, urban_schools=args.urban, days=args.days, seed=args.seed,
        county_devices=args.county_devices, county_lessons_per_day=args.county_lessons,
        county_devices_max=args.county_devices_max, county_max_milli=args.county_max_milli,
        urban_students=args.urban_students, urban_sessions_per_student=args.urban_sessions,
        bell_offset_max_minutes=args.bell_offset, patience_s=args.patience, patience_max_s=args.patience_max,
        evening_end_h=args.evening_end, evening_sessions_per_student=args.evening_sessions,
        flood_schools=args.flood_schools, flood_days=args.flood_days, flood_factor=args.flood_factor,
        gpus=args.gpus, oversubscription=args.oversubscription, pools=args.pools, sliced_share=args.sliced_share,
        slices_per_gpu=args.slices_per_gpu, reserved_lessons=args.reserved_lessons,
        unused_reservations=args.unused_reservations, reservation_share=args.reservation_share,
    )


def with_flags(message: str) -> str:
    """The spec's message, each problem followed by the options that set the fields it names."""
    out = []
    for problem in message.split("; "):
        named = [flag for name, flag in FLAGS.items() if re.search(rf"(?<![\w-]){name}(?!\w)", problem)]
        out.append(f"{problem} (option {', '.join(named)})" if named else problem)
    return "; ".join(out)


def run(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    try:
        spec.check()
        pods = load_pods(args.pods, args.max_gpus)
        scenario = generate(spec, pods)
    except PodsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {with_flags(str(exc))}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_trace(args.out / "trace.csv", scenario.rows)
    (args.out / "alliance.yaml").write_text(alliance_yaml(scenario, spec))
    pools = ", ".join(f"{pid} {n} GPUs" + (f" ({sliced} MIG-sliced)" if sliced else "")
                      for pid, n, sliced in scenario.pools)
    booked = (f"; {len(scenario.reservations)} reservations "
              f"({sum(1 for r in scenario.reservations if not r[-1])} left unused)" if scenario.reservations else "")
    print(f"{len(scenario.rows)} requests from {len(scenario.schools)} schools over {spec.days} day(s); "
          f"pool of {scenario.gpus} GPUs; demand {scenario.demand_over_capacity:.2f} x capacity{booked}")
    if len(scenario.pools) > 1 or any(sliced for _, _, sliced in scenario.pools):
        print(f"pools: {pools}")
    print(f"wrote {args.out / 'trace.csv'}, {args.out / 'alliance.yaml'}")
    return 0
