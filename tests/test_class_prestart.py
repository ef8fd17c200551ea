"""Workspaces ready at the bell (issue 18, point 1), on the real platform: hub, proxy, quota
service, the pre-start service and sandboxed JupyterLab workspaces.

A class of three has a reservation whose window opens in a few seconds (its units are held
from a lead of one minute before): the platform starts the three workspaces by itself, each
on a unit of the reservation. One student opens theirs; the two others never come, so theirs
are stopped after the grace period, their leases end and nothing is charged for them. The
one who came is charged from their first visit, not from the pre-start.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.hub_client import log_in, wait_for
from tests.stack import running_stack

pytestmark = pytest.mark.slow

ALLIANCE = """
name: Pre-start test alliance
tiers: {county: {weight: 2}}
fairshare: {reservation_lead_minutes: 1}
pools:
  - {id: uni-a, gpus: 1, sliced_gpus: 1, slices_per_gpu: 4, simulated: true}
profiles:
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 60}
schools:
  - id: c01
    tier: county
    students: [c01-s1, c01-s2, c01-s3]
    teachers: [c01-teacher]
    classes: [{id: c01-ai, teachers: [c01-teacher], students: [c01-s1, c01-s2, c01-s3]}]
"""

CLASS = ["c01-s1", "c01-s2", "c01-s3"]
GRACE_S = 12
HUB_CONFIG = {
    "LocalQuotaSpawner": {"prestart_grace_minutes": GRACE_S / 60, "prestart_opened_after_seconds": 2,
                          "poll_interval": 2},
    "PrestartService": {"interval_seconds": 2},
    "JupyterHub": {"last_activity_interval": 2},
}


@pytest.fixture()
def stack(tmp_path):
    with running_stack(tmp_path, ALLIANCE, HUB_CONFIG) as stack:
        yield stack


def servers(stack) -> dict[str, dict]:
    with stack.hub_api(stack.quota_token) as hub:  # the quota service's token reads users and servers
        return {u["name"]: (u.get("servers") or {}).get("") for u in hub.get("/users").json()}


def leases(stack, user: str) -> list[dict]:
    with stack.quota() as quota:
        return quota.get("/api/leases", params={"user": user}).json()


def usage(stack, user: str) -> list[dict]:
    with stack.quota() as quota:
        return quota.get("/api/usage", params={"user": user}).json()


def test_a_booked_class_finds_its_workspaces_started_and_unused_ones_cost_nothing(stack):
    bell = datetime.now(timezone.utc) + timedelta(seconds=20)
    with stack.quota() as quota:
        booked = quota.post("/api/reservations", json={
            "pool": "uni-a", "school": "c01", "class_id": "c01-ai", "units": 3, "starts_at": bell.isoformat(),
            "ends_at": (bell + timedelta(minutes=45)).isoformat(), "note": "lesson"})
    assert booked.status_code == 201, booked.text

    # Nobody pressed Start: the platform starts the class's workspaces within its lead.
    wait_for(lambda: all((servers(stack).get(s) or {}).get("ready") for s in CLASS), 150,
             "the class's workspaces to be started ahead of the lesson")
    for student in CLASS:
        granted = [lease for lease in leases(stack, student) if lease["state"] == "granted"]
        assert len(granted) == 1 and granted[0]["profile"] == "gpu-slice", granted
    assert datetime.now(timezone.utc) < bell + timedelta(seconds=GRACE_S), "too slow to tell the cull apart"

    # One student comes at the bell: their JupyterLab answers at once, through the proxy.
    came = log_in(stack, "c01-s1")
    with httpx.Client(headers={"Authorization": f"token {came.token}"}, timeout=10) as browser:
        for _ in range(4):
            assert browser.get(f"{stack.url}/user/c01-s1/api/status").status_code == 200
            time.sleep(1)
    opened_at = datetime.now(timezone.utc)

    # The two who never came: stopped after the grace period, leases ended, nothing charged.
    wait_for(lambda: all(servers(stack).get(s) is None for s in CLASS[1:]), 120,
             "the unused pre-started workspaces to be stopped")
    for student in CLASS[1:]:
        assert not [lease for lease in leases(stack, student) if lease["state"] in ("granted", "queued")]
        records = usage(stack, student)
        assert len(records) == 1 and records[0]["gpu_seconds"] == 0 and records[0]["held_seconds"] == 0, records
    assert (servers(stack).get("c01-s1") or {}).get("ready"), "the workspace someone opened was stopped"
    assert "c01-s1: pre-started workspace opened" in stack.log_path.read_text()

    # The one who came is charged from their visit (as the hub saw it), not from the pre-start.
    came.stop()
    records = usage(stack, "c01-s1")
    assert len(records) == 1, records
    record = records[0]
    charged_from = datetime.fromisoformat(record["started_at"])
    lease = next(lease for lease in leases(stack, "c01-s1") if lease["id"] == record["lease_id"])
    granted_at, ended_at = datetime.fromisoformat(lease["granted_at"]), datetime.fromisoformat(record["ended_at"])
    assert granted_at + timedelta(seconds=2) < charged_from <= opened_at + timedelta(seconds=5)
    assert record["held_seconds"] == pytest.approx((ended_at - charged_from).total_seconds(), abs=0.01)
    assert 0 < record["gpu_seconds"] < (ended_at - granted_at).total_seconds() / 4  # a slice is a quarter GPU
