"""A busy GPU is a used workspace: NVML's utilisation of each held GPU reaches the allocator.

The hub's ``last_activity`` (:mod:`quota.reconcile`) sees a student typing; a training loop
that runs for an hour with the browser closed is use too, and a notebook left open on an
idle GPU is not. So every ``gpu_activity_interval_s`` the service asks NVML how busy each
held whole GPU of its hardware pools is, and touches the lease holding a GPU at least
``gpu_busy_percent`` busy (:meth:`quota.leases.LeaseBook.touch`).

NVML reports utilisation per physical GPU only: a MIG slice or a GPU shared by several
students cannot be told apart by it, so those leases count as used by the hub's activity
alone (docs/operations.md). Simulated pools have no GPU to ask. On Kubernetes the GPUs are
on other nodes; DCGM exporter's ``DCGM_FI_DEV_GPU_UTIL`` is the source there (not read here).

:func:`busy_leases` decides over plain data; :class:`GpuActivity` does the I/O around it and
takes the NVML module as an input (tests give it a fake).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)


def busy_leases(holders: Mapping[str, str], units: Mapping[str, object], utilisation: Mapping[int, int],
                busy_percent: int) -> list[str]:
    """Leases (of ``holders``: unit id -> lease id) whose whole, real GPU is at least
    ``busy_percent`` busy (``utilisation``: GPU index -> percent), in the holders' order."""
    busy = []
    for unit_id, lease_id in holders.items():
        unit = units.get(unit_id)
        if unit is None or unit.simulated or unit.kind != "whole":
            continue
        if utilisation.get(unit.gpu_index, -1) >= busy_percent:
            busy.append(lease_id)
    return busy


def read_utilisation(nvml, indexes: set[int]) -> dict[int, int]:
    """GPU index -> percent of time a kernel ran over NVML's last sample period; GPUs NVML
    cannot answer for are left out."""
    found = {}
    nvml.nvmlInit()
    try:
        for index in sorted(indexes):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                found[index] = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError as exc:
                log.warning("NVML could not tell how busy GPU %d is: %s", index, exc)
    finally:
        nvml.nvmlShutdown()
    return found


class GpuActivity:
    def __init__(self, book, units: list, nvml, busy_percent: int):
        self._book = book
        self._units = {unit.id: unit for unit in units}
        self._nvml = nvml
        self._busy_percent = busy_percent
        self._real_whole = {unit.gpu_index for unit in units if not unit.simulated and unit.kind == "whole"}
        self._last: dict[str, tuple[str, float]] = {}  # unit id -> (pool, busy fraction) at the last reading

    @property
    def has_gpus(self) -> bool:
        return bool(self._real_whole)

    def sample_once(self) -> list[str]:
        """Touch the leases whose GPU is busy now; returns them."""
        holders = {unit_id: lease.id for unit_id, lease in self._book.holders().items()}
        held = {self._units[unit_id].gpu_index for unit_id in holders
                if unit_id in self._units and self._units[unit_id].gpu_index in self._real_whole}
        if not held:
            self._last = {}
            return []
        utilisation = read_utilisation(self._nvml, held)
        self._last = {unit_id: (self._units[unit_id].pool, utilisation[self._units[unit_id].gpu_index] / 100)
                      for unit_id in holders
                      if unit_id in self._units and self._units[unit_id].gpu_index in utilisation
                      and self._units[unit_id].kind == "whole" and not self._units[unit_id].simulated}
        busy = busy_leases(holders, self._units, utilisation, self._busy_percent)
        for lease_id in busy:
            self._book.touch(lease_id)
        return busy

    def readings(self) -> dict[str, tuple[str, float]]:
        """Unit id -> (pool, busy fraction) of the held real whole GPUs at the last reading (for /metrics)."""
        return dict(self._last)

    async def run_forever(self, every_s: float) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sample_once)
            except Exception:  # NVML away for a moment (driver reload): try again next time
                log.exception("could not sample GPU utilisation")
            await asyncio.sleep(every_s)


def gpu_activity_for(book, units: list, settings, nvml=None) -> GpuActivity | None:
    """The sampler when NVML is used and a hardware pool has whole GPUs; None otherwise."""
    if not settings.use_nvml:
        return None
    if nvml is None:
        import pynvml as nvml
    activity = GpuActivity(book, units, nvml, settings.gpu_busy_percent)
    return activity if activity.has_gpus else None
