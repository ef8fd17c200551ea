"""The operators' page and the student's page (quota/pages/operator.py, student.py), in-process:
an operator drains a pool with a note and the student's page shows it; the inventory, the
queue and the service's health; a student sees only their own GPU time; the role checks."""

from __future__ import annotations

import pytest

from tests.page_client import csrf_of, errors_of, main_text, page_client

HUB = {"Authorization": "token test-token"}


@pytest.fixture
def app(quota_client):
    return quota_client.app


def _ask(quota_client, user, profile="gpu-whole"):
    return quota_client.post("/api/leases", json={"user": user, "school": user.split("-")[0], "profile": profile}).json()


def _drain(client, **fields):
    token = csrf_of(client.get("/pages/operator").text)
    return client.post("/pages/operator/pool", data={"csrf": token, "id": "uni-a", **fields}, follow_redirects=False)


def test_the_operator_sees_inventory_holders_queue_and_health(app, quota_client):
    held = _ask(quota_client, "c01-s1")
    waiting = _ask(quota_client, "u01-s1")
    assert (held["state"], waiting["state"]) == ("granted", "queued")
    text = main_text(page_client(app, "it-ops").get("/pages/operator").text)
    assert "This process is the writer" in text and "simulated" in text
    assert "Sessions running: 1; requests waiting: 1" in text
    assert "c01-s1 (c01, gpu-whole)" in text and "whole: 0 of 1 free" in text and "slice: 2 of 2 free" in text
    queue = text[text.find("The queue"):]
    assert "u01-s1" in queue and "urban" in queue


def test_an_operator_drains_a_pool_and_the_student_reads_the_note(app, quota_client):
    operator = page_client(app, "it-ops")
    assert _drain(operator, state="draining", note="Maintenance until 14:00 <today>").status_code == 303
    assert quota_client.get("/api/pools").json()[0]["state"] == "draining"
    student = page_client(app, "c01-s1").get("/pages/me")
    assert "Pool uni-a is under maintenance: Maintenance until 14:00 <today>" in main_text(student.text)
    assert "&lt;today&gt;" in student.text  # escaped
    audit = app.state.book.read_policy(lambda session, now: app.state.book.policy.audit_log(session))
    assert {(r.field, r.old, r.new) for r in audit} == {("state", "open", "draining"),
                                                         ("note", "", "Maintenance until 14:00 <today>")}
    assert _drain(operator, state="open", note="").status_code == 303
    assert "maintenance" not in main_text(page_client(app, "c01-s1").get("/pages/me").text)


@pytest.mark.parametrize("fields, named, fix", [
    ({"state": "closed", "note": "x"}, ["state"], "open or draining"),
    ({"state": "draining", "note": ""}, ["note"], "students read it"),
    ({"state": "draining", "note": "x" * 501}, ["note"], "at most 500"),
])
def test_bad_pool_changes_name_the_field_and_change_nothing(app, quota_client, fields, named, fix):
    answer = _drain(page_client(app, "it-ops"), **fields)
    assert answer.status_code == 422 and errors_of(answer.text) == named and fix in main_text(answer.text)
    assert quota_client.get("/api/pools").json()[0]["state"] == "open"


def test_only_operators_change_pools(app, quota_client):
    staff = page_client(app, "staff-admin")
    assert staff.get("/pages/operator").status_code == 200  # reads
    assert _drain(staff, state="draining", note="x").status_code == 403
    for account in ("c01-teacher", "c01-s1"):
        assert page_client(app, account).get("/pages/operator").status_code == 403
    assert page_client(app, "it-ops").post("/pages/operator/pool", data={"id": "uni-a", "state": "draining",
                                                                       "note": "x"}).status_code == 403  # no token
    assert quota_client.get("/api/pools").json()[0]["state"] == "open"


def test_a_student_sees_their_own_lease_budget_and_history_only(app, quota_client, clock):
    quota_client.patch("/api/schools/c01/quota", json={"student_budget_gpu_hours": 2},
                       headers={"Authorization": "token tok-staff-admin"})
    first = _ask(quota_client, "c01-s1")
    clock.advance(minutes=30)
    quota_client.delete(f"/api/leases/{first['id']}")
    _ask(quota_client, "c01-s1", "gpu-slice")
    _ask(quota_client, "c01-s2")
    clock.advance(minutes=30)
    text = main_text(page_client(app, "c01-s1").get("/pages/me").text)
    # 0.5 GPU-hours of the whole GPU, then half a GPU (a slice) for 30 minutes, running: 0.75
    assert "You used 0.75 of your 2 GPU-hours in the last 7 days; 1.25 are left." in text
    assert "gpu-slice" in text and "the lease ends at" in text
    assert "you stopped it" in text  # the history's first session
    assert "c01-s2" not in text
    for account in ("c01-teacher", "staff-admin", "it-ops"):
        assert page_client(app, account).get("/pages/me").status_code == 403


@pytest.mark.parametrize("path, account", [("/pages/operator", "it-ops"), ("/pages/me", "c01-s1"), ("/", "c01-teacher")])
@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_both_languages_render(app, path, account, locale):
    answer = page_client(app, account, locale).get(path)
    assert answer.status_code == 200 and f'<html lang="{locale}">' in answer.text
    text = main_text(answer.text)
    assert "{" not in text
    chinese = any("\u4e00" <= char <= "\u9fff" for char in text)
    assert chinese == (locale == "zh-CN")
