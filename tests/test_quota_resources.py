"""Tiers, schools and quotas, pools, reservations and usage reports: who may change
what, bad input answered with the field and the fix, and the effect on leases."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest


def ask(client, user, profile="gpu-whole"):
    return client.post("/api/leases", json={"user": user, "school": user.split("-")[0], "profile": profile}).json()


def iso(moment):
    return moment.isoformat()


# -- quotas -------------------------------------------------------------------------------


def test_a_student_cannot_change_a_quota_and_staff_can(client_as):
    refused = client_as("c01-s1").patch("/api/schools/c01/quota", json={"budget_gpu_hours": 1000})
    assert refused.status_code == 403 and "staff" in refused.json()["detail"]
    assert client_as("c01-teacher").patch("/api/tiers/county", json={"weight": 9}).status_code == 403
    changed = client_as("staff-admin").patch("/api/schools/c01/quota", json={"budget_gpu_hours": 12.5})
    assert changed.status_code == 200 and changed.json()["budget_gpu_hours"] == 12.5
    assert client_as("c01-s1").get("/api/schools/c01").json()["budget_gpu_hours"] == 12.5


@pytest.mark.parametrize(
    "body, field",
    [({"budget_gpu_hours": -1}, "budget_gpu_hours"), ({"weight": 0}, "weight"), ({"max_sessions_per_student": 500}, "max_sessions_per_student"),
     ({"guaranteed_share": 1.5}, "guaranteed_share"), ({"bogus": 1}, "bogus")],
)
def test_absurd_quotas_are_422_naming_the_field_and_change_nothing(client_as, body, field):
    staff = client_as("staff-admin")
    before = staff.get("/api/schools/c01").json()
    response = staff.patch("/api/schools/c01/quota", json=body)
    assert response.status_code == 422
    assert field in str(response.json()["detail"])
    assert staff.get("/api/schools/c01").json() == before


def test_guaranteed_shares_may_not_add_up_beyond_one(client_as):
    staff = client_as("staff-admin")
    assert staff.patch("/api/schools/u01/quota", json={"guaranteed_share": 0.7}).status_code == 200
    response = staff.patch("/api/schools/c01/quota", json={"guaranteed_share": 0.5})
    assert response.status_code == 422 and response.json()["detail"].startswith("guaranteed_share:")
    assert "at most 0.300" in response.json()["detail"]


def test_tier_defaults_flow_to_schools(client_as):
    staff = client_as("staff-admin")
    assert staff.patch("/api/tiers/urban", json={"max_sessions_per_student": 3}).json()["max_sessions_per_student"] == 3
    assert staff.get("/api/schools/u01").json()["max_sessions_per_student"] == 3
    assert staff.get("/api/schools/c01").json()["max_sessions_per_student"] == 1  # the alliance's default


def test_a_spent_budget_refuses_gpu_leases_with_a_retry_time(quota_client, client_as, clock):
    client_as("staff-admin").patch("/api/schools/c01/quota", json={"budget_gpu_hours": 0.25})
    lease = ask(quota_client, "c01-s1")
    clock.advance(minutes=15)
    quota_client.delete(f"/api/leases/{lease['id']}")
    refused = ask(quota_client, "c01-s2")
    assert refused["state"] == "refused" and "Your school's GPU budget is used up" in refused["reason"]
    # the quarter hour used from 08:00 leaves the 7-day window a week later
    assert "You can ask again from 2026-09-08 08:00 UTC." in refused["reason"]
    assert ask(quota_client, "c01-s2", profile="cpu")["state"] == "granted"  # CPU is never budgeted
    assert ask(quota_client, "u01-s1")["state"] == "granted"  # other schools are not affected


# -- pools ---------------------------------------------------------------------------------


def test_operators_drain_pools_and_others_cannot(quota_client, client_as):
    assert client_as("staff-admin").patch("/api/pools/uni-a", json={"state": "draining"}).status_code == 403
    drained = client_as("it-ops").patch("/api/pools/uni-a", json={"state": "draining", "note": "driver update"})
    assert drained.status_code == 200 and drained.json()["state"] == "draining"
    waiting = ask(quota_client, "c01-s1")
    assert waiting["state"] == "queued"  # not refused: the pool comes back
    assert client_as("it-ops").patch("/api/pools/uni-a", json={"state": "closed"}).status_code == 422
    client_as("it-ops").patch("/api/pools/uni-a", json={"state": "open"})
    assert quota_client.get(f"/api/leases/{waiting['id']}").json()["state"] == "granted"


# -- reservations --------------------------------------------------------------------------


def booking(clock, units=1, school="c01", hours=(1, 2), **extra):
    body = {"pool": "uni-a", "school": school, "units": units,
            "starts_at": iso(clock.now + timedelta(hours=hours[0])), "ends_at": iso(clock.now + timedelta(hours=hours[1]))}
    body.update(extra)
    return body


def test_a_teacher_cannot_book_for_another_school(client_as, clock):
    response = client_as("c01-teacher").post("/api/reservations", json=booking(clock, school="u01"))
    assert response.status_code == 403 and "your own school" in response.json()["detail"]
    assert client_as("c01-s1").post("/api/reservations", json=booking(clock)).status_code == 403
    made = client_as("c01-teacher").post("/api/reservations", json=booking(clock, class_id="ai-club", note="Lesson 3"))
    assert made.status_code == 201 and made.json()["created_by"] == "c01-teacher"
    assert [r["id"] for r in client_as("u01-teacher").get("/api/reservations").json()] == []
    assert client_as("u01-teacher").delete(f"/api/reservations/{made.json()['id']}").status_code == 403


def test_overlapping_reservations_beyond_capacity_are_refused(client_as, clock):
    # uni-a has one whole GPU (the reservable unit of a partly sliced pool)
    staff = client_as("staff-admin")
    assert staff.post("/api/reservations", json=booking(clock, hours=(1, 3))).status_code == 201
    clash = staff.post("/api/reservations", json=booking(clock, school="u01", hours=(2, 4)))
    assert clash.status_code == 422 and clash.json()["detail"].startswith("units:") and "choose another time" in clash.json()["detail"]
    assert staff.post("/api/reservations", json=booking(clock, school="u01", hours=(3, 4))).status_code == 201
    assert len(staff.get("/api/reservations").json()) == 2


@pytest.mark.parametrize(
    "change, field",
    [({"units": 5}, "units"), ({"pool": "nowhere"}, "pool"), ({"class_id": "chess"}, "class_id"), ({"units": 0}, "units")],
)
def test_bad_reservations_name_the_field(client_as, clock, change, field):
    response = client_as("c01-teacher").post("/api/reservations", json=booking(clock, **change))
    assert response.status_code == 422 and field in str(response.json()["detail"])
    assert client_as("staff-admin").get("/api/reservations").json() == []


def test_times_must_be_in_order_with_a_zone_and_within_twelve_hours(client_as, clock):
    teacher = client_as("c01-teacher")
    backwards = teacher.post("/api/reservations", json=booking(clock, hours=(2, 1)))
    assert backwards.status_code == 422 and "ends_at" in backwards.json()["detail"]
    naive = booking(clock)
    naive["starts_at"] = naive["starts_at"][:19]
    assert "time zone" in teacher.post("/api/reservations", json=naive).json()["detail"]
    assert teacher.post("/api/reservations", json=booking(clock, hours=(1, 14))).status_code == 422


def test_a_reservation_holds_its_units_through_its_window(quota_client, client_as, clock):
    made = client_as("c01-teacher").post("/api/reservations", json=booking(clock, hours=(0, 1))).json()
    outsider = ask(quota_client, "u01-s1")
    assert outsider["state"] == "queued"  # the only whole GPU is kept for c01's lesson
    assert ask(quota_client, "c01-s1")["state"] == "granted"
    client_as("c01-teacher").delete(f"/api/reservations/{made['id']}")
    assert quota_client.get(f"/api/leases/{outsider['id']}").json()["state"] == "queued"  # c01-s1 still holds it


def test_a_class_reservation_serves_only_that_class(quota_client, client_as, clock):
    client_as("c01-teacher").post("/api/reservations", json=booking(clock, hours=(0, 1), class_id="ai-club"))
    not_in_class = ask(quota_client, "c01-s3")  # same school, not in the ai-club class
    assert not_in_class["state"] == "queued"
    assert ask(quota_client, "c01-s1")["state"] == "granted"  # in the class

def test_a_cancelled_reservation_frees_its_units_at_once(quota_client, client_as, clock):
    made = client_as("c01-teacher").post("/api/reservations", json=booking(clock, hours=(0, 1))).json()
    outsider = ask(quota_client, "u01-s1")
    assert outsider["state"] == "queued"
    client_as("c01-admin").delete(f"/api/reservations/{made['id']}")
    assert quota_client.get(f"/api/leases/{outsider['id']}").json()["state"] == "granted"


# -- usage reports -------------------------------------------------------------------------


def test_a_period_report_adds_up_to_the_sum_of_the_leases(quota_client, client_as, clock):
    minutes = {"c01-s1": 10, "c01-s3": 20, "u01-s1": 30}
    for day in range(3):
        for user, length in minutes.items():
            lease = ask(quota_client, user, profile="gpu-slice")
            clock.advance(minutes=length)
            quota_client.delete(f"/api/leases/{lease['id']}")
        clock.advance(days=1)
    staff = client_as("staff-admin")
    ledger = staff.get("/api/usage").json()
    report = staff.get("/api/usage/report", params={"group_by": "school", "period": "day"}).json()
    assert len(report) == 6  # two schools, three days
    for school in ("c01", "u01"):
        from_leases = sum(r["gpu_seconds"] for r in ledger if r["school"] == school)
        from_report = sum(row["gpu_seconds"] for row in report if row["group"] == school)
        assert from_report == pytest.approx(from_leases, abs=1e-6)
    assert sum(row["leases"] for row in report) == len(ledger) == 9
    by_class = staff.get("/api/usage/report", params={"group_by": "class", "period": "all"}).json()
    assert {row["group"] for row in by_class} == {"c01/ai-club", "c01/(no class)", "u01/(no class)"}
    assert client_as("c01-teacher").get("/api/usage/report", params={"group_by": "user", "period": "all"}).json()[0]["group"] == "c01-s1"


def test_usage_report_as_csv(quota_client, client_as, clock):
    lease = ask(quota_client, "c01-s1")
    clock.advance(minutes=30)
    quota_client.delete(f"/api/leases/{lease['id']}")
    response = client_as("staff-admin").get("/api/usage/report", params={"group_by": "tier", "period": "month", "format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows == [{"period_start": "2026-09-01T00:00:00+00:00", "tier": "county", "leases": "1", "held_seconds": "1800.000", "gpu_seconds": "1800.000"}]
    assert client_as("staff-admin").get("/api/usage/report", params={"format": "xml"}).status_code == 422
