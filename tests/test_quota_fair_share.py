"""The quota service decides with the fair-share allocator (quota.fairshare), rebuilt from
its database for every decision.

The alliance of ``tests.quota_fixtures``: one whole GPU and one GPU in two slices (2 GPUs
in all); c01 is a county school (weight 2, so guaranteed 2/3 of the GPUs), u01 an urban
one (weight 1, guaranteed 1/3).
"""

from __future__ import annotations

import pytest

from tests.quota_calls import ask


def lease(client, lease_id):
    return client.get(f"/api/leases/{lease_id}").json()


def test_a_borrowed_share_is_reclaimed_for_a_school_below_its_guarantee(quota_client, clock):
    within = ask(quota_client, "u01-s1").json()  # half a GPU: inside u01's third of 2 GPUs
    borrowed = ask(quota_client, "u01-s2").json()  # a second half: beyond it, borrowed
    assert within["state"] == borrowed["state"] == "granted"
    clock.advance(minutes=3)
    county = ask(quota_client, "c01-s1").json()
    assert county["state"] == "queued"

    # the borrowed lease is warned, never the one within the guarantee; none before the
    # minimum runtime (10 minutes), and the warning comes 2 minutes ahead at least
    assert lease(quota_client, within["id"])["reclaim_at"] is None
    warned = lease(quota_client, borrowed["id"])
    assert warned["reclaim_at"].startswith(clock.now.replace(minute=clock.now.minute + 7).strftime("%Y-%m-%dT%H:%M"))
    assert "below its guaranteed share" in warned["reason"]
    queued = lease(quota_client, county["id"])
    assert queued["queue_position"] == 1 and queued["wait_estimate_s"] == pytest.approx(7 * 60, abs=1)

    for _ in range(7):  # the hub keeps asking about the queued lease every minute
        clock.advance(minutes=1)
        lease(quota_client, county["id"])
    assert quota_client.app.state.book.sweep() == 1
    assert lease(quota_client, borrowed["id"])["state"] == "expired"
    granted = lease(quota_client, county["id"])
    assert granted["state"] == "granted" and granted["device"] == warned["device"]
    assert lease(quota_client, within["id"])["state"] == "granted"
    usage = quota_client.get("/api/usage", params={"user": "u01-s2"}).json()
    assert [(r["end_reason"], round(r["held_seconds"])) for r in usage] == [("reclaimed", 600)]


def test_a_released_warned_share_withdraws_nothing_else(quota_client, clock):
    ask(quota_client, "u01-s1")
    borrowed = ask(quota_client, "u01-s2").json()
    clock.advance(minutes=15)
    county = ask(quota_client, "c01-s1").json()
    assert lease(quota_client, borrowed["id"])["reclaim_at"] is not None
    quota_client.delete(f"/api/leases/{borrowed['id']}")  # the student saves and stops early
    assert lease(quota_client, county["id"])["state"] == "granted"
    usage = quota_client.get("/api/usage", params={"user": "u01-s2"}).json()
    assert [r["end_reason"] for r in usage] == ["released"]


def test_the_queue_serves_the_school_with_less_recent_usage_first(quota_client, clock):
    heavy = ask(quota_client, "u01-s1", profile="gpu-whole").json()
    clock.advance(minutes=25)
    quota_client.delete(f"/api/leases/{heavy['id']}")  # u01 used the whole GPU for 25 minutes
    holder = ask(quota_client, "c01-s3", profile="gpu-whole").json()
    clock.advance(minutes=1)
    urban = ask(quota_client, "u01-s2", profile="gpu-whole").json()  # asks first
    county = ask(quota_client, "c01-s1", profile="gpu-whole").json()  # asks later
    assert urban["state"] == county["state"] == "queued"
    # c01: 1 minute of one GPU plus the entry penalty, over weight 2; u01: 25 minutes over 1
    assert lease(quota_client, county["id"])["queue_position"] == 1
    assert lease(quota_client, urban["id"])["queue_position"] == 2
    assert [row["id"] for row in quota_client.get("/api/queue").json()] == [county["id"], urban["id"]]
    estimate = lease(quota_client, county["id"])["wait_estimate_s"]
    assert estimate == pytest.approx(29 * 60, abs=1)  # the holder's 30-minute lease ends then

    quota_client.delete(f"/api/leases/{holder['id']}")
    assert lease(quota_client, county["id"])["state"] == "granted"
    assert lease(quota_client, urban["id"])["state"] == "queued"


def test_a_borrowing_limit_set_by_staff_refuses_what_can_never_fit(quota_client, client_as):
    changed = client_as("staff-admin").patch("/api/schools/u01/quota", json={"borrowing_limit_gpus": 0})
    assert changed.status_code == 200, changed.text
    # u01 is guaranteed 2/3 of a GPU and may not borrow: a whole GPU never fits
    refused = ask(quota_client, "u01-s1", profile="gpu-whole").json()
    assert refused["state"] == "refused" and "at most 0.667 GPU" in refused["reason"]
    assert ask(quota_client, "u01-s2").json()["state"] == "granted"  # half a GPU does
