"""The GPU inventory: pools, their units and who holds them."""

from __future__ import annotations

from fastapi import APIRouter

from quota.deps import Authorized, Book, Caller
from quota.schemas import Inventory, InventoryPool, InventoryProfile, InventoryUnit

router = APIRouter(prefix="/api/inventory", tags=["inventory"], dependencies=Authorized)


@router.get("", response_model=Inventory)
def read_inventory(book: Book, caller: Caller) -> Inventory:
    """Every pool with its units (device, kind, simulated, whether a lease holds it), its
    state (open, or draining for maintenance, with the operator's note), free units per kind
    (none on a draining pool), and how many units each profile could get now. The holding lease's id
    is shown only to those who may act on it (its student, their teacher and school admin,
    staff, operators and the hub)."""
    holders = book.holders()

    def lease_id(unit_id: str) -> str | None:
        holder = holders.get(unit_id)
        return holder.id if holder is not None and caller.may_see_user(holder.user, holder.school) else None

    states = book.read_policy(lambda session, now: {pool.id: book.policy.pool_state(session, pool.id)
                                                    for pool in book.alliance.pools})
    pools = []
    free_by_kind: dict[str, int] = {}
    for pool in book.alliance.pools:
        units = [
            InventoryUnit(
                device=unit.device, kind=unit.kind, gpu_index=unit.gpu_index, model=unit.model,
                simulated=unit.simulated, held=unit.id in holders, lease_id=lease_id(unit.id),
            )
            for unit in book.units
            if unit.pool == pool.id
        ]
        free: dict[str, int] = {}
        state, note = states.get(pool.id, ("open", ""))
        for unit in units:
            free.setdefault(unit.kind, 0)
            if not unit.held and state == "open":  # a draining pool grants nothing new
                free[unit.kind] += 1
                free_by_kind[unit.kind] = free_by_kind.get(unit.kind, 0) + 1
        pools.append(InventoryPool(id=pool.id, name=pool.name or pool.id, units=units, free=free,
                                   state=state, note=note))
    profiles = [
        InventoryProfile(
            id=profile.id, display_name=profile.display_name, gpu=profile.gpu,
            free_units=None if profile.gpu == "none" else free_by_kind.get(profile.gpu, 0),
        )
        for profile in book.alliance.profiles
    ]
    return Inventory(simulated=book.simulated, pools=pools, profiles=profiles)
