"""How much GPU memory one process may take, through the CUDA driver alone (ctypes, no framework).

Run as a script: ``python tests/cuda_alloc_probe.py <chunk MiB> <hold seconds>``. It creates a
context on device 0, allocates chunks until the driver refuses, prints the MiB it got as JSON,
holds them ``hold`` seconds (so two probes are on the GPU at the same time) and frees them. Under
CUDA MPS with ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` the refusal comes at the cap. Used by
tests/test_shared_gpu_device.py, which runs only where a GPU and MPS are.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time


def probe(chunk_mib: int, hold_s: float) -> dict:
    cuda = ctypes.CDLL("libcuda.so.1")
    check = lambda result, what: result == 0 or sys.exit(f"{what} failed: CUDA error {result}")  # noqa: E731
    check(cuda.cuInit(0), "cuInit")
    device = ctypes.c_int()
    check(cuda.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
    context = ctypes.c_void_p()
    check(cuda.cuCtxCreate_v2(ctypes.byref(context), 0, device), "cuCtxCreate")
    pointers = []
    while True:
        pointer = ctypes.c_uint64()
        if cuda.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(chunk_mib * 1024**2)) != 0:
            break
        pointers.append(pointer)
        if len(pointers) * chunk_mib > 1024 * 1024:  # 1 TiB: no cap at all
            break
    got = {"allocated_mib": len(pointers) * chunk_mib, "started": time.time()}
    print(json.dumps(got), flush=True)
    time.sleep(hold_s)
    for pointer in pointers:
        cuda.cuMemFree_v2(pointer)
    cuda.cuCtxDestroy_v2(context)
    return got


if __name__ == "__main__":
    probe(int(sys.argv[1]), float(sys.argv[2]))
