"""Leases: request, read (and keep a queue place), release."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from quota.deps import Authorized, Book
from quota.errors import InvalidField
from quota.schemas import Lease, LeaseRequest, LeaseState

router = APIRouter(prefix="/api/leases", tags=["leases"], dependencies=Authorized)


@router.post("", response_model=Lease, status_code=status.HTTP_201_CREATED)
def request_lease(body: LeaseRequest, book: Book, response: Response) -> Lease:
    """Ask for a lease for (student, school, profile). The answer is granted (with the
    assigned device and expiry), queued (with the queue position) or refused (with a
    reason a student can read). The same idempotency key again returns the same lease (200)."""
    try:
        row, created = book.request(body.user, body.school, body.profile, body.idempotency_key)
    except InvalidField as exc:
        raise HTTPException(422, str(exc)) from None
    if not created:
        response.status_code = status.HTTP_200_OK
    return Lease.of(row, book.queue_positions().get(row.id))


@router.get("", response_model=list[Lease])
def list_leases(book: Book, state: LeaseState | None = None, user: str | None = None, school: str | None = None) -> list[Lease]:
    """Leases, oldest first, optionally filtered by state, user and school."""
    positions = book.queue_positions()
    return [Lease.of(row, positions.get(row.id)) for row in book.leases(state, user, school)]


@router.get("/{lease_id}", response_model=Lease)
def read_lease(lease_id: str, book: Book) -> Lease:
    """One lease. Reading a queued lease is also its heartbeat: a queued lease nobody
    reads for the heartbeat timeout is abandoned."""
    row = book.get(lease_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No lease with id '{lease_id}'.")
    return Lease.of(row, book.queue_positions().get(row.id))


@router.delete("/{lease_id}", response_model=Lease)
def release_lease(lease_id: str, book: Book) -> Lease:
    """Release a lease: its unit goes to the next in the queue and its usage is recorded.
    Releasing a lease that already ended returns it unchanged."""
    row = book.release(lease_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No lease with id '{lease_id}'.")
    return Lease.of(row)


@router.delete("/by-key/{idempotency_key}", response_model=Lease)
def release_lease_by_key(idempotency_key: str, book: Book) -> Lease:
    """Release the lease made with this idempotency key (the hub's clean-up after a
    request whose answer it never got). 404 when no request with the key has arrived
    yet; the key is then remembered, and a request arriving later with it is refused."""
    row = book.release_by_key(idempotency_key)
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"No lease was requested with idempotency key '{idempotency_key}' yet; "
            "the key is now withdrawn and a later request with it will be refused.",
        )
    return Lease.of(row)
