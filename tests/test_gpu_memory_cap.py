"""The soft cap inside a workspace on a shared GPU (workspace/gpu_commons_workspace/gpu_memory_cap.py):
the IPython startup file the workspace's server writes, run by a real IPython, tells PyTorch and
TensorFlow the student's GPU memory when they are imported. Stand-ins for ``torch`` and
``tensorflow`` record the calls (no GPU and no frameworks here).

The module is loaded from the repository (the test environment installs the workspace package
as a copy, which a new module reaches only at the next install).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "gpu_memory_cap", REPO / "workspace" / "gpu_commons_workspace" / "gpu_memory_cap.py")
cap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cap)

FAKE_TORCH = """
import json, os
class cuda:
    @staticmethod
    def is_available():
        return True
    @staticmethod
    def set_per_process_memory_fraction(fraction, device):
        with open(os.environ["CALLS"], "a") as f:
            f.write(json.dumps(["torch", round(fraction, 4), device]) + "\\n")
"""
FAKE_TENSORFLOW = """
import json, os
class LogicalDeviceConfiguration:
    def __init__(self, memory_limit):
        self.memory_limit = memory_limit
class config:
    LogicalDeviceConfiguration = LogicalDeviceConfiguration
    @staticmethod
    def list_physical_devices(kind):
        return ["/physical_device:GPU:0"] if kind == "GPU" else []
    @staticmethod
    def set_logical_device_configuration(gpu, configs):
        with open(os.environ["CALLS"], "a") as f:
            f.write(json.dumps(["tensorflow", gpu, [c.memory_limit for c in configs]]) + "\\n")
"""

SHARED = {"GPU_COMMONS_GPU_MEMORY_MIB": "3584", "GPU_COMMONS_GPU_TOTAL_MIB": "15360", "GPU_COMMONS_GPU_CAP": "soft"}


def test_the_startup_file_is_written_for_a_shared_gpu_and_removed_without_one(tmp_path):
    home = tmp_path / "home"
    written = cap.install_startup(SHARED, home)
    assert written == home / ".ipython" / "profile_default" / "startup" / "00-gpu-commons-gpu-memory-cap.py"
    assert "3584 MiB of its memory are yours" in written.read_text()
    assert cap.install_startup({}, home) is None and not written.exists()
    elsewhere = cap.install_startup({**SHARED, "IPYTHONDIR": str(tmp_path / "ipy")}, home)
    assert elsewhere == tmp_path / "ipy" / "profile_default" / "startup" / "00-gpu-commons-gpu-memory-cap.py"
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anyway
        assert cap.install_startup(SHARED, tmp_path / "ro") is None  # a home it cannot write: the start goes on


@pytest.mark.parametrize("code, expected", [
    ("import torch", ['["torch", 0.2333, 0]']),
    ("import tensorflow as tf; import torch", ['["tensorflow", "/physical_device:GPU:0", [3584]]',
                                               '["torch", 0.2333, 0]']),
    ("import json", []),  # neither framework: nothing happens
])
def test_a_kernel_tells_the_frameworks_the_cap_when_it_imports_them(tmp_path, code, expected):
    packages = tmp_path / "site"
    for name, source in (("torch", FAKE_TORCH), ("tensorflow", FAKE_TENSORFLOW)):
        (packages / name).mkdir(parents=True)
        (packages / name / "__init__.py").write_text(source)
    env = {**os.environ, **SHARED, "IPYTHONDIR": str(tmp_path / "ipython"), "PYTHONPATH": str(packages),
           "CALLS": str(tmp_path / "calls")}
    cap.install_startup(env, tmp_path)
    finished = subprocess.run([sys.executable, "-m", "IPython", "-c", code],
                              env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    assert calls == expected, finished.stderr
