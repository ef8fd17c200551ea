"""The roster import (quota/roster.py, quota/roster_store.py, quota/pages/roster.py), in-process:
encodings (UTF-8 with and without BOM, GBK as Excel writes it), nbgrader's and ngshare's columns,
every refusal with its field, a preview that saves nothing, create-or-update in one transaction,
one-time passwords shown once as slips and stored only hashed, a teacher limited to their own
classes, the pages' CSRF checks, and imported students everywhere the file's students are
(role, school, class page, class reservations), after a restart too."""

from __future__ import annotations

import base64
import re

import bcrypt
import pytest

from quota.roster import GB18030, UTF8, UTF8_BOM, RosterFileError, decode, plan, read_rows
from tests.page_client import csrf_of, main_text, page_client
from tests.quota_fixtures import TOKEN

ALLIANCE = """
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: uni-a, gpus: 2, sliced_gpus: 1, slices_per_gpu: 2, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 120}
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 30}
schools:
  - id: c01
    name: 青山中学
    tier: county
    students: [c01-s1, c01-s2]
    teachers: [c01-teacher, c01-other]
    admins: [c01-admin]
    classes:
      - {id: ai-club, name: 人工智能社, teachers: [c01-teacher], students: [c01-s1]}
      - {id: robots, teachers: [c01-other], students: []}
  - id: u01
    tier: urban
    students: [u01-s1]
    teachers: [u01-teacher]
    classes: [{id: data-7, teachers: [u01-teacher], students: [u01-s1]}]
staff: [staff-admin]
operators: [it-ops]
"""

NBGRADER = "id,first_name,last_name,email,class\ns2024-01,小明,王,xm@example.cn,ai-club\ns2024-02,Li,Zhang,,ai-club\n"


@pytest.fixture
def quota_alliance(tmp_path):
    path = tmp_path / "alliance.yaml"
    path.write_text(ALLIANCE, encoding="utf-8")
    return path


@pytest.fixture
def app(quota_client):
    return quota_client.app


def _preview(client, data: bytes, name="roster.csv"):
    form = client.get("/pages/teacher/roster")
    assert form.status_code == 200
    return client.post("/pages/teacher/roster/preview", data={"csrf": csrf_of(form.text)},
                       files={"file": (name, data, "text/csv")})


def _import(client, data: bytes):
    preview = _preview(client, data)
    assert preview.status_code == 200, main_text(preview.text)
    carried = re.search(r'name="file" value="([^"]+)"', preview.text).group(1)
    return client.post("/pages/teacher/roster/import", data={"csrf": csrf_of(preview.text), "file": carried})


def _slips(html: str) -> dict[str, str]:
    return dict(re.findall(r'<code>([a-z0-9-]+)</code></dd>\s*<dt>[^<]+</dt><dd><code class="password">([a-z0-9-]+)</code>', html))


def _hub_view(quota_client, account):
    return quota_client.get(f"/api/roster/accounts/{account}")


# -- the file -------------------------------------------------------------------------------

def test_encodings_are_detected_and_named():
    text = "id,first_name,last_name,email,class\ns1,小明,王,,ai-club\n"
    assert decode(text.encode("utf-8")) == (text, UTF8)
    assert decode(b"\xef\xbb\xbf" + text.encode("utf-8")) == (text, UTF8_BOM)
    excel_gbk = text.replace("\n", "\r\n").encode("gbk")  # Excel on a Chinese Windows: "CSV", GBK, CRLF
    decoded, encoding = decode(excel_gbk)
    assert encoding == GB18030 and "小明" in decoded
    rows, _ignored = read_rows(decoded)
    assert [(r.account, r.first_name, r.last_name) for r in rows] == [("s1", "小明", "王")]
    with pytest.raises(RosterFileError, match="UTF-16"):
        decode(text.encode("utf-16"))
    with pytest.raises(RosterFileError, match="neither UTF-8 nor GBK"):
        decode(b"id,first_name\n\xff\xfe\xff\xff\x80\x80")


def test_both_column_schemes_and_bad_headers():
    for header in ("id,first_name,last_name,email,class", "student_id,first_name,last_name,email,class",
                   "Student_ID,First Name,last_name,email,class_id,extra"):
        rows, ignored = read_rows(f"{header}\nS-01,a,b,a@b.cn,ai-club\n")
        assert [(r.account, r.class_ref, r.email) for r in rows] == [("s-01", "ai-club", "a@b.cn")]
    assert read_rows("id,first_name,last_name,email,class,phone\ns,a,b,,c\n")[1] == ("phone",)
    with pytest.raises(RosterFileError, match="lacks the column.*class") as missing:
        read_rows("id,first_name,last_name,email\ns,a,b,\n")
    assert "It names: id, first_name, last_name, email" in str(missing.value)
    with pytest.raises(RosterFileError, match="lacks the column.*id"):
        read_rows("name,first_name,last_name,email,class\n")
    with pytest.raises(RosterFileError, match="empty"):
        read_rows("\n\n")
    with pytest.raises(RosterFileError, match="10000 rows"):
        read_rows("id,first_name,last_name,email,class\n" + "s,a,b,,c\n" * 10_000)


