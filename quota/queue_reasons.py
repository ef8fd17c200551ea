"""Why requests that came later stand ahead of a queued one: the sentence the waiting page shows
when a student's place gets worse.

Worked out around the allocator, not inside it (the allocator stays pure and says only the
order): from the queued leases' arrival times, their places, and each school's standing in the
fair share (GPUs held against its guarantee). The spawner compares the place with the one it
showed before and shows this sentence only when the place got worse.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Protocol

from gpu_commons_i18n import Message, _


class QueuedLease(Protocol):
    id: str
    school: str
    tier: str
    requested_at: datetime
    seq: int  # arrival order (two requests may share a moment)


def ahead_reason(lease_id: str, queued: Iterable[QueuedLease], positions: dict[str, int],
                 held_below_guarantee: dict[str, bool]) -> Message | None:
    """The reason for the latest request that arrived after ``lease_id`` and stands ahead of it,
    or None when nobody who came later is ahead. ``positions``: lease id -> place (1 = next);
    ``held_below_guarantee``: school id -> whether it holds less than its guaranteed share."""
    rows = {row.id: row for row in queued}
    mine = rows.get(lease_id)
    if mine is None or lease_id not in positions:
        return None
    later_ahead = [row for row in rows.values()
                   if row.id in positions and positions[row.id] < positions[lease_id]
                   and _arrival(row) > _arrival(mine)]
    if not later_ahead:
        return None
    latest = max(later_ahead, key=_arrival)
    if latest.school == mine.school:
        return _("A classmate with less GPU time used lately asked after you and goes first.")
    if held_below_guarantee.get(latest.school):
        if latest.tier == "county":  # the alliance's usual tiers get a sentence of their own
            return _("A county school below its guaranteed share asked and goes first.")
        if latest.tier == "urban":
            return _("An urban school below its guaranteed share asked and goes first.")
        return _("A school below its guaranteed share asked and goes first.")
    return _("A school that used less GPU time lately asked and goes first.")


def _arrival(row: QueuedLease) -> tuple:
    return (row.requested_at, row.seq)
