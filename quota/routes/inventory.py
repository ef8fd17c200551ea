"""The GPU inventory: pools, their units and who holds them."""

from __future__ import annotations

from fastapi import APIRouter

from quota.deps import Authorized, Book
from quota.schemas import Inventory, InventoryPool, InventoryProfile, InventoryUnit

router = APIRouter(prefix="/api/inventory", tags=["inventory"], dependencies=Authorized)


@router.get("", response_model=Inventory)
def read_inventory(book: Book) -> Inventory:
    """Every pool with its units (device, kind, simulated, the lease holding it), free
    units per kind, and how many units each profile could get now."""
    holders = book.holders()
    pools = []
    free_by_kind: dict[str, int] = {}
    for pool in book.alliance.pools:
        units = [
            InventoryUnit(
                device=unit.device, kind=unit.kind, gpu_index=unit.gpu_index, model=unit.model,
                simulated=unit.simulated, lease_id=holders[unit.id].id if unit.id in holders else None,
            )
            for unit in book.units
            if unit.pool == pool.id
        ]
        free: dict[str, int] = {}
        for unit in units:
            free.setdefault(unit.kind, 0)
            if unit.lease_id is None:
                free[unit.kind] += 1
                free_by_kind[unit.kind] = free_by_kind.get(unit.kind, 0) + 1
        pools.append(InventoryPool(id=pool.id, name=pool.name or pool.id, units=units, free=free))
    profiles = [
        InventoryProfile(
            id=profile.id, display_name=profile.display_name, gpu=profile.gpu,
            free_units=None if profile.gpu == "none" else free_by_kind.get(profile.gpu, 0),
        )
        for profile in book.alliance.profiles
    ]
    return Inventory(simulated=book.simulated, pools=pools, profiles=profiles)
