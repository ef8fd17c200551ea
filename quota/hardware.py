"""The pools marked ``simulated: false`` checked against this machine's GPUs, through NVML.

The quota service runs on the GPU server of such pools. At start it reads every GPU through
NVML (nvidia-ml-py: whether MIG is enabled, its MIG devices and their profiles, the memory)
and compares it with what the alliance file declares. Pools marked ``simulated: false`` take
the machine's GPUs in the file's order (the first pool the first ``gpus`` of them, the next
pool the following ones); inside a pool, its whole GPUs come first and its MIG-sliced GPUs last,
as :func:`quota.inventory.declared_units` numbers them. Any difference stops the service with
:class:`InventoryMismatch`, naming the pool, the GPU and what to change: a GPU declared whole
that has MIG enabled, a sliced one with another number or profile of MIG devices, a shared one
with less memory than its students' caps, or fewer GPUs than declared. GPUs beyond the declared
ones are only logged: no pool lends them.

The NVML module is an explicit input (``pynvml`` in the service; a fake in the tests), read
by :func:`read_gpus` into plain :class:`Gpu` records; :func:`match_pools` compares those with
the alliance and gives the units, with no NVML in sight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quota.alliance import Alliance, Pool, size_bytes
from quota.inventory import Unit

log = logging.getLogger(__name__)


class InventoryMismatch(RuntimeError):
    """The alliance file's pools and this machine's GPUs disagree; the message says where and how to fix it."""


@dataclass(frozen=True)
class MigDevice:
    uuid: str
    name: str  # e.g. "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
    memory: int  # bytes


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory: int  # bytes, as NVML counts the GPU's total memory
    mig_enabled: bool
    mig_pending: bool | None = None  # the MIG mode after the next GPU reset (None: the GPU has no MIG)
    mig_devices: tuple[MigDevice, ...] = ()

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.name}, {self.uuid})"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpus(nvml) -> list[Gpu] | None:
    """Every GPU NVML reports, or None when NVML finds no driver or no GPU (the message is logged)."""
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound on machines without a driver
        log.info("NVML found no GPU on this machine (%s)", exc.__class__.__name__)
        return None
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            mig_enabled, mig_pending, mig_devices = False, None, []
            try:
                current, pending = nvml.nvmlDeviceGetMigMode(handle)
            except nvml.NVMLError:  # a GPU without MIG support (V100, T4, RTX)
                current = pending = None
            if current is not None:
                mig_enabled = current == nvml.NVML_DEVICE_MIG_ENABLE
                mig_pending = pending == nvml.NVML_DEVICE_MIG_ENABLE
            if mig_enabled:
                for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
                    try:
                        mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                    except nvml.NVMLError:
                        continue  # an empty slot
                    mig_devices.append(MigDevice(_text(nvml.nvmlDeviceGetUUID(mig)), _text(nvml.nvmlDeviceGetName(mig)),
                                                 int(nvml.nvmlDeviceGetMemoryInfo(mig).total)))
            gpus.append(Gpu(index, _text(nvml.nvmlDeviceGetUUID(handle)), _text(nvml.nvmlDeviceGetName(handle)),
                            int(nvml.nvmlDeviceGetMemoryInfo(handle).total), mig_enabled, mig_pending,
                            tuple(mig_devices)))
        return gpus
    finally:
        nvml.nvmlShutdown()


def hardware_pools(alliance: Alliance) -> list[Pool]:
    return [pool for pool in alliance.pools if not pool.simulated]


def match_pools(alliance: Alliance, gpus: list[Gpu] | None, source: str = "the alliance file") -> dict[str, list[Unit]]:
    """The units of every pool marked ``simulated: false``, read from ``gpus``; raises
    :class:`InventoryMismatch` at the first pool that does not match. ``source`` names the
    alliance file in the messages."""
    pools = hardware_pools(alliance)
    if not pools:
        return {}
    if not gpus:
        names = ", ".join(p.id for p in pools)
        raise InventoryMismatch(
            f"{source}: pool(s) {names} are marked simulated: false, but NVML finds no GPU on this machine; run the "
            "quota service on that GPU server (with the NVIDIA driver), or mark the pool(s) simulated: true"
        )
    units: dict[str, list[Unit]] = {}
    first = 0
    for pool in pools:
        mine = gpus[first:first + pool.gpus]
        if len(mine) < pool.gpus:
            raise InventoryMismatch(
                f"{source}: pool {pool.id} declares gpus: {pool.gpus}, but this machine has {len(gpus)} GPU(s) and "
                f"{first} of them belong to the pools before it, so {len(mine)} are left for it; set gpus to "
                f"{len(mine)} (or fewer), or move the pool to a server with more GPUs"
            )
        units[pool.id] = []
        for position, gpu in enumerate(mine):
            where = f"{source}: pool {pool.id}, {gpu.label}"
            sliced = position >= pool.whole_gpus
            if sliced:
                units[pool.id] += _slices(pool, gpu, where)
            else:
                if gpu.mig_enabled:
                    raise InventoryMismatch(
                        f"{where}: MIG is enabled with {len(gpu.mig_devices)} MIG device(s), but the pool declares it "
                        f"{'shared' if pool.shared else 'whole'} (GPU {position} of the pool, sliced_gpus: "
                        f"{pool.sliced_gpus}); disable MIG (nvidia-smi -i {gpu.index} -mig 0) or count it in sliced_gpus"
                    )
                if pool.shared is not None:
                    units[pool.id] += _shares(pool, gpu, where)
                else:
                    units[pool.id].append(Unit(pool.id, "whole", str(gpu.index), gpu.index, False, gpu.name))
        first += pool.gpus
    if len(gpus) > first:
        spare = ", ".join(g.label for g in gpus[first:])
        log.warning("%s lends no pool these GPUs of this machine: %s", source, spare)
    return units


def _slices(pool: Pool, gpu: Gpu, where: str) -> list[Unit]:
    fix = f"or set sliced_gpus / slices_per_gpu{' / mig_profile' if pool.mig_profile else ''} to what the GPU has"
    if not gpu.mig_enabled:
        pending = " (it is enabled after the next GPU reset: reset it)" if gpu.mig_pending else ""
        raise InventoryMismatch(
            f"{where}: MIG is not enabled{pending}, but the pool declares it sliced into {pool.slices_per_gpu} MIG "
            f"slices (the last {pool.sliced_gpus} GPU(s) of the pool are); enable MIG and create the slices "
            f"(nvidia-smi -i {gpu.index} -mig 1, then nvidia-smi mig -cgi ... -C), {fix}"
        )
    if len(gpu.mig_devices) != pool.slices_per_gpu:
        raise InventoryMismatch(
            f"{where}: has {len(gpu.mig_devices)} MIG device(s), but the pool declares slices_per_gpu: "
            f"{pool.slices_per_gpu}; create or destroy MIG instances to match, {fix}"
        )
    if pool.mig_profile:
        other = [m for m in gpu.mig_devices if not m.name.endswith(pool.mig_profile)]
        if other:
            raise InventoryMismatch(
                f"{where}: MIG device {other[0].uuid} is {other[0].name!r}, not of the declared mig_profile "
                f"{pool.mig_profile!r}; recreate it as {pool.mig_profile}, {fix}"
            )
    return [Unit(pool.id, "slice", m.uuid, gpu.index, False, gpu.name) for m in gpu.mig_devices]


def _shares(pool: Pool, gpu: Gpu, where: str) -> list[Unit]:
    shared = pool.shared
    needed = size_bytes(shared.memory_per_student) * shared.students_per_gpu
    if needed > gpu.memory:
        fits = gpu.memory // shared.students_per_gpu // 1024**2
        raise InventoryMismatch(
            f"{where}: has {gpu.memory // 1024**2} MiB of memory, less than the pool's shared.memory_per_student "
            f"({shared.memory_per_student}) x students_per_gpu ({shared.students_per_gpu}) = {needed // 1024**2} MiB; "
            f"set memory_per_student to at most {fits}M (and gpu_memory to {gpu.memory // 1024**2}M), or lower "
            "students_per_gpu"
        )
    if size_bytes(shared.gpu_memory) > gpu.memory:
        log.warning("%s: has %d MiB of memory, the pool declares gpu_memory %s; the caps fit all the same", where,
                    gpu.memory // 1024**2, shared.gpu_memory)
    return [Unit(pool.id, "shared", str(gpu.index), gpu.index, False, gpu.name, seat)
            for seat in range(shared.students_per_gpu)]
