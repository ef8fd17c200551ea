"""``kill -9`` of the quota service in the middle of a load of requests and releases loses
nothing a client was told: every lease answered as granted is in the database after the
restart, every answered release has its usage record, and the ledger adds up; the
restarted service holds in memory what the database holds, and a second restart rebuilds
the same leases on the same devices and the same queue in the same order."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest
import sqlalchemy
from prometheus_client.parser import text_string_to_metric_families

from tests.quota_process import QuotaProcess, start_services

STUDENTS = 80
POOL = {"gpus": 16, "sliced_gpus": 8, "slices_per_gpu": 2}  # 8 whole GPUs and 16 slices
PROFILES = ("cpu", "gpu-slice", "gpu-whole")


async def load_until_killed(service: QuotaProcess, seen: dict, kill_after: int) -> None:
    """Each student asks, holds a moment, releases, again; the service is killed midway."""
    answered = 0
    killed = asyncio.Event()

    async def student(client: httpx.AsyncClient, user: str, rng: random.Random) -> None:
        nonlocal answered
        while not killed.is_set():
            try:
                body = {"user": user, "school": user[:3], "profile": rng.choice(PROFILES)}
                response = await client.post("/api/leases", json=body)
                assert response.status_code == 201, response.text
                lease = response.json()
                seen["asked"][lease["id"]] = lease
                answered += 1
                await asyncio.sleep(rng.uniform(0, 0.03))
                response = await client.delete(f"/api/leases/{lease['id']}")
                assert response.status_code == 200, response.text
                seen["released"][lease["id"]] = response.json()
                answered += 1
            except httpx.TransportError:
                return  # the service is gone: what was in flight has no answer, and promises nothing
            if answered >= kill_after and not killed.is_set():
                killed.set()
                service.kill()  # kill -9 while the other students' requests are in flight

    async def one_student(user: str, seed: int) -> None:
        async with httpx.AsyncClient(base_url=service.url, headers=service.headers, timeout=60, verify=False) as client:
            await student(client, user, random.Random(seed))

    users = [f"{school}-s{i}" for i in range(STUDENTS // 2) for school in ("c01", "u01")]
    await asyncio.gather(*(one_student(user, n) for n, user in enumerate(users)))


def _live_state(client) -> dict:
    queue = client.get("/api/queue").json()
    granted = client.get("/api/leases", params={"state": "granted"}).json()
    return {
        "queue": [(lease["id"], lease["queue_position"]) for lease in queue],
        "granted": sorted((lease["id"], lease["device"], lease["expires_at"], lease["reclaim_at"]) for lease in granted),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [170, 430])  # answers before the kill: two moments of the load
def test_kill_9_under_load_loses_no_grant_and_no_usage(tmp_path, database_url, kill_after):
    [service] = start_services(tmp_path, database_url, students=STUDENTS, **POOL)
    seen = {"asked": {}, "released": {}}
    try:
        asyncio.run(load_until_killed(service, seen, kill_after))
        assert service.process.returncode == -9
        service.start()  # a restart on the same database, as systemd or Kubernetes would do

        engine = sqlalchemy.create_engine(database_url)
        with engine.connect() as db:
            leases = {row.id: row for row in db.execute(sqlalchemy.text("SELECT * FROM leases"))}
            usage = {row.lease_id: row for row in db.execute(sqlalchemy.text("SELECT * FROM usage"))}
        engine.dispose()
        granted = [lease for lease in seen["asked"].values() if lease["state"] == "granted"]
        ended = [lease for lease in seen["released"].values() if lease["granted_at"] is not None]
        assert len(granted) > 40 and len(ended) > 40  # the kill came in the middle of real work

        lost = [lease["id"] for lease in seen["asked"].values() if lease["id"] not in leases]
        assert lost == [], "leases answered to a client but missing after the restart"
        assert all(leases[lease["id"]].granted_at is not None for lease in granted)
        assert [lease["id"] for lease in ended if leases[lease["id"]].state != "released"] == []
        missing = [lease["id"] for lease in ended if lease["id"] not in usage]
        assert missing == [], "releases answered to a client but without a usage record"

        # the ledger adds up: one record per lease that held something and ended, none for anything else
        held_and_ended = {lease_id for lease_id, row in leases.items()
                          if row.granted_at is not None and row.state in ("released", "expired")}
        assert set(usage) == held_and_ended
        fraction = {lease_id: row.gpu_fraction for lease_id, row in leases.items()}
        for record in usage.values():
            assert record.held_seconds >= 0
            assert record.gpu_seconds == pytest.approx(record.held_seconds * fraction[record.lease_id], abs=1e-6)
        units = Counter(row.unit_id for row in leases.values() if row.state == "granted" and row.unit_id)
        assert all(count == 1 for count in units.values()), "a unit is held twice after the restart"

        with service.client() as client:
            reported = {(record["lease_id"]) for record in client.get("/api/usage").json()}
            exposition = client.get("/metrics").text
            rebuilt = _live_state(client)
        # what the service holds in memory is what the database says, also after another restart
        assert {lease_id for lease_id, *_ in rebuilt["granted"]} == {
            lease_id for lease_id, row in leases.items() if row.state == "granted"}
        assert {lease_id for lease_id, _ in rebuilt["queue"]} == {
            lease_id for lease_id, row in leases.items() if row.state == "queued"}
        service.restart()
        with service.client() as client:
            assert _live_state(client) == rebuilt
        assert reported == set(usage)
        exported = sum(sample.value for family in text_string_to_metric_families(exposition)
                       if family.name == "gpu_commons_gpu_usage_seconds" for sample in family.samples)
        assert exported == pytest.approx(sum(record.gpu_seconds for record in usage.values()))
    finally:
        service.stop()
