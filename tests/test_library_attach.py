"""Teachers attach library entries to their class on the teacher's page (issue 16, point 3):
the entries with name, licence and size, attach/detach with the page's CSRF token, stored and
audited; only the caller's classes; bad input named with nothing saved; both languages; and
the hub's spawner links a class's entries into its students' ~/datasets, another class's not."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import httpx
import pytest

from quota import library_classes
from quota.tables import PolicyChange
from spawner.library import library_env
from spawner.quota_client import QuotaClient
from tests.page_client import csrf_for, csrf_of, errors_of, main_text, page_client
from tests.quota_fixtures import QUOTA_ALLIANCE, TOKEN
from tests.spawner_fakes import LOG, FakeQuotaService, lease, leased_spawner

SHA = hashlib.sha256(b"x").hexdigest()
LIBRARY = f"""
library:
  - {{id: iris, name: {{zh-CN: 鸢尾花, en: Iris flowers}}, description: {{zh-CN: 花。, en: Flowers.}}, licence: CC-BY-4.0,
     source: tests, size_bytes: 4096, sha256: {SHA}, path: datasets/iris.csv}}
  - {{id: wine, name: {{zh-CN: 葡萄酒, en: Wine}}, description: {{zh-CN: 酒。, en: Wine.}}, licence: BSD-3-Clause,
     source: tests, size_bytes: 1, sha256: {SHA}, path: datasets/wine.csv}}
