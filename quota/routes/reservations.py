"""Class reservations: teachers book units of a pool for a lesson."""

from __future__ import annotations

from datetime import timedelta

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from gpu_commons_i18n import _

from quota.auth import Role
from quota import prestarts
from quota.deps import Authorized, Book, Caller, forbid, require
from quota.errors import InvalidField
from quota.routes.errors import translated
from quota.schemas import PrestartReport, PrestartView, ReservationRequest, ReservationView
from quota.tables import Reservation

router = APIRouter(prefix="/api/reservations", tags=["reservations"], dependencies=Authorized)

LONGEST = timedelta(hours=12)


def _view(row) -> ReservationView:
    return ReservationView.model_validate(row, from_attributes=True)


@router.get("", response_model=list[ReservationView])
def list_reservations(book: Book, caller: Caller, school: Annotated[str | None, Query(description="Only this school's reservations.")] = None) -> list[ReservationView]:
    """Reservations not yet over, soonest first. Staff, operators and the hub see all;
    others their own school's."""
    def read(session, now):
        rows = book.policy.reservations(session, school=school, include_past_of=now)
        return [_view(row) for row in rows if caller.role in (Role.hub, Role.staff, Role.operator) or row.school == caller.school]

    return book.read_policy(read)


@router.post("", response_model=ReservationView, status_code=201)
def create_reservation(body: ReservationRequest, book: Book, caller: Caller) -> ReservationView:
    """Book units of a pool for a school or one of its classes. Teachers and school admins
    book for their own school, staff for any. Refused (422, naming the field) when the
    time is wrong or overlapping bookings would need more units than the pool has."""
    if not caller.may_act_for_school(body.school):
        raise forbid(f"You may only book for your own school, not for '{body.school}'.")
    for field in ("starts_at", "ends_at"):
        if getattr(body, field).tzinfo is None:
            with translated():
                raise InvalidField(field, _("give a time zone, e.g. 2026-09-01T08:00:00+08:00."))
    if body.ends_at - body.starts_at > LONGEST:
        with translated():
            raise InvalidField("ends_at", _("a reservation lasts at most 12 hours; book each lesson on its own."))
    with translated():
        row = book.change_policy(
            lambda session, now: book.policy.reserve(
                session, pool=body.pool, school=body.school, class_id=body.class_id, units=body.units,
                starts_at=body.starts_at, ends_at=body.ends_at, note=body.note, by=caller.name, now=now,
            )
        )
    return _view(row)


@router.delete("/{reservation_id}", response_model=ReservationView)
def cancel_reservation(reservation_id: Annotated[str, Path(description="Reservation id (r-…).")], book: Book, caller: Caller) -> ReservationView:
    """Cancel a reservation (its school's teachers and admins, or staff); its units go
    back to everyone at once."""

    def cancel(session, now):
        row = book.policy.cancel(session, reservation_id, now) if caller.role != Role.student else None
        if row is None or not caller.may_act_for_school(row.school):
            raise PermissionError
        return _view(row)

    try:
        with translated():
            return book.change_policy(cancel)
    except PermissionError:
        raise forbid("You may only cancel your own school's reservations.") from None


@router.put("/{reservation_id}/prestarts/{account}", response_model=PrestartView, dependencies=[require(Role.hub)])
def report_prestart(reservation_id: Annotated[str, Path(description="Reservation id (r-…).", max_length=40)],
                    account: Annotated[str, Path(description="The student whose workspace was started ahead.",
                                                 max_length=63)],
                    report: PrestartReport, book: Book) -> PrestartView:
    """How a student's workspace started ahead of the reservation's lesson went (the hub only):
    ``ready``, or ``failed`` with the reason as a catalogue message; the teacher's page shows it.
    The latest report of a student wins. 404 for an unknown reservation."""

    def write(session, now):
        if session.get(Reservation, reservation_id) is None:
            raise LookupError
        row = prestarts.record(session, reservation_id=reservation_id, account=account, outcome=report.outcome,
                               message=report.message, now=now)
        return PrestartView(reservation_id=row.reservation_id, account=row.account, outcome=row.outcome,
                            message=report.message, reported_at=row.reported_at)

    try:
        return book.write_records(write)
    except LookupError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No reservation '{reservation_id}'; GET /api/reservations lists the ones not yet over.") from None
