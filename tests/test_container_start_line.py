"""The start line and pre-starts on every backend (issue 18): the Docker and Kubernetes spawners
wait in the same line as local workspaces instead of JupyterHub's 429 (``LinedStart``, here in
front of a backend that only counts how many start at once), and honour a lesson's pre-start
(``PrestartedWorkspace``); the hub turns its own limit off and runs the pre-start service
whatever the backend."""

from __future__ import annotations

import asyncio

import pytest
from jupyterhub.spawner import Spawner
from traitlets.config import Config

from hub.config import HubSettings, configure_hub

from spawner.docker import DockerQuotaSpawner, LeasedDockerSpawner
from spawner.kubernetes import KubeQuotaSpawner, LeasedKubeSpawner
from spawner.light_start import LinedStart, start_line
from spawner.prestart import PrestartedWorkspace
from spawner.quota import QuotaSpawnerMixin


class _CountingBackend(Spawner):
    """Starts take a moment; counts how many run at once and in which order they began."""

    running = 0
    most = 0
    began: list = []

    async def start(self):
        cls = _CountingBackend
        cls.running += 1
        cls.most = max(cls.most, cls.running)
        cls.began.append(self.user.name)
        await asyncio.sleep(0.05)
        cls.running -= 1
        return "127.0.0.1", 8888

    async def stop(self, now=False):
        pass

    async def poll(self):
        return None


class _Lined(LinedStart, _CountingBackend):
    key = ()

    def start_priority(self):
        return self.key


class _User:
    def __init__(self, name):
        self.name = name
        self.url = f"/user/{name}/"


@pytest.mark.asyncio
async def test_more_starts_than_the_line_s_width_wait_in_its_order_and_none_fails():
    _CountingBackend.running = _CountingBackend.most = 0
    _CountingBackend.began = []
    spawners = []
    for k, (name, key) in enumerate([("first", (1,)), ("urban-1", (1,)), ("urban-2", (1,)), ("county", (0,))]):
        spawner = _Lined(user=_User(name), concurrent_starts=1)
        spawner.key = key
        spawners.append(spawner)
    first = asyncio.ensure_future(spawners[0].start())
    await asyncio.sleep(0.01)  # the first is starting; the others queue behind it
    rest = [asyncio.ensure_future(s.start()) for s in spawners[1:]]
    results = await asyncio.gather(first, *rest)
    assert results == [("127.0.0.1", 8888)] * 4
    assert _CountingBackend.most == 1
    assert _CountingBackend.began == ["first", "county", "urban-1", "urban-2"]  # the county school's start went ahead
    assert start_line(1).starting == 0


def test_the_container_spawners_take_the_line_and_pre_starts():
    for cls, backend in ((DockerQuotaSpawner, LeasedDockerSpawner), (KubeQuotaSpawner, LeasedKubeSpawner)):
        mro = cls.__mro__
        # the pre-start wraps the quota step, whose lease gives the line its order, before the backend starts
        assert mro.index(PrestartedWorkspace) < mro.index(QuotaSpawnerMixin) < mro.index(LinedStart) < mro.index(backend)
        assert cls.start_priority is QuotaSpawnerMixin.start_priority


ALLIANCE = """
name: Start line on every backend
tiers: {county: {weight: 2}}
pools: [{id: uni-a, gpus: 1, simulated: true}]
profiles: [{id: gpu, display_name: GPU, gpu: whole, max_minutes: 45}]
schools: [{id: c01, tier: county, students: [c01-s1]}]
fairshare: {reservation_lead_minutes: 3}
"""


@pytest.mark.parametrize("backend", ["local", "docker", "kubernetes"])
def test_the_hub_turns_its_429_off_and_runs_pre_starts_on_every_backend(tmp_path, backend):
    alliance = tmp_path / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    c = Config()
    configure_hub(c, HubSettings(alliance=alliance, data_dir=tmp_path / "srv", backend=backend,
                                 quota_url="http://127.0.0.1:8181"))
    assert c.JupyterHub.concurrent_spawn_limit == 0
    assert "prestart" in {service["name"] for service in c.JupyterHub.services}