"""
ALLIANCE = (QUOTA_ALLIANCE
            .replace("students: [c01-s1, c01-s2]}]", "students: [c01-s1, c01-s2], library: [wine]}]")
            .replace("{id: u01, tier: urban, students: [u01-s1, u01-s2], teachers: [u01-teacher]}",
                     "{id: u01, tier: urban, students: [u01-s1, u01-s2], teachers: [u01-teacher],\n"
                     "     classes: [{id: robotics, teachers: [u01-teacher], students: [u01-s1]}]}")) + LIBRARY


@pytest.fixture
def quota_alliance(tmp_path):
    assert "library: [wine]" in ALLIANCE and "robotics" in ALLIANCE
    path = tmp_path / "alliance.yaml"
    path.write_text(ALLIANCE)
    return path


@pytest.fixture
def app(quota_client):
    return quota_client.app


def _post(client, **fields):
    page = client.get("/pages/teacher")
    return client.post("/pages/teacher/library", data={"csrf": csrf_of(page.text), **fields}, follow_redirects=False)


def _stored(app):
    return app.state.book.read_policy(lambda session, now: library_classes.stored(session))


def _audit(app):
    return app.state.book.read_policy(lambda session, now: [
        (c.by, c.subject, c.target, c.field, c.old, c.new) for c in session.query(PolicyChange).order_by(PolicyChange.id)])


def test_the_page_lists_the_entries_and_a_teacher_attaches_and_detaches(app):
    client = page_client(app, "c01-teacher")
    text = main_text(client.get("/pages/teacher").text)
    assert "Library for this class" in text and "Iris flowers (iris) CC-BY-4.0 4.0 KB no Attach" in text
    assert "Wine (wine) BSD-3-Clause 1 B yes, by the alliance file" in text  # the file's seed: no button
    attached = _post(client, class_id="c01/ai-club", entry="iris", action="attach")
    assert attached.status_code == 303 and attached.headers["location"].endswith("attached=iris")
    assert "iris is attached" in main_text(client.get(attached.headers["location"]).text)
    assert _stored(app) == [("c01", "ai-club", "iris")]
    assert "Iris flowers (iris) CC-BY-4.0 4.0 KB yes Detach" in main_text(client.get("/pages/teacher").text)
    assert _post(client, class_id="c01/ai-club", entry="iris", action="attach").status_code == 303  # again: no change
    detached = _post(client, class_id="c01/ai-club", entry="iris", action="detach")
    assert detached.status_code == 303 and _stored(app) == []
    assert _audit(app) == [("c01-teacher", "class", "c01/ai-club", "library", None, "iris"),
                           ("c01-teacher", "class", "c01/ai-club", "library", "iris", None)]


@pytest.mark.parametrize(("account", "fields", "field", "fix"), [
    ("c01-teacher", {"class_id": "u01/robotics", "entry": "iris", "action": "attach"}, "class_id",
     "Choose one of your classes."),
    ("c01-teacher", {"class_id": "c01/ai-club", "entry": "mnist", "action": "attach"}, "entry",
     "There is no library entry mnist; choose one of the entries listed."),
    ("c01-teacher", {"class_id": "c01/ai-club", "entry": "wine", "action": "detach"}, "entry",
     "wine is attached to this class by the alliance file and stays attached"),
    ("c01-teacher", {"class_id": "c01/ai-club", "entry": "iris", "action": "remove"}, "entry", "Press Attach or Detach"),
])
def test_bad_input_names_the_field_and_the_fix_and_saves_nothing(app, account, fields, field, fix):
    answer = _post(page_client(app, account), **fields)
    assert answer.status_code == 422
    assert errors_of(answer.text) == [field] and fix in main_text(answer.text)
    assert _stored(app) == [] and _audit(app) == []


def test_only_the_classes_teachers_and_staff_may_attach_and_students_see_nothing(app):
    assert _post(page_client(app, "staff-admin"), class_id="u01/robotics", entry="iris", action="attach").status_code == 303
    assert _stored(app) == [("u01", "robotics", "iris")]
    assert _post(page_client(app, "u01-teacher"), class_id="c01/ai-club", entry="iris",
                 action="attach").status_code == 422  # another school's class
    assert _post(page_client(app, "c01-admin"), class_id="c01/ai-club", entry="iris", action="attach").status_code == 303
    assert _stored(app) == [("c01", "ai-club", "iris"), ("u01", "robotics", "iris")]  # their school's class
    assert page_client(app, "it-ops").post("/pages/teacher/library", data={
        "class_id": "c01/ai-club", "entry": "iris", "action": "detach",
        "csrf": csrf_for(app, "it-ops")}).status_code == 403
    student = page_client(app, "c01-s1")
    assert student.get("/pages/teacher").status_code == 403
    assert student.post("/pages/teacher/library", data={"class_id": "c01/ai-club", "entry": "iris",
                                                         "action": "attach"}).status_code == 403
    assert _stored(app) == [("c01", "ai-club", "iris"), ("u01", "robotics", "iris")]


def test_a_form_without_the_pages_token_is_refused(app):
    client = page_client(app, "c01-teacher")
    answer = client.post("/pages/teacher/library", data={"class_id": "c01/ai-club", "entry": "iris", "action": "attach",
                                                        "csrf": "0" * 32})
    assert answer.status_code == 403 and _stored(app) == []


def test_the_page_in_chinese(app):
    client = page_client(app, "c01-teacher", "zh-CN")
    text = main_text(client.get("/pages/teacher").text)
    assert "鸢尾花 (iris)" in text and "Library for this class" not in text and "Attach" not in text
    bad = _post(client, class_id="c01/ai-club", entry="mnist", action="attach")
    assert bad.status_code == 422 and "mnist" in main_text(bad.text) and "There is no library entry" not in bad.text


# -- the hub's side -------------------------------------------------------------------------

def _hub_client(app) -> tuple[QuotaClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    return QuotaClient("http://quota.test", TOKEN, 5.0, LOG, http=http), http


async def test_the_service_answers_the_hub_with_each_students_entries(app, quota_client, client_as):
    _post(page_client(app, "c01-teacher"), class_id="c01/ai-club", entry="iris", action="attach")
    client, http = _hub_client(app)
    try:
        mine = await client.attached_library("c01-s1")
        other = await client.attached_library("u01-s1")
    finally:
        await http.aclose()
    assert mine == {"user": "c01-s1", "entries": {"iris": "datasets/iris.csv", "wine": "datasets/wine.csv"},
                    "classes": ["c01/ai-club"]}
    assert other == {"user": "u01-s1", "entries": {}, "classes": ["u01/robotics"]}  # another class: nothing of it
    env = library_env(app.state.book.alliance, "c01-s1", mine)
    assert json.loads(env["GPU_COMMONS_LIBRARY_ATTACHED"]) == mine["entries"]
    assert client_as("c01-teacher").get("/api/library/attached/c01-s1").status_code == 403  # the hub only
    assert client_as("c01-s1").get("/api/library/attached/c01-s1").status_code == 403


def _import_into(app, teacher: str, rows: str) -> None:
    import base64

    data = ("id,first_name,last_name,email,class\n" + rows).encode()
    done = page_client(app, teacher).post("/pages/teacher/roster/import", data={
        "csrf": csrf_for(app, teacher), "file": base64.b64encode(data).decode()})
    assert done.status_code == 200, main_text(done.text)[:300]


def _create_class(app, class_id: str) -> None:
    done = page_client(app, "staff-admin").post("/pages/classes", data={
        "school": "c01", "class_id": class_id, "name": class_id, "teacher": "c01-teacher",
        "csrf": csrf_for(app, "staff-admin")}, follow_redirects=False)
    assert done.status_code == 303, main_text(done.text)[:300]


async def test_imported_students_get_their_classes_entries_from_the_service(app):
    """Students a teacher imported (into a file class, or a class created on the classes page)
    are their class's students for the service's answer, as the file's students are; the hub's
    own alliance file (its fallback when the service does not answer) does not list them."""
    _create_class(app, "robots-c")
    _post(page_client(app, "c01-teacher"), class_id="c01/ai-club", entry="iris", action="attach")
    _post(page_client(app, "c01-teacher"), class_id="c01/robots-c", entry="iris", action="attach")
    _import_into(app, "c01-teacher", "r-01,Ada,Li,,ai-club\nr-02,Bo,Wu,,robots-c\n")
    client, http = _hub_client(app)
    try:
        in_file_class = await client.attached_library("r-01")
        in_created_class = await client.attached_library("r-02")
    finally:
        await http.aclose()
    assert in_file_class == {"user": "r-01", "entries": {"iris": "datasets/iris.csv", "wine": "datasets/wine.csv"},
                             "classes": ["c01/ai-club"]}
    assert in_created_class == {"user": "r-02", "entries": {"iris": "datasets/iris.csv"}, "classes": ["c01/robots-c"]}
    env = library_env(app.state.book.file_alliance, "r-02", in_created_class)  # the spawner, with the answer
    assert json.loads(env["GPU_COMMONS_LIBRARY_ATTACHED"]) == {"iris": "datasets/iris.csv"}
    assert env["GPU_COMMONS_CLASSES"] == "c01/robots-c"
    fallback = library_env(app.state.book.file_alliance, "r-02")  # the hub's file alone: no such student
    assert json.loads(fallback["GPU_COMMONS_LIBRARY_ATTACHED"]) == {} and fallback["GPU_COMMONS_CLASSES"] == ""


def test_a_removed_class_takes_its_attached_entries_with_it(app):
    _create_class(app, "empty-c")
    _post(page_client(app, "c01-teacher"), class_id="c01/empty-c", entry="iris", action="attach")
    assert ("c01", "empty-c", "iris") in _stored(app)
    client = page_client(app, "staff-admin")
    done = client.post("/pages/classes/remove", data={"school": "c01", "class_id": "empty-c", "confirm": "yes",
                                                      "csrf": csrf_for(app, "staff-admin")}, follow_redirects=False)
    assert done.status_code == 303, main_text(done.text)[:300]
    assert [row for row in _stored(app) if row[1] == "empty-c"] == []
    assert _audit(app)[-2:] == [("staff-admin", "class", "c01/empty-c", "library", "iris", None),
                                ("staff-admin", "class", "c01/empty-c", "active", "empty-c (teacher c01-teacher)",
                                 "removed")]
    # a class created again with the id starts without the old class's entries
    _create_class(app, "empty-c")
    assert [row for row in _stored(app) if row[1] == "empty-c"] == []


async def test_the_spawner_links_what_the_service_answers_or_the_files_entries(tmp_path):
    alliance = tmp_path / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    service = FakeQuotaService()
    service.answer("POST", "/api/leases", lease("granted", profile="gpu-slice"))
    service.answer("GET", "/api/library/attached/c01-s1",
                   {"user": "c01-s1", "entries": {"iris": "datasets/iris.csv"}, "classes": ["c01/ai-club"]})
    try:
        spawner = leased_spawner(service, alliance)
        spawner.user.url, spawner.user.escaped_name, spawner.user.server = "/user/c01-s1/", "c01-s1", None
        spawner.hub = SimpleNamespace(public_host="", api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/",
                                      url="/hub/")  # what JupyterHub's get_env reads
        await spawner.start()
        env = spawner.get_env()
        assert service.library_calls == ["/api/library/attached/c01-s1"]
        assert json.loads(env["GPU_COMMONS_LIBRARY_ATTACHED"]) == {"iris": "datasets/iris.csv"}
        assert env["GPU_COMMONS_CLASSES"] == "c01/ai-club"
        service.answer("GET", "/api/library/attached/c01-s1", httpx.Response(404, json={"detail": "Not Found"}))
        await spawner.stop()
        await spawner.start()  # a service without the route: the hub's alliance file's entries
        assert json.loads(spawner.get_env()["GPU_COMMONS_LIBRARY_ATTACHED"]) == {"wine": "datasets/wine.csv"}
    finally:
        await service.close()


def test_a_detached_entrys_link_leaves_the_home_at_the_next_start_a_students_own_file_stays(tmp_path):
    from gpu_commons_workspace import library as workspace_library

    root, home = tmp_path / "library", tmp_path / "home"
    (root / "datasets").mkdir(parents=True)
    home.mkdir()
    (root / "catalogue.json").write_text(json.dumps({"entries": {
        e: {"id": e, "kind": "dataset", "path": f"datasets/{e}.csv"} for e in ("iris", "wine")}}))
    workspace_library.prepare_home(home, str(root), {"iris": "datasets/iris.csv", "wine": "datasets/wine.csv"}, "en", LOG)
    assert sorted(p.name for p in (home / "datasets").iterdir()) == ["iris.csv", "wine.csv"]
    workspace_library.prepare_home(home, str(root), {"wine": "datasets/wine.csv"}, "en", LOG)  # iris detached
    assert sorted(p.name for p in (home / "datasets").iterdir()) == ["wine.csv"]
    (home / "datasets" / "wine.csv").unlink()
    (home / "datasets" / "wine.csv").write_text("my own wine")
    workspace_library.prepare_home(home, str(root), {}, "en", LOG)  # the student's own file is never touched
    assert (home / "datasets" / "wine.csv").read_text() == "my own wine"
