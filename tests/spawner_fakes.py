"""Fakes for the spawner's lease steps, without a hub, a quota service or a process.

- :class:`FakeQuotaService`: an ``httpx.MockTransport`` handler that answers each route from
  a script and records every call, so a test asserts exactly what the spawner asked; the
  fixture :func:`service` gives a test one and closes it (import it into the test module);
- :class:`FakeBackend`: the JupyterHub spawner the mixin sits in front of; it records
  start/stop and runs nothing;
- :func:`student`: a user object as the mixin reads it (name, groups with properties);
- :func:`leased_spawner`: the mixin in front of the fake backend, talking to a fake service;
- :func:`prestarted_spawner`: the same with the pre-start step in front (spawner/prestart.py),
  started as the hub's pre-start service starts it (``user_options.prestart``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from jupyterhub.spawner import Spawner
from traitlets import Any, Integer, List

from spawner.prestart import PrestartedWorkspace
from spawner.quota import QuotaSpawnerMixin
from spawner.quota_client import QuotaClient

ALLIANCE = """
name: Spawner lease test alliance
tiers: {county: {weight: 2}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
"""

QUOTA_URL = "http://quota.test"
LIBRARY_ATTACHED = "/api/library/attached/"  # asked at each start; unscripted: 404, the file's entries
DEVICE = "MIG-test-1-0"
LOG = logging.getLogger("tests.spawner_leases")

# A script entry that makes the transport fail as a refused connection would.
CONNECTION_REFUSED = object()


def write_alliance(directory: Path) -> Path:
    path = directory / "alliance.yaml"
    path.write_text(ALLIANCE)
    return path


def at(minutes: float) -> str:
    """An ISO time ``minutes`` from now (negative: in the past)."""
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()


def lease(state: str = "granted", lease_id: str = "l-1", *, ends_in: float | None = 30, **fields) -> dict:
    """A lease as the service's JSON has it; granted leases get a device and an end."""
    body = {
        "id": lease_id, "user": "c01-s1", "school": "c01", "tier": "county", "profile": "gpu-slice",
        "state": state, "pool": None, "device": None, "unit_kind": None, "simulated": True,
        "expires_at": None, "queue_position": None, "wait_estimate_s": None, "reclaim_at": None, "reason": None,
    }
    if state == "granted":
        body.update(pool="test-pool", device=DEVICE, unit_kind="slice",
                    expires_at=at(ends_in) if ends_in is not None else None)
    body.update(fields)
    return body


def unavailable() -> httpx.Response:
    """The service while it restarts or fails over to a standby."""
    return httpx.Response(503, json={"detail": "The quota service cannot decide right now: the journal is being replayed"},
                          headers={"Retry-After": "2"})


def renewal_refused(why: str = "Someone with a better claim is waiting.", ends: str = "14:30") -> httpx.Response:
    return httpx.Response(409, json={"detail": f"lease: It cannot be renewed now: {why} Save your work: it ends at {ends} UTC."})


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict | None


class FakeQuotaService:
    """Answers each (method, path) with its scripted answers in order, the last one again
    and again. An answer is a JSON body (200), an ``httpx.Response``, an exception to raise,
    or :data:`CONNECTION_REFUSED`. DELETEs answer "released" and GETs of the library's
    attachments 404 (recorded in ``library_calls``, not ``calls``) unless scripted; any other
    unscripted call fails the test."""

    def __init__(self):
        self.calls: list[Call] = []
        self.library_calls: list[str] = []  # GET /api/library/attached/<user>, asked at each start
        self._script: dict[tuple[str, str], list] = {}
        self._clients: list[httpx.AsyncClient] = []

    def answer(self, method: str, path: str, *answers) -> None:
        self._script[(method, path)] = list(answers)

    def paths(self, method: str) -> list[str]:
        return [call.path for call in self.calls if call.method == method]

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        answers = self._script.get((request.method, request.url.path))
        if request.method == "GET" and request.url.path.startswith(LIBRARY_ATTACHED):
            self.library_calls.append(request.url.path)  # apart: the lease tests count their own calls
            if not answers:
                return httpx.Response(404, json={"detail": "Not Found"})  # a service without the route
        else:
            self.calls.append(Call(request.method, request.url.path, body))
        if not answers:
            if request.method == "DELETE":
                return httpx.Response(200, json=lease("released"))
            raise AssertionError(f"unexpected call to the quota service: {request.method} {request.url.path}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer is CONNECTION_REFUSED:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    def client(self) -> QuotaClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
        self._clients.append(http)
        return QuotaClient(QUOTA_URL, "hub-token", 5.0, LOG, http=http)

    async def close(self) -> None:
        for http in self._clients:
            await http.aclose()


@pytest.fixture
async def service():
    """A :class:`FakeQuotaService` for one test; its clients are closed after it."""
    fake = FakeQuotaService()
    yield fake
    await fake.close()


class FakeBackend(Spawner):
    """Stands for the sandboxed local, Docker or Kubernetes spawner."""

    start_error = Any(None)  # raised by start(), as a backend that cannot start the workspace
    starts = Integer(0)
    stops = List()  # the ``now`` of each stop()
    running = Any(False)

    async def start(self):
        self.starts += 1
        if self.start_error is not None:
            raise self.start_error
        self.running = True
        return ("127.0.0.1", 8888)

    async def stop(self, now=False):
        self.stops.append(now)
        self.running = False

    async def poll(self):
        return None if self.running else 0


class LeasedFakeSpawner(QuotaSpawnerMixin, FakeBackend):
    pass


class PrestartedFakeSpawner(PrestartedWorkspace, LeasedFakeSpawner):
    pass


# The alliance of the fakes with a lead: a class's workspaces may start 3 minutes before its lesson.
ALLIANCE_WITH_LEAD = ALLIANCE + "fairshare: {reservation_lead_minutes: 3}\n"


def student(name: str = "c01-s1", school: str = "c01", tier: str = "county"):
    """A JupyterHub user as the mixin reads it: a name and groups with properties."""
    return SimpleNamespace(name=name, id=7, groups=[
        SimpleNamespace(name="teachers-lounge", properties={}),  # a group with no school is skipped
        SimpleNamespace(name=f"school-{school}", properties={"school_id": school, "tier": tier}),
    ])


def leased_spawner(service: FakeQuotaService, alliance: Path, profile: str = "gpu-slice", **config) -> LeasedFakeSpawner:
    config.setdefault("queue_poll_interval", 0.001)
    spawner = LeasedFakeSpawner(user=student(), user_options={"profile": profile}, alliance_file=str(alliance),
                                log=LOG, **config)
    spawner._quota_client = service.client()
    return spawner


def prestarted_spawner(service: FakeQuotaService, alliance: Path, reservation: str = "r-1",
                       bell_in_minutes: float = 2, **config) -> PrestartedFakeSpawner:
    """A spawner asked to start ahead of ``reservation``'s lesson, whose bell is in ``bell_in_minutes``
    (``alliance``: one with a lead, :data:`ALLIANCE_WITH_LEAD`)."""
    config.setdefault("queue_poll_interval", 0.001)
    options = {"profile": "gpu-slice", "prestart": {"reservation": reservation, "bell": at(bell_in_minutes)}}
    spawner = PrestartedFakeSpawner(user=student(), user_options=options, alliance_file=str(alliance), log=LOG, **config)
    spawner._quota_client = service.client()
    return spawner


def messages(spawner: QuotaSpawnerMixin) -> list[str]:
    """What the spawn page showed, in order."""
    return [event["message"] for event in spawner._events]
