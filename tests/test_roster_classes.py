"""Classes and teachers beyond the alliance file, and account care (quota/roster_classes.py,
quota/pages/classes.py, quota/pages/accounts.py), in-process: staff or a school admin create a
class with a new teacher (a slip; the teacher then sees and fills the class) or with one of the
school's teachers; bad input names the field and the fix and saves nothing; a teacher prints a
new one-time password for an imported student or removes them from the class (their lease
released, their usage kept, the hub no longer has them); the database's rows at revision 0008
read as students after the upgrade."""

from __future__ import annotations

import re

import bcrypt
import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from tests.page_client import csrf_for, csrf_of, errors_of, main_text, page_client
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
    students: [c01-s1]
    teachers: [c01-teacher, c01-other]
    admins: [c01-admin]
    classes:
      - {id: ai-club, name: 人工智能社, teachers: [c01-teacher], students: [c01-s1]}
  - id: u01
    tier: urban
    students: [u01-s1]
    teachers: [u01-teacher]
    classes: [{id: data-7, teachers: [u01-teacher], students: [u01-s1]}]
staff: [staff-admin]
operators: [it-ops]
"""
NEW_CLASS = {"school": "c01", "class_id": "grade9-ai", "name": "九年级人工智能", "teacher": "c01-t-wang",
             "teacher_last_name": "王", "teacher_first_name": "老师", "teacher_email": ""}
SLIP = re.compile(r'<code>([a-z0-9-]+)</code></dd>\s*<dt>[^<]+</dt><dd><code class="password">([a-z0-9-]+)</code>')


@pytest.fixture
def quota_alliance(tmp_path):
    path = tmp_path / "alliance.yaml"
    path.write_text(ALLIANCE, encoding="utf-8")
    return path


def _create(app, account: str, fields: dict, locale="en"):
    client = page_client(app, account, locale)
    return client.post("/pages/classes", data={**fields, "csrf": csrf_for(app, account)}, follow_redirects=False)


def _state(quota_client):
    """What a refused form must leave as it was: the classes, the roster, the audit log's length."""
    book = quota_client.app.state.book
    log = book.read_policy(lambda session, now: len(book.policy.audit_log(session)))
    return quota_client.get("/api/roster/classes").json(), quota_client.get("/api/roster/accounts").json(), log


def _import(app, teacher: str, csv_text: str):
    client = page_client(app, teacher)
    form = client.get("/pages/teacher/roster")
    preview = client.post("/pages/teacher/roster/preview", data={"csrf": csrf_of(form.text)},
                          files={"file": ("r.csv", csv_text.encode("utf-8"), "text/csv")})
    assert preview.status_code == 200, main_text(preview.text)
    carried = re.search(r'name="file" value="([^"]+)"', preview.text).group(1)
    done = client.post("/pages/teacher/roster/import", data={"csrf": csrf_of(preview.text), "file": carried})
    assert done.status_code == 200, main_text(done.text)
    return dict(SLIP.findall(done.text))


def test_staff_create_a_class_with_a_new_teacher_who_then_fills_it(make_quota_app):
    with TestClient(make_quota_app(), headers={"Authorization": f"token {TOKEN}"}) as quota_client:
        _create_and_fill(quota_client)
    # after a restart of the service: the class, its teacher and its student are still there
    with TestClient(make_quota_app(), headers={"Authorization": f"token {TOKEN}"}) as restarted:
        again = main_text(page_client(restarted.app, "c01-t-wang").get("/pages/teacher").text)
        assert "Class 九年级人工智能" in again and "g9-01" in again


