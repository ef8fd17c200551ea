"""The GPU units a pool can lease: whole GPUs and slices, read from NVML or declared.

A unit is what one lease holds: a whole GPU (``kind="whole"``) or one slice of a
partitioned GPU (``kind="slice"``). ``device`` is the value the workspace gets in
``CUDA_VISIBLE_DEVICES`` / ``NVIDIA_VISIBLE_DEVICES``.

On a server with NVIDIA GPUs the units come from NVML (nvidia-ml-py). On a machine
without GPUs the pools declared in the alliance file are used and every unit says
``simulated=True``, so the UI and logs can say so plainly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quota.alliance import Alliance, Pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    pool: str
    kind: str  # "whole" or "slice"
    device: str
    gpu_index: int
    simulated: bool
    model: str

    @property
    def id(self) -> str:
        return f"{self.pool}/{self.device}"


def declared_units(pool: Pool) -> list[Unit]:
    """Units of a pool as declared in the alliance file (no hardware is read)."""
    units: list[Unit] = []
    first_sliced = pool.gpus - pool.sliced_gpus
    for index in range(pool.gpus):
        if index < first_sliced:
            units.append(Unit(pool.id, "whole", str(index), index, pool.simulated, pool.gpu_model))
        else:
            for part in range(pool.slices_per_gpu):
                device = f"MIG-sim-{pool.id}-gpu{index}-slice{part}"
                units.append(Unit(pool.id, "slice", device, index, pool.simulated, pool.gpu_model))
    return units


def nvml_units(pool_id: str) -> list[Unit] | None:
    """Units of the GPUs on this machine, or None when NVML finds no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound on machines without a driver
        log.info("NVML found no GPU on this machine (%s)", exc.__class__.__name__)
        return None
    try:
        units: list[Unit] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            model = pynvml.nvmlDeviceGetName(handle)
            model = model.decode() if isinstance(model, bytes) else model
            mig_devices = []
            try:
                current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
                if current == pynvml.NVML_DEVICE_MIG_ENABLE:
                    for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
                        try:
                            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                        except pynvml.NVMLError:
                            continue
                        uuid = pynvml.nvmlDeviceGetUUID(mig)
                        mig_devices.append(uuid.decode() if isinstance(uuid, bytes) else uuid)
            except pynvml.NVMLError:
                pass  # GPUs without MIG support
            if mig_devices:
                units += [Unit(pool_id, "slice", uuid, index, False, model) for uuid in mig_devices]
            else:
                units.append(Unit(pool_id, "whole", str(index), index, False, model))
        return units
    finally:
        pynvml.nvmlShutdown()


def alliance_units(alliance: Alliance, use_nvml: bool = True) -> list[Unit]:
    """All units of the alliance. A pool marked ``simulated: false`` is read from NVML
    (the quota service runs on that GPU server); if NVML finds nothing it falls back to
    the declared inventory and logs that it did."""
    units: list[Unit] = []
    for pool in alliance.pools:
        found = nvml_units(pool.id) if (use_nvml and not pool.simulated) else None
        if found is None:
            if not pool.simulated:
                log.warning("pool %s: no GPU found through NVML; using the declared inventory, simulated", pool.id)
                found = [
                    Unit(u.pool, u.kind, u.device, u.gpu_index, True, u.model) for u in declared_units(pool)
                ]
            else:
                found = declared_units(pool)
        units += found
    return units
