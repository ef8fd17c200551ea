"""School-timetable demand for the simulator, sized from a real GPU cluster trace.

County schools have GPU lessons at fixed class periods: a class of a few devices logs in
within the first minutes of the period (a burst) and every session ends by the end of
the lesson. Each county school keeps its own bell times: its timetable starts up to
``bell_offset_max_minutes`` after the alliance's periods (in 5-minute steps), as schools
that plan their day around their own bus routes do. Urban schools have more students and
steadier demand: sessions start at random through the whole school day. Each session's
GPU share and length are drawn together from the pods of the Alibaba GPU trace
(``../shared/traces/alibaba-gpu-v2023``, ``openb_pod_list_default.csv``): a real request
size with its real lifetime, cut to the lesson (county) or to ``max_session_s`` (urban).

The scenario also sizes the pool: with ``gpus`` unset, the whole number of GPUs nearest
to the demand divided by ``oversubscription`` times the time requests arrive in, from
the first to the last request of each day with the nights left out (for one day, the
simulator's window). :func:`generate` is deterministic for a seed.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quota.simulator.trace import Trace

DEFAULT_PODS = Path(__file__).resolve().parents[2].parent / "shared/traces/alibaba-gpu-v2023/openb_pod_list_default.csv"
DAY_S = 86400.0


class PodsError(ValueError):
    """The pod trace cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Pods:
    """Real GPU requests: share in milli-GPU and lifetime in seconds, row by row."""

    milli: np.ndarray
    lifetime_s: np.ndarray
    source: str


def load_pods(path: str | Path = DEFAULT_PODS, max_gpus: int = 1) -> Pods:
    """GPU pods of the Alibaba trace asking for at most ``max_gpus`` whole GPUs.

    A single-GPU pod asks for ``gpu_milli`` of it; a multi-GPU pod for ``num_gpu`` whole
    ones. Lifetime = deletion - creation; pods still running when the trace ends are cut
    there (as the trace's README says). Pods with no lifetime are left out."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise PodsError(f"{path}: cannot read the pod trace ({exc.strerror}); pass --pods PATH") from None
    milli: list[int] = []
    life: list[float] = []
    with handle:
        reader = csv.DictReader(handle)
        need = {"num_gpu", "gpu_milli", "creation_time", "deletion_time"}
        if not need <= set(reader.fieldnames or ()):
            raise PodsError(f"{path}: line 1: expected the columns {sorted(need)} of openb_pod_list_default.csv")
        rows = list(reader)
    end = max((float(r["deletion_time"]) for r in rows if r["deletion_time"]), default=0.0)
    for row in rows:
        gpus = int(row["num_gpu"] or 0)
        if gpus < 1 or gpus > max_gpus:
            continue
        size = int(row["gpu_milli"] or 0) if gpus == 1 else gpus * 1000
        lifetime = float(row["deletion_time"] or end) - float(row["creation_time"] or 0)
        if size > 0 and lifetime > 0:
            milli.append(size)
            life.append(lifetime)
    if not milli:
        raise PodsError(f"{path}: no GPU pods with 1 to {max_gpus} GPUs and a positive lifetime")
    return Pods(np.array(milli, dtype=np.int64), np.array(life, dtype=float), str(path))


@dataclass(frozen=True)
class ScenarioSpec:
    county_schools: int = 6
    urban_schools: int = 4
    days: int = 1
    seed: int = 1
    # county: GPU lessons at fixed periods (hours of the day), a burst at each
    periods_h: tuple[float, ...] = (8.0, 9.0, 10.0, 11.0, 14.0, 15.0)
    lesson_minutes: float = 45.0
    county_lessons_per_day: int = 3  # of the periods, chosen per school and day
    county_devices: int = 8  # devices (students at a GPU) per lesson
    login_spread_s: float = 300.0  # the class logs in within this long of the bell
    bell_offset_max_minutes: float = 30.0  # each county school's own bell times: up to this late
    # urban: steady demand through the school day
    urban_students: int = 40
    urban_sessions_per_student: float = 1.0  # per day, on average
    day_start_h: float = 8.0
    day_end_h: float = 17.0
    max_session_s: float = 3 * 3600.0
    patience_s: float = 900.0
    # the pool
    gpus: int | None = None  # None: sized from the demand and ``oversubscription``
    oversubscription: float = 2.0
    tier_weights: dict[str, float] = field(default_factory=lambda: {"county": 2.0, "urban": 1.0})

    def check(self) -> None:
        problems = []
        if self.county_schools < 0 or self.urban_schools < 0 or self.county_schools + self.urban_schools == 0:
            problems.append("county_schools and urban_schools must be 0 or more, and not both 0")
        if self.days < 1:
            problems.append("days must be at least 1")
        if not 0 < self.county_lessons_per_day <= len(self.periods_h):
            problems.append(f"county_lessons_per_day must be 1 to {len(self.periods_h)} (the number of periods)")
        if self.gpus is not None and self.gpus < 1:
            problems.append("gpus must be at least 1 (or left unset to size the pool from the demand)")
        if self.bell_offset_max_minutes < 0:
            problems.append("bell_offset_max_minutes must be 0 or more")
        if self.oversubscription <= 0:
            problems.append("oversubscription must be > 0")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class Scenario:
    rows: list[tuple]  # (arrival_s, user, school, duration_s, gpu_milli, patience_s, group), by arrival
    schools: list[tuple[str, str]]  # (id, tier)
    gpus: int
    demand_over_capacity: float  # GPU-seconds asked / GPU-seconds the pool has while requests arrive

    def trace(self) -> Trace:
        """The rows as the simulator's :class:`Trace`, without a trip through a CSV file."""
        columns = list(zip(*self.rows)) or [()] * 7
        arrival, user, school, duration, milli, patience, group = (list(c) for c in columns)
        return Trace(arrival, user, school, duration, milli, patience, group)


