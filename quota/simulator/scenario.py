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
    """The knobs of the demand model; every one off or at the original model by default, so
    the defaults give the same files as before each knob existed."""

    county_schools: int = 6
    urban_schools: int = 4
    days: int = 1
    seed: int = 1
    # county: GPU lessons at fixed periods (hours of the day), a burst at each
    periods_h: tuple[float, ...] = (8.0, 9.0, 10.0, 11.0, 14.0, 15.0)
    lesson_minutes: float = 45.0
    county_lessons_per_day: int = 3  # of the periods, chosen per school and day
    county_devices: int = 8  # devices (students at a GPU) per lesson
    county_devices_max: int | None = None  # set: each lesson's class size is drawn from county_devices..this
    county_max_milli: int | None = None  # set: county sessions ask only shares of at most this (small shares)
    login_spread_s: float = 300.0  # the class logs in within this long of the bell
    bell_offset_max_minutes: float = 30.0  # each county school's own bell times: up to this late
    # urban: steady demand through the school day
    urban_students: int = 40
    urban_sessions_per_student: float = 1.0  # per day, on average
    day_start_h: float = 8.0
    day_end_h: float = 17.0
    max_session_s: float = 3 * 3600.0
    # quiet evenings: urban students also ask from day_end_h to evening_end_h, at this rate
    evening_end_h: float | None = None
    evening_sessions_per_student: float = 0.0  # per evening, on average
    # exam days: the first ``flood_schools`` urban schools ask ``flood_factor`` times as often on these days
    flood_schools: int = 0
    flood_days: tuple[int, ...] = ()  # 0 = the first day
    flood_factor: float = 4.0
    patience_s: float = 900.0
    patience_max_s: float | None = None  # set: each request's patience is drawn from patience_s..this
    # the pool(s)
    gpus: int | None = None  # None: sized from the demand and ``oversubscription``
    oversubscription: float = 2.0
    pools: int = 1  # the GPUs split over this many pools (uni-a, uni-b, ...)
    sliced_share: float = 0.0  # fraction of each pool's GPUs MIG-sliced (0: whole GPUs only; 1: all sliced)
    slices_per_gpu: int = 7
    # class reservations: teachers book this fraction of the county lessons; of the booked
    # lessons this fraction is left unused (the class does not come)
    reserved_lessons: float = 0.0
    unused_reservations: float = 0.0
    reservation_share: float = 0.25  # a booking holds at most this fraction of its pool's units
    tier_weights: dict[str, float] = field(default_factory=lambda: {"county": 2.0, "urban": 1.0})

    def check(self) -> None:
        """Raise ValueError naming every field that is wrong and what to set instead."""
        problems = []
        if self.county_schools < 0 or self.urban_schools < 0 or self.county_schools + self.urban_schools == 0:
            problems.append("county_schools and urban_schools must be 0 or more, and not both 0")
        if self.days < 1:
            problems.append("days must be at least 1")
        if not 0 < self.county_lessons_per_day <= len(self.periods_h):
            problems.append(f"county_lessons_per_day must be 1 to {len(self.periods_h)} (the number of periods)")
        if self.county_devices < 1:
            problems.append("county_devices must be at least 1 (students at a GPU per lesson)")
        if self.county_devices_max is not None and self.county_devices_max < self.county_devices:
            problems.append(f"county_devices_max ({self.county_devices_max}) must be at least county_devices "
                            f"({self.county_devices}); raise it or leave it unset for classes of one size")
        if self.county_max_milli is not None and self.county_max_milli < 1:
            problems.append("county_max_milli must be at least 1 milli-GPU (or unset for any share)")
        if self.gpus is not None and self.gpus < 1:
            problems.append("gpus must be at least 1 (or left unset to size the pool from the demand)")
        if self.bell_offset_max_minutes < 0:
            problems.append("bell_offset_max_minutes must be 0 or more")
        if self.oversubscription <= 0:
            problems.append("oversubscription must be > 0")
        if self.patience_s < 0:
            problems.append("patience_s must be 0 or more")
        if self.patience_max_s is not None and self.patience_max_s < self.patience_s:
            problems.append(f"patience_max_s ({self.patience_max_s:g}) must be at least patience_s "
                            f"({self.patience_s:g}); raise it or leave it unset for one patience")
        if self.evening_end_h is not None and not self.day_end_h < self.evening_end_h <= 24:
            problems.append(f"evening_end_h must be after day_end_h ({self.day_end_h:g}) and at most 24")
        if self.evening_sessions_per_student < 0:
            problems.append("evening_sessions_per_student must be 0 or more")
        if self.evening_sessions_per_student > 0 and self.evening_end_h is None:
            problems.append("evening_sessions_per_student needs evening_end_h (when the evening ends)")
        if not 0 <= self.flood_schools <= self.urban_schools:
            problems.append(f"flood_schools must be 0 to {self.urban_schools} (the number of urban schools)")
        if any(not 0 <= d < self.days for d in self.flood_days):
            problems.append(f"flood_days must each be 0 to {self.days - 1} (the first day is 0)")
        if self.flood_factor <= 0:
            problems.append("flood_factor must be > 0")
        if self.pools < 1:
            problems.append("pools must be at least 1")
        if self.gpus is not None and self.gpus < self.pools:
            problems.append(f"gpus ({self.gpus}) must be at least pools ({self.pools}): each pool needs a GPU")
        if not 0 <= self.sliced_share <= 1:
            problems.append("sliced_share must be 0 to 1 (the fraction of each pool's GPUs that are MIG-sliced)")
        if not 1 <= self.slices_per_gpu <= 7:
            problems.append("slices_per_gpu must be 1 to 7 (MIG cuts a GPU into at most 7)")
        for name in ("reserved_lessons", "unused_reservations"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be 0 to 1 (a fraction of the lessons)")
        if not 0 < self.reservation_share <= 1:
            problems.append("reservation_share must be > 0 and at most 1 (a fraction of the pool)")
        if problems:
            raise ValueError("; ".join(problems))

    def pool_layout(self, gpus: int) -> list[tuple[str, int, int]]:
        """``(id, gpus, sliced_gpus)`` of each pool for ``gpus`` GPUs in all."""
        layout = []
        for k in range(self.pools):
            n = gpus // self.pools + (1 if k < gpus % self.pools else 0)
            sliced = round(n * self.sliced_share)
            if self.sliced_share > 0:
                sliced = max(1, sliced)
            if self.sliced_share < 1 and n > 1:
                sliced = min(sliced, n - 1)
            layout.append((f"uni-{chr(ord('a') + k)}", n, min(sliced, n)))
        return layout

    def footprint_milli(self, milli: int) -> int:
        """What a request of ``milli`` holds in the smallest unit the pools have."""
        unit = 1000 // self.slices_per_gpu if self.sliced_share > 0 else 1000
        return -(-milli // unit) * unit


@dataclass
class Scenario:
    rows: list[tuple]  # (arrival_s, user, school, duration_s, gpu_milli, patience_s, group), by arrival
    schools: list[tuple[str, str]]  # (id, tier)
    gpus: int
    demand_over_capacity: float  # GPU-seconds asked / GPU-seconds the pool has while requests arrive
    pools: list[tuple[str, int, int]] = field(default_factory=list)  # (id, gpus, sliced_gpus)
    # class reservations: (id, pool, school, group, units, start, end, used)
    reservations: list[tuple] = field(default_factory=list)

    def trace(self) -> Trace:
        """The rows as the simulator's :class:`Trace`, without a trip through a CSV file."""
        columns = list(zip(*self.rows)) or [()] * 7
        arrival, user, school, duration, milli, patience, group = (list(c) for c in columns)
        return Trace(arrival, user, school, duration, milli, patience, group)


def generate(spec: ScenarioSpec, pods: Pods) -> Scenario:
    spec.check()
    rng = np.random.default_rng(spec.seed)
    columns: list[tuple] = []  # per school and day: arrays (arrival, duration, milli, user index, group)
    lessons: list[tuple] = []  # (school, day, period, bell, class size, column index)
    schools = [(f"c{k:05d}" if spec.county_schools > 9999 else f"c{k:02d}", "county")
               for k in range(1, spec.county_schools + 1)]
    schools += [(f"u{k:05d}" if spec.urban_schools > 9999 else f"u{k:02d}", "urban")
                for k in range(1, spec.urban_schools + 1)]
    lesson_s = spec.lesson_minutes * 60
    offset_steps = int(spec.bell_offset_max_minutes // 5)
    county_pods = np.arange(len(pods.milli))
    if spec.county_max_milli is not None:
        county_pods = np.flatnonzero(pods.milli <= spec.county_max_milli)
        if not len(county_pods):
            raise ValueError(f"county_max_milli is {spec.county_max_milli} but no pod of {pods.source} asks that "
                             f"little (the smallest asks {int(pods.milli.min())}); raise it")
    flooded = {f"u{k:05d}" if spec.urban_schools > 9999 else f"u{k:02d}" for k in range(1, spec.flood_schools + 1)}
    for school, tier in schools:
        bell_offset = 300.0 * rng.integers(0, offset_steps + 1) if tier == "county" else 0.0
        for day in range(spec.days):
            base = day * DAY_S
            if tier == "county":
                chosen = np.sort(rng.choice(len(spec.periods_h), spec.county_lessons_per_day, replace=False))
                if spec.county_devices_max is None:
                    sizes = np.full(len(chosen), spec.county_devices)
                else:
                    sizes = rng.integers(spec.county_devices, spec.county_devices_max + 1, len(chosen))
                n = int(sizes.sum())
                period = np.repeat(chosen, sizes)
                bell = base + bell_offset + np.asarray(spec.periods_h)[period] * 3600
                arrival = bell + rng.uniform(0, spec.login_spread_s, n)
                pick = county_pods[rng.integers(0, len(county_pods), n)]
                duration = np.minimum(pods.lifetime_s[pick], bell + lesson_s - arrival)
                users = np.concatenate([np.arange(k) for k in sizes]) if n else np.zeros(0, dtype=np.int64)
                groups = [f"period-{p + 1}" for p in period]
                for p, size in zip(chosen.tolist(), sizes.tolist()):
                    lessons.append((school, day, p, base + bell_offset + spec.periods_h[p] * 3600, size, len(columns)))
            else:
                rate = spec.urban_sessions_per_student * (spec.flood_factor if school in flooded
                                                          and day in spec.flood_days else 1.0)
                n = rng.poisson(spec.urban_students * rate)
                arrival = base + rng.uniform(spec.day_start_h * 3600, spec.day_end_h * 3600, n)
                if spec.evening_sessions_per_student > 0:
                    evening = rng.poisson(spec.urban_students * spec.evening_sessions_per_student)
                    arrival = np.concatenate([arrival, base + rng.uniform(spec.day_end_h * 3600,
                                                                          spec.evening_end_h * 3600, evening)])
                    n += evening
                pick = rng.integers(0, len(pods.milli), n)
                duration = np.minimum(pods.lifetime_s[pick], spec.max_session_s)
                users = rng.integers(0, spec.urban_students, n)
                groups = [None] * n
            columns.append((school, arrival, duration, pods.milli[pick], users, groups))
    gpus_fixed = spec.gpus
    reservations, skipped = _book(spec, lessons) if spec.reserved_lessons > 0 else ([], set())
    rows = []
    for k, (school, arrival, duration, milli, users, groups) in enumerate(columns):
        for a, d, m, u, g in zip(arrival.tolist(), duration.tolist(), milli.tolist(), users.tolist(), groups):
            if skipped and (k, g, int(a // DAY_S)) in skipped:
                continue  # a booked lesson the class did not come to
            rows.append((round(a, 3), f"{school}-s{u}", school, round(d, 3), m, spec.patience_s, g))
    rows.sort(key=lambda r: (r[0], r[2], r[1]))
    if spec.patience_max_s is not None:
        draw = np.random.default_rng([spec.seed, 1]).uniform(spec.patience_s, spec.patience_max_s, len(rows))
        rows = [r[:5] + (round(float(p), 1),) + r[6:] for r, p in zip(rows, draw.tolist())]
    open_s = open_seconds([r[0] for r in rows])
    asked = sum(spec.footprint_milli(r[4]) * r[3] for r in rows)
    gpus = gpus_fixed or max(spec.pools, round(asked / (1000 * max(open_s, 1.0) * spec.oversubscription)))
    layout = spec.pool_layout(gpus)
    capacity = sum(_units(n, sliced, spec.slices_per_gpu)[1] for _, n, sliced in layout)
    ratio = asked / (capacity * open_s) if open_s > 0 else math.inf
    booked = _fit_reservations(reservations, layout, spec)
    return Scenario(rows, schools, gpus, ratio, layout, booked)


def _units(gpus: int, sliced: int, slices_per_gpu: int) -> tuple[int, int]:
    """(units a reservation counts in, capacity in milli) of a pool."""
    whole = gpus - sliced
    capacity = whole * 1000 + sliced * slices_per_gpu * (1000 // slices_per_gpu)
    return (whole if whole else sliced * slices_per_gpu), capacity


def _book(spec: ScenarioSpec, lessons: list[tuple]) -> tuple[list[tuple], set[tuple]]:
    """Which county lessons the teacher books, and which booked ones the class skips:
    ``[(school, day, period, bell, size, used)]`` and ``{(column, group, day)}`` of the skipped."""
    rng = np.random.default_rng([spec.seed, 2])
    booked, skipped = [], set()
    for school, day, period, bell, size, column in lessons:
        if rng.uniform() >= spec.reserved_lessons:
            continue
        used = bool(rng.uniform() >= spec.unused_reservations)
        booked.append((school, day, period, bell, size, used))
        if not used:
            skipped.add((column, f"period-{period + 1}", day))
    return booked, skipped


def _fit_reservations(booked: list[tuple], layout: list[tuple[str, int, int]], spec: ScenarioSpec) -> list[tuple]:
    """Bookings as reservations of the first pool, each at most ``reservation_share`` of its
    units and never more than the pool holds at once (a booking that does not fit is not made)."""
    if not booked:
        return []
    pool_id, gpus, sliced = layout[0]
    units, _ = _units(gpus, sliced, spec.slices_per_gpu)
    per_student = 1 if gpus > sliced else -(-min(spec.county_max_milli or 1000, 1000) // (1000 // spec.slices_per_gpu))
    cap = max(1, int(units * spec.reservation_share))
    out: list[tuple] = []
    lesson_s = spec.lesson_minutes * 60
    for school, day, period, bell, size, used in sorted(booked, key=lambda b: (b[3], b[0])):
        want = min(cap, size * per_student)
        start, end = round(bell, 3), round(bell + lesson_s, 3)
        overlap = sum(r[4] for r in out if r[5] < end and start < r[6])
        if overlap + want > units:
            continue
        out.append((f"{school}-d{day + 1}-p{period + 1}", pool_id, school, f"period-{period + 1}", want, start, end,
                    used))
    return out


def open_seconds(arrivals: list[float]) -> float:
    """Time requests arrive in: first to last arrival of each day, summed (nights left out)."""
    spans: dict[int, list[float]] = {}
    for a in arrivals:
        span = spans.setdefault(int(a // DAY_S), [a, a])
        span[0], span[1] = min(span[0], a), max(span[1], a)
    return sum(last - first for first, last in spans.values())


def alliance_yaml(scenario: Scenario, spec: ScenarioSpec, pool_id: str = "uni-a") -> str:
    """The alliance file the simulator needs for this scenario (tiers, pools, schools, and the
    teachers' reservations when the scenario books any)."""
    layout = scenario.pools or [(pool_id, scenario.gpus, 0)]
    pools = []
    for k, (pid, gpus, sliced) in enumerate(layout):
        pid = pool_id if k == 0 and not scenario.pools else pid
        extra = f", sliced_gpus: {sliced}, slices_per_gpu: {spec.slices_per_gpu}" if sliced else ""
        pools.append(f"  - {{id: {pid}, gpus: {gpus}{extra}}}")
    lines = [
        f"# Generated by `gpu-commons scenario` (seed {spec.seed}): {spec.county_schools} county and "
        f"{spec.urban_schools} urban schools, {spec.days} day(s)",
        "name: Generated scenario",
        "tiers:",
        *(f"  {tier}: {{weight: {weight:g}}}" for tier, weight in spec.tier_weights.items()),
        "pools:",
        *pools,
        "schools:",
        *(f"  - {{id: {school}, tier: {tier}}}" for school, tier in scenario.schools),
        "# urban students are drawn at random and may overlap themselves: no per-student cap",
        "fairshare: {max_sessions_per_student: null}",
    ]
    if scenario.reservations:
        lines.append("# county teachers' bookings of their lessons (used: false = the class did not come)")
        lines.append("reservations:")
        for rid, pool, school, group, units, start, end, used in scenario.reservations:
            lines.append(f"  - {{id: {rid}, pool: {pool}, school: {school}, group: {group}, slices: {units}, "
                         f"start: {start:g}, end: {end:g}}}  # used: {str(used).lower()}")
    return "\n".join(lines) + "\n"
