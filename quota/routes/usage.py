"""The usage ledger: one record per ended lease."""

from __future__ import annotations

from fastapi import APIRouter

from quota.deps import Authorized, Book
from quota.schemas import Usage

router = APIRouter(prefix="/api/usage", tags=["usage"], dependencies=Authorized)


@router.get("", response_model=list[Usage])
def read_usage(book: Book, user: str | None = None, school: str | None = None) -> list[Usage]:
    """Usage records, oldest first, optionally for one user or school."""
    return [Usage.of(row) for row in book.usage(user, school)]
