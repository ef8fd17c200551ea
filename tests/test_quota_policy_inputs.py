"""Staff's changes reach the quota service's running allocator as inputs (quota/policy_feed.py).

A change of a school's share, a cancelled reservation and a pre-started workspace charged
from later than its grant are fed to the one allocator the service keeps: it is not built
again, and it then holds what an allocator built afresh from the database holds (the
start-up rebuild, which the database as the journal must always reproduce). A pool drained
or opened builds the allocator again: its pools changed.

The alliance of tests.quota_fixtures: pool uni-a with one whole GPU and one GPU in two
slices; c01 county (weight 2), u01 urban (weight 1).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.database_faults import refuse_lease_writes
from tests.quota_calls import ask

STAFF = {"Authorization": "token tok-staff-admin"}
OPERATOR = {"Authorization": "token tok-it-ops"}


def _lease(client, lease_id):
    return client.get(f"/api/leases/{lease_id}").json()


def _allocator(client):
    return client.app.state.book._mem.allocator


def _held_state(client) -> dict:
    """What the running allocator holds, as comparable plain data."""
    alloc = _allocator(client)
    now = client.app.state.book.clock().timestamp()
    return {
        "guarantee": list(alloc.guarantee), "limit": list(alloc.limit), "held": list(alloc.held),
        "sessions": sorted((s.id, s.borrowed, s.stop_at, s.lease_end, s.reservation) for s in alloc.sessions.values()),
        "waiting": sorted(alloc.waiting),
        "priority": [pytest.approx(alloc.priority(s.id, now), rel=1e-6, abs=1e-3) for s in alloc.schools],
    }


def _rebuilt_state(client) -> dict:
    book = client.app.state.book
    book.drop_memory()
    book.promote()
    return _held_state(client)


def test_a_new_share_is_fed_to_the_running_allocator_and_withdraws_a_warning(quota_client, clock):
    within = ask(quota_client, "u01-s1").json()
    borrowed = ask(quota_client, "u01-s2").json()
    clock.advance(minutes=3)
    county = ask(quota_client, "c01-s1").json()
    assert county["state"] == "queued" and _lease(quota_client, borrowed["id"])["reclaim_at"] is not None
    running = _allocator(quota_client)

    changed = quota_client.patch("/api/schools/u01/quota", json={"guaranteed_share": 0.5}, headers=STAFF)
    assert changed.status_code == 200, changed.text
    assert _allocator(quota_client) is running  # fed, not built again
    assert running.guarantee[running.school_index["u01"]] == 1000
    kept = _lease(quota_client, borrowed["id"])
    assert kept["state"] == "granted" and kept["reclaim_at"] is None  # within u01's new share: kept
    assert _lease(quota_client, within["id"])["state"] == "granted"
    assert _lease(quota_client, county["id"])["state"] == "queued"
    fed = _held_state(quota_client)
    assert _rebuilt_state(quota_client) == fed


def test_a_lower_cap_refuses_a_queued_request_beyond_it(quota_client, clock):
    raised = quota_client.patch("/api/schools/c01/quota", json={"max_sessions_per_student": 3}, headers=STAFF)
    assert raised.status_code == 200, raised.text
    for user in ("u01-s1", "c01-s1"):
        assert ask(quota_client, user).json()["state"] == "granted"
    second = ask(quota_client, "c01-s1", key="second").json()
    third = ask(quota_client, "c01-s1", key="third").json()
    assert second["state"] == third["state"] == "queued"
    changed = quota_client.patch("/api/schools/c01/quota", json={"max_sessions_per_student": 2}, headers=STAFF)
    assert changed.status_code == 200, changed.text
    assert _lease(quota_client, second["id"])["state"] == "queued"
    refused = _lease(quota_client, third["id"])
    assert refused["state"] == "refused" and refused["reason"]
    assert _rebuilt_state(quota_client)["waiting"] == [second["id"]]


def test_a_cancelled_reservation_gives_its_gpu_to_the_waiting_student_at_once(quota_client, clock):
    booked = quota_client.post("/api/reservations", headers=STAFF, json={
        "pool": "uni-a", "school": "c01", "units": 1, "starts_at": clock.now.isoformat(),
        "ends_at": (clock.now + timedelta(hours=1)).isoformat()})
    assert booked.status_code == 201, booked.text
    running = _allocator(quota_client)
    urban = ask(quota_client, "u01-s1", profile="gpu-whole").json()
    assert urban["state"] == "queued"  # the whole GPU is held for the county class
    clock.advance(minutes=1)
    cancelled = quota_client.delete(f"/api/reservations/{booked.json()['id']}", headers=STAFF)
    assert cancelled.status_code == 200, cancelled.text
    assert _allocator(quota_client) is running
    granted = _lease(quota_client, urban["id"])
    assert granted["state"] == "granted" and granted["granted_at"].startswith(clock.now.strftime("%Y-%m-%dT%H:%M"))
    fed = _held_state(quota_client)
    assert _rebuilt_state(quota_client) == fed


@pytest.mark.parametrize("used_after_minutes", [None, 4])
def test_a_workspace_charged_from_its_first_use_leaves_the_usage_a_rebuild_reads(quota_client, clock, used_after_minutes):
    started = ask(quota_client, "c01-s1").json()
    other = ask(quota_client, "u01-s1").json()
    clock.advance(minutes=10)
    charge_from = clock.now if used_after_minutes is None else clock.now - timedelta(minutes=10 - used_after_minutes)
    ended = quota_client.delete(f"/api/leases/{started['id']}", params={"charge_from": charge_from.isoformat()})
    assert ended.status_code == 200, ended.text
    record = quota_client.get("/api/usage", params={"user": "c01-s1"}).json()[0]
    assert round(record["held_seconds"]) == (0 if used_after_minutes is None else 6 * 60)
    running = _allocator(quota_client)
    fed = _held_state(quota_client)
    assert _allocator(quota_client) is running
    assert _rebuilt_state(quota_client) == fed
    assert _lease(quota_client, other["id"])["state"] == "granted"


def test_a_pool_drained_and_opened_again_hands_the_running_allocator_s_state_to_a_new_one(quota_client, clock):
    county = ask(quota_client, "c01-s1").json()
    urban = ask(quota_client, "u01-s1").json()
    clock.advance(minutes=20)
    drained = quota_client.patch("/api/pools/uni-a", headers=OPERATOR, json={"state": "draining", "note": "maintenance"})
    assert drained.status_code == 200, drained.text
    assert _allocator(quota_client).pools == []
    assert _lease(quota_client, county["id"])["state"] == "granted"  # it keeps its unit
    waiting = ask(quota_client, "u01-s2").json()
    assert waiting["state"] == "queued"  # nothing new lands on a draining pool

    clock.advance(minutes=5)
    running = _allocator(quota_client)
    opened = quota_client.patch("/api/pools/uni-a", headers=OPERATOR, json={"state": "open"})
    assert opened.status_code == 200, opened.text
    assert _allocator(quota_client) is not running
    assert sorted(_allocator(quota_client).sessions) == sorted([county["id"], urban["id"]])
    assert list(_allocator(quota_client).waiting) == [waiting["id"]]  # back in the line, with a place
    assert _lease(quota_client, waiting["id"])["queue_position"] == 1
    quota_client.delete(f"/api/leases/{urban['id']}")
    assert _lease(quota_client, waiting["id"])["state"] == "granted"
    fed = _held_state(quota_client)
    del fed["priority"]  # the running allocator also counts the drain's usage, which no usage record holds yet
    rebuilt = _rebuilt_state(quota_client)
    del rebuilt["priority"]
    assert rebuilt == fed


def test_a_change_and_what_it_decides_are_stored_together_or_not_at_all(quota_client, clock):
    ask(quota_client, "u01-s1")
    borrowed = ask(quota_client, "u01-s2").json()
    clock.advance(minutes=3)
    ask(quota_client, "c01-s1")
    warned = _lease(quota_client, borrowed["id"])
    assert warned["reclaim_at"] is not None
    database_url = quota_client.app.state.settings.database_url
    refuse_lease_writes(database_url, "UPDATE", True)
    failed = quota_client.patch("/api/schools/u01/quota", json={"guaranteed_share": 0.5}, headers=STAFF)
    refuse_lease_writes(database_url, "UPDATE", False)
    assert failed.status_code == 503 and "disk is full" in failed.json()["detail"]
    # neither the share nor the withdrawn warning was stored, and the allocator is as the database is
    assert quota_client.get("/api/schools/u01").json()["guaranteed_share"] is None
    assert _lease(quota_client, borrowed["id"])["reclaim_at"] == warned["reclaim_at"]
    assert _allocator(quota_client).sessions[borrowed["id"]].stop_at is not None
