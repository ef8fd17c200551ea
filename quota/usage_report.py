"""Usage reports: the ledger summed per period and per user, class, school or tier.

Pure: records in, rows out. Each lease is counted once in the period its use ended in,
so a report per school adds up exactly to the sum of its leases. A lease still running counts
too, as if it ended now (:func:`running_records`): its GPU time up to now, in the current
period, so a report read during a lesson shows the lesson.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Iterable, Literal

from quota.alliance import Alliance

Period = Literal["day", "week", "month", "term", "all"]
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
    if period == "term":
        return term_start(moment)
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


def term_start(moment: datetime) -> datetime:
    """The school term a moment falls in, as Chinese schools count them: the autumn term from
    1 September (to the end of January), the spring term from 1 February."""
    moment = moment.astimezone(timezone.utc)
    if moment.month >= 9:
        return datetime(moment.year, 9, 1, tzinfo=timezone.utc)
    if moment.month >= 2:
        return datetime(moment.year, 2, 1, tzinfo=timezone.utc)
    return datetime(moment.year - 1, 9, 1, tzinfo=timezone.utc)


def running_records(leases: Iterable, now: datetime) -> list:
    """Granted leases as usage records that end ``now`` (end_reason ``running``): held and GPU
    seconds from their grant up to now."""
    records = []
    for lease in leases:
        if lease.granted_at is None:
            continue
        held = max(0.0, (now - lease.granted_at).total_seconds())
        records.append(SimpleNamespace(
            lease_id=lease.id, user=lease.user, school=lease.school, tier=lease.tier, profile=lease.profile,
            pool=lease.pool, device=lease.device, unit_kind=lease.unit_kind, started_at=lease.granted_at,
            ended_at=now, held_seconds=held, gpu_seconds=held * (lease.gpu_fraction or 0.0), end_reason="running",
        ))
    return records
