"""Pure arithmetic of class reservations: how many units overlapping bookings need at
their busiest moment, and how many a reservation still holds back right now."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Sequence


def peak_units(bookings: Iterable[tuple[datetime, datetime, int]], start: datetime, end: datetime) -> int:
    """Most units that ``bookings`` (start, end, units) need at one moment inside [start, end)."""
    events: list[tuple[datetime, int]] = []
    for b_start, b_end, units in bookings:
        if b_start < end and start < b_end:
            events.append((max(b_start, start), units))
            events.append((min(b_end, end), -units))
    peak = current = 0
    for _moment, change in sorted(events, key=lambda event: (event[0], event[1])):  # ends before starts
        current += change
        peak = max(peak, current)
    return peak


def remaining_hold(reserved: int, held_by_school: int) -> int:
    """Units a reservation still keeps free for its school."""
    return max(0, reserved - held_by_school)


def active(bookings: Sequence, at: datetime) -> list:
    """The bookings (objects with starts_at, ends_at) whose window contains ``at``."""
    return [b for b in bookings if b.starts_at <= at < b.ends_at]
