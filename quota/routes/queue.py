"""The queue of waiting lease requests."""

from __future__ import annotations

from fastapi import APIRouter

from quota.deps import Authorized, Book, Caller
from quota.schemas import Lease

router = APIRouter(prefix="/api/queue", tags=["queue"], dependencies=Authorized)


@router.get("", response_model=list[Lease])
def read_queue(book: Book, caller: Caller) -> list[Lease]:
    """Queued leases in the order the fair-share allocator will grant them (schools below
    their guaranteed share first, then the least decayed usage per weight), each with its
    position among those waiting for the same kind of unit and a wait estimate (only
    the leases the caller may see)."""
    places = book.queue_positions()
    rows = [row for row in book.queue() if caller.may_see_user(row.user, row.school)]
    rows.sort(key=lambda row: (row.kind or "", places[row.id].position if row.id in places else 1 << 30, row.seq))
    return [Lease.of(row, places.get(row.id)) for row in rows]
