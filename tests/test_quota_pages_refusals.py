"""What a form refuses, in the reader's language: every kind of bad value sent to the pages in
zh-CN is answered 422 with a Chinese sentence naming the field (its label, a link to it) and the
fix, also where the refusal is the service's own rule (quota/policy_store.py: shares adding up
to more than 1, a booking that no longer fits once it is written), while the API's JSON keeps the
English sentence. Table-driven: one row per kind of bad value."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.page_client import csrf_of, errors_of, page_client

TOMORROW = "2026-09-02"
BOOK = {"class_id": "c01/ai-club", "pool": "uni-a", "units": "1", "date": TOMORROW, "start": "08:00", "end": "09:00",
        "tz": "Asia/Shanghai", "action": "book"}
CASES = {  # name -> (account, form, fields, the field named, words of the Chinese fix)
    "shares over 1": ("staff-admin", "/pages/staff/school", {"id": "u01", "guaranteed_share": "0.5"},
                      "guaranteed_share", "本校最多只能获得 0.300"),
    "share out of range": ("staff-admin", "/pages/staff/school", {"id": "c01", "guaranteed_share": "1.5"},
                           "guaranteed_share", "不大于 1"),
    "budget below zero": ("staff-admin", "/pages/staff/school", {"id": "c01", "budget_gpu_hours": "-3"},
                          "budget_gpu_hours", "0"),
    "weight with a comma": ("staff-admin", "/pages/staff/tier", {"id": "urban", "weight": "0,5"}, "weight", "小数点"),
    "booking in the past": ("c01-teacher", "/pages/teacher/book", {**BOOK, "date": "2026-08-01"}, "date", "已经过去"),
    "booking across midnight": ("c01-teacher", "/pages/teacher/book", {**BOOK, "start": "23:00", "end": "01:00"},
                                "end", "跨过了午夜"),
    "booking too long": ("c01-teacher", "/pages/teacher/book", {**BOOK, "start": "07:00", "end": "20:00"}, "end",
                         "最长 12 小时"),
    "booking over capacity": ("c01-teacher", "/pages/teacher/book", {**BOOK, "units": "9"}, "units", "空闲 GPU 不够"),
    "units not a number": ("c01-teacher", "/pages/teacher/book", {**BOOK, "units": "two"}, "units", "整数"),
    "unknown time zone": ("c01-teacher", "/pages/teacher/book", {**BOOK, "tz": "Mars/Olympus"}, "tz", "未知时区"),
    "drain without a note": ("it-ops", "/pages/operator/pool", {"id": "uni-a", "state": "draining", "note": ""},
                             "note", "学生会看到"),
}
ENGLISH = re.compile(r"[A-Za-z]{2,} [A-Za-z]{2,} [A-Za-z]{2,}")  # three English words in a row: a sentence


def refusal_text(html: str) -> str:
    start = html.find('class="errors"')
    return re.sub(r"<[^>]+>", " ", html[start:html.find("</div>", start)]) if start >= 0 else ""


def _post(app, account, path, fields, locale="zh-CN"):
    client = page_client(app, account, locale)
    page = {"/pages/staff": "/pages/staff", "/pages/teacher": "/pages/teacher",
            "/pages/operator": "/pages/operator"}["/".join(path.split("/")[:3])]
    token = csrf_of(client.get(page).text)
    return client.post(path, data={**fields, "csrf": token}, follow_redirects=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_kind_of_bad_value_is_refused_in_chinese_naming_the_field(quota_client, client_as, clock, case):
    account, path, fields, field, words = CASES[case]
    app = quota_client.app
    assert clock().date().isoformat() < TOMORROW  # the fixtures' clock: the booking's date is still to come
    if case == "shares over 1":
        assert client_as("staff-admin").patch("/api/schools/c01/quota", json={"guaranteed_share": 0.7}).status_code == 200
    answer = _post(app, account, path, fields)
    assert answer.status_code == 422, answer.text[:400]
    assert field in errors_of(answer.text)
    text = refusal_text(answer.text)
    assert words in text, text
    assert not ENGLISH.search(text), text
    assert f'id="{field}"' in answer.text and 'aria-invalid="true"' in answer.text
    english = refusal_text(_post(app, account, path, fields, "en").text)
    assert ENGLISH.search(english), english  # the same refusal reads in English there


def test_a_booking_taken_between_the_check_and_the_booking_is_refused_in_chinese(quota_client, monkeypatch):
    """The policy store's own rule (another booking came in): as if the page's check had seen
    the pool free, the store refuses while writing, and the page says so in Chinese."""
    from quota.pages import teacher

    monkeypatch.setattr(teacher, "capacity_check", lambda lessons, *args: lessons)  # every lesson "fits"
    answer = _post(quota_client.app, "c01-teacher", "/pages/teacher/book", {**BOOK, "units": "9"})
    assert answer.status_code == 422
    text = refusal_text(answer.text)
    assert "未预约：资源池 uni-a 共有" in text and "个可预约单元" in text and not ENGLISH.search(text), text
    assert "units" in errors_of(answer.text)


def test_the_apis_json_keeps_the_english_sentence(client_as, clock):
    staff = client_as("staff-admin")
    assert staff.patch("/api/schools/c01/quota", json={"guaranteed_share": 0.7}).status_code == 200
    answer = staff.patch("/api/schools/u01/quota", json={"guaranteed_share": 0.5})
    assert answer.status_code == 422
    assert answer.json()["detail"] == ("guaranteed_share: the other schools already have 0.700 of the GPUs guaranteed; "
                                       "this school can get at most 0.300.")
    past = (clock() - timedelta(hours=2)).isoformat()
    answer = staff.post("/api/reservations", json={"pool": "uni-a", "school": "c01", "units": 1,
                                                          "starts_at": past, "ends_at": (clock() - timedelta(hours=1)).isoformat()})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == "ends_at: the reservation ends in the past; book a time still to come."