def generate(spec: ScenarioSpec, pods: Pods) -> Scenario:
    spec.check()
    rng = np.random.default_rng(spec.seed)
    columns: list[tuple] = []  # per school and day: arrays (arrival, duration, milli, user index, group)
    schools = [(f"c{k:05d}" if spec.county_schools > 9999 else f"c{k:02d}", "county")
               for k in range(1, spec.county_schools + 1)]
    schools += [(f"u{k:05d}" if spec.urban_schools > 9999 else f"u{k:02d}", "urban")
                for k in range(1, spec.urban_schools + 1)]
    lesson_s = spec.lesson_minutes * 60
    offset_steps = int(spec.bell_offset_max_minutes // 5)
    for school, tier in schools:
        bell_offset = 300.0 * rng.integers(0, offset_steps + 1) if tier == "county" else 0.0
        for day in range(spec.days):
            base = day * DAY_S
            if tier == "county":
                chosen = np.sort(rng.choice(len(spec.periods_h), spec.county_lessons_per_day, replace=False))
                n = spec.county_devices * len(chosen)
                period = np.repeat(chosen, spec.county_devices)
                bell = base + bell_offset + np.asarray(spec.periods_h)[period] * 3600
                arrival = bell + rng.uniform(0, spec.login_spread_s, n)
                pick = rng.integers(0, len(pods.milli), n)
                duration = np.minimum(pods.lifetime_s[pick], bell + lesson_s - arrival)
                users = np.tile(np.arange(spec.county_devices), len(chosen))
                groups = [f"period-{p + 1}" for p in period]
            else:
                n = rng.poisson(spec.urban_students * spec.urban_sessions_per_student)
                arrival = base + rng.uniform(spec.day_start_h * 3600, spec.day_end_h * 3600, n)
                pick = rng.integers(0, len(pods.milli), n)
                duration = np.minimum(pods.lifetime_s[pick], spec.max_session_s)
                users = rng.integers(0, spec.urban_students, n)
                groups = [None] * n
            columns.append((school, arrival, duration, pods.milli[pick], users, groups))
    rows = []
    for school, arrival, duration, milli, users, groups in columns:
        for a, d, m, u, g in zip(arrival.tolist(), duration.tolist(), milli.tolist(), users.tolist(), groups):
            rows.append((round(a, 3), f"{school}-s{u}", school, round(d, 3), m, spec.patience_s, g))
    rows.sort(key=lambda r: (r[0], r[2], r[1]))
    open_s = open_seconds([r[0] for r in rows])
    # whole-GPU pool: every request holds whole GPUs
    asked = sum(math.ceil(r[4] / 1000) * 1000 * r[3] for r in rows)
    gpus = spec.gpus or max(1, round(asked / (1000 * max(open_s, 1.0) * spec.oversubscription)))
    ratio = asked / (gpus * 1000 * open_s) if open_s > 0 else math.inf
    return Scenario(rows, schools, gpus, ratio)


def open_seconds(arrivals: list[float]) -> float:
    """Time requests arrive in: first to last arrival of each day, summed (nights left out)."""
    spans: dict[int, list[float]] = {}
    for a in arrivals:
        span = spans.setdefault(int(a // DAY_S), [a, a])
        span[0], span[1] = min(span[0], a), max(span[1], a)
    return sum(last - first for first, last in spans.values())


def alliance_yaml(scenario: Scenario, spec: ScenarioSpec, pool_id: str = "uni-a") -> str:
    """The alliance file the simulator needs for this scenario (tiers, one pool, schools)."""
    lines = [
        f"# Generated by `gpu-commons scenario` (seed {spec.seed}): {spec.county_schools} county and "
        f"{spec.urban_schools} urban schools, {spec.days} day(s)",
        "name: Generated scenario",
        "tiers:",
        *(f"  {tier}: {{weight: {weight:g}}}" for tier, weight in spec.tier_weights.items()),
        "pools:",
        f"  - {{id: {pool_id}, gpus: {scenario.gpus}}}",
        "schools:",
        *(f"  - {{id: {school}, tier: {tier}}}" for school, tier in scenario.schools),
        "# urban students are drawn at random and may overlap themselves: no per-student cap",
        "fairshare: {max_sessions_per_student: null}",
    ]
    return "\n".join(lines) + "\n"
