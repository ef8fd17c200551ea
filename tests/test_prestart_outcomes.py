"""A pre-start that fails shows on the teacher's booking page (issue 18, "Bad input"), without a hub:
the quota service keeps each pre-start's outcome per reservation and student (``PUT
/api/reservations/{id}/prestarts/{account}``, the hub only), the teacher's page shows "N ready ·
M failed" with each failed student's reason in the page's language and warns of a class larger
than its booking; the spawner reports ready or failed (and still raises), the pre-start service
reports a start the hub refused."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpu_commons_i18n import _, from_json
from hub.prestart import Booking, PrestartService, refused_by_hub
from quota.pages.teacher import class_too_big
from quota.tables import PrestartOutcome
from spawner.failures import WorkspaceFailed
from spawner.prestart import START_FAILED
from spawner.quota import SpawnRefused
from tests.page_client import csrf_of, main_text, page_client
from tests.quota_fixtures import TOKEN
from tests.spawner_fakes import ALLIANCE_WITH_LEAD, CONNECTION_REFUSED, lease, messages, prestarted_spawner
from tests.spawner_fakes import service  # noqa: F401  (fixture)

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _booking(quota_client, units: int = 1) -> str:
    start = quota_client.app.state.book.clock() + timedelta(days=1)
    answer = quota_client.post("/api/reservations", json={
        "pool": "uni-a", "school": "c01", "class_id": "ai-club", "units": units, "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat()})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def _report(client, reservation: str, account: str, **body):
    return client.put(f"/api/reservations/{reservation}/prestarts/{account}", json=body)


def _rows(app) -> list[tuple[str, str, str]]:
    return app.state.book.read_policy(lambda session, now: [
        (r.reservation_id, r.account, r.outcome) for r in session.scalars(select(PrestartOutcome))])


# -- the route ------------------------------------------------------------------------------

@SQLITE
def test_the_hub_reports_and_the_latest_report_of_a_student_wins(quota_client):
    reservation = _booking(quota_client)
    ready = _report(quota_client, reservation, "c01-s1", outcome="ready")
    assert ready.status_code == 200 and ready.json()["outcome"] == "ready" and ready.json()["message"] is None
    failed = _report(quota_client, reservation, "c01-s1", outcome="failed", message=START_FAILED.as_json())
    assert failed.status_code == 200 and failed.json()["message"] == START_FAILED.as_json()
    assert _rows(quota_client.app) == [(reservation, "c01-s1", "failed")]  # one row, not two


@SQLITE
def test_only_the_hub_reports_and_only_for_a_reservation_that_exists(quota_client, client_as):
    reservation = _booking(quota_client)
    for account in ("c01-teacher", "c01-s1", "staff-admin"):
        refused = _report(client_as(account), reservation, "c01-s1", outcome="ready")
        assert refused.status_code == 403, (account, refused.text)
    missing = _report(quota_client, "r-no-such", "c01-s1", outcome="ready")
    assert missing.status_code == 404 and "r-no-such" in missing.json()["detail"]
    assert _rows(quota_client.app) == []


@SQLITE
@pytest.mark.parametrize("body,field", [
    ({"outcome": "started"}, "outcome"),
    ({"outcome": "failed"}, "message"),  # a failure says why
    ({"outcome": "ready", "message": START_FAILED.as_json()}, "message"),
    ({"outcome": "failed", "message": {"msgid": "Not a sentence of the catalogue {x}", "params": {"x": "1"}}}, "message"),
    ({"outcome": "failed", "message": _("{account}: {reason}", account="a", reason={"msgid": "nope"}).as_json()},
     "message"),  # a parameter that is a message must be one of the catalogue too
    ({"outcome": "ready", "later": True}, "later"),
])
def test_a_bad_report_is_refused_naming_the_field(quota_client, body, field):
    reservation = _booking(quota_client)
    answer = _report(quota_client, reservation, "c01-s1", **body)
    assert answer.status_code == 422, answer.text
    assert field in {str(part) for error in answer.json()["detail"] for part in error["loc"]}, answer.text
    assert _rows(quota_client.app) == []


# -- the teacher's page ---------------------------------------------------------------------

@SQLITE
def test_the_teachers_page_shows_ready_and_failed_with_the_reason_in_its_language(quota_client):
    reservation = _booking(quota_client, units=1)  # ai-club has 2 students
    assert _report(quota_client, reservation, "c01-s1", outcome="ready").status_code == 200
    refused = _("The hub did not start the workspace ahead of the lesson (it answered HTTP {status}); the student "
                "starts it at the bell.", status="500")
    assert _report(quota_client, reservation, "c01-s2", outcome="failed", message=refused.as_json()).status_code == 200

    english = main_text(page_client(quota_client.app, "c01-teacher").get("/pages/teacher").text)
    assert "Workspaces ahead" in english and "1 ready · 1 failed" in english
    assert "c01-s2: The hub did not start the workspace ahead of the lesson (it answered HTTP 500)" in english
    assert ("The class has 2 students and the booking holds 1 unit: 1 starts at the bell themselves and may wait "
            "for a GPU.") in english
    chinese = main_text(page_client(quota_client.app, "c01-teacher", "zh-CN").get("/pages/teacher").text)
    assert "提前启动的工作区" in chinese and "1 个已就绪 · 1 个失败" in chinese
    assert "c01-s2：Hub 没有在上课前启动这个工作区（它的回答是 HTTP 500）" in chinese
    assert "这个班有 2 名学生，预约只有 1 个单元：1 名学生在上课时自己启动" in chinese
    assert "The hub did not" not in chinese  # no English left in the Chinese page
    # another school's teacher sees neither the booking nor the student
    other = main_text(page_client(quota_client.app, "u01-teacher").get("/pages/teacher").text)
    assert "c01-s2" not in other and "1 failed" not in other


@SQLITE
def test_a_class_booking_without_reports_says_none_started_yet(quota_client):
    _booking(quota_client)
    english = main_text(page_client(quota_client.app, "c01-teacher").get("/pages/teacher").text)
    assert "none started yet" in english and " ready · " not in english


def test_a_class_the_booking_holds_warns_of_nothing():
    group = SimpleNamespace(students=["a", "b"])
    assert class_too_big(group, 2) is None and class_too_big(group, 3) is None
    assert str(class_too_big(group, 1)) == ("The class has 2 students and the booking holds 1 unit: 1 starts at the "
                                            "bell themselves and may wait for a GPU.")
    many = SimpleNamespace(students=[f"s{i}" for i in range(32)])
    assert str(class_too_big(many, 30)) == ("The class has 32 students and the booking holds 30 units: 2 start at the "
                                            "bell themselves and may wait for a GPU.")


@SQLITE
def test_checking_and_booking_a_class_larger_than_the_units_warns(quota_client):
    client = page_client(quota_client.app, "c01-teacher")
    lesson = {"class_id": "c01/ai-club", "pool": "uni-a", "units": "1", "date": "2026-09-02", "start": "08:00",
              "end": "09:30", "tz": "UTC", "csrf": csrf_of(client.get("/pages/teacher").text)}
    warning = "The class has 2 students and the booking holds 1 unit: 1 starts at the bell themselves"
    checked = client.post("/pages/teacher/book", data={**lesson, "action": "check"})
    assert checked.status_code == 200 and warning in main_text(checked.text)
    booked = client.post("/pages/teacher/book", data={**lesson, "action": "book"}, follow_redirects=False)
    assert booked.status_code == 303
    shown = main_text(client.get(booked.headers["location"]).text)
    assert "Booked 1 lesson" in shown and shown.count(warning) == 2  # the notice and the booking's row


# -- the spawner ----------------------------------------------------------------------------

@pytest.fixture
def alliance_file(tmp_path):
    path = tmp_path / "spawner-alliance.yaml"
    path.write_text(ALLIANCE_WITH_LEAD)
    return path


REPORT = "/api/reservations/r-1/prestarts/c01-s1"


async def test_a_pre_start_that_starts_reports_ready(service, alliance_file):
    service.answer("POST", "/api/leases", lease("granted"))
    service.answer("PUT", REPORT, {})
    spawner = prestarted_spawner(service, alliance_file)
    assert await spawner.start() == ("127.0.0.1", 8888)
    [report] = [call for call in service.calls if call.method == "PUT"]
    assert (report.path, report.body) == (REPORT, {"outcome": "ready"})


@pytest.mark.parametrize("error,reason", [
    (WorkspaceFailed("image", pool="test-pool", image="lab:1"), "The workspace software ('lab:1') is not available"),
    (SpawnRefused(_("The request was not accepted: {reason}", reason="no space")), "The request was not accepted"),
    (RuntimeError("disk full"), str(START_FAILED)),  # no sentence of its own: the general one
])
async def test_a_pre_start_that_fails_reports_why_releases_the_lease_and_still_raises(service, alliance_file, error,
                                                                                      reason):
    service.answer("POST", "/api/leases", lease("granted"))
    service.answer("PUT", REPORT, {})
    spawner = prestarted_spawner(service, alliance_file, start_error=error)
    with pytest.raises(type(error)):
        await spawner.start()
    assert service.paths("DELETE") == ["/api/leases/l-1"]  # nothing held: the quota step released it
    [report] = [call for call in service.calls if call.method == "PUT"]
    assert report.body["outcome"] == "failed"
    message = from_json(report.body["message"])
    assert str(message).startswith(reason) and message.render("zh-CN") != str(message)  # a catalogue sentence
    assert spawner.prestart_ready_at == ""


async def test_the_student_who_comes_at_the_bell_reads_why_the_pre_start_failed_once(service, alliance_file):
    service.answer("POST", "/api/leases", lease("granted"))
    service.answer("PUT", REPORT, {})
    spawner = prestarted_spawner(service, alliance_file, start_error=WorkspaceFailed("image", pool="test-pool", image="lab:1"))
    with pytest.raises(WorkspaceFailed):
        await spawner.start()
    assert spawner.get_state()["prestart_failed"]["msgid"].startswith("The workspace software")  # kept over a hub restart
    spawner.start_error, spawner.user_options, spawner.locale = None, {"profile": "gpu-slice"}, "zh-CN"
    await spawner.start()  # the student's own start at the bell
    first = messages(spawner)[0]
    assert str(first).startswith("Your workspace could not be started ahead of the lesson: The workspace software")
    assert first.render("zh-CN") != str(first) and "lab:1" in first.render("zh-CN")
    await spawner.start()  # said once
    assert not any(str(m).startswith("Your workspace could not be started ahead") for m in messages(spawner))


async def test_a_quota_service_that_does_not_answer_the_report_changes_nothing(service, alliance_file, caplog):
    service.answer("POST", "/api/leases", lease("granted"))
    service.answer("PUT", REPORT, CONNECTION_REFUSED)
    spawner = prestarted_spawner(service, alliance_file)
    with caplog.at_level(logging.WARNING):
        assert await spawner.start() == ("127.0.0.1", 8888)
    assert "not reported to the quota service" in caplog.text
    failing = prestarted_spawner(service, alliance_file, start_error=RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match="disk full"):  # the start's own error, not the report's
        await failing.start()


async def test_a_sentence_the_service_refuses_is_reported_as_the_general_one(service, alliance_file):
    service.answer("POST", "/api/leases", lease("granted"))
    service.answer("PUT", REPORT, httpx.Response(422, json={"detail": "message: not in the catalogue"}), {})
    spawner = prestarted_spawner(service, alliance_file, start_error=SpawnRefused(_("Not in the catalogue {x}", x=1)))
    with pytest.raises(SpawnRefused):
        await spawner.start()
    reports = [call.body for call in service.calls if call.method == "PUT"]
    assert [r["message"]["msgid"] for r in reports] == ["Not in the catalogue {x}", START_FAILED.msgid]


async def test_an_ordinary_start_reports_nothing(service, alliance_file):
    service.answer("POST", "/api/leases", lease("granted"))
    spawner = prestarted_spawner(service, alliance_file, bell_in_minutes=60)  # outside the lead: ignored
    await spawner.start()
    assert service.paths("PUT") == []


# -- the pre-start service ----------------------------------------------------------------

async def _start_one_ahead(hub, quota) -> set:
    """The pre-start service starting c01-s1 ahead of reservation r-7 against these hub and quota
    transports; what it marks as started."""
    bell = datetime(2026, 9, 1, 10, tzinfo=timezone.utc)
    booking = Booking("r-7", "uni-a", "c01", "ai-club", 1, bell, bell + timedelta(hours=1))
    started: set = set()
    async with httpx.AsyncClient(transport=httpx.MockTransport(hub), base_url="http://hub/api") as hub_http, \
            httpx.AsyncClient(transport=httpx.MockTransport(quota), base_url="http://quota") as quota_http:
        await PrestartService().start_one(hub_http, booking, "gpu-slice", "c01-s1", started, quota_http)
    return started


@pytest.mark.parametrize("refusal", [403, 500, 503])
async def test_the_pre_start_service_reports_a_start_the_hub_refused(refusal):
    puts = []

    def hub(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"name": "c01-s1", "servers": {}})
        return httpx.Response(refusal, text="no")

    def quota(request: httpx.Request) -> httpx.Response:
        puts.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={})

    started = await _start_one_ahead(hub, quota)
    [(method, path, body)] = puts
    assert (method, path, body["outcome"]) == ("PUT", "/api/reservations/r-7/prestarts/c01-s1", "failed")
    assert body["message"]["params"] == {"status": str(refusal)}
    assert started == set()  # tried again at the next look


async def test_the_pre_start_service_reports_nothing_for_a_start_the_hub_took():
    def hub(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"name": "c01-s1", "servers": {}})
        return httpx.Response(202)

    def quota(request: httpx.Request) -> httpx.Response:
        raise AssertionError("the spawner reports a start the hub took")

    started = await _start_one_ahead(hub, quota)
    assert started == {("r-7", "c01-s1")}


@SQLITE
def test_the_pre_start_services_sentence_is_one_the_service_accepts(make_quota_app):
    """The sentence hub/prestart.py sends is one the service accepts (a catalogue sentence)."""
    with TestClient(make_quota_app(), headers={"Authorization": f"token {TOKEN}"}) as client:
        reservation = _booking(client)
        answer = _report(client, reservation, "c01-s1", outcome="failed", message=refused_by_hub(429).as_json())
        assert answer.status_code == 200, answer.text
