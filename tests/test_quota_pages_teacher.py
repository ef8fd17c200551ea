"""The teacher's page (quota/pages/teacher.py), in-process: a teacher sees only their classes,
books a lesson after seeing the free capacity, gets each bad field named with its fix and
nothing half-booked, cancels, and stops a student's session; forms without the page's CSRF
token, or from another origin, are refused; both languages render with no raw msgid."""

from __future__ import annotations

import pytest

from tests.page_client import csrf_of, errors_of, main_text, page_client

LESSON = {"class_id": "c01/ai-club", "pool": "uni-a", "units": "1", "date": "2026-09-02", "start": "08:00",
          "end": "09:30", "tz": "Asia/Shanghai", "note": "AI club: <b>CNN</b> =cmd"}


@pytest.fixture
def app(quota_client):
    return quota_client.app


def _book(client, **changes):
    page = client.get("/pages/teacher")
    return client.post("/pages/teacher/book", data={**LESSON, "csrf": csrf_of(page.text), "action": "book", **changes},
                       follow_redirects=False)


def _reservations(quota_client):
    return quota_client.get("/api/reservations").json()


def test_a_teacher_sees_only_their_classes_and_students(app):
    mine = page_client(app, "c01-teacher").get("/pages/teacher")
    assert mine.status_code == 200
    text = main_text(mine.text)
    assert "ai-club" in text and "c01-s1" in text and "c01-s2" in text
    assert "c01-s3" not in text and "u01-s1" not in text  # not in their class / another school
    other = main_text(page_client(app, "u01-teacher").get("/pages/teacher").text)
    assert "ai-club" not in other and "c01-s1" not in other
    assert page_client(app, "c01-s1").get("/pages/teacher").status_code == 403


def test_check_shows_free_capacity_then_book_books_every_weekly_lesson(app, quota_client):
    client = page_client(app, "c01-teacher")
    page = client.get("/pages/teacher")
    checked = client.post("/pages/teacher/book", data={**LESSON, "until": "2026-09-16", "csrf": csrf_of(page.text),
                                                        "action": "check"})
    assert checked.status_code == 200
    text = main_text(checked.text)
    assert "Free capacity before booking" in text and "Every lesson fits" in text
    assert text.count("2026-09-") >= 3  # three lessons, one a week, each with its free units
    assert _reservations(quota_client) == []  # checking books nothing
    booked = _book(client, until="2026-09-16")
    assert booked.status_code == 303 and booked.headers["location"].endswith("booked=3")
    shown = client.get(booked.headers["location"])
    assert "will be ready at the bell" in main_text(shown.text)
    rows = _reservations(quota_client)
    assert [(r["class_id"], r["units"], r["starts_at"][:16]) for r in rows] == [
        ("ai-club", 1, "2026-09-02T00:00"), ("ai-club", 1, "2026-09-09T00:00"), ("ai-club", 1, "2026-09-16T00:00")]
    assert "&lt;b&gt;CNN&lt;/b&gt;" in shown.text and "<b>CNN</b>" not in shown.text  # the note is escaped


@pytest.mark.parametrize("changes, field, fix", [
    ({"date": "2026-08-31"}, "date", "already over"),
    ({"start": "22:00", "end": "01:00"}, "end", "crosses midnight"),
    ({"start": "07:00", "end": "20:00"}, "end", "at most 12 hours"),
    ({"units": "2"}, "units", "book at most 1"),
    ({"units": "zero"}, "units", "whole number"),
    ({"date": "2.9.2026"}, "date", "year-month-day"),
    ({"tz": "Mars/Base"}, "tz", "Asia/Shanghai"),
    ({"class_id": "u01/any"}, "class_id", "your classes"),
    ({"until": "2027-09-02"}, "until", "At most 30 weekly lessons"),
])
def test_bad_input_names_the_field_and_the_fix_and_books_nothing(app, quota_client, changes, field, fix):
    answer = _book(page_client(app, "c01-teacher"), **changes)
    assert answer.status_code == 422
    assert errors_of(answer.text) == [field]
    assert fix in main_text(answer.text) and "Nothing was saved" in main_text(answer.text)
    assert f'id="{field}"' in answer.text and 'aria-invalid="true"' in answer.text
    assert _reservations(quota_client) == []


