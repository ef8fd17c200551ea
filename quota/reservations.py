"""Pure arithmetic of class reservations: how many units overlapping bookings need at
their busiest moment (checked when a teacher books), and from when a booking holds its units
(a lead before its start, for workspaces started ahead), and when it gives back the units its
class does not use. Holding the units inside the window is the fair-share allocator's job
(quota.fairshare.reservations)."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable


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


def holds_from(start, lead, other_ends: Iterable):
    """When a class reservation starting at ``start`` begins to hold its units: ``lead``
    early (``fairshare.reservation_lead_minutes``: its students' workspaces start before the
    bell), but never before another booking of the same pool that ends inside the lead has
    ended, so a lead never makes two bookings overlap that the booking check let through back
    to back. Datetimes with a timedelta ``lead``, or seconds."""
    begins = start - lead
    for end in other_ends:
        if begins < end <= start:
            begins = end
    return begins


def gives_back_at(start, end, after):
    """When a class reservation from ``start`` to ``end`` gives back the units no student of the
    class holds (``fairshare.reservation_release_minutes`` after the lesson starts, so a lead
    never shortens it); None when ``after`` is None or that is not before the end. Datetimes
    with a timedelta ``after``, or seconds."""
    if after is None:
        return None
    moment = start + after
    return moment if moment < end else None


def started_ahead(students: list[str], units: int) -> tuple[list[str], list[str]]:
    """A class booking's students whose workspaces start ahead of the lesson (as many as the booking
    holds units, in the class list's order) and those who start themselves at the bell: a pre-start
    beyond the units would wait in the queue ahead of students who are there."""
    ahead = max(0, units)
    return list(students[:ahead]), list(students[ahead:])
