"""On a GPU server with CUDA MPS: two workspaces' processes on one GPU at the same time, each held
to its own memory cap by the environment the spawner gives them (spawner.sharing.cap_env).

Runs only where the NVIDIA driver (libcuda) and nvidia-cuda-mps-control are installed; elsewhere
it is skipped (marker ``gpu``). It starts its own MPS control daemon with private pipe and log
directories and quits it at the end.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spawner.sharing import cap_env
from spawner.specs import SharedCap

PROBE = Path(__file__).with_name("cuda_alloc_probe.py")
CHUNK_MIB = 64


def _gpu_and_mps() -> bool:
    return bool(ctypes.util.find_library("cuda")) and shutil.which("nvidia-cuda-mps-control") is not None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _gpu_and_mps(), reason="needs an NVIDIA GPU and CUDA MPS")]


@pytest.fixture
def mps_daemon(tmp_path):
    pipes, logs = tmp_path / "pipes", tmp_path / "logs"
    pipes.mkdir()
    logs.mkdir()
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(pipes), "CUDA_MPS_LOG_DIRECTORY": str(logs)}
    subprocess.run(["nvidia-cuda-mps-control", "-d"], env=env, check=True, timeout=30)
    try:
        deadline = time.monotonic() + 10
        while not (pipes / "control").exists():
            assert time.monotonic() < deadline, "the MPS control daemon made no control pipe"
            time.sleep(0.1)
        yield pipes
    finally:
        subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, env=env, timeout=30)


def test_two_workspaces_on_one_gpu_each_get_their_cap(mps_daemon):
    caps = {"first": 1024, "second": 2048}
    probes = {}
    for name, mib in caps.items():
        cap = SharedCap(memory_mib=mib, gpu_memory_mib=16384, students_per_gpu=2, enforcement="mps",
                        mps_pipe_directory=str(mps_daemon))
        env = {**os.environ, **cap_env(cap), "CUDA_VISIBLE_DEVICES": "0"}
        probes[name] = subprocess.Popen([sys.executable, str(PROBE), str(CHUNK_MIB), "5"], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for name, process in probes.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results[name] = json.loads(out.splitlines()[0])
    for name, mib in caps.items():
        got = results[name]["allocated_mib"]
        print(f"{name}: cap {mib} MiB, allocated {got} MiB")
        assert mib - 2 * CHUNK_MIB - 512 <= got <= mib, (name, got)  # the context's own memory counts too
    # both held their memory at the same time (the second started before the first let go)
    assert abs(results["first"]["started"] - results["second"]["started"]) < 5
