"""Queued requests across an outage of the quota service (issue 17, point 8).

While the service is down the spawner cannot give a place back: a student who stops waiting
leaves a queued lease behind. After the restart every queued lease gets a fresh heartbeat
window, but was granted at once if a unit had come free (a lease that ended during the
outage): the student who left was given the GPU and billed for it. Now a queued lease is
granted only once its student's side has asked about it since the restart; one nobody asks
about is abandoned when the window runs out.

In-process on the injected clock (a restart is a second app on the same database), then a
real service process on the wall clock, where the ticker grants a confirmed place at once.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.quota_fixtures import TOKEN
from tests.quota_process import QuotaProcess, crowd_alliance

HEADERS = {"Authorization": f"token {TOKEN}"}
HEARTBEAT = timedelta(seconds=120)  # the default queue_heartbeat_timeout_s


def ask(client, user: str, profile: str = "gpu-whole"):
    return client.post("/api/leases", json={"user": user, "school": user.split("-")[0], "profile": profile}).json()


def queue_behind_one_whole_gpu(client) -> tuple[dict, dict, dict]:
    """u01-s1 holds the alliance's one whole GPU; c01-s2 and then c01-s3, of a county school
    below its guaranteed share, wait for it (it is reclaimed for them within minutes)."""
    holder, left, stays = ask(client, "u01-s1"), ask(client, "c01-s2"), ask(client, "c01-s3")
    assert (holder["state"], left["state"], stays["state"]) == ("granted", "queued", "queued")
    return holder, left, stays


def test_a_student_who_left_during_an_outage_is_abandoned_not_granted(make_quota_app, clock):
    with TestClient(make_quota_app(), headers=HEADERS) as client:
        holder, left, stays = queue_behind_one_whole_gpu(client)
    clock.advance(minutes=31)  # down for half an hour: the holder's lease ended meanwhile; c01-s2 gave up

    with TestClient(make_quota_app(), headers=HEADERS) as client:
        book = client.app.state.book
        book.advance()  # the ticker's first pass: the lease that ended during the outage is ended
        assert book.get(holder["id"], heartbeat=False).state == "expired"  # reclaimed, then its end
        assert book.get(left["id"], heartbeat=False).state == "queued"  # first in line, the GPU free: held back
        waited = timedelta()
        while waited < HEARTBEAT:
            assert client.get(f"/api/leases/{stays['id']}").json()["state"] == "queued"  # c01-s3's spawner asks
            clock.advance(seconds=5)
            waited += timedelta(seconds=5)
            book.advance()
        gone = book.get(left["id"], heartbeat=False)
        assert gone.state == "abandoned" and gone.granted_at is None
        assert client.get(f"/api/leases/{stays['id']}").json()["state"] == "granted"  # the GPU goes on at once
        assert [record["lease_id"] for record in client.get("/api/usage").json()] == [holder["id"]]  # nobody else billed


def test_a_student_still_waiting_after_the_restart_is_granted_at_their_next_heartbeat(make_quota_app, clock):
    with TestClient(make_quota_app(), headers=HEADERS) as client:
        holder, waiting, _ = queue_behind_one_whole_gpu(client)
    clock.advance(minutes=31)
    with TestClient(make_quota_app(), headers=HEADERS) as client:
        book = client.app.state.book
        book.advance()
        assert book.get(waiting["id"], heartbeat=False).state == "queued"  # held back: not heard from yet
        assert client.get(f"/api/leases/{waiting['id']}").json()["state"] == "queued"  # the spawner asks again
        assert book.next_wake <= clock().timestamp()  # the ticker is woken at once
        book.advance()
        granted = client.get(f"/api/leases/{waiting['id']}").json()
        assert granted["state"] == "granted" and granted["device"] == holder["device"]


def test_only_a_start_or_a_take_over_holds_grants_back(make_quota_app, clock):
    """A rebuild within one process (after a staff change) grants as before; a process that
    takes over as the writer has heard nobody, like one that starts."""
    with TestClient(make_quota_app(), headers=HEADERS) as client:
        book = client.app.state.book
        holder, waiting, third = queue_behind_one_whole_gpu(client)
        staff = TestClient(client.app, headers={"Authorization": "token tok-staff-admin"})
        assert staff.patch("/api/tiers/county", json={"weight": 3}).status_code == 200  # rebuilds the allocator
        client.delete(f"/api/leases/{holder['id']}")
        assert book.get(waiting["id"], heartbeat=False).state == "granted"

        client.delete(f"/api/leases/{waiting['id']}")
        assert book.get(third["id"], heartbeat=False).state == "granted"
        queued = ask(client, "c01-s2")
        assert queued["state"] == "queued"
        book.drop_memory()  # a standby now; then the writer again, rebuilt by the next input
        client.delete(f"/api/leases/{third['id']}")
        assert book.get(queued["id"], heartbeat=False).state == "queued"
        client.get(f"/api/leases/{queued['id']}")  # its spawner asks: confirmed
        book.advance()
        assert book.get(queued["id"], heartbeat=False).state == "granted"


@pytest.mark.slow
def test_a_real_service_abandons_a_place_nobody_asks_about_after_a_restart(tmp_path):
    alliance = crowd_alliance(tmp_path / "alliance.yaml", students=6, gpus=1, sliced_gpus=0)
    service = QuotaProcess(alliance, f"sqlite:///{tmp_path / 'quota.sqlite'}", tmp_path / "quota",
                           env={"GPU_COMMONS_QUEUE_HEARTBEAT_TIMEOUT_S": "4"})
    service.start()
    try:
        with service.client() as client:
            holder, left, stays = (ask(client, user) for user in ("c01-s0", "c01-s1", "c01-s2"))
            assert (holder["state"], left["state"], stays["state"]) == ("granted", "queued", "queued")
        service.kill()  # kill -9; c01-s1 leaves while it is down
        service.start()
        with service.client() as client:
            restarted = time.monotonic()
            assert client.delete(f"/api/leases/{holder['id']}").json()["state"] == "released"  # the GPU is free
            states = []
            while time.monotonic() - restarted < 12:
                lease = client.get(f"/api/leases/{stays['id']}").json()  # c01-s2's spawner asks every half second
                states.append(client.get("/api/leases", params={"user": "c01-s1"}).json()[0]["state"])
                if lease["state"] == "granted":
                    break
                time.sleep(0.5)
            assert lease["state"] == "granted", service.log_tail()
            assert "granted" not in states and states[-1] == "abandoned", states
            assert 3 < time.monotonic() - restarted < 10  # after c01-s1's fresh window of 4 s
            usage = client.get("/api/usage").json()
            assert {record["lease_id"] for record in usage} == {holder["id"]}
    finally:
        service.stop()
