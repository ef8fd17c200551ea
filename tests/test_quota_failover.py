"""Two quota service processes on one PostgreSQL database: one writer, one hot standby.

The standby answers not-ready and writes nothing; when the writer is killed (``kill -9``)
in the middle of a load, the standby takes over within 10 seconds and serves the same
leases: nothing a client was told is lost, no unit is held twice, every answered release
has its usage record.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest
import sqlalchemy

from tests.postgres import postgres_server  # noqa: F401  (fixture)
from tests.quota_process import start_services

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STUDENTS = 40
KILL_AFTER_ANSWERS = 200


@pytest.fixture
def pg_url(postgres_server):  # noqa: F811
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


async def load(urls: list[str], headers: dict, seen: dict, kill) -> float:
    """Students ask, hold a moment and release, against whichever process answers; the
    writer is killed midway. Returns how long the service could not decide."""
    answered = 0
    outage = {"from": None, "until": None, "killed": False}

    async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs):
        while True:
            for url in urls:
                try:
                    response = await client.request(method, url + path, **kwargs)
                except httpx.TransportError:
                    continue
                if response.status_code != 503:
                    if outage["from"] is not None and outage["until"] is None:
                        outage["until"] = time.monotonic()
                    return response
                assert "cannot decide right now" in response.json()["detail"]
            if outage["from"] is None:
                outage["from"] = time.monotonic()
            await asyncio.sleep(0.1)

    async def student(user: str, rng: random.Random) -> None:
        nonlocal answered
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            for n in range(12):
                # with an idempotency key a retry of a request whose answer was lost gets the same lease
                body = {"user": user, "school": user[:3], "profile": rng.choice(("gpu-slice", "gpu-whole", "cpu")),
                        "idempotency_key": f"{user}-{n}"}
                lease = (await call(client, "POST", "/api/leases", json=body)).json()
                seen["asked"][lease["id"]] = lease
                answered += 1
                if answered >= KILL_AFTER_ANSWERS and not outage["killed"]:
                    outage["killed"] = True
                    kill()
                await asyncio.sleep(rng.uniform(0, 0.05))
                response = await call(client, "DELETE", f"/api/leases/{lease['id']}")
                assert response.status_code == 200, response.text
                seen["released"][lease["id"]] = response.json()
                answered += 1

    users = [f"{school}-s{i}" for i in range(STUDENTS // 2) for school in ("c01", "u01")]
    await asyncio.gather(*(student(user, random.Random(n)) for n, user in enumerate(users)))
    return (outage["until"] or time.monotonic()) - (outage["from"] or time.monotonic())


def test_the_standby_takes_over_within_10_s_and_loses_nothing(tmp_path, pg_url):
    leader, standby = start_services(tmp_path, pg_url, students=STUDENTS, count=2)
    try:
        assert httpx.get(f"{leader.url}/api/ready").status_code == 200
        waiting = httpx.get(f"{standby.url}/api/ready")
        assert waiting.status_code == 503 and waiting.json() == {"status": "standby"}
        refused = httpx.post(f"{standby.url}/api/leases", headers=standby.headers,
                             json={"user": "c01-s1", "school": "c01", "profile": "gpu-slice"})
        assert refused.status_code == 503 and "standby" in refused.json()["detail"]

        seen = {"asked": {}, "released": {}}
        outage = asyncio.run(load([leader.url, standby.url], leader.headers, seen, leader.kill))
        assert leader.process.returncode == -9
        assert outage < 10, f"nothing was decided for {outage:.1f} s after the writer died"
        assert httpx.get(f"{standby.url}/api/ready").status_code == 200

        engine = sqlalchemy.create_engine(pg_url)
        with engine.connect() as db:
            leases = {row.id: row for row in db.execute(sqlalchemy.text("SELECT * FROM leases"))}
            usage = {row.lease_id for row in db.execute(sqlalchemy.text("SELECT lease_id FROM usage"))}
        engine.dispose()
        assert [lease_id for lease_id in seen["asked"] if lease_id not in leases] == []
        ended = [lease for lease in seen["released"].values() if lease["granted_at"] is not None]
        assert len(ended) > 100
        assert [lease["id"] for lease in ended if lease["id"] not in usage] == []
        assert {row.state for row in leases.values()} <= {"released", "refused", "abandoned", "expired"}
        with standby.client() as client:  # every lease was released: nothing held, nothing waiting
            assert client.get("/api/leases", params={"state": "granted"}).json() == []
            assert client.get("/api/queue").json() == []
            [pool] = client.get("/api/inventory").json()["pools"]
            assert all(unit["lease_id"] is None for unit in pool["units"])
    finally:
        leader.stop()
        standby.stop()
