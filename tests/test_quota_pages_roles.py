"""Every page route against every role (quota/pages): who may open each page and who may send
each form; everyone else gets 403 and nothing changes. A form is sent with the page's CSRF
token of the account itself."""

from __future__ import annotations

import pytest

from tests.fake_hub import FakeHub, running
from tests.page_client import csrf_for, csrf_of, page_client
from tests.quota_fixtures import TOKEN

ACCOUNTS = {"student": "c01-s1", "teacher": "c01-teacher", "school_admin": "c01-admin", "staff": "staff-admin",
            "operator": "it-ops"}
PAGES = {  # page -> roles that may open it
    "/": {"student", "teacher", "school_admin", "staff", "operator"},
    "/pages/teacher": {"teacher", "school_admin", "staff"},
    "/pages/staff": {"staff", "operator"},
    "/pages/operator": {"operator", "staff"},
    "/pages/me": {"student"},
    "/pages/teacher/roster": {"teacher", "school_admin", "staff"},
    "/pages/classes": {"school_admin", "staff"},
    "/pages/workspaces": {"operator", "staff"},
}
FORMS = {  # form -> (fields, roles that may send it)
    "/pages/staff/school": ({"id": "c01", "weight": "3"}, {"staff"}),
    "/pages/staff/tier": ({"id": "urban", "weight": "3"}, {"staff"}),
    "/pages/operator/pool": ({"id": "uni-a", "state": "draining", "note": "maintenance"}, {"operator"}),
    "/pages/teacher/book": ({"class_id": "c01/ai-club", "pool": "uni-a", "units": "1", "date": "2026-09-02",
                             "start": "08:00", "end": "09:00", "tz": "Asia/Shanghai", "action": "book"},
                            {"teacher", "school_admin", "staff"}),
    "/pages/classes": ({"school": "c01", "class_id": "robots", "name": "Robots", "teacher": "c01-teacher"},
                       {"school_admin", "staff"}),
    "/pages/workspaces/stop": ({"user": "c01-s1", "server": ""}, {"operator"}),
}


def _state(quota_client):
    """Everything a page's form may change: policy, bookings, the roster and its classes."""
    return tuple(quota_client.get(path).json() for path in ("/api/schools", "/api/tiers", "/api/pools",
                                                           "/api/reservations", "/api/roster/accounts",
                                                           "/api/roster/classes"))


@pytest.mark.parametrize("role", sorted(ACCOUNTS))
@pytest.mark.parametrize("path", sorted(PAGES))
def test_who_may_open_each_page(quota_client, path, role):
    answer = page_client(quota_client.app, ACCOUNTS[role]).get(path)
    assert answer.status_code == (200 if role in PAGES[path] else 403), answer.text[:300]


@pytest.mark.parametrize("role", sorted(ACCOUNTS))
@pytest.mark.parametrize("path", sorted(FORMS))
def test_who_may_send_each_form(quota_client, path, role):
    client = page_client(quota_client.app, ACCOUNTS[role])
    token = csrf_for(quota_client.app, ACCOUNTS[role])  # the token belongs to the login, the same on every page
    before = _state(quota_client)
    fields, allowed = FORMS[path]
    hub = FakeHub({"c01-s1": running("cpu")}, TOKEN).install(quota_client.app)  # the workspaces page's hub
    before += (tuple(hub.servers),)
    answer = client.post(path, data={**fields, "csrf": token}, follow_redirects=False)
    after = _state(quota_client) + (tuple(hub.servers),)
    if role in allowed:
        assert answer.status_code == 303, answer.text[:300]
        assert after != before
    else:
        assert answer.status_code == 403, answer.text[:300]
        assert after == before


def test_the_token_the_pages_show_is_the_logins(quota_client):
    client = page_client(quota_client.app, "c01-teacher")
    assert csrf_of(client.get("/pages/teacher").text) == csrf_for(quota_client.app, "c01-teacher")


