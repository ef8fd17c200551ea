"""A stand-in for nvidia-ml-py's ``pynvml`` module: the GPUs a test declares, answered through
the same calls, constants and errors that :mod:`quota.hardware` uses.

- :func:`fake_nvml` gives a module object to pass to ``quota.inventory.alliance_units(nvml=...)``;
- :func:`install` writes a ``pynvml.py`` into a folder that, put first on ``PYTHONPATH``, makes
  a real ``python -m quota serve`` read the GPUs described by ``FAKE_NVML_GPUS`` (JSON).

A GPU is a dict: ``{"name", "memory_mib", "mig": None | False | True, "mig_pending": bool,
"mig_devices": [{"name", "memory_mib"}], "utilisation": percent}`` (``mig: None``: the GPU has no MIG support, as a V100).
``fake_nvml(None)`` is a machine without a driver: ``nvmlInit`` raises ``NVMLError_LibraryNotFound``.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1


def fake_nvml(gpus: list[dict] | None) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 (pynvml's name)
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801
        pass

    class NVMLError_NotFound(NVMLError):  # noqa: N801
        pass

    state = {"initialised": 0}

    def init():
        if gpus is None:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        state["initialised"] += 1

    def shutdown():
        state["initialised"] -= 1

    def need_init():
        if state["initialised"] <= 0:
            raise NVMLError("Uninitialized")

    def handle(index: int):
        need_init()
        return ("gpu", index)

    def mig_handle(parent, slot: int):
        gpu = gpus[parent[1]]
        devices = gpu.get("mig_devices") or []
        if slot >= len(devices):
            raise NVMLError_NotFound("Not Found")
        return ("mig", parent[1], slot)

    def spec(h) -> dict:
        gpu = gpus[h[1]]
        return gpu if h[0] == "gpu" else gpu["mig_devices"][h[2]]

    def mig_mode(h):
        gpu = gpus[h[1]]
        if gpu.get("mig") is None:
            raise NVMLError_NotSupported("Not Supported")
        current = NVML_DEVICE_MIG_ENABLE if gpu["mig"] else NVML_DEVICE_MIG_DISABLE
        pending = NVML_DEVICE_MIG_ENABLE if gpu.get("mig_pending", gpu["mig"]) else NVML_DEVICE_MIG_DISABLE
        return current, pending

    def uuid(h) -> str:
        return f"GPU-fake-{h[1]}" if h[0] == "gpu" else f"MIG-fake-{h[1]}-{h[2]}"

    nvml.NVMLError = NVMLError
    nvml.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    nvml.NVMLError_NotSupported = NVMLError_NotSupported
    nvml.NVML_DEVICE_MIG_DISABLE = NVML_DEVICE_MIG_DISABLE
    nvml.NVML_DEVICE_MIG_ENABLE = NVML_DEVICE_MIG_ENABLE
    nvml.nvmlInit = init
    nvml.nvmlShutdown = shutdown
    nvml.nvmlDeviceGetCount = lambda: (need_init(), len(gpus))[1]
    nvml.nvmlDeviceGetHandleByIndex = handle
    nvml.nvmlDeviceGetName = lambda h: spec(h)["name"]
    nvml.nvmlDeviceGetUUID = uuid
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=spec(h)["memory_mib"] * 1024**2, free=0, used=0)
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=spec(h).get("utilisation", 0), memory=0)
    nvml.nvmlDeviceGetMigMode = mig_mode
    nvml.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7 if gpus[h[1]].get("mig") is not None else 0
    nvml.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    nvml.state = state
    return nvml


def install(folder: Path) -> Path:
    """A ``pynvml.py`` in ``folder`` that answers with the GPUs in ``$FAKE_NVML_GPUS`` ("null": no driver)."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "pynvml.py"
    shim.write_text(
        "import json, os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from tests.fake_nvml import fake_nvml\n"
        "globals().update({k: v for k, v in vars(fake_nvml(json.loads(os.environ['FAKE_NVML_GPUS']))).items()\n"
        "                  if not k.startswith('__')})\n"
    )
    return shim


def gpus_json(gpus: list[dict] | None) -> str:
    return json.dumps(gpus)
