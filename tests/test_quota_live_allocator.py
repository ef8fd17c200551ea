"""The quota service runs one long-lived allocator with the database as its journal:

- a write the database refuses grants nothing, answers 503 with the reason, and leaves
  the allocator as the database is (in-process, a trigger makes the database refuse);
- a restart rebuilds the same state: the same granted leases on the same devices, the
  same queue in the same order with the same estimates, the same reclaim warnings;
- reads decide nothing, time does: a class reservation that ends unused gives its GPU to
  the student waiting, and a queue place nobody asks about is given up, with no other
  traffic (a real service process on the wall clock);
- exactly one writer: a second process on a SQLite database refuses to start, naming the
  first (PostgreSQL's standby is in tests/test_quota_failover.py).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.quota_fixtures import TOKEN
from tests.quota_process import QuotaProcess, crowd_alliance
from tests.database_faults import refuse_lease_writes
from tests.quota_calls import ask

HEADERS = {"Authorization": f"token {TOKEN}"}


def test_a_write_the_database_refuses_grants_nothing_and_answers_503(quota_client, clock):
    first = ask(quota_client, "c01-s1").json()
    database_url = quota_client.app.state.settings.database_url
    refuse_lease_writes(database_url, "INSERT", True)
    refused = ask(quota_client, "c01-s2")
    assert refused.status_code == 503 and "disk is full" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "2"
    refuse_lease_writes(database_url, "INSERT", False)
    # the allocator was rebuilt from the database: the slice the failed request would have
    # taken is still free, and the first lease still holds its own
    [pool] = quota_client.get("/api/inventory").json()["pools"]
    assert pool["free"] == {"whole": 1, "slice": 1}
    again = ask(quota_client, "c01-s2").json()
    assert again["state"] == "granted" and again["device"] != first["device"]
    assert [lease["user"] for lease in quota_client.get("/api/leases").json()] == ["c01-s1", "c01-s2"]


def _state(client) -> dict:
    queue = client.get("/api/queue").json()
    granted = client.get("/api/leases", params={"state": "granted"}).json()
    return {
        "queue": [(lease["id"], lease["queue_position"], lease["wait_estimate_s"]) for lease in queue],
        "granted": sorted((lease["id"], lease["device"], lease["expires_at"], lease["reclaim_at"]) for lease in granted),
    }


def test_a_restart_rebuilds_the_same_leases_and_the_same_queue(make_quota_app, clock):
    with TestClient(make_quota_app(), headers=HEADERS) as client:
        for user in ("u01-s1", "u01-s2"):  # u01 holds both slices: the second one is borrowed
            assert ask(client, user).json()["state"] == "granted"
            clock.advance(minutes=1)
        ask(client, "u01-s1", profile="cpu")
        clock.advance(minutes=12)
        for user, profile in (("c01-s1", "gpu-slice"), ("c01-s2", "gpu-whole"), ("c01-s3", "gpu-slice")):
            ask(client, user, profile=profile)
            clock.advance(seconds=20)
        before = _state(client)
    assert len(before["queue"]) == 2 and any(reclaim for *_, reclaim in before["granted"])
    with TestClient(make_quota_app(), headers=HEADERS) as client:
        assert _state(client) == before
        for lease_id, *_ in before["queue"]:  # the waiting students' spawners ask again after the restart
            client.get(f"/api/leases/{lease_id}")
        clock.advance(minutes=3)  # the warned slice goes back at its stop, also after the restart
        client.app.state.book.advance()
        after = client.get("/api/leases", params={"state": "granted"}).json()
        assert sorted(lease["user"] for lease in after) == ["c01-s1", "c01-s2", "u01-s1", "u01-s1"]


def test_reads_decide_nothing(quota_client, clock):
    whole = ask(quota_client, "u01-s1", profile="gpu-whole").json()
    ask(quota_client, "c01-s2")
    waiting = ask(quota_client, "c01-s1", profile="gpu-whole").json()
    clock.advance(minutes=31)  # the lease has ended, but nothing advanced the allocator yet
    for _ in range(3):
        assert quota_client.get(f"/api/leases/{waiting['id']}").json()["state"] == "queued"
        quota_client.get("/api/queue")
        quota_client.get("/api/inventory")
    assert quota_client.get(f"/api/leases/{whole['id']}").json()["state"] == "granted"
    assert quota_client.app.state.book.advance() == 1
    assert quota_client.get(f"/api/leases/{waiting['id']}").json()["state"] == "granted"


def _wait_until(predicate, timeout: float, what: str, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_time_alone_ends_an_unused_reservation_and_an_abandoned_place(tmp_path):
    alliance = crowd_alliance(tmp_path / "alliance.yaml", students=6, gpus=1, sliced_gpus=0)
    service = QuotaProcess(alliance, f"sqlite:///{tmp_path / 'quota.sqlite'}", tmp_path / "quota",
                           env={"GPU_COMMONS_QUEUE_HEARTBEAT_TIMEOUT_S": "3", "GPU_COMMONS_TIMER_MAX_SLEEP_S": "60"})
    service.start()
    try:
        with service.client() as client:
            now = datetime.now(timezone.utc)
            ends = now + timedelta(seconds=4)
            booked = client.post("/api/reservations", json={
                "pool": "uni-a", "school": "c01", "units": 1, "starts_at": now.isoformat(), "ends_at": ends.isoformat(),
            })
            assert booked.status_code == 201, booked.text
            asking = client.post("/api/leases", json={"user": "u01-s0", "school": "u01", "profile": "gpu-whole"}).json()
            silent = client.post("/api/leases", json={"user": "u01-s1", "school": "u01", "profile": "gpu-whole"}).json()
            assert asking["state"] == silent["state"] == "queued"  # the class's GPU is held for it, unused

            # only reads from here on: the student's page asking about its place
            def granted():
                lease = client.get(f"/api/leases/{asking['id']}").json()
                return lease if lease["state"] == "granted" else None

            lease = _wait_until(granted, 10, "the waiting student to get the reservation's GPU")
            granted_at = datetime.fromisoformat(lease["granted_at"])
            assert ends <= granted_at < ends + timedelta(seconds=2), (ends, granted_at)
            # nobody asked about the second place for longer than the heartbeat timeout
            gone = client.get("/api/leases", params={"state": "abandoned"}).json()
            assert [item["id"] for item in gone] == [silent["id"]]
            ended_at = datetime.fromisoformat(gone[0]["released_at"])
            assert ended_at < datetime.fromisoformat(silent["requested_at"]) + timedelta(seconds=5)
    finally:
        service.stop()


@pytest.mark.slow
def test_a_second_process_on_one_sqlite_database_refuses_to_start(tmp_path):
    alliance = crowd_alliance(tmp_path / "alliance.yaml", students=4)
    database_url = f"sqlite:///{tmp_path / 'quota.sqlite'}"
    first = QuotaProcess(alliance, database_url, tmp_path / "quota")
    first.start()
    second = QuotaProcess(alliance, database_url, tmp_path / "quota")
    try:
        with pytest.raises(RuntimeError, match="exited with 3"):
            second.start(timeout=30)
        tail = second.log_tail()
        assert f"pid {first.process.pid}" in tail and "only one process may write it" in tail
        assert httpx.get(f"{first.url}/api/ready").json() == {"status": "ok"}  # the first one is untouched
    finally:
        second.stop()
        first.stop()