@pytest.mark.parametrize("role", sorted(ACCOUNTS))
def test_who_may_preview_and_import_a_roster(quota_client, role):
    """The roster's two forms (a multipart preview, then the import): teachers of the class,
    its school's admin and staff; a student imported by nobody else."""
    import base64

    client = page_client(quota_client.app, ACCOUNTS[role])
    token = csrf_for(quota_client.app, ACCOUNTS[role])
    data = b"id,first_name,last_name,email,class\nnew-1,Ada,Li,,c01/ai-club\n"
    preview = client.post("/pages/teacher/roster/preview", data={"csrf": token}, files={"file": ("r.csv", data)})
    done = client.post("/pages/teacher/roster/import", data={"csrf": token, "file": base64.b64encode(data).decode()})
    created = quota_client.get("/api/roster/accounts/new-1").status_code
    allowed = role in {"teacher", "school_admin", "staff"}
    assert (preview.status_code, done.status_code, created) == ((200, 200, 200) if allowed else (403, 403, 404))


@pytest.mark.parametrize("role", sorted(ACCOUNTS))
def test_only_the_hub_reads_the_roster_api(quota_client, client_as, role):
    account = client_as(ACCOUNTS[role])
    assert account.get("/api/roster/accounts/nobody").status_code == 403
    assert account.post("/api/roster/accounts/nobody/password-set").status_code == 403
    assert quota_client.get("/api/roster/accounts/nobody").status_code == 404  # the hub: asked, none


@pytest.mark.parametrize("role", sorted(ACCOUNTS))
@pytest.mark.parametrize("action", ["reset", "remove"])
def test_who_may_care_for_an_imported_student(quota_client, role, action):
    """A new one-time password, or removal from the class, for a student the class's teacher
    imported: the class's teacher, the school's admin and staff; nobody else, and nothing changes."""
    import base64

    teacher = page_client(quota_client.app, "c01-teacher")
    data = b"id,first_name,last_name,email,class\nnew-1,Ada,Li,,ai-club\n"
    done = teacher.post("/pages/teacher/roster/import", data={"csrf": csrf_for(quota_client.app, "c01-teacher"),
                                                              "file": base64.b64encode(data).decode()})
    assert done.status_code == 200
    before = quota_client.get("/api/roster/accounts/new-1").json()
    client = page_client(quota_client.app, ACCOUNTS[role])
    answer = client.post(f"/pages/teacher/students/{action}",
                         data={"account": "new-1", "csrf": csrf_for(quota_client.app, ACCOUNTS[role]), "confirm": "yes"},
                         follow_redirects=False)
    after = quota_client.get("/api/roster/accounts/new-1")
    if role in {"teacher", "school_admin", "staff"}:
        assert answer.status_code == (200 if action == "reset" else 303), answer.text[:300]
        assert after.status_code == 404 if action == "remove" else after.json()["one_time_hash"] != before["one_time_hash"]
    else:
        assert answer.status_code == 403, answer.text[:300]
        assert after.json() == before


@pytest.mark.parametrize("role", sorted(ACCOUNTS))
@pytest.mark.parametrize("action", ["edit", "change", "remove", "teachers/reset"])
def test_who_may_care_for_a_created_class_and_its_teacher(quota_client, role, action):
    """A class and a teacher created on the classes page: its page, renaming it, removing it and
    a new slip for the teacher are for the school's admin and staff; nobody else, and nothing
    changes."""
    admin = page_client(quota_client.app, "c01-admin")
    created = admin.post("/pages/classes", data={"school": "c01", "class_id": "robots", "name": "Robots",
                                                 "teacher": "t-new", "teacher_last_name": "New",
                                                 "csrf": csrf_for(quota_client.app, "c01-admin")})
    assert created.status_code == 200
    before = _state(quota_client), quota_client.get("/api/roster/accounts/t-new").json()
    client = page_client(quota_client.app, ACCOUNTS[role])
    fields = {"school": "c01", "class_id": "robots", "name": "Robots 2", "teacher": "c01-teacher", "account": "t-new",
              "confirm": "yes", "csrf": csrf_for(quota_client.app, ACCOUNTS[role])}
    if action == "edit":
        answer = client.get("/pages/classes/edit", params={"school": "c01", "class_id": "robots"})
    else:
        answer = client.post(f"/pages/classes/{action}", data=fields, follow_redirects=False)
    after = _state(quota_client), quota_client.get("/api/roster/accounts/t-new").json()
    if role in {"school_admin", "staff"}:
        assert answer.status_code == {"edit": 200, "teachers/reset": 200}.get(action, 303), answer.text[:300]
        assert (after == before) == (action == "edit")
    else:
        assert answer.status_code == 403, answer.text[:300]
        assert after == before