def test_every_refusal_names_the_field_and_the_fix():
    classes = {"ai-club": ("c01", "ai-club"), "c01/ai-club": ("c01", "ai-club")}
    rows, _ignored = read_rows(
        "id,first_name,last_name,email,class\n"
        "ok-1,a,b,,ai-club\n"
        "bad_id!,a,b,,ai-club\n"
        "ok-1,a,b,,ai-club\n"
        "ok-2,,,,ai-club\n"
        "ok-3,a,b,not-an-address,ai-club\n"
        "ok-4,a,b,,data-7\n"
        "u01-s1,a,b,,ai-club\n"
        "c01-s2,a,b,,ai-club\n"
        "moved,a,b,,ai-club\n"
        ",a,b,,ai-club\n")
    from quota.roster import Existing

    found = plan(rows, UTF8, classes=classes, file_accounts={"u01-s1": "u01", "c01-s2": "c01"},
                 existing={"moved": Existing("u01", "data-7", "a", "b", "")})
    got = [(v.row.line, v.outcome, v.field) for v in found.verdicts]
    assert got == [(2, "created", ""), (3, "refused", "id"), (4, "refused", "id"), (5, "refused", "first_name"),
                   (6, "refused", "email"), (7, "refused", "class"), (8, "refused", "id"), (9, "refused", "id"),
                   (10, "refused", "id"), (11, "refused", "id")]
    text = {v.row.line: str(v.message) for v in found.verdicts if v.message}
    assert "lower-case letters, digits" in text[3] and "line 2 already" in text[4] and "name is empty" in text[5]
    assert "not valid" in text[6] and "write one of: ai-club, c01/ai-club" in text[7]
    assert "another school" in text[8] and "alliance file" in text[9] and "another school" in text[10]
    assert found.refused and found.count("created") == 1


# -- the pages --------------------------------------------------------------------------------

def test_preview_saves_nothing_and_import_creates_with_slips(app, quota_client):
    client = page_client(app, "c01-teacher")
    preview = _preview(client, NBGRADER.encode("utf-8"))
    text = main_text(preview.text)
    assert preview.status_code == 200 and "Read as UTF-8." in text and "New: 2." in text
    assert _hub_view(quota_client, "s2024-01").status_code == 404  # nothing saved
    done = _import(client, NBGRADER.encode("utf-8"))
    assert done.status_code == 200 and done.headers["cache-control"] == "no-store"
    slips = _slips(done.text)
    assert sorted(slips) == ["s2024-01", "s2024-02"]
    assert "青山中学" in done.text and "人工智能社" in done.text and "http://testserver/hub/login" in done.text
    stored = _hub_view(quota_client, "s2024-01").json()
    assert stored["school"] == "c01" and stored["class_id"] == "ai-club" and stored["name"] == "王 小明"
    assert slips["s2024-01"] not in str(stored)
    assert bcrypt.checkpw(slips["s2024-01"].encode(), stored["one_time_hash"].encode())
    staff = page_client(app, "staff-admin").get("/pages/staff").text
    policy, roster_log = staff.split('id="roster-audit"')
    assert "account s2024-01 created" in main_text(roster_log) and "c01-teacher" in main_text(roster_log)
    assert "s2024-01" not in policy  # an import of 2,000 students does not push policy changes off their log
    # the same file again: unchanged, no new password; a changed name: updated
    same = _preview(client, NBGRADER.encode("utf-8"))
    assert "Unchanged: 2." in main_text(same.text) and 'name="file" value=' not in same.text
    changed = _import(client, NBGRADER.replace("Zhang", "Zhao").encode("utf-8"))
    assert "Updated: 1." in main_text(changed.text) and _slips(changed.text) == {}
    assert _hub_view(quota_client, "s2024-02").json()["name"] == "Zhao Li"
    # the language switch on the slips asks for the form again, never the slips
    switched = client.get("/pages/teacher/roster/import?lang=zh-CN", follow_redirects=False)
    assert switched.status_code == 303 and switched.headers["location"].endswith("/pages/teacher/roster?lang=zh-CN")