def _create_and_fill(quota_client):
    app = quota_client.app
    done = _create(app, "staff-admin", NEW_CLASS)
    assert done.status_code == 200 and done.headers["cache-control"] == "no-store", main_text(done.text)
    [(account, password)] = SLIP.findall(done.text)
    assert account == "c01-t-wang" and "九年级人工智能" in done.text and "青山中学" in done.text
    stored = quota_client.get("/api/roster/accounts/c01-t-wang").json()
    assert (stored["role"], stored["school"], stored["class_id"]) == ("teacher", "c01", "")
    assert bcrypt.checkpw(password.encode(), stored["one_time_hash"].encode()) and password not in str(stored)
    assert quota_client.get("/api/roster/classes").json() == [
        {"school": "c01", "class_id": "grade9-ai", "name": "九年级人工智能", "teacher": "c01-t-wang"}]
    # the new teacher: a teacher of c01 for the service, sees the class (and only it), fills it
    teacher = page_client(app, "c01-t-wang")
    page = main_text(teacher.get("/pages/teacher").text)
    assert "Class 九年级人工智能" in page and "人工智能社" not in page
    slips = _import(app, "c01-t-wang", "id,first_name,last_name,email,class\ng9-01,小红,李,,grade9-ai\n")
    assert list(slips) == ["g9-01"]
    assert "g9-01" in main_text(teacher.get("/pages/teacher").text)
    assert page_client(app, "g9-01").get("/pages/me").status_code == 200  # a student of c01 now
    # a file class's teacher does not see the new class; the classes page says who created what
    assert "九年级人工智能" not in page_client(app, "c01-teacher").get("/pages/teacher").text
    listing = main_text(page_client(app, "c01-admin").get("/pages/classes").text)
    assert "grade9-ai 九年级人工智能 c01-t-wang 1 on this page" in listing
    assert "ai-club 人工智能社 c01-teacher 1 by the alliance file" in listing
    staff = page_client(app, "staff-admin").get("/pages/staff").text
    roster_log = main_text(staff.split('id="roster-audit"')[1])
    assert "class c01/grade9-ai created" in roster_log and "account c01-t-wang created" in roster_log


def test_a_class_for_one_of_the_schools_teachers_needs_no_slip(quota_client):
    app = quota_client.app
    done = _create(app, "c01-admin", {"school": "c01", "class_id": "robots", "name": "Robots", "teacher": "c01-other"})
    assert done.status_code == 303 and done.headers["location"].endswith("/pages/classes?created=robots")
    assert quota_client.get("/api/roster/accounts/c01-other").status_code == 404  # the file's teacher: no account made
    assert "Class Robots" in main_text(page_client(app, "c01-other").get("/pages/teacher").text)
    notice = page_client(app, "c01-admin").get(done.headers["location"]).text
    assert "The class robots is created" in main_text(notice)


BAD = [  # fields changed from NEW_CLASS -> the field named, a piece of the fix
    ({"class_id": "ai-club"}, "class_id", "already has a class ai-club; choose another id"),
    ({"class_id": ""}, "class_id", "class id is empty"),
    ({"class_id": "Grade 9!"}, "class_id", "lower-case letters, digits"),
    ({"name": ""}, "name", "class name is empty; write the name"),
    ({"name": "x" * 101}, "name", "more than 100 characters"),
    ({"teacher": "", "teacher_last_name": "", "teacher_first_name": ""}, "teacher", "teacher is empty"),
    ({"teacher": "nobody", "teacher_last_name": "", "teacher_first_name": ""}, "teacher",
     "nobody is not a teacher of this school; choose one of: c01-teacher, c01-other, or write the new teacher's name"),
    ({"teacher": "c01-s1"}, "teacher", "c01-s1 is not a teacher of this school"),
    ({"teacher": "u01-teacher"}, "teacher", "u01-teacher is not a teacher of this school"),
    ({"teacher": "c01-teacher"}, "teacher_first_name", "teacher of the school already; leave the new teacher's name"),
    ({"teacher_email": "not-an-address"}, "teacher_email", "not valid"),
    ({"school": "u01"}, "school", "Choose one of the schools listed"),  # the school admin of c01
]


