"""Usage reports: the ledger summed per period and per user, class, school or tier.

Pure: records in, rows out. Each lease is counted once in the period its use ended in,
so a report per school adds up exactly to the sum of its leases.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterable, Literal

from quota.alliance import Alliance

Period = Literal["day", "week", "month", "all"]
GroupBy = Literal["user", "class", "school", "tier"]


def period_start(moment: datetime, period: Period) -> datetime:
    moment = moment.astimezone(timezone.utc)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return datetime(1970, 1, 1, tzinfo=timezone.utc)


def groups_of(record, group_by: GroupBy, alliance: Alliance) -> list[str]:
    if group_by == "user":
        return [record.user]
    if group_by == "school":
        return [record.school]
    if group_by == "tier":
        return [record.tier]
    try:
        classes = [group.id for group in alliance.school(record.school).classes if record.user in group.students]
    except KeyError:
        classes = []
    return [f"{record.school}/{name}" for name in classes] or [f"{record.school}/(no class)"]


def summarise(records: Iterable, group_by: GroupBy, period: Period, alliance: Alliance) -> list[dict]:
    totals: dict[tuple[datetime, str], dict] = {}
    for record in records:
        start = period_start(record.ended_at, period)
        for group in groups_of(record, group_by, alliance):
            row = totals.setdefault(
                (start, group), {"period_start": start, "group": group, "leases": 0, "held_seconds": 0.0, "gpu_seconds": 0.0}
            )
            row["leases"] += 1
            row["held_seconds"] += record.held_seconds
            row["gpu_seconds"] += record.gpu_seconds
    return [totals[key] for key in sorted(totals)]
