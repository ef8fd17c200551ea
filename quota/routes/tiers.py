"""Tiers of schools (county, urban, …): weights and default quotas. Staff change them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from quota.auth import Role
from quota.deps import Authorized, Book, Caller, require
from quota.routes.errors import translated
from quota.schemas import TierChange, TierView

router = APIRouter(prefix="/api/tiers", tags=["tiers"], dependencies=Authorized)


@router.get("", response_model=list[TierView])
def list_tiers(book: Book) -> list[TierView]:
    """Every tier with its weight and default budgets, as in effect now."""
    return book.read_policy(lambda session, now: [TierView(**book.policy.tier(session, t)) for t in book.alliance.tiers])


@router.patch("/{tier_id}", response_model=TierView, dependencies=[require(Role.staff)])
def change_tier(tier_id: Annotated[str, Path(description="Tier name (county, urban, …).")], change: TierChange, book: Book, caller: Caller) -> TierView:
    """Change a tier's weight or default quotas (alliance staff only)."""
    changes = change.model_dump(exclude_unset=True)
    with translated():
        return TierView(**book.change_policy(lambda session, now: book.policy.set_tier(session, tier_id, changes, caller.name, now)))
