"""The usage ledger: one record per ended lease."""

from __future__ import annotations

from fastapi import APIRouter

from quota.deps import Authorized, Book, Caller, forbid
from quota.schemas import Usage

router = APIRouter(prefix="/api/usage", tags=["usage"], dependencies=Authorized)


@router.get("", response_model=list[Usage])
def read_usage(book: Book, caller: Caller, user: str | None = None, school: str | None = None) -> list[Usage]:
    """Usage records, oldest first, optionally for one user or school. Students see their
    own, teachers their classes', school admins their school's, staff all."""
    if user:
        home = book.alliance.school_of(user)
        if not caller.may_see_user(user, home.id if home else None):
            raise forbid(f"You may not read the usage of '{user}'.")
    return [Usage.of(row) for row in book.usage(user, school) if caller.may_see_user(row.user, row.school)]