def test_weekly_lessons_over_capacity_book_none_of_them(app, quota_client):
    client = page_client(app, "c01-teacher")
    assert _book(client, date="2026-09-09").status_code == 303  # the second week is taken
    answer = _book(client, until="2026-09-16")
    assert answer.status_code == 422 and errors_of(answer.text) == ["units"]
    assert len(_reservations(quota_client)) == 1  # not the first week alone either


def test_forms_without_the_pages_token_or_from_another_origin_are_refused(app, quota_client):
    client = page_client(app, "c01-teacher")
    token = csrf_of(client.get("/pages/teacher").text)
    assert client.post("/pages/teacher/book", data={**LESSON, "action": "book"}).status_code == 403
    assert client.post("/pages/teacher/book", data={**LESSON, "action": "book", "csrf": "0" * 64}).status_code == 403
    cross = client.post("/pages/teacher/book", data={**LESSON, "action": "book", "csrf": token},
                        headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"})
    assert cross.status_code == 403 and "CSRF" in cross.json()["detail"]
    # another account's token does not fit this login
    assert csrf_of(page_client(app, "u01-teacher").get("/pages/teacher").text) != token
    assert _reservations(quota_client) == []


def test_cancel_and_stop_only_for_the_teachers_own_classes(app, quota_client):
    client = page_client(app, "c01-teacher")
    assert _book(client).status_code == 303
    booking = _reservations(quota_client)[0]["id"]
    other = page_client(app, "u01-teacher")
    refused = other.post("/pages/teacher/cancel", data={"reservation_id": booking,
                                                        "csrf": csrf_of(other.get("/pages/teacher").text)})
    assert refused.status_code == 403 and len(_reservations(quota_client)) == 1
    token = csrf_of(client.get("/pages/teacher").text)
    done = client.post("/pages/teacher/cancel", data={"reservation_id": booking, "csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and _reservations(quota_client) == []

    lease = quota_client.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "gpu-slice"}).json()
    outsider = quota_client.post("/api/leases", json={"user": "c01-s3", "school": "c01", "profile": "gpu-slice"}).json()
    assert lease["state"] == "granted"
    assert "gpu-slice" in main_text(client.get("/pages/teacher").text)
    assert client.post("/pages/teacher/stop", data={"lease_id": outsider["id"], "csrf": token}).status_code == 403
    stopped = client.post("/pages/teacher/stop", data={"lease_id": lease["id"], "csrf": token}, follow_redirects=False)
    assert stopped.status_code == 303
    assert quota_client.get(f"/api/leases/{lease['id']}").json()["state"] == "released"
    assert quota_client.get(f"/api/leases/{outsider['id']}").json()["state"] == "granted"


@pytest.mark.parametrize("locale, words", [("zh-CN", ["班级与预约", "为一节课预约 GPU", "每周重复至"]),
                                           ("en", ["Classes and bookings", "Book GPUs for a lesson", "Weekly until"])])
def test_both_languages_render_with_lang_set_and_a_switch(app, locale, words):
    answer = page_client(app, "c01-teacher", locale).get("/pages/teacher")
    assert f'<html lang="{locale}">' in answer.text
    assert all(word in answer.text for word in words)
    assert "{" not in main_text(answer.text)  # no parameter left unfilled
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "form-action 'self'" in answer.headers["content-security-policy"]
    switched = page_client(app, "c01-teacher", locale).get("/pages/teacher", params={"lang": "en" if locale != "en" else "zh-CN"})
    assert switched.cookies.get("gpu_commons_lang") in ("en", "zh-CN")
