"""The equity view's numbers: GPU-hours served against entitlement per tier and per school,
per day, week or term, the waits per tier and the reclaims. Pure: records and leases in, rows out.

- Served: the usage ledger plus the sessions running now, counted up to now
  (quota.usage_report.running_records), each in the period its use ended in (as the usage
  report counts).
- Entitlement: the school's guaranteed GPUs (its guaranteed share of the alliance's GPUs, or
  the share its weight gives: quota.fair_snapshot) times the hours of the period that have
  passed. Today's shares are used for past periods too (the audit log says when they changed).
- Waits: from request to grant, of the leases granted in the period, per tier (median and
  longest), and the requests waiting now.
- Reclaims: leases ended to give a borrowed share back (end reason ``reclaimed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median

from quota.usage_report import period_start

PERIODS = ("day", "week", "term")
HISTORY = 8  # periods shown


@dataclass
class Row:
    period_start: datetime
    scope: str  # tier or school
    name: str
    served_gpu_hours: float = 0.0
    entitled_gpu_hours: float = 0.0
    running_gpu_hours: float = 0.0  # part of served: the sessions running now
    reclaims: int = 0
    waits_s: list = field(default_factory=list)

    @property
    def median_wait_s(self) -> float | None:
        return median(self.waits_s) if self.waits_s else None

    @property
    def longest_wait_s(self) -> float | None:
        return max(self.waits_s) if self.waits_s else None


def _next_start(start: datetime, period: str) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(weeks=1)
    if start.month == 2:  # spring term: up to 1 September
        return start.replace(month=9)
    return start.replace(year=start.year + 1, month=2)  # autumn term: up to 1 February


def period_starts(now: datetime, period: str, count: int = HISTORY) -> list[datetime]:
    """The starts of the last ``count`` periods up to the one ``now`` is in, oldest first."""
    starts = [period_start(now, period)]
    while len(starts) < count:
        previous = period_start(starts[0] - timedelta(seconds=1), period)
        starts.insert(0, previous)
    return starts


def equity_rows(records, leases, shares, now: datetime, period: str, count: int = HISTORY) -> list[Row]:
    """Rows per (period, tier) and per (period, school), oldest period first, tiers before schools.

    ``records``: usage records (ledger and running); ``leases``: every lease (for waits);
    ``shares``: quota.fair_snapshot.SchoolShare of each school (guaranteed GPUs now)."""
    starts = period_starts(now, period, count)
    tiers = sorted({share.tier for share in shares})
    rows: dict[tuple, Row] = {}
    for start in starts:
        end = min(_next_start(start, period), now)
        hours = max(0.0, (end - start).total_seconds() / 3600)
        for tier in tiers:
            rows[(start, "tier", tier)] = Row(start, "tier", tier)
        for share in shares:
            row = rows[(start, "school", share.school)] = Row(start, "school", share.school)
            row.entitled_gpu_hours = share.guaranteed_gpus * hours
            rows[(start, "tier", share.tier)].entitled_gpu_hours += row.entitled_gpu_hours
    tier_of = {share.school: share.tier for share in shares}
    first = starts[0]
    for record in records:
        if record.ended_at < first:
            continue
        start = period_start(record.ended_at, period)
        hours = record.gpu_seconds / 3600
        for key in ((start, "tier", record.tier), (start, "school", record.school)):
            row = rows.get(key)
            if row is None:
                continue
            row.served_gpu_hours += hours
            if record.end_reason == "running":
                row.running_gpu_hours += hours
            if record.end_reason == "reclaimed":
                row.reclaims += 1
    for lease in leases:
        if lease.granted_at is None or lease.granted_at < first:
            continue
        start = period_start(lease.granted_at, period)
        tier = lease.tier or tier_of.get(lease.school)
        row = rows.get((start, "tier", tier))
        if row is not None:
            row.waits_s.append(max(0.0, (lease.granted_at - lease.requested_at).total_seconds()))
    return sorted(rows.values(), key=lambda row: (row.period_start, row.scope != "tier", row.name))


def csv_cell(value) -> str:
    """A cell a spreadsheet shows as text: a leading =, +, -, @, tab or return is quoted away
    (no formula injection); numbers as they are."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.3f}" if isinstance(value, float) else str(value)
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