@pytest.mark.parametrize("changed, field, fix", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_the_field_and_the_fix_and_saves_nothing(quota_client, changed, field, fix):
    before = _state(quota_client)
    answer = _create(quota_client.app, "c01-admin", {**NEW_CLASS, **changed})
    assert answer.status_code == 422, main_text(answer.text)[:300]
    assert errors_of(answer.text) == [field] and fix in main_text(answer.text)
    assert f'id="{field}"' in answer.text and 'aria-invalid="true"' in answer.text
    assert _state(quota_client) == before
    assert quota_client.get("/api/roster/accounts/c01-t-wang").status_code == 404


def test_the_form_is_escaped_and_said_in_chinese(quota_client):
    hostile = {**NEW_CLASS, "name": "<script>alert(1)</script>", "class_id": "ai-club"}
    answer = _create(quota_client.app, "staff-admin", hostile, locale="zh-CN")
    assert answer.status_code == 422 and "<script>alert(1)</script>" not in answer.text
    assert "&lt;script&gt;" in answer.text and "已有班级 ai-club" in main_text(answer.text)


def _imported_student(quota_client, account="r-01"):
    slips = _import(quota_client.app, "c01-teacher", f"id,first_name,last_name,email,class\n{account},Ada,Li,,ai-club\n")
    return slips[account]


def _care(app, who: str, action: str, account: str, locale="en"):
    client = page_client(app, who, locale)
    return client.post(f"/pages/teacher/students/{action}", data={"account": account, "csrf": csrf_for(app, who),
                                                                    "confirm": "yes"}, follow_redirects=False)


def test_a_new_one_time_password_replaces_the_old(quota_client):
    app = quota_client.app
    old = _imported_student(quota_client)
    assert "New one-time password" in page_client(app, "c01-teacher").get("/pages/teacher").text
    answer = _care(app, "c01-teacher", "reset", "r-01")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    [(account, new)] = SLIP.findall(answer.text)
    stored = quota_client.get("/api/roster/accounts/r-01").json()["one_time_hash"]
    assert account == "r-01" and new != old
    assert bcrypt.checkpw(new.encode(), stored.encode()) and not bcrypt.checkpw(old.encode(), stored.encode())
    staff = main_text(page_client(app, "staff-admin").get("/pages/staff").text.split('id="roster-audit"')[1])
    assert "account r-01 one-time password – new slip" in staff
    zh = _care(app, "c01-teacher", "reset", "r-01", locale="zh-CN")
    assert "一次性密码" in main_text(zh.text)


@pytest.mark.parametrize("who, account", [
    ("c01-other", "r-01"),  # a teacher of the school, not of the class
    ("u01-teacher", "r-01"),  # another school
    ("c01-s1", "r-01"),  # a student
    ("it-ops", "r-01"),  # an operator
    ("c01-teacher", "c01-s1"),  # the alliance file's student: changed in the file
    ("c01-teacher", "nobody"),
])
def test_account_care_is_scoped_to_the_callers_classes(quota_client, who, account):
    _imported_student(quota_client)
    before = quota_client.get("/api/roster/accounts/r-01").json()
    for action in ("reset", "remove"):
        assert _care(quota_client.app, who, action, account).status_code == 403
    assert quota_client.get("/api/roster/accounts/r-01").json() == before


def test_account_care_needs_the_pages_csrf_token(quota_client):
    _imported_student(quota_client)
    client = page_client(quota_client.app, "c01-teacher")
    for action in ("reset", "remove"):
        assert client.post(f"/pages/teacher/students/{action}", data={"account": "r-01", "csrf": "0" * 64}).status_code == 403
    assert quota_client.get("/api/roster/accounts/r-01").status_code == 200


def test_removing_asks_to_confirm_first(quota_client):
    app = quota_client.app
    _imported_student(quota_client)
    client = page_client(app, "c01-teacher", "zh-CN")
    asked = client.post("/pages/teacher/students/remove", data={"account": "r-01", "csrf": csrf_for(app, "c01-teacher")})
    assert asked.status_code == 200 and "要把 r-01 移出班级吗？" in main_text(asked.text)
    assert 'name="confirm" value="yes"' in asked.text and csrf_of(asked.text) == csrf_for(app, "c01-teacher")
    assert quota_client.get("/api/roster/accounts/r-01").status_code == 200  # nothing changed yet


def test_a_removed_student_loses_their_lease_and_login_but_not_their_usage(quota_client, clock):
    app = quota_client.app
    _imported_student(quota_client)
    done = quota_client.post("/api/leases", json={"user": "r-01", "school": "c01", "profile": "gpu-whole"}).json()
    assert done["state"] == "granted"
    answer = _care(app, "c01-admin", "remove", "r-01")  # the school admin cares for the school's classes
    assert answer.status_code == 303 and answer.headers["location"].endswith("/pages/teacher?removed=r-01")
    assert quota_client.get(f"/api/leases/{done['id']}").json()["state"] == "released"
    assert "r-01" in {r["user"] for r in quota_client.get("/api/usage").json()}  # the usage record stays
    assert quota_client.get("/api/roster/accounts/r-01").status_code == 404  # the hub: no such account now
    assert "r-01" not in {r["account"] for r in quota_client.get("/api/roster/accounts").json()}
    assert page_client(app, "r-01").get("/pages/me").status_code == 403  # no role any more
    page = main_text(page_client(app, "c01-teacher").get(answer.headers["location"]).text)
    assert "r-01 is removed from the class" in page and "Remove from the class" not in page
    # imported again by the school: back, the same account
    slips = _import(app, "c01-teacher", "id,first_name,last_name,email,class\nr-01,Ada,Li,,ai-club\n")
    assert slips == {} and quota_client.get("/api/roster/accounts/r-01").status_code == 200
    assert page_client(app, "r-01").get("/pages/me").status_code == 200


def test_rows_of_revision_0008_are_students_after_the_upgrade(tmp_path):
    from quota.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'q.sqlite'}")
    try:
        upgrade(engine, "0008")
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(
                "INSERT INTO roster_accounts (account, school, class_id, first_name, last_name, email, one_time_hash, "
                "created_by, created_at, updated_by, updated_at) VALUES ('old-1', 'c01', 'ai-club', 'a', 'b', '', NULL, "
                "'t', '2026-12-01 08:00:00', 't', '2026-12-01 08:00:00')"))
        upgrade(engine, "head")
        with engine.connect() as connection:
            row = connection.execute(sqlalchemy.text(
                "SELECT role, deactivated_at FROM roster_accounts WHERE account = 'old-1'")).one()
        assert tuple(row) == ("student", None)
    finally:
        engine.dispose()


