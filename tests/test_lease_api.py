"""The lease API of the quota service, in-process on SQLite with a settable clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.quota_calls import ask
from tests.quota_fixtures import TOKEN


def test_routes_need_the_token_and_say_which_header(make_quota_app):
    with TestClient(make_quota_app()) as anonymous:
        assert anonymous.get("/api/health").json() == {"status": "ok"}
        response = anonymous.get("/api/leases")
        assert response.status_code == 401
        assert "Authorization: token" in response.json()["detail"]
        wrong = anonymous.get("/api/leases", headers={"Authorization": "token nope"})
        assert wrong.status_code == 401
        bearer = anonymous.get("/api/leases", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200


def test_a_slice_is_granted_with_a_device_and_an_expiry(quota_client, clock):
    response = ask(quota_client, "c01-s1")
    assert response.status_code == 201
    lease = response.json()
    assert lease["state"] == "granted"
    assert lease["device"] == "MIG-sim-uni-a-gpu1-slice0" and lease["unit_kind"] == "slice" and lease["pool"] == "uni-a"
    assert lease["simulated"] is True and lease["tier"] == "county"
    assert lease["expires_at"].startswith((clock.now + timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M"))


def test_the_same_idempotency_key_returns_the_same_lease(quota_client):
    first = ask(quota_client, "c01-s1", key="retry-1")
    again = ask(quota_client, "c01-s1", key="retry-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert len(quota_client.get("/api/leases").json()) == 1


def test_queue_then_grant_when_a_unit_is_released(quota_client, clock):
    holders = [ask(quota_client, user).json() for user in ("c01-s1", "c01-s2")]
    waiting = ask(quota_client, "u01-s1").json()
    assert waiting["state"] == "queued" and waiting["queue_position"] == 1
    second = ask(quota_client, "u01-s2").json()
    assert second["queue_position"] == 2
    assert [lease["id"] for lease in quota_client.get("/api/queue").json()] == [waiting["id"], second["id"]]

    clock.advance(minutes=30)
    released = quota_client.delete(f"/api/leases/{holders[0]['id']}").json()
    assert released["state"] == "released"
    promoted = quota_client.get(f"/api/leases/{waiting['id']}").json()
    assert promoted["state"] == "granted" and promoted["device"] == holders[0]["device"]
    assert quota_client.get("/api/queue").json()[0]["queue_position"] == 1

    usage = quota_client.get("/api/usage", params={"user": "c01-s1"}).json()
    assert len(usage) == 1
    assert usage[0]["held_seconds"] == pytest.approx(1800)
    assert usage[0]["gpu_seconds"] == pytest.approx(900)  # half a GPU for 30 minutes
    assert usage[0]["end_reason"] == "released" and usage[0]["lease_id"] == holders[0]["id"]


def test_releasing_twice_changes_nothing_and_unknown_ids_are_404(quota_client, clock):
    lease = ask(quota_client, "c01-s1").json()
    clock.advance(minutes=5)
    first = quota_client.delete(f"/api/leases/{lease['id']}").json()
    clock.advance(minutes=5)
    second = quota_client.delete(f"/api/leases/{lease['id']}").json()
    assert first == second
    assert len(quota_client.get("/api/usage").json()) == 1
    missing = quota_client.delete("/api/leases/l-nope")
    assert missing.status_code == 404 and "l-nope" in missing.json()["detail"]
    assert quota_client.get("/api/leases/l-nope").status_code == 404


def test_a_withdrawn_key_refuses_the_request_that_arrives_late(quota_client):
    assert quota_client.delete("/api/leases/by-key/late-1").status_code == 404
    late = ask(quota_client, "c01-s1", key="late-1").json()
    assert late["state"] == "refused" and "withdrawn" in late["reason"]
    assert all(unit["lease_id"] is None for pool in quota_client.get("/api/inventory").json()["pools"] for unit in pool["units"])


def test_release_by_key(quota_client):
    lease = ask(quota_client, "c01-s1", key="k-1").json()
    assert quota_client.delete("/api/leases/by-key/k-1").json()["state"] == "released"
    assert quota_client.get(f"/api/leases/{lease['id']}").json()["state"] == "released"


def test_one_gpu_lease_per_student(quota_client):
    ask(quota_client, "c01-s1")
    second = ask(quota_client, "c01-s1", profile="gpu-whole").json()
    assert second["state"] == "refused" and "try again" in second["reason"] and "1 workspace running or waiting" in second["reason"]
    assert ask(quota_client, "c01-s1", profile="cpu").json()["state"] == "granted"


def test_cpu_leases_have_no_device_and_record_zero_gpu_seconds(quota_client, clock):
    lease = ask(quota_client, "c01-s1", profile="cpu").json()
    assert lease["state"] == "granted" and lease["device"] is None
    clock.advance(minutes=10)
    quota_client.delete(f"/api/leases/{lease['id']}")
    [record] = quota_client.get("/api/usage").json()
    assert record["held_seconds"] == pytest.approx(600) and record["gpu_seconds"] == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"user": "c01-s1", "school": "c99", "profile": "gpu-slice"}, "school"),
        ({"user": "c01-s1", "school": "c01", "profile": "gpu-huge"}, "profile"),
    ],
)
def test_unknown_names_are_422_naming_the_field(quota_client, body, field):
    response = quota_client.post("/api/leases", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"{field}: unknown")
    assert quota_client.get("/api/leases").json() == []


def test_malformed_bodies_are_422(quota_client):
    response = quota_client.post("/api/leases", json={"user": "c01-s1"})
    assert response.status_code == 422
    assert {tuple(error["loc"]) for error in response.json()["detail"]} == {("body", "school"), ("body", "profile")}
    assert quota_client.get("/api/leases").json() == []


def test_expired_leases_end_and_the_queue_moves(quota_client, clock):
    # u01 borrows the whole GPU (beyond its third). c01 holds a slice, so its whole-GPU
    # request would borrow too, with less usage per weight: a better claim, so the lease
    # is not renewed at its end (no reclaim: u01 would keep less than c01's claim)
    ask(quota_client, "c01-s2")
    whole = ask(quota_client, "u01-s1", profile="gpu-whole").json()
    waiting = ask(quota_client, "c01-s1", profile="gpu-whole").json()
    assert waiting["state"] == "queued"
    clock.advance(minutes=29)
    quota_client.get(f"/api/leases/{waiting['id']}")  # heartbeat
    assert quota_client.app.state.book.advance() == 0
    refused = quota_client.post(f"/api/leases/{whole['id']}/renew")
    why = "cannot be renewed now: Someone with a better claim is waiting. Save your work: it ends at 08:30 UTC."
    assert (refused.status_code, refused.json()["detail"]) == (409, f"lease: It {why}")
    held = quota_client.get(f"/api/leases/{whole['id']}").json()
    assert held["reclaim_at"] is None and held["reason"] == f"Your GPU lease {why}"
    clock.advance(minutes=1)
    assert quota_client.app.state.book.advance() == 1
    ended = quota_client.get(f"/api/leases/{whole['id']}").json()
    assert ended["state"] == "expired" and "not renewed" in ended["reason"]
    assert quota_client.get(f"/api/leases/{waiting['id']}").json()["state"] == "granted"
    [record] = quota_client.get("/api/usage").json()
    assert record["end_reason"] == "expired" and record["gpu_seconds"] == pytest.approx(1800)


def test_a_student_alone_on_a_quiet_evening_is_renewed_at_every_lease_end(quota_client, clock):
    whole = ask(quota_client, "u01-s1", profile="gpu-whole").json()
    for _ in range(4):  # two hours of 30-minute leases, nobody else asking
        clock.advance(minutes=30)
        assert quota_client.app.state.book.advance() == 0
    now = quota_client.get(f"/api/leases/{whole['id']}").json()
    assert now["state"] == "granted"
    assert now["expires_at"].startswith((clock.now + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M"))


def test_a_queued_lease_nobody_asks_about_is_abandoned(quota_client, clock):
    ask(quota_client, "c01-s1", profile="gpu-whole")
    keeps_asking = ask(quota_client, "c01-s2", profile="gpu-whole").json()
    gone = ask(quota_client, "u01-s1", profile="gpu-whole").json()
    for _ in range(3):
        clock.advance(seconds=60)
        quota_client.get(f"/api/leases/{keeps_asking['id']}")
    quota_client.app.state.book.sweep()
    assert quota_client.get(f"/api/leases/{gone['id']}", params={}).json()["state"] == "abandoned"
    assert quota_client.get(f"/api/leases/{keeps_asking['id']}").json()["state"] == "queued"
    assert quota_client.get("/api/usage").json() == []  # a queue place is not usage


def test_inventory_shows_units_holders_and_free_counts(quota_client):
    lease = ask(quota_client, "c01-s1").json()
    inventory = quota_client.get("/api/inventory").json()
    assert inventory["simulated"] is True
    [pool] = inventory["pools"]
    assert pool["free"] == {"whole": 1, "slice": 1}
    assert [unit["lease_id"] for unit in pool["units"]] == [None, lease["id"], None]
    free = {profile["id"]: profile["free_units"] for profile in inventory["profiles"]}
    assert free == {"cpu": None, "gpu-slice": 1, "gpu-whole": 1}


def test_lists_filter_by_state_user_and_school(quota_client):
    ask(quota_client, "c01-s1", profile="gpu-whole")
    ask(quota_client, "u01-s1", profile="gpu-whole")
    assert [lease["user"] for lease in quota_client.get("/api/leases", params={"state": "queued"}).json()] == ["u01-s1"]
    assert [lease["user"] for lease in quota_client.get("/api/leases", params={"school": "c01"}).json()] == ["c01-s1"]
    assert quota_client.get("/api/leases", params={"state": "lost"}).status_code == 422


def test_leases_and_usage_survive_a_restart(make_quota_app, clock):
    headers = {"Authorization": f"token {TOKEN}"}
    with TestClient(make_quota_app(), headers=headers) as client:
        held = ask(client, "c01-s1").json()
        ended = ask(client, "c01-s2").json()
        clock.advance(minutes=1)
        client.delete(f"/api/leases/{ended['id']}")
    with TestClient(make_quota_app(), headers=headers) as client:
        assert client.get(f"/api/leases/{held['id']}").json()["state"] == "granted"
        assert [record["lease_id"] for record in client.get("/api/usage").json()] == [ended["id"]]
        # the held slice is still held: the next request gets the other one
        assert ask(client, "u01-s1").json()["device"] != held["device"]


def test_the_usage_ledger_is_append_only_in_the_database(quota_client, clock):
    import sqlalchemy

    lease = ask(quota_client, "c01-s1").json()
    clock.advance(minutes=3)
    quota_client.delete(f"/api/leases/{lease['id']}")
    engine = sqlalchemy.create_engine(quota_client.app.state.settings.database_url)
    for statement in ("UPDATE usage SET gpu_seconds = 0", "DELETE FROM usage"):
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
            with engine.begin() as connection:
                connection.execute(sqlalchemy.text(statement))
    engine.dispose()
    assert quota_client.get("/api/usage").json()[0]["gpu_seconds"] == pytest.approx(90)
