"""The teacher's page: their classes with students and live sessions (stop a workspace's GPU),
the lessons booked for them (book, check first, cancel; how each class booking's workspaces started
ahead of the lesson, quota/prestarts.py, and a class larger than its booking), and the classes' GPU time.

A teacher sees the classes they teach, a school admin every class of their school, staff and
the hub every class. Stopping a student's session releases the lease (as the API's DELETE
does for a teacher): the GPU goes back at once, and the hub's spawner ends the workspace at its
next lease check.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request

from gpu_commons_i18n import _, _n
from quota import library_classes, prestarts
from quota.alliance import reservable_units
from quota.auth import Principal, Role
from quota.deps import Caller
from quota.errors import InvalidField, NotFound
from quota.pages.booking import DEFAULT_ZONE, FieldError, capacity_check, lesson_windows, local_time, zone_or_default
from quota.pages.web import back_to, field_errors, form_caller, page, page_locale
from quota.reservations import started_ahead
from quota.roster_store import file_alliance_of, rows as roster_rows
from quota.usage_report import period_start, running_records

router = APIRouter(prefix="/pages/teacher", include_in_schema=False)
TEACHES = (Role.teacher, Role.school_admin, Role.staff, Role.hub)

LABELS = {
    "class_id": _("Class"), "pool": _("Pool"), "units": _("Units"), "date": _("Date"), "start": _("Starts at"),
    "end": _("Ends at"), "until": _("Weekly until"), "tz": _("Time zone"), "note": _("Note"),
    "entry": _("Library entry"),
}


def classes_of(caller: Principal, alliance) -> list[tuple]:
    """(school, class) pairs the caller teaches or oversees."""
    found = []
    for school in alliance.schools:
        for group in school.classes:
            if caller.role in (Role.staff, Role.hub) or (caller.role == Role.school_admin and school.id == caller.school) \
                    or (caller.role == Role.teacher and caller.name in group.teachers):
                found.append((school, group))
    return found


def size_text(num_bytes: int) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if num_bytes >= factor:
            return f"{num_bytes / factor:.1f} {unit}"
    return f"{num_bytes} B"


def library_rows(alliance, classes, stored, locale: str) -> dict[str, list[dict]]:
    """Per ``<school>/<class>``: every library entry with its name in ``locale``, licence, size
    and whether it is attached by the alliance file (``file``), on this page (``page``) or not."""
    rows = {}
    for school, group in classes:
        mine = {entry for s, c, entry in stored if (s, c) == (school.id, group.id)}
        rows[f"{school.id}/{group.id}"] = [
            {"id": e.id, "name": e.name.zh_CN if locale == "zh-CN" else e.name.en, "licence": e.licence,
             "size": size_text(e.size_bytes),
             "state": "file" if e.id in group.library else "page" if e.id in mine else ""}
            for e in alliance.library]
    return rows


def class_too_big(group, units: int):
    """The warning for a class booking with fewer units than the class has students (None if it fits):
    the workspaces of the first ``units`` students start ahead (hub/prestart.py), the others at the bell."""
    _ahead, at_the_bell = started_ahead(group.students, units)
    extra, students = len(at_the_bell), len(group.students)
    if units < 1 or extra == 0:
        return None
    return _n("The class has {students} students and the booking holds {units}: {n} starts at the bell themselves "
              "and may wait for a GPU.",
              "The class has {students} students and the booking holds {units}: {n} start at the bell themselves "
              "and may wait for a GPU.", extra, students=str(students), units=_n("{n} unit", "{n} units", units))


def workspaces_ahead(bookings, classes, outcomes) -> dict[str, dict]:
    """Per class booking's id: its pre-starts' outcomes (quota/prestarts.py; None before any report)
    and the warning of a class larger than the booking."""
    groups = {(school.id, group.id): group for school, group in classes}
    rows = {}
    for booking in bookings:
        group = groups.get((booking.school, booking.class_id)) if booking.class_id else None
        if group is None:
            continue
        found = outcomes.get(booking.id)
        rows[booking.id] = {
            "summary": _("{ready} ready · {failed} failed", ready=str(found.ready), failed=str(len(found.failed)))
            if found else None,
            "failed": [_("{account}: {reason}", account=account, reason=reason) for account, reason in found.failed]
            if found else [],
            "warning": class_too_big(group, booking.units),
        }
    return rows


def _require_teacher(caller: Principal) -> None:
    if caller.role not in TEACHES:
        raise HTTPException(403, "This page is for teachers, school admins and alliance staff.")


def _view(request: Request, caller: Principal, book, status_code=200, errors=(), values=None, lessons=None, notice="",
          warning=None):
    locale = page_locale(request)
    now = book.clock()
    classes = classes_of(caller, book.alliance)
    students = {s for _school, group in classes for s in group.students}
    live = [row for state in ("granted", "queued") for row in book.leases(state) if row.user in students]
    ids = {(school.id, group.id) for school, group in classes}
    schools = {school.id for school, _group in classes}

    def read(session, now):
        rows = [r for school in sorted(schools) for r in book.policy.reservations(session, school=school, include_past_of=now)]
        return [r for r in rows if r.class_id is None or (r.school, r.class_id) in ids]

    bookings = book.read_policy(read)
    ahead = workspaces_ahead(bookings, classes, book.read_policy(
        lambda session, now: prestarts.by_reservation(session, [r.id for r in bookings if r.class_id])))
    imported = book.read_policy(lambda session, now: {r.account for r in roster_rows(session)
                                                      if r.deactivated_at is None and r.role == "student"})
    imported -= set(file_alliance_of(book).accounts())  # the file wins: changed there, not here
    library = library_rows(book.alliance, classes, book.read_policy(lambda session, now: library_classes.stored(session)),
                           locale)
    week = period_start(now, "week")
    records = [r for r in book.usage() if r.user in students] + running_records([r for r in live if r.state == "granted"], now)
    usage = {}
    for record in records:
        total = usage.setdefault(record.user, [0.0, 0.0])
        total[1] += record.gpu_seconds / 3600
        if record.ended_at >= week:
            total[0] += record.gpu_seconds / 3600
    pools = [(pool, reservable_units(pool)) for pool in book.alliance.pools]
    values = values or {"tz": DEFAULT_ZONE, "units": "1", "date": (now + timedelta(days=1)).date().isoformat(),
                        "start": "08:00", "end": "09:30"}
    zone = zone_or_default(values.get("tz"))
    return page(request, caller, "teacher.html", status_code, zone=zone.key, local=local_time(zone), classes=classes, live=live, bookings=bookings,
                usage=usage, pools=pools, values=values, library=library, lessons=lessons, notice=notice,
                warning=warning, ahead=ahead,
                imported=imported, creates_classes=caller.role in (Role.school_admin, Role.staff, Role.hub),
                errors=field_errors(errors, LABELS, locale), error_fields={e.field for e in errors}, now=now,
                prestart_minutes=round(book.alliance.fairshare.reservation_lead_minutes),  # hub/prestart.py
                release_minutes=round(book.alliance.fairshare.reservation_release_minutes or 0))


@router.get("")
def teacher_page(request: Request, caller: Caller, booked: int = 0, stopped: str = "", cancelled: str = "",
                 attached: str = "", detached: str = "", removed: str = "", class_id: str = "", units: int = 0):
    _require_teacher(caller)
    book = request.app.state.book
    notice = ""
    warning = None
    if booked:
        # the booked class larger than its units: said again after the booking (as the check said it)
        group = {f"{school.id}/{g.id}": g for school, g in classes_of(caller, book.alliance)}.get(class_id)
        warning = class_too_big(group, units) if group is not None else None
        notice = _n("Booked {n} lesson. The students' workspaces will be ready at the bell: they are started "
                    "shortly before the lesson begins.",
                    "Booked {n} lessons. The students' workspaces will be ready at the bell: they are started "
                    "shortly before each lesson begins.", booked)
    elif stopped:
        notice = _("The GPU of {account} was released; their workspace stops at its next lease check.", account=stopped)
    elif cancelled:
        notice = _("The booking was cancelled; its GPUs are free for everyone again.")
    elif attached:
        notice = _("{entry} is attached: the class's students find it in ~/datasets when their workspace next starts.",
                   entry=attached)
    elif removed:
        notice = _("{account} is removed from the class and can no longer sign in; a GPU session they had is "
                   "released, their GPU-hours are kept.", account=removed)
    elif detached:
        notice = _("{entry} is detached: it leaves the students' ~/datasets when their workspace next starts.",
                   entry=detached)
    return _view(request, caller, book, notice=notice, warning=warning)


@router.post("/stop")
async def stop_session(request: Request):
    caller, form = await form_caller(request)
    _require_teacher(caller)
    book = request.app.state.book
    lease = book.get(form.get("lease_id"), heartbeat=False)
    students = {s for _school, group in classes_of(caller, book.alliance) for s in group.students}
    if lease is None or lease.user not in students:
        raise HTTPException(403, "You may only stop the sessions of your own classes' students.")
    book.release(lease.id)
    return back_to(request, "/pages/teacher", stopped=lease.user)


@router.post("/library")
async def attach_library(request: Request):
    """Attach (action=attach) or detach (action=detach) a library entry to one of the caller's classes."""
    caller, form = await form_caller(request)
    _require_teacher(caller)
    book = request.app.state.book
    classes = {f"{school.id}/{group.id}": (school, group) for school, group in classes_of(caller, book.alliance)}
    chosen = classes.get(form.get("class_id"))
    if chosen is None:
        return _view(request, caller, book, 422, [FieldError("class_id", _("Choose one of your classes."))])
    if form.get("action") not in ("attach", "detach"):
        return _view(request, caller, book, 422, [FieldError("entry", _("Press Attach or Detach next to an entry."))])
    school, group = chosen
    attach = form.get("action") == "attach"

    def change(session, now):
        return library_classes.set_attached(session, book.alliance, school=school.id, class_id=group.id,
                                            entry=form.get("entry"), attach=attach, by=caller.name, now=now)

    try:
        book.write_records(change)  # one transaction: the row and its audit line, or neither
    except InvalidField as exc:
        return _view(request, caller, book, 422, [FieldError(exc.field, exc.message)])
    return back_to(request, "/pages/teacher", **{"attached" if attach else "detached": form.get("entry")})


