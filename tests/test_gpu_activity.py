"""Busy GPUs count as use (issue 15, point 4): NVML's utilisation of each held whole GPU
touches the lease that holds it, with NVML replaced by a fake (tests/fake_nvml.py)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from fastapi.testclient import TestClient

from quota.app import create_app
from quota.gpu_activity import GpuActivity, busy_leases, gpu_activity_for
from quota.settings import QuotaSettings
from tests.fake_nvml import fake_nvml

T4 = {"name": "Tesla T4", "memory_mib": 15360, "mig": None}
ALLIANCE = """
tiers: {county: {}}
schools: [{id: c01, tier: county, students: [c01-s1, c01-s2, c01-s3]}]
pools: [{id: uni-t, gpus: 2, simulated: false}]
profiles: [{id: gpu-whole, display_name: One GPU, gpu: whole, max_minutes: 60}]
"""


def unit(gpu_index, kind="whole", simulated=False):
    return SimpleNamespace(gpu_index=gpu_index, kind=kind, simulated=simulated)


def test_only_real_whole_gpus_busy_enough_count():
    units = {"a": unit(0), "b": unit(1), "c": unit(2, kind="slice"), "d": unit(3, simulated=True), "e": unit(4)}
    holders = {"a": "l-a", "b": "l-b", "c": "l-c", "d": "l-d", "e": "l-e", "gone": "l-gone"}
    utilisation = {0: 80, 1: 4, 2: 100, 3: 100}  # GPU 4: NVML could not say
    assert busy_leases(holders, units, utilisation, busy_percent=5) == ["l-a"]
    assert busy_leases(holders, units, utilisation, busy_percent=4) == ["l-a", "l-b"]


def test_the_lease_on_a_busy_gpu_is_touched_and_the_idle_one_is_not(tmp_path, monkeypatch):
    gpus = [dict(T4, utilisation=0), dict(T4, utilisation=0)]
    nvml = fake_nvml(gpus)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    (tmp_path / "alliance.yaml").write_text(ALLIANCE)
    now = [1_790_000_000.0]
    from datetime import datetime, timezone

    clock = lambda: datetime.fromtimestamp(now[0], timezone.utc)  # noqa: E731
    settings = QuotaSettings(alliance=tmp_path / "alliance.yaml", data_dir=tmp_path / "q", api_token="t")
    with TestClient(create_app(settings, clock=clock, run_timers=False)) as client:
        book = client.app.state.book
        first, _ = book.request("c01-s1", "c01", "gpu-whole", None)
        second, _ = book.request("c01-s2", "c01", "gpu-whole", None)
        devices = {first.id: int(book.get(first.id).device), second.id: int(book.get(second.id).device)}
        granted_at = now[0]
        now[0] += 600
        gpus[devices[first.id]]["utilisation"] = 93  # a training loop; the other notebook sits idle
        sampler = GpuActivity(book, book.units, nvml, busy_percent=5)
        assert sampler.sample_once() == [first.id]
        sessions = book._memory().allocator.sessions
        assert sessions[first.id].last_active == now[0]
        assert sessions[second.id].last_active == granted_at
        assert nvml.state["initialised"] == 0  # NVML shut down after each reading


def test_no_sampler_without_real_whole_gpus(tmp_path):
    simulated = [SimpleNamespace(id="p/0", gpu_index=0, kind="whole", simulated=True)]
    settings = SimpleNamespace(use_nvml=True, gpu_busy_percent=5)
    assert gpu_activity_for(object(), simulated, settings, nvml=fake_nvml([T4])) is None
    real = [SimpleNamespace(id="p/0", gpu_index=0, kind="whole", simulated=False)]
    assert gpu_activity_for(object(), real, SimpleNamespace(use_nvml=False, gpu_busy_percent=5)) is None
    assert gpu_activity_for(object(), real, settings, nvml=fake_nvml([T4])) is not None
