"""The rules of workspaces started ahead of a lesson (issue 18, point 1), without a hub:
from when a reservation holds its units (quota/reservations.py), which pre-start options the
spawner honours and when it counts a workspace as opened or culls it (spawner/prestart.py),
and the quota service charging a lease from the time the hub gives at release."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hub.prestart import Booking, due_now, profile_for, students_of
from quota.alliance import load_alliance
from quota.reservations import holds_from
from spawner.prestart import cull_due, opened_at, prestart_bell

T = datetime(2026, 9, 1, 10, 0, tzinfo=timezone.utc)
LEAD = timedelta(minutes=3)


def test_a_reservation_holds_its_units_a_lead_early_but_never_over_an_earlier_booking():
    assert holds_from(T, LEAD, []) == T - LEAD
    assert holds_from(T, LEAD, [T - timedelta(minutes=1)]) == T - timedelta(minutes=1)  # the lesson before ends then
    assert holds_from(T, LEAD, [T - timedelta(minutes=5), T + timedelta(hours=1)]) == T - LEAD  # not inside the lead
    assert holds_from(T, LEAD, [T]) == T  # back to back: from its start, as before
    assert holds_from(600.0, 0.0, [590.0]) == 600.0  # no lead: the booked start
    assert holds_from(600.0, 180.0, [300.0, 500.0, 700.0]) == 500.0  # seconds work the same


def test_only_a_prestart_for_a_lesson_within_the_lead_is_honoured():
    now = T - timedelta(minutes=2)
    good = {"reservation": "r-1", "bell": T.isoformat()}
    assert prestart_bell(good, now, LEAD) == T
    assert prestart_bell({**good, "bell": (T + timedelta(hours=3)).isoformat()}, now, LEAD) is None  # for later
    assert prestart_bell({**good, "bell": (now - timedelta(minutes=5)).isoformat()}, now, LEAD) is None  # long past
    assert prestart_bell({"bell": T.isoformat()}, now, LEAD) is None  # no reservation named
    assert prestart_bell({**good, "bell": "tomorrow"}, now, LEAD) is None
    assert prestart_bell("yes", now, LEAD) is None
    assert prestart_bell({**good, "bell": "2026-09-01T10:00:00"}, now, LEAD) == T  # a naive time is UTC


def test_opened_only_by_activity_after_the_workspace_was_ready_and_culled_after_the_grace():
    ready = T - timedelta(minutes=2)
    after = timedelta(seconds=10)
    assert opened_at(None, ready, after) is None
    assert opened_at(ready + timedelta(seconds=3), ready, after) is None  # the proxy route's own creation
    assert opened_at(ready + timedelta(seconds=40), ready, after) == ready + timedelta(seconds=40)
    grace = timedelta(minutes=10)
    assert not cull_due(T + timedelta(minutes=9), T, ready, grace)
    assert cull_due(T + grace, T, ready, grace)
    late = T + timedelta(minutes=5)  # got its GPU after the bell: its own grace from then
    assert not cull_due(T + grace, T, late, grace) and cull_due(late + grace, T, late, grace)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_service_charges_a_lease_from_the_time_the_hub_gives(quota_client, clock):
    def lease() -> dict:
        answer = quota_client.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "gpu-slice"})
        assert answer.status_code == 201 and answer.json()["state"] == "granted", answer.text
        return answer.json()

    unused = lease()
    clock.advance(minutes=4)
    ended = quota_client.delete(f"/api/leases/{unused['id']}", params={"charge_from": clock.now.isoformat()})
    assert ended.status_code == 200 and ended.json()["state"] == "released"

    used = lease()
    clock.advance(minutes=3)
    opened = clock.now
    clock.advance(minutes=2)
    assert quota_client.delete(f"/api/leases/{used['id']}", params={"charge_from": opened.isoformat()}).status_code == 200

    plain = lease()
    clock.advance(minutes=1)
    assert quota_client.delete(f"/api/leases/{plain['id']}").status_code == 200

    records = {r["lease_id"]: r for r in quota_client.get("/api/usage", params={"user": "c01-s1"}).json()}
    assert records[unused["id"]]["held_seconds"] == 0 and records[unused["id"]]["gpu_seconds"] == 0
    assert records[used["id"]]["held_seconds"] == pytest.approx(120)
    assert datetime.fromisoformat(records[used["id"]]["started_at"]) == opened
    assert records[plain["id"]]["held_seconds"] == pytest.approx(60)  # no charge_from: from the grant
    assert records[plain["id"]]["gpu_seconds"] == pytest.approx(30)  # half a GPU (two slices per GPU)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_only_the_hub_says_from_when_a_lease_is_charged(quota_client, client_as, clock):
    lease = quota_client.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "gpu-slice"}).json()
    teacher = client_as("c01-teacher")
    refused = teacher.delete(f"/api/leases/{lease['id']}", params={"charge_from": clock.now.isoformat()})
    assert refused.status_code == 403 and "Only the hub" in refused.json()["detail"]
    assert teacher.delete(f"/api/leases/{lease['id']}").status_code == 200  # a plain release is still theirs


def test_the_service_starts_a_class_only_inside_the_lead_and_no_more_than_its_units(tmp_path):
    (tmp_path / "alliance.yaml").write_text("""
