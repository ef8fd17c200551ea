"""Which physical GPU unit each granted lease holds.

The allocator decides in slices of a pool; the lease book then gives the lease one real
unit (a GPU, or a MIG slice with its device string) of the pool and kind the allocator
chose: the free unit that comes first in the inventory, so a restart hands out the same
devices. Kept in memory with the allocator, rebuilt with it from the granted leases.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from quota.inventory import Unit


def gpu_fractions(units: list[Unit]) -> dict[str, float]:
    """How much of one GPU each unit is: 1 for a whole GPU, 1/n for one of n slices or
    one of n students' shares of a GPU."""
    slices_per_gpu: dict[tuple[str, int], int] = {}
    for unit in units:
        if unit.kind != "whole":
            key = (unit.pool, unit.gpu_index)
            slices_per_gpu[key] = slices_per_gpu.get(key, 0) + 1
    return {
        unit.id: 1.0 if unit.kind == "whole" else 1.0 / slices_per_gpu[(unit.pool, unit.gpu_index)] for unit in units
    }


class UnitHolders:
    def __init__(self, units: Iterable[Unit]):
        self.units = list(units)
        self._position = {unit.id: i for i, unit in enumerate(self.units)}
        self._fraction = gpu_fractions(self.units)
        self._free: dict[tuple[str, str], list[int]] = {}  # (pool, kind) -> heap of inventory positions
        for position, unit in enumerate(self.units):
            self._free.setdefault((unit.pool, unit.kind), []).append(position)
        self._holder: dict[str, str] = {}  # unit id -> lease id

    def empty(self) -> "UnitHolders":
        """The same inventory with every unit free."""
        return UnitHolders(self.units)

    def knows(self, unit_id: str) -> bool:
        return unit_id in self._position

    def fraction(self, unit_id: str) -> float:
        return self._fraction[unit_id]

    def take(self, pool: str, kind: str, lease_id: str) -> Unit:
        """The first free unit of ``pool`` and ``kind``, now held by ``lease_id``."""
        free = self._free.get((pool, kind))
        if not free:
            raise RuntimeError(f"the allocator granted a {kind} unit of pool {pool} but none is free")
        unit = self.units[heapq.heappop(free)]
        self._holder[unit.id] = lease_id
        return unit

    def hold(self, unit_id: str, lease_id: str) -> None:
        """``lease_id`` holds this unit already (a granted lease read back from the database)."""
        unit = self.units[self._position[unit_id]]
        free = self._free[(unit.pool, unit.kind)]
        free.remove(self._position[unit_id])
        heapq.heapify(free)
        self._holder[unit_id] = lease_id

    def give_back(self, unit_id: str, lease_id: str) -> None:
        """The lease ended: its unit is free again (nothing if it no longer held it)."""
        if self._holder.get(unit_id) != lease_id:
            return
        del self._holder[unit_id]
        unit = self.units[self._position[unit_id]]
        heapq.heappush(self._free[(unit.pool, unit.kind)], self._position[unit_id])

    def holders(self) -> dict[str, str]:
        """unit id -> lease id, for every held unit."""
        return dict(self._holder)
