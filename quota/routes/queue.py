"""The queue of waiting lease requests."""

from __future__ import annotations

from fastapi import APIRouter

from quota.deps import Authorized, Book, Caller
from quota.schemas import Lease

router = APIRouter(prefix="/api/queue", tags=["queue"], dependencies=Authorized)


@router.get("", response_model=list[Lease])
def read_queue(book: Book, caller: Caller) -> list[Lease]:
    """Queued leases in the order they will be granted, each with its position among
    those waiting for the same kind of unit (only those the caller may see)."""
    positions = book.queue_positions()
    return [Lease.of(row, positions.get(row.id)) for row in book.queue() if caller.may_see_user(row.user, row.school)]