tiers: {county: {weight: 2}}
pools:
  - {id: sliced, gpus: 1, sliced_gpus: 1, slices_per_gpu: 4, simulated: true}
  - {id: whole, gpus: 2, simulated: true}
profiles:
  - {id: cpu, display_name: CPU, gpu: none}
  - {id: slice, display_name: A slice, gpu: slice}
  - {id: gpu, display_name: A GPU, gpu: whole}
schools:
  - {id: c01, tier: county, students: [a, b, c], classes: [{id: k, students: [a, b, c]}]}
""")
    alliance = load_alliance(tmp_path / "alliance.yaml")
    lesson = Booking("r-1", "sliced", "c01", "k", 2, T, T + timedelta(hours=1))
    school_wide = Booking("r-2", "whole", "c01", "", 1, T, T + timedelta(hours=1))
    before = Booking("r-0", "sliced", "c01", "k", 1, T - timedelta(hours=1), T - timedelta(minutes=1))
    assert due_now([lesson, school_wide], T - timedelta(minutes=4), LEAD) == []  # not yet
    assert due_now([lesson, school_wide], T - timedelta(minutes=2), LEAD) == [lesson]  # a school's: never
    assert due_now([lesson, before], T - timedelta(minutes=2), LEAD) == []  # the lesson before holds the units
    assert due_now([lesson, before], T - timedelta(seconds=30), LEAD) == [lesson]
    assert due_now([lesson], T, LEAD) == []  # at the bell students start themselves
    assert profile_for(alliance, "sliced") == "slice" and profile_for(alliance, "whole") == "gpu"
    assert students_of(alliance, "c01", "k", 2) == (["a", "b"], ["c"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_teachers_page_says_the_workspaces_are_ready_at_the_bell(make_quota_app, tmp_path):
    from fastapi.testclient import TestClient

    from tests.page_client import main_text, page_client
    from tests.quota_fixtures import QUOTA_ALLIANCE, TOKEN

    with_lead = tmp_path / "with-lead.yaml"
    with_lead.write_text(QUOTA_ALLIANCE.replace("fairshare: {", "fairshare: {reservation_lead_minutes: 3, "))
    for alliance, shown in ((with_lead, True), (None, False)):
        app = make_quota_app(**({"alliance": alliance} if alliance else {}))
        with TestClient(app, headers={"Authorization": f"token {TOKEN}"}):
            english = main_text(page_client(app, "c01-teacher").get("/pages/teacher").text)
            chinese = main_text(page_client(app, "c01-teacher", "zh-CN").get("/pages/teacher").text)
        assert ("start by themselves 3 minutes before it" in english) is shown, english
        assert ("上课前 3 分钟自动启动" in chinese) is shown