# -- a created teacher's new slip; a created class renamed, given another teacher, removed --

def _teacher_slip(app, who: str, account: str, locale="en"):
    client = page_client(app, who, locale)
    return client.post("/pages/classes/teachers/reset", data={"account": account, "csrf": csrf_for(app, who)},
                       follow_redirects=False)


def _class_form(app, who: str, action: str, fields: dict, locale="en"):
    client = page_client(app, who, locale)
    return client.post(f"/pages/classes/{action}", data={"school": "c01", **fields, "csrf": csrf_for(app, who)},
                       follow_redirects=False)


def _audit_rows(app):
    from quota.tables import PolicyChange

    return app.state.book.read_policy(lambda session, now: [
        (c.by, c.subject, c.target, c.field, c.old, c.new) for c in session.query(PolicyChange).order_by(PolicyChange.id)])


def test_a_created_teacher_gets_a_new_slip_on_the_classes_page(quota_client):
    app = quota_client.app
    [(_account, old)] = SLIP.findall(_create(app, "staff-admin", NEW_CLASS).text)
    listing = page_client(app, "c01-admin").get("/pages/classes").text
    assert 'action="/pages/classes/teachers/reset"' in listing and 'name="account" value="c01-t-wang"' in listing
    assert "c01-t-wang 王 老师 九年级人工智能 New one-time password" in main_text(listing)
    answer = _teacher_slip(app, "c01-admin", "c01-t-wang")  # the school's admin, as staff could
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store", main_text(answer.text)[:300]
    [(account, new)] = SLIP.findall(answer.text)
    assert account == "c01-t-wang" and new != old and "九年级人工智能" in answer.text and "青山中学" in answer.text
    stored = quota_client.get("/api/roster/accounts/c01-t-wang").json()
    assert bcrypt.checkpw(new.encode(), stored["one_time_hash"].encode())
    assert not bcrypt.checkpw(old.encode(), stored["one_time_hash"].encode())
    assert _audit_rows(app)[-1] == ("c01-admin", "account", "c01-t-wang", "one-time password", None, "new slip")
    zh = _teacher_slip(app, "staff-admin", "c01-t-wang", locale="zh-CN")
    assert zh.status_code == 200 and "一次性密码" in main_text(zh.text)
    # the slip's language switch (a GET of the form's address) leads back to the classes page
    back = page_client(app, "c01-admin").get("/pages/classes/teachers/reset?lang=zh-CN", follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"].endswith("/pages/classes?lang=zh-CN")


@pytest.mark.parametrize("who, account", [
    ("c01-t-wang", "c01-t-wang"),  # the teacher themselves: their school's admin prints it
    ("c01-teacher", "c01-t-wang"),  # another teacher of the school
    ("u01-teacher", "c01-t-wang"),
    ("c01-s1", "c01-t-wang"),
    ("it-ops", "c01-t-wang"),
    ("staff-admin", "c01-teacher"),  # the alliance file's teacher: changed in the file
    ("staff-admin", "r-01"),  # an imported student: their slip is printed on the teacher's page
    ("staff-admin", "nobody"),
])
def test_a_teachers_new_slip_is_refused_to_everyone_else(quota_client, who, account):
    _create(quota_client.app, "staff-admin", NEW_CLASS)
    _imported_student(quota_client)
    before = quota_client.get("/api/roster/accounts").json()
    assert _teacher_slip(quota_client.app, who, account).status_code == 403
    assert quota_client.get("/api/roster/accounts").json() == before


def test_the_care_forms_of_the_classes_page_need_its_csrf_token(quota_client):
    app = quota_client.app
    _create(app, "staff-admin", NEW_CLASS)
    client = page_client(app, "staff-admin")
    before = _state(quota_client)
    for action, fields in (("teachers/reset", {"account": "c01-t-wang"}),
                           ("change", {"school": "c01", "class_id": "grade9-ai", "name": "x", "teacher": "c01-teacher"}),
                           ("remove", {"school": "c01", "class_id": "grade9-ai", "confirm": "yes"})):
        assert client.post(f"/pages/classes/{action}", data={**fields, "csrf": "0" * 64}).status_code == 403
    assert _state(quota_client) == before


def test_a_created_class_is_renamed_and_given_another_teacher(quota_client):
    app = quota_client.app
    _create(app, "c01-admin", {"school": "c01", "class_id": "robots", "name": "Robots", "teacher": "c01-other"})
    listing = page_client(app, "c01-admin").get("/pages/classes").text
    assert 'href="/pages/classes/edit?school=c01&amp;class_id=robots"' in listing
    edit = page_client(app, "c01-admin").get("/pages/classes/edit?school=c01&class_id=robots")
    assert edit.status_code == 200 and 'value="Robots"' in edit.text and 'value="c01-other"' in edit.text
    answer = _class_form(app, "c01-admin", "change", {"class_id": "robots", "name": "机器人", "teacher": "C01-Teacher"})
    assert answer.status_code == 303, main_text(answer.text)[:300]
    assert answer.headers["location"].endswith("/pages/classes/edit?school=c01&class_id=robots&changed=1")
    assert "The class robots is changed" in main_text(page_client(app, "c01-admin").get(answer.headers["location"]).text)
    assert quota_client.get("/api/roster/classes").json() == [
        {"school": "c01", "class_id": "robots", "name": "机器人", "teacher": "c01-teacher"}]
    assert _audit_rows(app)[-2:] == [("c01-admin", "class", "c01/robots", "name", "Robots", "机器人"),
                                     ("c01-admin", "class", "c01/robots", "teacher", "c01-other", "c01-teacher")]
    # the running service: the new teacher has the class, the old one no longer
    assert "Class 机器人" in main_text(page_client(app, "c01-teacher").get("/pages/teacher").text)
    assert "机器人" not in page_client(app, "c01-other").get("/pages/teacher").text
    # the same again changes nothing and writes no audit row
    log = len(_audit_rows(app))
    assert _class_form(app, "c01-admin", "change", {"class_id": "robots", "name": "机器人",
                                                    "teacher": "c01-teacher"}).status_code == 303
    assert len(_audit_rows(app)) == log


def test_a_created_class_given_a_created_teacher_and_imported_into(quota_client):
    """The class's teacher is a teacher account created on the page: they see it and import into it."""
    app = quota_client.app
    _create(app, "staff-admin", NEW_CLASS)
    _create(app, "c01-admin", {"school": "c01", "class_id": "robots", "name": "Robots", "teacher": "c01-other"})
    assert _class_form(app, "staff-admin", "change", {"class_id": "robots", "name": "Robots",
                                                      "teacher": "c01-t-wang"}).status_code == 303
    assert list(_import(app, "c01-t-wang", "id,first_name,last_name,email,class\nrb-1,A,B,,robots\n")) == ["rb-1"]
    assert "rb-1" in main_text(page_client(app, "c01-t-wang").get("/pages/teacher").text)


BAD_CHANGES = [  # (class, fields) -> the field named, a piece of the fix
    ("robots", {"name": ""}, "name", "class name is empty"),
    ("robots", {"name": "x" * 101}, "name", "more than 100 characters"),
    ("robots", {"teacher": ""}, "teacher", "The teacher is empty; write the account of one of the school's teachers: "
                                           "c01-teacher, c01-other"),
    ("robots", {"teacher": "nobody"}, "teacher", "nobody is not a teacher of this school; choose one of: c01-teacher, "
                                                 "c01-other."),
    ("robots", {"teacher": "c01-s1"}, "teacher", "c01-s1 is not a teacher of this school"),
    ("robots", {"teacher": "u01-teacher"}, "teacher", "u01-teacher is not a teacher of this school"),
    ("robots", {"teacher": "c01-admin"}, "teacher", "c01-admin is not a teacher of this school"),
    ("ai-club", {}, "class_id", "The class ai-club is from the alliance file: alliance staff change or remove it in "
                                "that file, not on this page."),
]


@pytest.mark.parametrize("class_id, changed, field, fix", BAD_CHANGES,
                         ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD_CHANGES)])