def test_cells_are_escaped_and_a_file_too_long_is_refused_whole(app, quota_client):
    client = page_client(app, "c01-teacher")
    hostile = b"id,first_name,last_name,email,class\nx1,<script>alert(1)</script>,=HYPERLINK(1),,ai-club\n"
    preview = _preview(client, hostile)
    assert "<script>alert(1)</script>" not in preview.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in preview.text
    long_file = ("id,first_name,last_name,email,class\n" + "x,a,b,,ai-club\n" * 10_000).encode()
    refused = _preview(client, long_file)
    assert refused.status_code == 422 and "10000 rows" in main_text(refused.text) and "Split it" in main_text(refused.text)
    wrong = _preview(client, b"name,surname\nx,y\n")
    assert wrong.status_code == 422 and "lacks the column(s) id, first_name, last_name, email, class" in main_text(wrong.text)
    assert _hub_view(quota_client, "x1").status_code == 404


def test_a_refused_row_imports_nothing(app, quota_client):
    client = page_client(app, "c01-teacher")
    bad = (NBGRADER + "s2024-01,again,x,,ai-club\n").encode("utf-8")
    preview = _preview(client, bad)
    assert preview.status_code == 422 and "refused" in main_text(preview.text)
    assert 'action="/pages/teacher/roster/import"' not in preview.text  # no import button
    # posting the file anyway (a stale page) imports nothing either
    forced = client.post("/pages/teacher/roster/import", data={"csrf": csrf_of(preview.text),
                                                                "file": base64.b64encode(bad).decode()})
    assert forced.status_code == 422
    assert _hub_view(quota_client, "s2024-01").status_code == 404


def test_gbk_file_as_excel_writes_it(app, quota_client):
    lines = ["student_id,first_name,last_name,email,class"] + [f"g{i:02d},同学{i},李,,ai-club" for i in range(30)]
    data = "\r\n".join(lines).encode("gbk") + b"\r\n"
    client = page_client(app, "c01-teacher", "zh-CN")
    preview = _preview(client, data)
    assert preview.status_code == 200 and "GB18030/GBK" in preview.text and "同学7" in preview.text
    done = _import(client, data)
    assert len(_slips(done.text)) == 30 and "一次性密码" in done.text


def test_a_teacher_imports_only_into_their_own_classes(app, quota_client):
    data = b"id,first_name,last_name,email,class\nx1,a,b,,robots\nx2,a,b,,data-7\nx3,a,b,,c01/ai-club\n"
    preview = _preview(page_client(app, "c01-teacher"), data)
    assert preview.status_code == 422
    assert [v for v in re.findall(r"<td>(x\d)</td>", preview.text)] == ["x1", "x2", "x3"]
    assert main_text(preview.text).count("is not one of your classes") == 2  # robots (another teacher's), data-7
    admin = _preview(page_client(app, "c01-admin"), data)  # a school admin: every class of their school
    assert main_text(admin.text).count("is not one of your classes") == 1
    for student in ("c01-s1", "it-ops"):
        assert page_client(app, student).get("/pages/teacher/roster").status_code == 403
    form = page_client(app, "c01-teacher").get("/pages/teacher/roster")
    refused = page_client(app, "c01-s1").post("/pages/teacher/roster/preview", data={"csrf": csrf_of(form.text)},
                                              files={"file": ("r.csv", data, "text/csv")})
    assert refused.status_code == 403  # another login's token


def test_forms_without_the_pages_csrf_token_or_from_another_origin_are_refused(app, quota_client):
    client = page_client(app, "c01-teacher")
    data = NBGRADER.encode("utf-8")
    assert client.post("/pages/teacher/roster/preview", data={"csrf": "0" * 64},
                       files={"file": ("r.csv", data, "text/csv")}).status_code == 403
    token = csrf_of(client.get("/pages/teacher/roster").text)
    assert client.post("/pages/teacher/roster/preview", data={"csrf": token}, files={"file": ("r.csv", data, "text/csv")},
                       headers={"sec-fetch-site": "cross-site"}).status_code == 403
    encoded = base64.b64encode(data).decode()
    assert client.post("/pages/teacher/roster/import", data={"file": encoded}).status_code == 403
    assert client.post("/pages/teacher/roster/import", data={"csrf": token, "file": encoded},
                       headers={"origin": "http://evil.example"}).status_code == 403
    assert _hub_view(quota_client, "s2024-01").status_code == 404


