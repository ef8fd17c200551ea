"""A class reservation gives back the units its class does not hold
``fairshare.reservation_release_minutes`` after the lesson starts, in the quota service as in
the allocator (tests/test_fairshare_rules.py): a class smaller than booked leaves no GPU idle,
time alone decides it, a restart rebuilds the same state, and a student of the class who comes
after that asks like anyone else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.quota_calls import ask
from tests.quota_fixtures import TOKEN

HEADERS = {"Authorization": f"token {TOKEN}"}

RELEASE_ALLIANCE = """
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: uni-a, gpus: 2, simulated: true}
profiles:
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 120}
schools:
  - id: c01
    tier: county
    students: [c01-s1, c01-s2, c01-s3]
    teachers: [c01-teacher]
    classes: [{id: ai-club, teachers: [c01-teacher], students: [c01-s1, c01-s2, c01-s3]}]
  - {id: u01, tier: urban, students: [u01-s1, u01-s2]}
staff: [staff-admin]
fairshare: {reservation_release_minutes: 10, lent_lease_minutes: null}
"""


@pytest.fixture
def quota_alliance(tmp_path):
    path = tmp_path / "alliance.yaml"
    path.write_text(RELEASE_ALLIANCE)
    return path


def _granted(client) -> list[tuple[str, str]]:
    return sorted((lease["user"], lease["state"]) for lease in client.get("/api/leases", params={"state": "granted"}).json())


def test_units_the_class_does_not_hold_go_back_after_the_release_minutes(make_quota_app, clock):
    bell = clock.now + timedelta(minutes=1)
    with TestClient(make_quota_app(), headers=HEADERS) as client:
        booked = client.post("/api/reservations", json={
            "pool": "uni-a", "school": "c01", "class_id": "ai-club", "units": 2,
            "starts_at": bell.isoformat(), "ends_at": (bell + timedelta(minutes=45)).isoformat(),
        })
        assert booked.status_code == 201, booked.text
        clock.advance(minutes=2)
        client.app.state.book.advance()
        assert ask(client, "c01-s1", profile="gpu-whole").json()["state"] == "granted"  # one of the class comes
        urban = [ask(client, user, profile="gpu-whole").json() for user in ("u01-s1", "u01-s2")]
        assert [lease["state"] for lease in urban] == ["queued", "queued"]  # the class's second GPU is held

        for _ in range(8):  # the waiting students' pages keep asking, minute by minute
            clock.advance(minutes=1)
            client.app.state.book.advance()
            for lease in urban:
                client.get(f"/api/leases/{lease['id']}")
        clock.advance(seconds=59)  # 9 min 59 s after the bell
        client.app.state.book.advance()
        assert [u for u, _ in _granted(client)] == ["c01-s1"]
        wake = client.app.state.book.next_wake
        assert wake == (bell + timedelta(minutes=10)).timestamp(), wake  # time alone gives it back, on time
        clock.advance(seconds=1)
        client.app.state.book.advance()
        assert [u for u, _ in _granted(client)] == ["c01-s1", "u01-s1"]
        before = _granted(client)

    # a restart after the release rebuilds the same: the reservation holds only c01-s1's GPU
    with TestClient(make_quota_app(), headers=HEADERS) as client:
        assert _granted(client) == before
        late = ask(client, "c01-s2", profile="gpu-whole").json()  # comes after the release: asks like anyone else
        assert late["state"] == "queued"
        released = client.delete(f"/api/leases/{_lease_of(client, 'c01-s1')}")
        assert released.status_code == 200, released.text
        client.app.state.book.advance()
        # the class's last GPU went back to the pool: the county student, first in line, gets it
        assert [u for u, _ in _granted(client)] == ["c01-s2", "u01-s1"]


def _lease_of(client, user: str) -> str:
    (lease,) = [x for x in client.get("/api/leases", params={"state": "granted"}).json() if x["user"] == user]
    return lease["id"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_teachers_page_says_when_unused_gpus_go_to_others(make_quota_app, tmp_path):
    from tests.page_client import main_text, page_client

    held = tmp_path / "held.yaml"
    held.write_text(RELEASE_ALLIANCE.replace("reservation_release_minutes: 10", "reservation_release_minutes: null"))
    for alliance, shown in ((None, True), (held, False)):
        app = make_quota_app(**({"alliance": alliance} if alliance else {}))
        with TestClient(app, headers=HEADERS):
            english = main_text(page_client(app, "c01-teacher").get("/pages/teacher").text)
            chinese = main_text(page_client(app, "c01-teacher", "zh-CN").get("/pages/teacher").text)
        assert ("none of its students holds 10 minutes after the start go to other students" in english) is shown, english
        assert ("开课 10 分钟后仍没有本班学生使用的" in chinese) is shown, chinese