def test_a_bad_change_names_the_field_and_the_fix_and_saves_nothing(quota_client, class_id, changed, field, fix):
    app = quota_client.app
    _create(app, "c01-admin", {"school": "c01", "class_id": "robots", "name": "Robots", "teacher": "c01-other"})
    before = _state(quota_client)
    answer = _class_form(app, "c01-admin", "change", {"class_id": class_id, "name": "New", "teacher": "c01-teacher",
                                                      **changed})
    assert answer.status_code == 422, main_text(answer.text)[:300]
    assert errors_of(answer.text) == [field] and fix in main_text(answer.text)
    assert f'id="{field}"' in answer.text
    assert _state(quota_client) == before


def test_a_file_class_is_shown_as_changed_in_the_file_and_cannot_be_removed(quota_client):
    app = quota_client.app
    edit = page_client(app, "staff-admin").get("/pages/classes/edit?school=c01&class_id=ai-club")
    assert edit.status_code == 200 and "is from the alliance file" in main_text(edit.text)
    assert "/pages/classes/change" not in edit.text and "/pages/classes/remove" not in edit.text
    before = _state(quota_client)
    answer = _class_form(app, "staff-admin", "remove", {"class_id": "ai-club", "confirm": "yes"})
    assert answer.status_code == 422 and errors_of(answer.text) == ["class_id"]
    assert _state(quota_client) == before and "ai-club" in page_client(app, "c01-teacher").get("/pages/teacher").text


