"""What the quota step adds to the start of a workspace.

Starts two real platforms side by side (hub + proxy + quota service, tests/stack.py): one
with the default ``LocalQuotaSpawner`` (ask the quota service for a lease, then start the
sandboxed JupyterLab), one with the plain ``SandboxedLocalSpawner`` (the same sandboxed
JupyterLab, no lease). The same student then starts and stops a workspace through the
hub's REST API, alternating between the two, so both see the same machine load. Prints the
time from the start request to the server being ready, and the difference; the goal is
that the quota step adds less than 5 %. Not part of the test suite; needs root (the
sandbox), bubblewrap and the proxy (`make install-test`).

    .venv/bin/python benchmarks/spawn_overhead.py --rounds 8
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spawner.quota_client import QuotaClient  # noqa: E402
from tests.hub_client import log_in  # noqa: E402
from tests.stack import make_stack  # noqa: E402

ALLIANCE = """
name: Spawn benchmark alliance
tiers: {county: {weight: 2}}
pools:
  - {id: bench-pool, gpus: 2, sliced_gpus: 1, slices_per_gpu: 2, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
"""

STUDENT = "c01-s1"


def plain_spawner_config(path: Path, data_dir: Path) -> Path:
    """Hub settings (YAML, by class) that swap in the spawner without the quota step."""
    path.write_text(
        "JupyterHub:\n  spawner_class: spawner.local.SandboxedLocalSpawner\n"
        f"SandboxedLocalSpawner:\n  homes_dir: {data_dir / 'homes'}\n"
    )
    return path


def time_one_start(student, profile: str) -> float:
    started = time.perf_counter()
    event = student.start(profile)
    elapsed = time.perf_counter() - started
    if not event.get("ready"):
        raise RuntimeError(f"the workspace did not start: {event.get('message')}")
    student.stop()
    return elapsed


def time_quota_step(stack, profile: str, calls: int) -> list[float]:
    """The quota step alone, as the spawner makes it: ask for a lease, later release it
    (the same client and calls; the hub's event loop is not in the way)."""
    import asyncio
    import logging
    import uuid

    async def run() -> list[float]:
        client = QuotaClient(stack.quota_url, stack.quota_token, 10.0, logging.getLogger("bench"))
        spent = []
        for _ in range(calls):
            started = time.perf_counter()
            lease = await client.request_lease(STUDENT, "c01", profile, uuid.uuid4().hex)
            await client.release_lease(lease.id)
            spent.append(time.perf_counter() - started)
        return spent

    return asyncio.run(run())


STAMP = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (.*)$")


def phases(hub_log: Path) -> dict[str, list[float]]:
    """Where each start's time went, from the hub's log: the quota step (asking for the lease
    until it is granted), the sandboxed JupyterLab coming up (spawned until it listens), and
    the hub noticing it (its readiness polls back off with random jitter, up to 5 s apart)."""
    from datetime import datetime

    found: dict[str, list[float]] = {"quota step": [], "JupyterLab up": [], "hub notices": []}
    asked = spawned = listening = None
    for line in hub_log.read_text(errors="replace").splitlines():
        match = STAMP.match(line)
        if not match:
            continue
        at, text = datetime.fromisoformat(match.group(1)).timestamp(), match.group(2)
        if f"{STUDENT}/default: Asking for" in text:
            asked = at
        elif "granted" in text and f"{STUDENT}/default:" in text and asked is not None:
            found["quota step"].append(at - asked)
            asked = None
        elif "Spawning /usr/bin/bwrap" in text:
            spawned = at
        elif text.startswith("ServerApp] http://127.0.0.1") and spawned is not None:
            found["JupyterLab up"].append(at - spawned)
            listening, spawned = at, None
        elif f"User {STUDENT} took" in text and listening is not None:
            found["hub notices"].append(at - listening)
            listening = None
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="starts per spawner (plus one warm-up each)")
    parser.add_argument("--profile", default="gpu-slice", help="profile the quota spawner asks a lease for")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="spawn-bench-"))
    alliance = root / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    plain_dir = root / "plain"
    plain_dir.mkdir()
    stacks = {
        "with quota (LocalQuotaSpawner)": make_stack(root / "quota", alliance),
        "without quota (SandboxedLocalSpawner)": make_stack(
            plain_dir, alliance, ["--config", str(plain_spawner_config(root / "plain.yaml", plain_dir))]
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in stacks}
    quota_step: list[float] = []
    try:
        students = {}
        for name, stack in stacks.items():
            stack.start()
            students[name] = log_in(stack, STUDENT)
        for name in stacks:  # warm-up: first imports, first home directory
            time_one_start(students[name], args.profile)
        for round_ in range(args.rounds):
            order = list(stacks) if round_ % 2 == 0 else list(reversed(stacks))
            for name in order:
                times[name].append(time_one_start(students[name], args.profile))
                print(f"round {round_ + 1}: {name}: {times[name][-1]:.2f} s", flush=True)
        quota_step = time_quota_step(next(iter(stacks.values())), args.profile, 50)
    finally:
        for stack in stacks.values():
            stack.stop()

    breakdown = {}
    for name, stack in stacks.items():
        breakdown[name] = {phase: {"median_s": statistics.median(values), "mean_s": statistics.fmean(values), "n": len(values)}
                           for phase, values in phases(stack.log_path).items() if values}
    summary = {
        name: {"median_s": statistics.median(values), "mean_s": statistics.fmean(values),
               "min_s": min(values), "max_s": max(values), "stdev_s": statistics.stdev(values) if len(values) > 1 else 0.0,
               "runs": values}
        for name, values in times.items()
    }
    with_quota, without = (summary[name] for name in stacks)
    added = {
        "median_s": with_quota["median_s"] - without["median_s"],
        "median_percent": 100 * (with_quota["median_s"] / without["median_s"] - 1),
        "mean_percent": 100 * (with_quota["mean_s"] / without["mean_s"] - 1),
        "quota_calls_alone_median_ms": 1000 * statistics.median(quota_step),
        "quota_calls_alone_p99_ms": 1000 * sorted(quota_step)[int(0.99 * (len(quota_step) - 1))],
        "quota_calls_alone_percent_of_plain_median": 100 * statistics.median(quota_step) / without["median_s"],
    }
    print(json.dumps({"profile": args.profile, "spawners": summary, "phases_from_hub_log": breakdown,
                      "quota_step_adds": added}, indent=2))
    verdict = "met" if added["median_percent"] < 5 else "MISSED"
    print(f"quota step adds {added['median_s'] * 1000:.0f} ms = {added['median_percent']:.1f} % of the median start "
          f"(goal < 5 %: {verdict}); its HTTP calls alone (request + release) take "
          f"{added['quota_calls_alone_median_ms']:.0f} ms = {added['quota_calls_alone_percent_of_plain_median']:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
