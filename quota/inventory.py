"""The GPU units a pool can lease: whole GPUs, MIG slices and shares of a GPU, read from NVML or declared.

A unit is what one lease holds: a whole GPU (``kind="whole"``), one MIG slice of a
partitioned GPU (``kind="slice"``) or one student's share of a GPU that several students
use at once (``kind="shared"``: ``students_per_gpu`` units per GPU, told apart by ``seat``,
all with that GPU's device). ``device`` is the value the workspace gets in
``CUDA_VISIBLE_DEVICES`` / ``NVIDIA_VISIBLE_DEVICES``.

The pools marked ``simulated: false`` are read from this machine's GPUs through NVML and
checked against their declaration (:mod:`quota.hardware`: a mismatch stops the service). The
other pools are used as declared in the alliance file and every unit says ``simulated=True``,
so the UI and logs can say so plainly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quota.alliance import Alliance, Pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    pool: str
    kind: str  # "whole", "slice" or "shared"
    device: str
    gpu_index: int
    simulated: bool
    model: str
    seat: int | None = None  # which of a shared GPU's students_per_gpu shares

    @property
    def id(self) -> str:
        return f"{self.pool}/{self.device}" if self.seat is None else f"{self.pool}/{self.device}#{self.seat}"


def declared_units(pool: Pool) -> list[Unit]:
    """Units of a pool as declared in the alliance file (no hardware is read)."""
    units: list[Unit] = []
    for index in range(pool.gpus):
        if index < pool.whole_gpus and pool.shared is not None:
            units += [Unit(pool.id, "shared", str(index), index, pool.simulated, pool.gpu_model, seat)
                      for seat in range(pool.shared.students_per_gpu)]
        elif index < pool.whole_gpus:
            units.append(Unit(pool.id, "whole", str(index), index, pool.simulated, pool.gpu_model))
        else:
            for part in range(pool.slices_per_gpu):
                device = f"MIG-sim-{pool.id}-gpu{index}-slice{part}"
                units.append(Unit(pool.id, "slice", device, index, pool.simulated, pool.gpu_model))
    return units


def alliance_units(alliance: Alliance, use_nvml: bool = True, nvml=None, source: str = "the alliance file") -> list[Unit]:
    """All units of the alliance. The pools marked ``simulated: false`` are read through
    ``nvml`` (default: the ``pynvml`` module of nvidia-ml-py) and must match their declaration,
    else :class:`quota.hardware.InventoryMismatch`. With ``use_nvml=False`` (tests, a
    rehearsal on a machine without the GPUs) they are used as declared, marked simulated."""
    from quota.hardware import match_pools, read_gpus  # it builds Units

    found: dict[str, list[Unit]] = {}
    if use_nvml and any(not pool.simulated for pool in alliance.pools):
        if nvml is None:
            import pynvml as nvml
        found = match_pools(alliance, read_gpus(nvml), source)
    units: list[Unit] = []
    for pool in alliance.pools:
        if pool.id in found:
            units += found[pool.id]
        elif not pool.simulated:
            log.warning("pool %s: GPUs not read (use_nvml is off); using the declared inventory, simulated", pool.id)
            units += [Unit(u.pool, u.kind, u.device, u.gpu_index, True, u.model, u.seat) for u in declared_units(pool)]
        else:
            units += declared_units(pool)
    return units