@pytest.mark.parametrize("who, school, class_id, status", [
    ("c01-teacher", "c01", "robots", 403),  # teachers do not change classes
    ("c01-s1", "c01", "robots", 403),
    ("it-ops", "c01", "robots", 403),
    ("c01-admin", "u01", "data-7", 403),  # another school
    ("c01-admin", "c01", "no-such", 404),
])
def test_only_the_schools_admin_and_staff_change_or_remove_a_class(quota_client, who, school, class_id, status):
    app = quota_client.app
    _create(app, "c01-admin", {"school": "c01", "class_id": "robots", "name": "Robots", "teacher": "c01-other"})
    before = _state(quota_client)
    assert page_client(app, who).get(f"/pages/classes/edit?school={school}&class_id={class_id}").status_code == status
    for action, fields in (("change", {"name": "x", "teacher": "c01-teacher"}), ("remove", {"confirm": "yes"})):
        answer = _class_form(app, who, action, {"school": school, "class_id": class_id, **fields})
        assert answer.status_code == status
    assert _state(quota_client) == before


def _book(quota_client, clock, days: int):
    from datetime import timedelta

    start = clock() + timedelta(days=days)
    answer = quota_client.post("/api/reservations", json={
        "pool": "uni-a", "school": "c01", "class_id": "robots", "units": 1, "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat()}, headers={"Authorization": "token tok-staff-admin"})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_a_class_is_removed_only_when_nothing_depends_on_it(quota_client, clock):
    app = quota_client.app
    _create(app, "c01-admin", {"school": "c01", "class_id": "robots", "name": "Robots", "teacher": "c01-teacher"})
    _import(app, "c01-teacher", "id,first_name,last_name,email,class\nrb-1,A,B,,robots\nrb-2,C,D,,robots\n")
    _book(quota_client, clock, 1)
    _book(quota_client, clock, 2)
    cancelled = _book(quota_client, clock, 3)
    assert quota_client.delete(f"/api/reservations/{cancelled}").status_code == 200  # a cancelled one does not count
    before = _state(quota_client)
    edit = main_text(page_client(app, "c01-admin").get("/pages/classes/edit?school=c01&class_id=robots").text)
    assert "2 students are in it" in edit and "2 lessons are booked for it" in edit
    for confirm in ("", "yes"):  # asked first, or confirmed (checked again inside the transaction)
        answer = _class_form(app, "c01-admin", "remove", {"class_id": "robots", "confirm": confirm})
        assert answer.status_code == 422, main_text(answer.text)[:300]
        assert errors_of(answer.text) == ["students", "bookings"]
        text = main_text(answer.text)
        assert ("2 students are in it: move them into another class with a roster import, or remove them on the "
                "teacher's page first.") in text
        assert "2 lessons are booked for it and have not ended: cancel them on the teacher's page first." in text
        assert _state(quota_client) == before
    zh = _class_form(app, "c01-admin", "remove", {"class_id": "robots"}, locale="zh-CN")
    assert zh.status_code == 422 and "2 名学生" in main_text(zh.text)
    # the students leave (one removed, one imported into another class); the lessons end
    assert _care(app, "c01-teacher", "remove", "rb-1").status_code == 303
    _import(app, "c01-teacher", "id,first_name,last_name,email,class\nrb-2,C,D,,ai-club\n")
    answer = _class_form(app, "c01-admin", "remove", {"class_id": "robots"})
    assert answer.status_code == 422 and errors_of(answer.text) == ["bookings"]
    assert "2 lessons are booked for it" in main_text(answer.text)
    clock.advance(days=2, hours=2)  # both lessons are over
    asked = _class_form(app, "c01-admin", "remove", {"class_id": "robots"})
    assert asked.status_code == 200 and "Remove the class robots?" in main_text(asked.text)
    assert 'name="confirm" value="yes"' in asked.text and quota_client.get("/api/roster/classes").json() != []
    done = _class_form(app, "c01-admin", "remove", {"class_id": "robots", "confirm": "yes"})
    assert done.status_code == 303 and done.headers["location"].endswith("/pages/classes?removed=robots")
    assert quota_client.get("/api/roster/classes").json() == []
    assert _audit_rows(app)[-1] == ("c01-admin", "class", "c01/robots", "active", "Robots (teacher c01-teacher)",
                                    "removed")
    assert "robots" not in main_text(page_client(app, "c01-teacher").get("/pages/teacher").text)
    assert "The class robots is removed." in main_text(page_client(app, "c01-admin").get(done.headers["location"]).text)
    from quota.tables import Reservation

    kept = app.state.book.read_policy(lambda session, now: session.query(Reservation).filter_by(class_id="robots").count())
    assert kept == 3  # its bookings (ended, cancelled) stay in the records
    # the id is free again in the school
    again = _create(app, "c01-admin", {"school": "c01", "class_id": "robots", "name": "Robots", "teacher": "c01-other"})
    assert again.status_code == 303


def test_a_renamed_class_is_escaped(quota_client):
    app = quota_client.app
    _create(app, "c01-admin", {"school": "c01", "class_id": "robots", "name": "Robots", "teacher": "c01-other"})
    hostile = "<script>alert(1)</script>"
    assert _class_form(app, "c01-admin", "change", {"class_id": "robots", "name": hostile,
                                                    "teacher": "c01-other"}).status_code == 303
    for path in ("/pages/classes", "/pages/classes/edit?school=c01&class_id=robots"):
        html = page_client(app, "c01-admin").get(path).text
        assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    refused = _class_form(app, "c01-admin", "change", {"class_id": "robots", "name": hostile, "teacher": hostile})
    assert refused.status_code == 422 and hostile not in refused.text
