"""A school day of GPU traffic that exercises every rule of the allocator, for the test
that the quota service and the simulator decide the same.

Two pools (whole GPUs; fully MIG-sliced GPUs), county and urban schools, profiles with
their own lease lengths. Urban students ask all day (some ask twice at once: caps); one
urban school has a small GPU-hour budget and one county school a per-student budget;
county classes arrive within minutes of the bell, one into its class reservation, one
without one; one reservation is never used. Sessions longer than a lease are renewed or
ended; borrowed sessions are reclaimed for county classes; students give up after a few
minutes in the queue. Every time is a whole second, so the service's clock (microseconds)
holds them exactly.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from quota.simulator.trace import write_trace

DAY_START = 1788249600  # 2026-09-01 08:00 UTC
HOUR = 3600


def _students(school: str, count: int) -> list[str]:
    return [f"{school}-s{i:02d}" for i in range(1, count + 1)]


def alliance_document() -> dict:
    schools = []
    for school, tier, count, extra in (
        ("c01", "county", 24, {"classes": [{"id": "c01-ai", "students": _students("c01", 24)[:20]}]}),
        ("c02", "county", 24, {"student_budget_gpu_hours": 0.2,
                               "classes": [{"id": "c02-club", "students": _students("c02", 24)[20:]}]}),
        ("c03", "county", 16, {}),
        ("u01", "urban", 40, {"budget_gpu_hours": 14.0}),
        ("u02", "urban", 40, {"max_sessions_per_student": 2}),
        ("u03", "urban", 40, {}),
    ):
        schools.append({"id": school, "tier": tier, "students": _students(school, count), **extra})
    return {
        "name": "Equivalence alliance",
        "tiers": {"county": {"weight": 2}, "urban": {"weight": 1}},
        "fairshare": {"warning_minutes": 2, "min_runtime_minutes": 5, "max_lease_minutes": 240,
                      "max_sessions_per_student": 1},
        "pools": [
            {"id": "uni-a", "gpus": 8, "simulated": True},
            {"id": "uni-b", "gpus": 4, "sliced_gpus": 4, "slices_per_gpu": 4, "simulated": True},
        ],
        "profiles": [
            {"id": "cpu", "display_name": "CPU", "gpu": "none"},
            {"id": "gpu-slice", "display_name": "A GPU slice", "gpu": "slice", "max_minutes": 30},
            {"id": "gpu-whole", "display_name": "A whole GPU", "gpu": "whole", "max_minutes": 45},
        ],
        "schools": schools,
        "reservations": [
            # the AI class's lesson: half the sliced pool from 10:00 to 11:00
            {"id": "c01-ai-lesson", "pool": "uni-b", "school": "c01", "group": "c01-ai", "slices": 4,
             "start": DAY_START + 2 * HOUR, "end": DAY_START + 3 * HOUR},
            # the club booked a whole GPU and never came
            {"id": "c02-club-unused", "pool": "uni-a", "school": "c02", "group": "c02-club", "slices": 1,
             "start": DAY_START + 5 * HOUR, "end": DAY_START + 6 * HOUR},
        ],
    }


def trace_rows(seed: int = 11) -> list[tuple]:
    """``(arrival_s, user, school, duration_s, gpu_milli, patience_s, group, profile)`` rows."""
    rng = random.Random(seed)
    milli = {"gpu-slice": 250, "gpu-whole": 1000}
    group_of = {**{s: "c01-ai" for s in _students("c01", 24)[:20]},
                **{s: "c02-club" for s in _students("c02", 24)[20:]}}
    rows = []

    def ask(t: float, user: str, school: str, work: float, profile: str, patience: float) -> None:
        rows.append((int(t), user, school, int(max(60, work)), milli[profile], int(patience),
                     group_of.get(user, ""), profile))

    for school in ("u01", "u02", "u03"):  # urban: all day, the real-trace mix of short and long
        students = _students(school, 40)
        t = DAY_START
        while t < DAY_START + 9 * HOUR:
            t += rng.expovariate(1 / 50)
            profile = "gpu-whole" if rng.random() < 0.35 else "gpu-slice"
            ask(t, rng.choice(students), school, rng.lognormvariate(5.6, 1.1), profile, rng.uniform(300, 900))
    for school, bell in (("c01", DAY_START + 2 * HOUR), ("c02", DAY_START + 4 * HOUR),
                         ("c03", DAY_START + 1 * HOUR), ("c03", DAY_START + 6 * HOUR)):
        students = _students(school, 24 if school != "c03" else 16)
        if school == "c01":
            students = students[:20]  # the AI class
        for user in students:  # a class at the bell: within 4 minutes, 40-50 minutes of work
            profile = "gpu-whole" if school == "c03" and rng.random() < 0.3 else "gpu-slice"
            ask(bell + rng.uniform(0, 240), user, school, rng.uniform(2400, 3000), profile, rng.uniform(480, 600))
    for school in ("c01", "c02", "c03"):  # county students after class, a few
        students = _students(school, 16)
        for _ in range(30):
            ask(DAY_START + rng.uniform(0, 9 * HOUR), rng.choice(students), school, rng.lognormvariate(7.0, 0.6),
                "gpu-slice", rng.uniform(300, 600))
    rows.sort(key=lambda row: row[0])
    return rows


def write_scenario(folder: Path, seed: int = 11) -> tuple[Path, Path]:
    """Write ``alliance.yaml`` and ``trace.csv`` into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    alliance = folder / "alliance.yaml"
    alliance.write_text(yaml.safe_dump(alliance_document(), sort_keys=False))
    trace = folder / "trace.csv"
    write_trace(trace, trace_rows(seed))
    return alliance, trace