@router.post("/book")
async def book_lesson(request: Request):
    """Check (action=check) or book (action=book) one lesson or weekly lessons."""
    caller, form = await form_caller(request)
    _require_teacher(caller)
    book = request.app.state.book
    values = dict(form.fields)
    values.pop("csrf", None)
    classes = {f"{school.id}/{group.id}": (school, group) for school, group in classes_of(caller, book.alliance)}
    errors: list[FieldError] = []
    chosen = classes.get(form.get("class_id"))
    if chosen is None:
        errors.append(FieldError("class_id", _("Choose one of your classes.")))
    pools = {pool.id: pool for pool in book.alliance.pools}
    pool = pools.get(form.get("pool"))
    if pool is None:
        errors.append(FieldError("pool", _("Choose one of the pools listed.")))
    try:
        units = int(form.get("units"))
        if units < 1:
            raise ValueError
    except ValueError:
        units = 0
        errors.append(FieldError("units", _("Enter a whole number of units, 1 or more.")))
    if len(form.get("note")) > 500:
        errors.append(FieldError("note", _("Write at most {n} characters.", n=500)))
    lessons, time_errors = lesson_windows(form.fields, book.clock())
    errors += time_errors
    if pool is not None and units and not errors:
        capacity = reservable_units(pool)
        others = book.read_policy(lambda session, now: [r for r in book.policy.reservations(session) if r.pool == pool.id])
        capacity_check(lessons, units, capacity, others)
        over = [lesson for lesson in lessons if not lesson.fits]
        if over:
            most = min(lesson.free + units for lesson in over)
            errors.append(FieldError("units", _("Not enough free GPUs: at the busiest lesson only {free} of the {capacity} "
                                                "units of this pool are free; book at most {free}, or choose another time.",
                                                free=max(0, most), capacity=capacity)))
    if errors or form.get("action") != "book":
        warning = class_too_big(chosen[1], units) if not errors else None
        return _view(request, caller, book, 422 if errors else 200, errors, values, lessons if not errors else None,
                     warning=warning)
    school, group = chosen

    def reserve_all(session, now):
        return [book.policy.reserve(session, pool=pool.id, school=school.id, class_id=group.id, units=units,
                                    starts_at=lesson.starts_at, ends_at=lesson.ends_at, note=form.get("note"),
                                    by=caller.name, now=now) for lesson in lessons]

    try:
        book.change_policy(reserve_all)  # one transaction: all lessons or none
    except InvalidField as exc:  # another booking came in between the check and now
        errors = [FieldError(exc.field if exc.field in LABELS else "units",
                             _("Not booked: {reason}", reason=exc.message))]
        return _view(request, caller, book, 422, errors, values)
    return back_to(request, "/pages/teacher", class_id=f"{school.id}/{group.id}", units=units, booked=len(lessons))


@router.post("/cancel")
async def cancel_booking(request: Request):
    caller, form = await form_caller(request)
    _require_teacher(caller)
    book = request.app.state.book
    allowed = {(school.id, group.id) for school, group in classes_of(caller, book.alliance)}
    schools = {school for school, _group in allowed}

    def cancel(session, now):
        from quota.tables import Reservation

        row = session.get(Reservation, form.get("reservation_id"))
        mine = row is not None and (caller.role in (Role.staff, Role.hub) or (row.school, row.class_id) in allowed
                                    or (row.class_id is None and row.school in schools and caller.role == Role.school_admin))
        if not mine:
            raise PermissionError
        return book.policy.cancel(session, row.id, now)

    try:
        book.change_policy(cancel)
    except (PermissionError, NotFound):
        raise HTTPException(403, "You may only cancel the bookings of your own classes.") from None
    return back_to(request, "/pages/teacher", cancelled="1")