def test_imported_students_are_students_of_their_school_and_class_after_a_restart(make_quota_app):
    from fastapi.testclient import TestClient

    def as_account(app, account):
        return TestClient(app, headers={"Authorization": f"token tok-{account}"})

    with TestClient(make_quota_app(), headers={"Authorization": f"token {TOKEN}"}) as hub:
        app = hub.app
        _import(page_client(app, "c01-teacher"), NBGRADER.encode("utf-8"))
        # the role checks and the school lookup: the student's own page
        assert page_client(app, "s2024-01").get("/pages/me").status_code == 200
        # the teacher's class page lists them; another school's teacher does not see them
        assert "s2024-01" in main_text(page_client(app, "c01-teacher").get("/pages/teacher").text)
        assert "s2024-01" not in main_text(page_client(app, "u01-teacher").get("/pages/teacher").text)
        # a class reservation holds the whole GPU for their class: another school's student queues, they get it
        booked = hub.post("/api/reservations", json={"pool": "uni-a", "school": "c01", "class_id": "ai-club", "units": 1,
                                                     "starts_at": "2026-09-01T07:59:00Z", "ends_at": "2026-09-01T10:00:00Z"})
        assert booked.status_code in (200, 201), booked.text
        other = hub.post("/api/leases", json={"user": "u01-s1", "school": "u01", "profile": "gpu-whole"}).json()
        mine = hub.post("/api/leases", json={"user": "s2024-01", "school": "c01", "profile": "gpu-whole"}).json()
        assert (other["state"], mine["state"]) == ("queued", "granted"), (other, mine)
        # the one-time password is spent once the hub says so; only the hub may say so or read it
        assert as_account(app, "c01-teacher").post("/api/roster/accounts/s2024-01/password-set").status_code == 403
        assert as_account(app, "s2024-01").get("/api/roster/accounts/s2024-01").status_code == 403
        assert hub.post("/api/roster/accounts/s2024-01/password-set").status_code == 204
        assert hub.post("/api/roster/accounts/s2024-01/password-set").status_code == 404
        assert _hub_view(hub, "s2024-01").json()["one_time_hash"] is None
        assert _hub_view(hub, "c01-s1").status_code == 404  # a file account: not the roster's
        assert hub.get("/api/roster/accounts").json() == [
            {"account": "s2024-01", "school": "c01", "class_id": "ai-club"},
            {"account": "s2024-02", "school": "c01", "class_id": "ai-club"}]
        assert as_account(app, "c01-teacher").get("/api/roster/accounts").status_code == 403
    with TestClient(make_quota_app(), headers={"Authorization": f"token {TOKEN}"}) as restarted:
        assert page_client(restarted.app, "s2024-02").get("/pages/me").status_code == 200
        assert "s2024-02" in main_text(page_client(restarted.app, "c01-teacher").get("/pages/teacher").text)
        assert restarted.get("/api/roster/accounts/s2024-02").json()["school"] == "c01"


@pytest.mark.postgres
def test_a_standby_that_takes_over_knows_the_students_the_leader_imported(make_quota_app, database_url):
    import time

    from fastapi.testclient import TestClient

    if not database_url.startswith("postgresql"):
        pytest.skip("a standby runs beside a leader on PostgreSQL only")
    leader = TestClient(make_quota_app(standby_poll_s=0.2), headers={"Authorization": f"token {TOKEN}"})
    leader.__enter__()
    with TestClient(make_quota_app(standby_poll_s=0.2), headers={"Authorization": f"token {TOKEN}"}) as standby:
        assert page_client(standby.app, "s2024-01").get("/pages/me").status_code == 403  # unknown to it
        _import(page_client(leader.app, "c01-teacher"), NBGRADER.encode("utf-8"))
        leader.__exit__(None, None, None)  # the writer stops; the standby takes over
        deadline = time.monotonic() + 10
        while not standby.app.state.leadership.leader and time.monotonic() < deadline:
            time.sleep(0.1)
        assert standby.app.state.leadership.leader
        assert page_client(standby.app, "s2024-01").get("/pages/me").status_code == 200
        assert "s2024-01" in main_text(page_client(standby.app, "c01-teacher").get("/pages/teacher").text)


def test_an_import_that_another_import_overtook_saves_nothing(app, quota_client):
    """Two teachers' tabs preview the same new students; the second import finds them created
    and writes nothing (its slips would show passwords that are not stored)."""
    first, second = page_client(app, "c01-teacher"), page_client(app, "c01-admin")
    late = _preview(second, NBGRADER.encode("utf-8"))
    assert _slips(_import(first, NBGRADER.encode("utf-8")).text)
    stored = _hub_view(quota_client, "s2024-01").json()["one_time_hash"]
    carried = re.search(r'name="file" value="([^"]+)"', late.text).group(1)
    import quota.pages.roster as pages_roster

    real_plan = pages_roster._plan
    try:  # the second tab's check ran before the first import (as when both press Import at once)
        pages_roster._plan = lambda book, caller, data: late_plan
        from quota.roster import plan as make_plan, read_rows, decode

        text, encoding = decode(NBGRADER.encode("utf-8"))
        late_plan = make_plan(read_rows(text)[0], encoding, classes={"ai-club": ("c01", "ai-club")},
                              file_accounts={}, existing={})
        answer = second.post("/pages/teacher/roster/import", data={"csrf": csrf_of(late.text), "file": carried})
    finally:
        pages_roster._plan = real_plan
    assert answer.status_code == 409 and "Preview the file again" in main_text(answer.text)
    assert _hub_view(quota_client, "s2024-01").json()["one_time_hash"] == stored
