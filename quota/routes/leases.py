"""Leases: request, read (and keep a queue place), renew, release.

A GPU lease belongs to the workspace that holds it: only the hub (its spawner, with the
service's own token) asks for a lease and renews it, for the server it starts. Students read
their own leases (the workspace extension reads its lease with the server's token); a
student ends a lease by stopping the server, which ends the workspace first and then the
lease. Teachers, school admins, staff and operators may end the leases they may see (the
spawner then stops the workspace at its next lease check). See docs/security.md.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from quota.auth import Principal, Role
from quota.deps import Authorized, Book, Caller, forbid
from quota.errors import InvalidField
from gpu_commons_i18n import Message
from quota.leases import JournalUnavailable
from quota.queue_reasons import ahead_reason
from quota.schemas import Lease, LeaseRequest, LeaseState
from quota.tables import LeaseRow

LeaseId = Annotated[str, Path(max_length=100, description="Lease id (l-…).")]
KEY_CHARS = 200  # the idempotency_key column

router = APIRouter(prefix="/api/leases", tags=["leases"], dependencies=Authorized)


HUB_ASKS = (
    "Leases are asked for by the hub when a workspace starts, never directly: open the hub's home page and start "
    "your server with the profile you need (a GPU lease belongs to the GPU workspace that holds it)."
)
HUB_RENEWS = (
    "The hub renews a GPU lease for the workspace that holds it, before its end; a lease cannot be renewed directly. "
    "Keep working in the workspace: it warns you if the lease cannot be renewed."
)
STOP_TO_END = (
    "To end your lease, stop your server in the hub's control panel (File > Hub Control Panel > Stop My Server): "
    "the hub ends the workspace first, then its lease."
)


def _may_end(caller: Principal, lease: LeaseRow) -> bool:
    """Release: the hub; staff and operators; the student's school admin and teacher. Not the
    student (their workspace would keep the GPU until the spawner's next lease check while
    the unit is given to someone else): they stop their server."""
    return caller.role != Role.student and caller.may_see_user(lease.user, lease.school)


def _visible(book, lease_id: LeaseId, caller: Principal) -> LeaseRow:
    return _shown(book.get(lease_id, heartbeat=False), lease_id, caller)


async def _visible_async(book, lease_id: LeaseId, caller: Principal) -> LeaseRow:
    """:func:`_visible` in the event loop (it waits for the lease's last change to be stored)."""
    return _shown(await book.get_async(lease_id, heartbeat=False), lease_id, caller)


def _shown(row: LeaseRow | None, lease_id: LeaseId, caller: Principal) -> LeaseRow:
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No lease with id '{lease_id}'.")
    if not caller.may_see_user(row.user, row.school):
        raise forbid(f"Lease '{lease_id}' belongs to another student; you may only see your own.")
    return row


@router.post("", response_model=Lease, status_code=status.HTTP_201_CREATED,
             responses={409: {"description": "The student holds the most CPU leases allowed."},
                        429: {"description": "Too many requests for this student this minute (Retry-After)."}})
async def request_lease(body: LeaseRequest, book: Book, caller: Caller, request: Request, response: Response) -> Lease:
    """Ask for a lease for (student, school, profile). The answer is granted (with the
    assigned device and expiry), queued (with the queue position) or refused (with a
    reason a student can read). The same idempotency key again returns the same lease (200).
    Hub only (403 for everyone else, students included): the spawner asks for the server it
    starts. Per student at most ``lease_requests_per_minute`` requests a minute (429 with
    Retry-After) and ``max_cpu_leases_per_student`` CPU leases (409)."""
    if caller.role != Role.hub:
        raise forbid(HUB_ASKS)
    settings, rate = request.app.state.settings, request.app.state.lease_rate
    now = book.clock().timestamp()
    wait = rate.wait_s(body.user, now)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"Too many lease requests for '{body.user}': at most {rate.per_minute} lease requests a minute per "
            f"student (setting lease_requests_per_minute). Wait {math.ceil(wait)} seconds, then ask again.",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    key = body.idempotency_key
    if _holds_cpu_cap(book, body, key, settings.max_cpu_leases_per_student):
        rate.record(body.user, now)
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"'{body.user}' already has {settings.max_cpu_leases_per_student} CPU workspaces running, the most one "
            "student may have at once (setting max_cpu_leases_per_student); stop one in the hub's control panel, "
            "then start again.",
        )
    try:
        row, created = await book.request_async(body.user, body.school, body.profile, key)
    except JournalUnavailable:
        raise  # nothing was decided: asking again is not another request
    except InvalidField as exc:
        rate.record(body.user, now)
        raise HTTPException(422, str(exc)) from None
    rate.record(body.user, now)
    if not created and row.user != body.user:  # the hub used one key for two students
        raise HTTPException(status.HTTP_409_CONFLICT, "This idempotency key was already used for another student's "
                            "request; use a new key for each request (a random UUID, say).")
    if not created:
        response.status_code = status.HTTP_200_OK
    return _with_place(book, row)


def _holds_cpu_cap(book, body: LeaseRequest, key: str | None, cap: int) -> bool:
    """Whether this is a new CPU request of a student who holds ``cap`` CPU leases already
    (a retry of one they hold is answered as before)."""
    try:
        if book.alliance.profile(body.profile).gpu != "none":
            return False
    except KeyError:
        return False  # unknown profile: the book answers 422
    held = [row for row in book.leases(state="granted", user=body.user) if row.kind is None]
    return len(held) >= cap and not (key and any(row.idempotency_key == key for row in held))


