"""A teacher's booking form, checked before anything is stored: pure functions over the form's
fields, the pools and the bookings already made.

:func:`lesson_windows` turns date, start, end, time zone and "weekly until" into the lessons'
windows, or names each wrong field and its fix (a lesson in the past, across midnight, longer
than 12 hours, weekly past the term's limit). :func:`capacity_check` says for each lesson how
many units the other bookings leave free and which of them overlap it. Nothing is booked unless
every lesson fits (the routes book all in one transaction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gpu_commons_i18n import Message, _
from quota.reservations import peak_units

LONGEST = timedelta(hours=12)
MOST_LESSONS = 30  # weekly for a term of up to 30 weeks
DEFAULT_ZONE = "Asia/Shanghai"


@dataclass
class FieldError:
    field: str
    message: Message


@dataclass
class Lesson:
    starts_at: datetime
    ends_at: datetime
    free: int = 0
    conflicts: list = field(default_factory=list)  # the other bookings of the pool overlapping it

    @property
    def fits(self) -> bool:
        return self.free >= 0


def zone_or_default(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def local_time(zone: ZoneInfo):
    """A template filter: a UTC datetime as the school's clock shows it."""
    return lambda moment, pattern="%Y-%m-%d %H:%M": moment.astimezone(zone).strftime(pattern)


def _date(text: str, name: str, errors: list[FieldError]) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors.append(FieldError(name, _("Enter a date as year-month-day, e.g. 2026-09-07.")))
        return None


def _time(text: str, name: str, errors: list[FieldError]) -> time | None:
    try:
        return time.fromisoformat(text)
    except ValueError:
        errors.append(FieldError(name, _("Enter a time as hours:minutes, e.g. 08:00.")))
        return None


def lesson_windows(fields: dict[str, str], now: datetime) -> tuple[list[Lesson], list[FieldError]]:
    """The lessons the form asks for (UTC), or the wrong fields."""
    errors: list[FieldError] = []
    zone_name = fields.get("tz") or DEFAULT_ZONE
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(FieldError("tz", _("Unknown time zone '{zone}': use a name such as Asia/Shanghai.", zone=zone_name)))
        zone = None
    day = _date(fields.get("date", ""), "date", errors)
    start = _time(fields.get("start", ""), "start", errors)
    end = _time(fields.get("end", ""), "end", errors)
    until = _date(fields["until"], "until", errors) if fields.get("until") else None
    if errors or zone is None:
        return [], errors
    if end <= start:
        return [], [FieldError("end", _("The lesson ends before it starts or crosses midnight: book it as two lessons, "
                                        "one up to 24:00 and one from 00:00, or fix the end time."))]
    first_start = datetime.combine(day, start, zone)
    first_end = datetime.combine(day, end, zone)
    if first_end - first_start > LONGEST:
        errors.append(FieldError("end", _("A booking lasts at most 12 hours: book each lesson on its own.")))
    if first_end <= now:
        errors.append(FieldError("date", _("This lesson is already over: choose a date and time still to come.")))
    days = [day]
    if until is not None:
        if until < day:
            errors.append(FieldError("until", _("'Weekly until' is before the first lesson: choose a later date or leave it empty.")))
        else:
            weeks = (until - day).days // 7
            if weeks + 1 > MOST_LESSONS:
                errors.append(FieldError("until", _("At most {n} weekly lessons at once: choose an earlier 'weekly until' date.",
                                                    n=MOST_LESSONS)))
            days = [day + timedelta(weeks=k) for k in range(weeks + 1)]
    if errors:
        return [], errors
    lessons = [Lesson(datetime.combine(d, start, zone).astimezone(ZoneInfo("UTC")),
                      datetime.combine(d, end, zone).astimezone(ZoneInfo("UTC"))) for d in days]
    return lessons, []


def capacity_check(lessons: list[Lesson], units: int, capacity: int, bookings: list) -> list[Lesson]:
    """Fill in each lesson's free units after this booking (negative: over) and its conflicts.
    ``bookings``: the pool's other bookings (objects with starts_at, ends_at, units)."""
    for lesson in lessons:
        overlapping = [b for b in bookings if b.starts_at < lesson.ends_at and lesson.starts_at < b.ends_at]
        held = peak_units(((b.starts_at, b.ends_at, b.units) for b in overlapping), lesson.starts_at, lesson.ends_at)
        lesson.free = capacity - held - units
        lesson.conflicts = overlapping
    return lessons
