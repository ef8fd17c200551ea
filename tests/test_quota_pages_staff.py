"""The staff's page (quota/pages/staff.py), in-process: shares changed through the form with the
API's rules (each refused field named with its fix, nothing half-saved), the audit log of every
policy change (append-only in the database), the equity view counting running sessions, its CSV
export without formula injection, and the usage report counting running sessions too."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import text

from tests.page_client import csrf_of, errors_of, main_text, page_client

STAFF = {"Authorization": "token tok-staff-admin"}


@pytest.fixture
def app(quota_client):
    return quota_client.app


def _post(client, path, **fields):
    token = csrf_of(client.get("/pages/staff").text)
    return client.post(path, data={"csrf": token, **fields}, follow_redirects=False)


def test_staff_change_a_county_schools_share_and_the_audit_log_shows_who_old_and_new(app, quota_client):
    staff = page_client(app, "staff-admin")
    saved = _post(staff, "/pages/staff/school", id="c01", guaranteed_share="0.6", weight="")
    assert saved.status_code == 303
    assert quota_client.get("/api/schools/c01").json()["guaranteed_share"] == 0.6
    page = staff.get(saved.headers["location"])
    text = main_text(page.text)
    assert "Saved the settings of c01" in text
    audit = text[text.find("Audit log"):]
    assert "staff-admin" in audit and "school c01" in audit and "Guaranteed share" in audit and "0.6" in audit
    # the API's PATCH is audited too
    assert quota_client.patch("/api/tiers/urban", json={"weight": 3}, headers=STAFF).status_code == 200
    rows = app.state.book.read_policy(lambda session, now: app.state.book.policy.audit_log(session))
    assert [(r.subject, r.target, r.field, r.old, r.new) for r in rows] == [
        ("tier", "urban", "weight", "1.0", "3.0"), ("school", "c01", "guaranteed_share", None, "0.6")]


def test_the_audit_log_is_append_only_in_the_database(app, quota_client):
    assert quota_client.patch("/api/schools/c01/quota", json={"weight": 5}, headers=STAFF).status_code == 200
    book = app.state.book
    with pytest.raises(Exception, match="append-only"):
        book.change_policy(lambda session, now: session.execute(text("UPDATE policy_changes SET new = '9'")))
    with pytest.raises(Exception, match="append-only"):
        book.change_policy(lambda session, now: session.execute(text("DELETE FROM policy_changes")))
    assert len(book.read_policy(lambda session, now: book.policy.audit_log(session))) == 1


@pytest.mark.parametrize("fields, named, fix", [
    ({"guaranteed_share": "1.5"}, ["guaranteed_share"], "at most 1"),
    ({"weight": "0"}, ["weight"], "greater than 0"),
    ({"weight": "0,5"}, ["weight"], "a dot, not a comma"),
    ({"max_sessions_per_student": "2.5"}, ["max_sessions_per_student"], "whole number"),
    ({"weight": "2", "borrowing_limit_gpus": "-1"}, ["borrowing_limit_gpus"], "at least 0"),
])
def test_bad_settings_name_the_field_and_save_nothing(app, quota_client, fields, named, fix):
    before = quota_client.get("/api/schools/c01").json()
    answer = _post(page_client(app, "staff-admin"), "/pages/staff/school", id="c01", **fields)
    assert answer.status_code == 422 and errors_of(answer.text) == named
    assert fix in main_text(answer.text)
    assert quota_client.get("/api/schools/c01").json() == before  # nothing of the form was saved


def test_shares_over_the_whole_are_refused_with_the_services_reason(app, quota_client):
    staff = page_client(app, "staff-admin")
    assert _post(staff, "/pages/staff/school", id="u01", guaranteed_share="0.7").status_code == 303
    answer = _post(staff, "/pages/staff/school", id="c01", guaranteed_share="0.5", weight="4")
    assert answer.status_code == 422 and errors_of(answer.text) == ["guaranteed_share"]
    assert "at most 0.300" in main_text(answer.text)
    assert quota_client.get("/api/schools/c01").json()["weight"] == 2  # the tier's: the weight was not saved either


def test_only_staff_change_operators_read_teachers_and_students_are_refused(app, quota_client):
    operator = page_client(app, "it-ops")
    assert operator.get("/pages/staff").status_code == 200
    assert _post(operator, "/pages/staff/school", id="c01", weight="5").status_code == 403
    for account in ("c01-teacher", "c01-s1", "c01-admin"):
        assert page_client(app, account).get("/pages/staff").status_code == 403
    staff = page_client(app, "staff-admin")
    assert staff.post("/pages/staff/school", data={"id": "c01", "weight": "5"}).status_code == 403  # no CSRF token
    assert quota_client.get("/api/schools/c01").json()["weight"] == 2  # the tier's, unchanged


def test_the_equity_view_and_the_usage_report_count_running_sessions(app, quota_client, clock):
    lease = quota_client.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "gpu-whole"}).json()
    assert lease["state"] == "granted"
    clock.advance(minutes=30)
    report = quota_client.get("/api/usage/report", params={"group_by": "tier", "period": "day"}).json()
    assert [(r["group"], round(r["gpu_seconds"])) for r in report] == [("county", 1800)]
    assert quota_client.get("/api/usage/report", params={"group_by": "tier", "running": "false"}).json() == []
    staff = page_client(app, "staff-admin")
    page = staff.get("/pages/staff", params={"period": "day"})
    assert "served: 0.50 GPU-hours" in page.text  # the county bar of the SVG chart
    exported = list(csv.DictReader(io.StringIO(staff.get("/pages/staff/equity.csv", params={"period": "day"}).text)))
    today = [r for r in exported if r["period_start"].startswith("2026-09-01") and r["name"] == "county"]
    assert today[0]["served_gpu_hours"] == "0.500" and today[0]["running_gpu_hours"] == "0.500"
    assert today[0]["granted_leases"] == "1" and today[0]["median_wait_s"] == "0.000"


def test_csv_cells_cannot_start_a_formula():
    from quota.pages.equity import csv_cell

    assert [csv_cell(v) for v in ("=HYPERLINK()", "+1", "-2", "@x", "c01", 1.5, 3)] == [
        "'=HYPERLINK()", "'+1", "'-2", "'@x", "c01", "1.500", "3"]


@pytest.mark.parametrize("locale, words", [("zh-CN", ["份额与公平", "保障份额"]), ("en", ["Shares and equity", "Guaranteed share"])])
def test_both_languages(app, locale, words):
    answer = page_client(app, "staff-admin", locale).get("/pages/staff")
    assert f'<html lang="{locale}">' in answer.text and all(w in answer.text for w in words)
    assert "{" not in main_text(answer.text)
