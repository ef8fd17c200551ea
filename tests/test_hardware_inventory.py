"""Pools marked ``simulated: false`` checked against the GPUs NVML reports (issue 12, point 5).

NVML is replaced by a fake module (tests/fake_nvml.py) handed to the checker, or installed
as ``pynvml`` for a real ``python -m quota serve``: a mismatch stops the service at start
with the pool, the GPU and the fix; a match gives units read from the hardware.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from quota.alliance import parse_alliance
from quota.app import create_app
from quota.hardware import InventoryMismatch
from quota.inventory import alliance_units
from quota.settings import QuotaSettings
from tests.fake_nvml import fake_nvml, gpus_json, install

V100 = {"name": "Tesla V100-SXM2-16GB", "memory_mib": 16160, "mig": None}
T4 = {"name": "Tesla T4", "memory_mib": 15360, "mig": None}
A100 = {"name": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920, "mig": False}


def a100_mig(profile: str = "3g.40gb", count: int = 2) -> dict:
    return {**A100, "mig": True, "mig_devices": [{"name": f"NVIDIA A100-SXM4-80GB MIG {profile}", "memory_mib": 40192}] * count}


def alliance(*pools: dict):
    return parse_alliance({"tiers": {"county": {}}, "schools": [{"id": "c01", "tier": "county"}],
                           "pools": [{"simulated": False, **pool} for pool in pools]}, "alliance.yaml")


def shared(cap: str, students: int = 4, memory: str = "16G") -> dict:
    return {"students_per_gpu": students, "memory_per_student": cap, "gpu_memory": memory}


def units_of(nvml, *pools: dict):
    return alliance_units(alliance(*pools), nvml=nvml, source="alliance.yaml")


def test_whole_gpus_are_read_from_the_hardware():
    nvml = fake_nvml([V100, V100])
    units = units_of(nvml, {"id": "uni-a", "gpus": 2})
    assert [(u.kind, u.device, u.gpu_index, u.simulated, u.model) for u in units] == [
        ("whole", "0", 0, False, "Tesla V100-SXM2-16GB"), ("whole", "1", 1, False, "Tesla V100-SXM2-16GB")]
    assert nvml.state["initialised"] == 0  # every nvmlInit was shut down


def test_a_shared_gpu_is_its_students_shares_when_the_caps_fit_its_memory():
    units = units_of(fake_nvml([T4]), {"id": "uni-t", "gpus": 1, "shared": shared("3840M", 4, "15360M")})
    assert [(u.kind, u.device, u.seat, u.simulated) for u in units] == [("shared", "0", seat, False) for seat in range(4)]
    assert len({u.id for u in units}) == 4  # four leases can hold the one GPU


def test_shared_caps_larger_than_the_real_memory_stop_the_start():
    # 4 x 4G = 16384 MiB was declared for a "16 GB" V100; NVML counts 16160 MiB
    with pytest.raises(InventoryMismatch) as error:
        units_of(fake_nvml([V100]), {"id": "uni-v", "gpus": 1, "shared": shared("4G")})
    message = str(error.value)
    assert "alliance.yaml: pool uni-v, GPU 0 (Tesla V100-SXM2-16GB, GPU-fake-0)" in message
    assert "16160 MiB" in message and "set memory_per_student to at most 4040M" in message


def test_a_gpu_declared_whole_with_mig_enabled_stops_the_start():
    with pytest.raises(InventoryMismatch,
                       match=r"pool uni-a, GPU 1 \(NVIDIA A100-SXM4-80GB, GPU-fake-1\): MIG is enabled with 2 MIG "
                             r"device\(s\), but the pool declares it whole .*nvidia-smi -i 1 -mig 0"):
        units_of(fake_nvml([A100, a100_mig()]), {"id": "uni-a", "gpus": 2})


def test_sliced_gpus_must_have_the_declared_mig_devices():
    pool = {"id": "uni-m", "gpus": 2, "sliced_gpus": 1, "slices_per_gpu": 2, "mig_profile": "3g.40gb"}
    units = units_of(fake_nvml([A100, a100_mig()]), pool)
    assert [(u.kind, u.device) for u in units] == [("whole", "0"), ("slice", "MIG-fake-1-0"), ("slice", "MIG-fake-1-1")]
    with pytest.raises(InventoryMismatch, match=r"pool uni-m, GPU 1 .*: has 3 MIG device\(s\), but the pool declares "
                                                r"slices_per_gpu: 2"):
        units_of(fake_nvml([A100, a100_mig(count=3)]), pool)
    with pytest.raises(InventoryMismatch, match=r"GPU 1 .*'NVIDIA A100-SXM4-80GB MIG 1g.10gb', not of the declared "
                                                r"mig_profile '3g.40gb'"):
        units_of(fake_nvml([A100, a100_mig("1g.10gb")]), pool)
    with pytest.raises(InventoryMismatch, match=r"pool uni-m, GPU 1 .*MIG is not enabled \(it is enabled after the "
                                                r"next GPU reset: reset it\)"):
        units_of(fake_nvml([A100, {**A100, "mig_pending": True}]), pool)
    with pytest.raises(InventoryMismatch, match=r"GPU 0 \(Tesla T4.*MIG is not enabled"):
        units_of(fake_nvml([T4]), {"id": "uni-m", "gpus": 1, "sliced_gpus": 1})


def test_pools_take_the_machines_gpus_in_file_order_and_may_not_declare_more():
    units = units_of(fake_nvml([V100, V100, T4]), {"id": "uni-a", "gpus": 2}, {"id": "uni-t", "gpus": 1})
    assert [(u.pool, u.device, u.model) for u in units] == [
        ("uni-a", "0", "Tesla V100-SXM2-16GB"), ("uni-a", "1", "Tesla V100-SXM2-16GB"), ("uni-t", "2", "Tesla T4")]
    with pytest.raises(InventoryMismatch, match=r"pool uni-t declares gpus: 2, but this machine has 3 GPU\(s\) and 2 "
                                                r"of them belong to the pools before it, so 1 are left for it"):
        units_of(fake_nvml([V100, V100, T4]), {"id": "uni-a", "gpus": 2}, {"id": "uni-t", "gpus": 2})


def test_no_driver_stops_a_start_that_expects_gpus_and_simulated_pools_need_none():
    with pytest.raises(InventoryMismatch, match="pool\\(s\\) uni-a are marked simulated: false, but NVML finds no GPU"):
        units_of(fake_nvml(None), {"id": "uni-a", "gpus": 1})
    declared = alliance_units(alliance({"id": "uni-s", "gpus": 1, "simulated": True}), nvml=fake_nvml(None))
    assert [(u.kind, u.simulated) for u in declared] == [("whole", True)]


def test_the_service_serves_the_units_it_read(tmp_path, monkeypatch):
    (tmp_path / "alliance.yaml").write_text(
        "tiers: {county: {}}\nschools: [{id: c01, tier: county}]\n"
        "pools: [{id: uni-t, gpus: 1, simulated: false, shared: {students_per_gpu: 2, memory_per_student: 7G, "
        "gpu_memory: 15G}}]\nprofiles: [{id: gpu-shared, display_name: Shared, gpu: shared}]\n")
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([T4]))
    settings = QuotaSettings(alliance=tmp_path / "alliance.yaml", data_dir=tmp_path / "q", api_token="t")
    with TestClient(create_app(settings, run_timers=False), headers={"Authorization": "token t"}) as client:
        inventory = client.get("/api/inventory").json()
    assert inventory["simulated"] is False
    assert [(u["kind"], u["device"], u["model"], u["simulated"]) for u in inventory["pools"][0]["units"]] == [
        ("shared", "0", "Tesla T4", False)] * 2
    assert inventory["profiles"][0]["free_units"] == 2


@pytest.mark.parametrize("gpus, expected", [
    ([V100], "quota service not started: .*alliance.yaml: pool uni-a, GPU 0 \\(Tesla V100-SXM2-16GB, GPU-fake-0\\): "
             "has 16160 MiB of memory, less than"),
    (None, "quota service not started: .*alliance.yaml: pool\\(s\\) uni-a are marked simulated: false, but NVML finds"),
])
def test_quota_serve_stops_at_start_naming_the_pool_and_the_gpu(tmp_path, gpus, expected):
    install(tmp_path / "fake")
    (tmp_path / "alliance.yaml").write_text(
        "tiers: {county: {}}\nschools: [{id: c01, tier: county}]\n"
        "pools: [{id: uni-a, gpus: 1, simulated: false, shared: {students_per_gpu: 2, memory_per_student: 8G, "
        "gpu_memory: 16G}}]\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake"), "FAKE_NVML_GPUS": gpus_json(gpus),
           "GPU_COMMONS_ALLIANCE": str(tmp_path / "alliance.yaml"), "GPU_COMMONS_DATA_DIR": str(tmp_path / "q"),
           "GPU_COMMONS_API_TOKEN": "t", "GPU_COMMONS_BIND_URL": "http://127.0.0.1:1"}
    finished = subprocess.run([sys.executable, "-m", "quota", "serve"], env=env, capture_output=True, text=True,
                              timeout=60)
    assert finished.returncode == 2, finished.stderr
    assert re.search(expected, finished.stderr), finished.stderr


def test_the_real_nvml_module_is_read_the_same_way():
    """nvidia-ml-py itself: on a machine without a driver (this one) NVML finds nothing and a
    pool expecting GPUs stops the start; on a GPU server every GPU is read with its memory."""
    import pynvml

    from quota.hardware import read_gpus

    gpus = read_gpus(pynvml)
    if gpus is None:
        with pytest.raises(InventoryMismatch, match="NVML finds no GPU on this machine"):
            units_of(pynvml, {"id": "uni-a", "gpus": 1})
    else:
        assert all(gpu.memory > 0 and gpu.uuid and gpu.name for gpu in gpus)
        assert all(len(gpu.mig_devices) > 0 for gpu in gpus if gpu.mig_enabled)
