"""Schools: their tier, classes, share and quotas. Staff change quotas; everyone reads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from quota.auth import Role
from quota.deps import Authorized, Book, Caller, require
from quota.routes.errors import translated
from quota.schemas import SchoolQuotaChange, SchoolView

router = APIRouter(prefix="/api/schools", tags=["schools"], dependencies=Authorized)


@router.get("", response_model=list[SchoolView])
def list_schools(book: Book) -> list[SchoolView]:
    """Every school with the share and quotas in effect now (own values, else the tier's)."""
    return book.read_policy(lambda session, now: [SchoolView(**book.policy.school(session, s.id)) for s in book.alliance.schools])


@router.get("/{school_id}", response_model=SchoolView)
def read_school(school_id: Annotated[str, Path(description="School id from the alliance file.")], book: Book) -> SchoolView:
    """One school."""
    with translated():
        return SchoolView(**book.read_policy(lambda session, now: book.policy.school(session, school_id)))


@router.patch("/{school_id}/quota", response_model=SchoolView, dependencies=[require(Role.staff)])
def change_quota(school_id: Annotated[str, Path(description="School id from the alliance file.")], change: SchoolQuotaChange, book: Book, caller: Caller) -> SchoolView:
    """Set a school's weight, guaranteed share, borrowing limit, budgets or session cap
    (alliance staff only). Guaranteed shares of all schools must add up to at most 1."""
    changes = change.model_dump(exclude_unset=True)
    with translated():
        return SchoolView(**book.change_policy(lambda session, now: book.policy.set_school(session, school_id, changes, caller.name, now)))
