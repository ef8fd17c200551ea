"""Speed of the fair-share allocator: a big trace replay, and the latency of one admission decision.

(a) replay: a school-timetable scenario (``quota.simulator.scenario``: 60 % county, 40 %
    urban schools) of --requests requests over --schools schools, its pool sized so that
    demand is --oversubscription times capacity. A child process generates it and writes
    the trace CSV; this process reads it as ``gpu-commons simulate`` does (timed apart) and
    replays it. Only ``quota.simulator.engine.replay`` is timed, with ``explain=False`` (no
    queue positions or wait estimates, as ``gpu-commons simulate --no-explain``) and the
    student asking again after a stop (the default); the offline optimum, the metrics and
    the plots are not run. (Generating a million rows in the replaying process leaves its
    memory fragmented, which slows the replay by about a tenth: ``--in-process`` measures
    that way, as this benchmark did before 2026-11-30.)
(b) admission: an allocator with --sessions active sessions across --schools schools in a
    full pool, then --decisions calls of ``Allocator.submit`` (one request each, from a
    random school; between two of them a random session ends, so the number of active
    sessions stays put and the queue keeps moving). Prints the latency of each call:
    p50, p99 and max (wall clock, and the thread's CPU time, which other work on the
    machine disturbs less), with and without the queue position and wait estimate, for two
    ways of filling the pool: *spread*, its sessions arriving evenly over --fill-minutes as
    in a school day, and *burst*, all of them within --burst-seconds, so that the lent
    leases among them (``--policy fair-lent``) end in the same few calls at every lent
    lease length; the lease ends decided per call are printed too. Also times
    rebuilding that allocator from its sessions and queue (``resume``, ``wait_again``,
    ``advance``), which the quota service does before each decision.

Targets (issue 3): (a) 1,000,000 requests over 10,000 schools in under 60 s on 2 cores;
(b) p99 under 1 ms with 10,000 active sessions. The figures go into docs/fairshare.md.
Not part of the test suite.

    .venv/bin/python benchmarks/fairshare_speed.py --requests 1000000 --schools 10000
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import multiprocessing
import platform
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quota.fairshare import Allocator, Config, PoolSpec, Request, SchoolSpec, fcfs_config  # noqa: E402
from quota.simulator.engine import replay  # noqa: E402
from quota.simulator.scenario import DEFAULT_PODS, ScenarioSpec, generate, load_pods, open_seconds  # noqa: E402
from quota.simulator.trace import read_trace, write_trace  # noqa: E402



def alliance_defaults() -> Config:
    """What an alliance file with the default fairshare settings runs (lent leases, 10 min half-life):
    the quota service's and the simulator's configuration."""
    from quota.alliance import parse_alliance
    from quota.allocator_inputs import config_from

    minimal = {"tiers": {"t": {"weight": 1}}, "pools": [{"id": "p", "gpus": 1}], "schools": [{"id": "s", "tier": "t"}]}
    return config_from(parse_alliance(minimal))


# fair: Config() (full leases and the rebalance); fair-lent: the alliance file's defaults
POLICIES = {"fair": Config, "fair-lent": alliance_defaults, "fcfs": fcfs_config,
            "fair-no-rebalance": lambda: Config(rebalance=False)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def big_scenario(requests: int, schools: int, oversubscription: float, seed: int, pods_path: Path):
    """Enough school days of the default timetable for ``requests``, cut to exactly that many."""
    county = round(schools * 0.6)
    spec = ScenarioSpec(county_schools=county, urban_schools=schools - county, seed=seed,
                        oversubscription=oversubscription)
    per_day = (county * spec.county_lessons_per_day * spec.county_devices
               + (schools - county) * spec.urban_students * spec.urban_sessions_per_student)
    spec = dataclasses.replace(spec, days=max(1, math.ceil(requests / per_day)))
    scenario = generate(spec, load_pods(pods_path))
    scenario.rows = scenario.rows[:requests]
    # size the pool again for the rows kept (the cut drops the end of the last day)
    arrivals = [r[0] for r in scenario.rows]
    asked = sum(math.ceil(r[4] / 1000) * 1000 * r[3] for r in scenario.rows)
    scenario.gpus = max(1, math.floor(asked / (1000 * open_seconds(arrivals) * oversubscription)))
    scenario.demand_over_capacity = asked / (1000 * scenario.gpus * open_seconds(arrivals))
    return spec, scenario


def write_scenario(args: argparse.Namespace, path: Path) -> dict:
    """Generate the replay's scenario and write its trace to ``path``; returns the rest of
    what the replay needs (run in a child process, see the module's docstring)."""
    began = time.perf_counter()
    spec, scenario = big_scenario(args.requests, args.schools, args.oversubscription, args.seed, args.pods)
    generated_s = time.perf_counter() - began
    write_trace(path, scenario.rows)
    return {
        "schools": [(school, tier, spec.tier_weights[tier]) for school, tier in scenario.schools],
        "gpus": scenario.gpus, "days": spec.days, "demand_over_capacity": scenario.demand_over_capacity,
        "generate_seconds": generated_s,
    }


def bench_replay(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.csv"
        if args.in_process:
            made = write_scenario(args, path)
        else:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
                made = child.submit(write_scenario, args, path).result()
        began = time.perf_counter()
        trace = read_trace(path)
        read_s = time.perf_counter() - began
    schools = [SchoolSpec(school, tier, weight) for school, tier, weight in made["schools"]]
    pools = [PoolSpec("uni-a", made["gpus"])]
    gc.collect()
    began, began_cpu = time.perf_counter(), time.process_time()
    result = replay(trace, pools, schools, POLICIES[args.policy](), explain=False)
    replay_s = time.perf_counter() - began
    cpu_s = time.process_time() - began_cpu  # less sensitive than the wall clock to other work on the machine
    return {
        "requests": len(trace), "schools": len(schools), "days": made["days"], "gpus": made["gpus"],
        "demand_over_capacity": round(made["demand_over_capacity"], 3), "policy": args.policy,
        "generated_in": "this process" if args.in_process else "a child process",
        "generate_seconds": round(made["generate_seconds"], 2), "read_seconds": round(read_s, 2),
        "replay_seconds": round(replay_s, 2),
        "replay_cpu_seconds": round(cpu_s, 2), "python": f"{sys.executable} ({platform.python_version()})",
        "requests_per_second": round(len(trace) / replay_s), "outcomes": result.counts, "stops": result.stops,
        "capacity_violations": result.capacity_violations,
    }


def bench_admission(args: argparse.Namespace, explain: bool, fill_s: float) -> dict:
    """``fill_s``: the pool of --sessions and the queue behind it (a tenth as many) arrive
    at an even rate over this many seconds of the allocator's clock before the timed calls."""
    rng = random.Random(args.seed)
    county = round(args.schools * 0.6)
    schools = [SchoolSpec(f"c{k:05d}", "county", 2.0) for k in range(county)]
    schools += [SchoolSpec(f"u{k:05d}", "urban", 1.0) for k in range(args.schools - county)]
    alloc = Allocator([PoolSpec("uni-a", args.sessions)], schools, POLICIES[args.policy]())
    now = 0.0
    running: list[str] = []
    serial = 0

    def request() -> Request:
        nonlocal serial
        serial += 1
        school = rng.choice(schools).id
        return Request(f"r{serial}", f"{school}-s{rng.randrange(40)}", school, 1000)

    def track(actions) -> None:
        for action in actions:
            if action.kind == "admit":
                running.append(action.session_id)
            elif action.kind == "stop":
                running.remove(action.session_id)

    step = fill_s / (args.sessions + args.sessions // 10)
    while len(running) < args.sessions:  # fill the pool: every request is admitted at once
        now += step
        decision, actions = alloc.submit(request(), now, explain=False)
        track([decision, *actions])
    for _ in range(args.sessions // 10):  # and a queue behind it
        now += step
        decision, actions = alloc.submit(request(), now, explain=False)
        track([decision, *actions])
    latencies, cpu, ends = [], [], []
    for _ in range(args.decisions):
        now += 1.0
        ended = running.pop(rng.randrange(len(running)))
        track(alloc.release(ended, now))
        now += 1.0
        r = request()
        t0, c0 = time.perf_counter(), time.thread_time()
        decision, actions = alloc.submit(r, now, explain=explain)
        latencies.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        ends.append(sum(1 for a in actions if a.kind in ("renew", "stop")))  # lease ends decided in the call
        track([decision, *actions])
    return {
        "explain": explain, "fill_seconds": fill_s, "active_sessions": len(alloc.sessions), "waiting": len(alloc.waiting),
        "schools": len(schools), "decisions": len(latencies),
        "p50_ms": round(1000 * percentile(latencies, 50), 3), "p99_ms": round(1000 * percentile(latencies, 99), 3),
        "max_ms": round(1000 * max(latencies), 3),
        "cpu_p50_ms": round(1000 * percentile(cpu, 50), 3), "cpu_p99_ms": round(1000 * percentile(cpu, 99), 3),
        "cpu_max_ms": round(1000 * max(cpu), 3),
        "lease_ends_mean": round(sum(ends) / len(ends), 2), "lease_ends_max": max(ends),
        "rebuild_ms": round(1000 * min(rebuild(alloc, now) for _ in range(3)), 1),
    }


def rebuild(alloc: Allocator, now: float) -> float:
    """Seconds to build the same allocator again from its running sessions and its queue."""
    t0 = time.perf_counter()
    again = Allocator(alloc.pools, alloc.schools, alloc.config, start=now)
    for session in sorted(alloc.sessions.values(), key=lambda s: (s.start, s.seq)):
        again.resume(session.request, alloc.pools[session.pool_index].id, session.start, session.lease_end,
                     session.stop_at, session.reservation)
    for waiting in sorted(alloc.waiting.values(), key=lambda w: w.seq):
        again.wait_again(waiting.request, waiting.arrival, now)
    again.advance(now)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests in the replayed trace")
    parser.add_argument("--schools", type=int, default=10_000, help="schools (60 %% county, 40 %% urban)")
    parser.add_argument("--oversubscription", type=float, default=2.0, help="demand / capacity of the replayed trace")
    parser.add_argument("--policy", choices=list(POLICIES), default="fair", help="allocator configuration replayed and deciding the admissions")
    parser.add_argument("--sessions", type=int, default=10_000, help="active sessions for the admission benchmark")
    parser.add_argument("--decisions", type=int, default=2000, help="submit calls timed")
    parser.add_argument("--fill-minutes", type=float, default=60.0,
                        help="admission benchmark: its sessions and queue arrive evenly over this long (real traffic)")
    parser.add_argument("--burst-seconds", type=float, default=110.0,
                        help="admission benchmark, second figure: the same arrivals within this many seconds, so that "
                             "lent leases among them end together")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pods", type=Path, default=DEFAULT_PODS,
                        help="openb_pod_list_default.csv of the Alibaba GPU trace")
    parser.add_argument("--only", choices=["replay", "admission"], help="run one of the two")
    parser.add_argument("--in-process", action="store_true",
                        help="generate the replay's trace in this process (slower replay, see above)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures: dict = {}
    if args.only != "admission":
        r = figures["replay"] = bench_replay(args)
        print(f"replay ({r['policy']}): {r['requests']:,} requests, {r['schools']:,} schools, {r['days']} days, "
              f"{r['gpus']:,} GPUs, demand {r['demand_over_capacity']} x capacity")
        print(f"  {r['python']}")
        print(f"  generate {r['generate_seconds']} s (in {r['generated_in']}); read the CSV {r['read_seconds']} s; "
              f"replay {r['replay_seconds']} s ({r['replay_cpu_seconds']} s CPU) "
              f"({r['requests_per_second']:,} requests/s); outcomes {r['outcomes']}; stops {r['stops']}; "
              f"capacity violations {r['capacity_violations']}")
    if args.only != "replay":
        fills = {"spread": args.fill_minutes * 60, "burst": args.burst_seconds}
        figures["admission"] = [dict(bench_admission(args, explain, fill_s), fill=fill)
                                for fill, fill_s in fills.items() for explain in (False, True)]
        for a in figures["admission"]:
            print(f"admission ({a['fill']}: filled over {a['fill_seconds']:g} s; explain={a['explain']}): "
                  f"{a['active_sessions']:,} active sessions, {a['waiting']:,} waiting, {a['schools']:,} schools: "
                  f"p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms, max {a['max_ms']} ms over {a['decisions']:,} submits "
                  f"(CPU time: p50 {a['cpu_p50_ms']}, p99 {a['cpu_p99_ms']}, max {a['cpu_max_ms']} ms); "
                  f"lease ends per call: mean {a['lease_ends_mean']}, max {a['lease_ends_max']}; "
                  f"rebuilding it: {a['rebuild_ms']} ms")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
