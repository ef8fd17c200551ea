"""Read a demand trace (CSV) for the simulator, checking every line before anything runs.

Columns (header required, any order, extra named columns ignored)::

    arrival_s,user,school,duration_s,gpu_milli[,patience_s][,group][,profile]

``gpu_milli`` is the GPU share asked for (1000 = one whole GPU); ``patience_s`` is how
long the student waits before giving up (default 900 s); ``group`` is the class, for
reservations; ``profile`` (a GPU profile of the alliance file) makes the request the one
the quota service would make for it: one unit of the profile's kind, leases of its
``max_minutes`` (``gpu_milli`` is then only what the optimum counts). Every problem is reported with the file, the line number, the column and
what to write instead; if there is any, nothing is simulated.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from quota.simulator import fits

REQUIRED = ("arrival_s", "user", "school", "duration_s", "gpu_milli")
DEFAULT_PATIENCE_S = 900.0
MAX_ERRORS_SHOWN = 20


class TraceError(ValueError):
    """Mistakes in a trace file, one line each, naming file, line and column."""


@dataclass
class Trace:
    """Requests sorted by arrival (stable), as parallel lists."""

    arrival: list[float] = field(default_factory=list)
    user: list[str] = field(default_factory=list)
    school: list[str] = field(default_factory=list)
    duration: list[float] = field(default_factory=list)
    milli: list[int] = field(default_factory=list)
    patience: list[float] = field(default_factory=list)
    group: list[str | None] = field(default_factory=list)
    profile: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.arrival)

    def sort(self) -> None:
        order = sorted(range(len(self.arrival)), key=self.arrival.__getitem__)
        if all(order[i] == i for i in range(len(order))):
            return
        for name in ("arrival", "user", "school", "duration", "milli", "patience", "group", "profile"):
            column = getattr(self, name)
            setattr(self, name, [column[i] for i in order])


def _number(text: str, column: str, where: str, errors: list[str], integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        errors.append(f"{where}: {column} is {text!r}, which is not {kind}; write {kind} such as {'1000' if integer else '60'}")
        return math.nan
    if not integer and not math.isfinite(value):
        errors.append(f"{where}: {column} is {text!r}; write a finite number of seconds")
        return math.nan
    return value


def read_trace(path: str | Path, schools: set[str] | None = None, profiles: set[str] | None = None,
               limits: dict | None = None) -> Trace:
    """Read and check ``path``; ``schools`` and ``profiles`` (if given) are the ids of the
    alliance's schools and GPU profiles; ``limits`` (:func:`quota.simulator.fits.request_limits`)
    the most a line may ask of the alliance's pools."""
    path = Path(path)
    errors: list[str] = []
    trace = Trace()
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}: the file is empty; the first line must be the header {','.join(REQUIRED)}")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise TraceError(
                f"{path}: line 1: the header lacks {', '.join(missing)}; it must name "
                f"{','.join(REQUIRED)} (and optionally patience_s, group, profile)"
            )
        col = {name: header.index(name) for name in header}
        i_arr, i_user, i_school, i_dur, i_milli = (col[c] for c in REQUIRED)
        i_pat = col.get("patience_s")
        i_group = col.get("group")
        i_profile = col.get("profile")
        width = len(header)
        for lineno, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            where = f"{path}: line {lineno}"
            if len(row) < width:
                errors.append(f"{where}: {len(row)} fields, the header has {width}; fill in every column")
                continue
            if len(row) > width:  # a stray comma would shift every column after it
                errors.append(
                    f"{where}: {len(row)} fields, the header has {width}; remove the extra field(s) "
                    "or put a value that contains a comma in double quotes"
                )
                continue
            arrival = _number(row[i_arr], "arrival_s", where, errors)
            duration = _number(row[i_dur], "duration_s", where, errors)
            milli = _number(row[i_milli], "gpu_milli", where, errors, integer=True)
            patience = DEFAULT_PATIENCE_S
            if i_pat is not None and row[i_pat].strip():
                patience = _number(row[i_pat], "patience_s", where, errors)
                if patience < 0:
                    errors.append(f"{where}: patience_s is {row[i_pat]}; it must be 0 or more seconds")
            if arrival < 0:
                errors.append(f"{where}: arrival_s is {row[i_arr]}; arrivals are seconds from the start, 0 or more")
            if duration < 0:
                errors.append(f"{where}: duration_s is negative ({row[i_dur]}); write the session length in seconds, 0 or more")
            if milli <= 0:
                errors.append(f"{where}: gpu_milli is {row[i_milli]}; write the GPU share in milli-GPU, 1 or more (1000 = one GPU)")
            school = row[i_school].strip()
            user = row[i_user].strip()
            if not user:
                errors.append(f"{where}: user is empty; give every request the account that made it")
            if schools is not None and school not in schools:
                errors.append(
                    f"{where}: school {school!r} is not in the alliance file; add it under 'schools' or fix the id"
                )
            profile = row[i_profile].strip() or None if i_profile is not None else None
            if profile is not None and profiles is not None and profile not in profiles:
                known = ", ".join(sorted(profiles)) or "none"
                errors.append(f"{where}: profile {profile!r} is not a GPU profile of the alliance file; "
                              f"use one of: {known}, or leave it empty")
            if limits is not None and milli == milli and milli > 0:
                too_much = fits.problem(limits, int(milli), profile)
                if too_much:
                    errors.append(f"{where}: {too_much}")
            if len(errors) >= MAX_ERRORS_SHOWN:
                break
            trace.arrival.append(arrival)
            trace.user.append(user)
            trace.school.append(school)
            trace.duration.append(duration)
            trace.milli.append(int(milli) if milli == milli else 0)
            trace.patience.append(patience)
            trace.group.append(row[i_group].strip() or None if i_group is not None else None)
            trace.profile.append(profile)
    if errors:
        more = " (stopped after the first 20 problems)" if len(errors) >= MAX_ERRORS_SHOWN else ""
        raise TraceError("\n".join(errors) + f"\n{path}: nothing was simulated{more}")
    trace.sort()
    return trace


def write_trace(path: str | Path, rows: list[tuple]) -> None:
    """Write rows ``(arrival_s, user, school, duration_s, gpu_milli, patience_s, group[, profile])``."""
    profiles = any(len(row) > 7 for row in rows)
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*REQUIRED, "patience_s", "group", *(["profile"] if profiles else [])])
        for arrival, user, school, duration, milli, patience, group, *profile in rows:
            writer.writerow([f"{arrival:.3f}", user, school, f"{duration:.3f}", milli, f"{patience:g}", group or "",
                             *([profile[0] if profile else ""] if profiles else [])])
