"""Pools: the universities' GPU servers and clusters. Operators open or drain them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from quota.auth import Role
from quota.deps import Authorized, Book, Caller, require
from quota.routes.errors import translated
from quota.schemas import PoolChange, PoolView

router = APIRouter(prefix="/api/pools", tags=["pools"], dependencies=Authorized)


def _view(book, session, pool) -> PoolView:
    state, note = book.policy.pool_state(session, pool.id)
    units: dict[str, int] = {}
    for unit in book.units:
        if unit.pool == pool.id:
            units[unit.kind] = units.get(unit.kind, 0) + 1
    return PoolView(id=pool.id, name=pool.name or pool.id, gpus=pool.gpus, simulated=pool.simulated, state=state, note=note, units=units)


@router.get("", response_model=list[PoolView])
def list_pools(book: Book) -> list[PoolView]:
    """Every pool with its state and units."""
    return book.read_policy(lambda session, now: [_view(book, session, pool) for pool in book.alliance.pools])


@router.patch("/{pool_id}", response_model=PoolView, dependencies=[require(Role.operator)])
def change_pool(pool_id: Annotated[str, Path(description="Pool id from the alliance file.")], change: PoolChange, book: Book, caller: Caller) -> PoolView:
    """Open or drain a pool (operators only). Draining stops new leases there; running
    leases go on until they end."""

    def apply(session, now):
        book.policy.set_pool_state(session, pool_id, change.state, change.note, caller.name, now)
        session.flush()
        return _view(book, session, next(pool for pool in book.alliance.pools if pool.id == pool_id))

    with translated():
        return book.change_policy(apply)
