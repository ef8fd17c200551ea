"""500 students ask for a GPU at the same moment: the real service (uvicorn, in its own
process) never grants more units than the pool has, gives every student a valid answer,
and keeps one GPU workspace per student. One process decides (a second one on the same
database is a standby: tests/test_quota_failover.py)."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.quota_process import start_services

REQUESTS = 500
TWICE = 50  # students who ask twice at once (whole and slice): one of the two must be refused
CAPACITY = {"whole": 2, "slice": 4}  # 4 GPUs, 2 of them in 2 slices each


async def ask_all(urls: list[str], headers: dict, bodies: list[dict]) -> list[httpx.Response | Exception]:
    """Every student from their own client (one connection each), all at once."""
    clients = [httpx.AsyncClient(base_url=urls[i % len(urls)], headers=headers, timeout=120, verify=False)
               for i in range(len(bodies))]
    try:
        calls = [client.post("/api/leases", json=body) for client, body in zip(clients, bodies)]
        return await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


@pytest.mark.slow
def test_500_simultaneous_requests_never_exceed_the_pool(tmp_path, database_url):
    services = start_services(tmp_path, database_url, students=REQUESTS - TWICE)
    try:
        users = [f"{school}-s{i}" for i in range((REQUESTS - TWICE) // 2) for school in ("c01", "u01")]
        bodies = [{"user": user, "school": user[:3], "profile": ("gpu-whole", "gpu-slice")[i % 2]} for i, user in enumerate(users)]
        bodies += [{"user": user, "school": user[:3], "profile": ("gpu-slice", "gpu-whole")[i % 2]} for i, user in enumerate(users[:TWICE])]
        answers = asyncio.run(ask_all([service.url for service in services], services[0].headers, bodies))

        failures = [repr(a) if isinstance(a, Exception) else f"{a.status_code} {a.text[:200]}"
                    for a in answers if isinstance(a, Exception) or a.status_code != 201]
        assert failures == [], f"{len(failures)} requests got no valid answer, e.g. {failures[:3]}"
        leases = [answer.json() for answer in answers]
        assert {lease["state"] for lease in leases} <= {"granted", "queued", "refused"}
        granted = Counter(lease["unit_kind"] for lease in leases if lease["state"] == "granted")
        assert granted == CAPACITY  # more students than units: every unit granted, none twice

        with services[0].client() as client:
            held = client.get("/api/leases", params={"state": "granted"}).json()
            queue = client.get("/api/queue").json()
            metrics = client.get("/metrics").text
        assert len({lease["device"] for lease in held}) == len(held) == sum(CAPACITY.values())
        for kind in CAPACITY:  # one line per kind of unit, numbered from 1 without gaps
            positions = sorted(lease["queue_position"] for lease in queue if lease["profile"] == f"gpu-{kind}")
            assert positions == list(range(1, len(positions) + 1))
        active = Counter(lease["user"] for lease in leases if lease["state"] in ("granted", "queued"))
        assert max(active.values()) == 1, "a student holds or waits for two GPU workspaces"
        refused = [lease for lease in leases if lease["state"] == "refused"]
        assert len(refused) == TWICE and all("running or waiting, the most your school allows" in lease["reason"] for lease in refused)
        assert len(queue) == REQUESTS - TWICE - sum(CAPACITY.values())
        assert 'gpu_commons_gpu_units_allocated{pool="uni-a",school="c01"}' in metrics
    finally:
        for service in services:
            service.stop()