@router.get("", response_model=list[Lease])
def list_leases(
    book: Book, caller: Caller,
    state: Annotated[LeaseState | None, Query(description="Only leases in this state.")] = None,
    user: Annotated[str | None, Query(description="Only this student's leases.")] = None,
    school: Annotated[str | None, Query(description="Only this school's leases.")] = None,

) -> list[Lease]:
    """Leases, oldest first, optionally filtered by state, user and school. Students see
    their own, teachers their classes', school admins their school's."""
    if user and not caller.may_see_user(user, school or _school_of(book, user)):
        raise forbid(f"You may not read the leases of '{user}'.")
    rows = [row for row in book.leases(state, user, school) if caller.may_see_user(row.user, row.school)]
    places = book.queue_positions() if any(row.state == "queued" for row in rows) else {}
    return [Lease.of(row, places.get(row.id)) for row in rows]


@router.get("/{lease_id}", response_model=Lease)
async def read_lease(lease_id: LeaseId, book: Book, caller: Caller) -> Lease:
    """One lease. Reading a queued lease is also its heartbeat: a queued lease nobody
    reads for the heartbeat timeout is abandoned."""
    await _visible_async(book, lease_id, caller)
    row = await book.get_async(lease_id)
    return _with_place(book, row)


@router.post("/{lease_id}/renew", response_model=Lease)
def renew_lease(lease_id: LeaseId, book: Book, caller: Caller) -> Lease:
    """Extend a granted lease by its profile's length, counted from now. Refused (409, with
    the reason) while someone waits for the same kind of unit. Hub only: the spawner renews
    the lease of the workspace it runs."""
    _visible(book, lease_id, caller)
    if caller.role != Role.hub:
        raise forbid(HUB_RENEWS)
    try:
        return Lease.of(book.renew(lease_id))
    except InvalidField as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.delete("/{lease_id}", response_model=Lease)
async def release_lease(
    lease_id: LeaseId, book: Book, caller: Caller,
    charge_from: Annotated[datetime | None, Query(description=(
        "Hub only: record the lease's usage from this time instead of its grant (a workspace started ahead of a "
        "lesson is charged from its student's first activity). A time at or after the release charges nothing (a "
        "workspace started ahead that nobody opened)."))] = None,
) -> Lease:
    """Release a lease: its unit goes to the next in the queue and its usage is recorded.
    Releasing a lease that already ended returns it unchanged. The hub, staff, operators, and
    the student's teacher and school admin; a student stops their server instead."""
    row = await _visible_async(book, lease_id, caller)
    if not _may_end(caller, row):
        raise forbid(STOP_TO_END)
    if charge_from is None:
        return Lease.of(await book.release_async(lease_id))
    if caller.role != Role.hub:
        raise forbid("Only the hub says from when a lease is charged (for workspaces it started ahead of a lesson).")
    if charge_from.tzinfo is None:
        charge_from = charge_from.replace(tzinfo=timezone.utc)
    return Lease.of(await book.release_async(lease_id, charge_from=charge_from))


@router.delete("/by-key/{idempotency_key}", response_model=Lease)
def release_lease_by_key(idempotency_key: Annotated[str, Path(max_length=KEY_CHARS, description="The key the request was made with.")], book: Book, caller: Caller) -> Lease:
    """Release the lease made with this idempotency key (the hub's clean-up after a
    request whose answer it never got; hub only). 404 when no request with the key has
    arrived yet; the key is then remembered, and a request arriving later with it is refused."""
    if caller.role != Role.hub:
        raise forbid("Only the hub withdraws requests by idempotency key.")
    row = book.release_by_key(idempotency_key)
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"No lease was requested with idempotency key '{idempotency_key}' yet; "
            "the key is now withdrawn and a later request with it will be refused.",
        )
    return Lease.of(row)


def _school_of(book, user: str) -> str | None:
    school = book.alliance.school_of(user)
    return school.id if school else None


def _with_place(book, row: LeaseRow) -> Lease:
    """The lease, with its place in the queue while queued (working that out rebuilds the
    fair-share allocator, so only then)."""
    if row.state != "queued":
        return Lease.of(row)
    places = book.queue_positions()
    return Lease.of(row, places.get(row.id), _queue_reason(book, row, places))


def _queue_reason(book, row: LeaseRow, places) -> Message | None:
    """Why someone who asked later is ahead of ``row`` (quota/queue_reasons.py)."""
    mine = places.get(row.id)
    if mine is None or mine.position <= 1:
        return None
    queued, below = _queue_facts(book, places.keys())
    return ahead_reason(row.id, queued, {k: p.position for k, p in places.items()}, below)


# The queued rows and the schools' standing, read again only when the queue's members changed or
# a second passed, for all the waiting pages that poll (300 queued on SQLite: a poll took 8.2 ms
# reading them each time, 1.7 ms without the reason).
_facts: dict = {"book": None, "at": 0.0, "ids": frozenset(), "value": ([], {})}


def _queue_facts(book, queued_ids) -> tuple[list[LeaseRow], dict[str, bool]]:
    now = time.monotonic()
    ids = frozenset(queued_ids)
    if _facts["book"] is not book or now - _facts["at"] >= 1.0 or ids != _facts["ids"]:
        below = {share.school: share.held_gpus < share.guaranteed_gpus for share in book.fair_share()}
        rows = book.queue()
        _facts.update(book=book, at=now, ids=ids, value=(rows, below))
    return _facts["value"]
