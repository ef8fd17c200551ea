"""The operators' workspaces page (quota/pages/workspaces.py) against a stand-in hub: every
active server with its school and GPU lease, the filter by school, Stop workspace (CSRF-checked,
audited, the hub asked with the service's token), in zh-CN and en."""

from __future__ import annotations

from tests.fake_hub import FakeHub, running
from tests.page_client import csrf_of, main_text, page_client
from tests.quota_fixtures import TOKEN


def _hub(app) -> FakeHub:
    return FakeHub({"c01-s1": running("gpu-slice"), "u01-s1": running("cpu", ready=False)}, TOKEN).install(app)


def test_operators_see_every_workspace_with_its_school_and_lease(quota_client):
    app = quota_client.app
    _hub(app)
    lease, _ = app.state.book.request("c01-s1", "c01", "gpu-slice", None)
    assert lease.state == "granted"
    page = page_client(app, "it-ops").get("/pages/workspaces")
    assert page.status_code == 200
    text = main_text(page.text)
    assert "c01-s1" in text and "u01-s1" in text
    row = page.text[page.text.find('data-user="c01-s1"'):page.text.find("</tr>", page.text.find('data-user="c01-s1"'))]
    assert "uni-a" in row and lease.expires_at.strftime("%Y-%m-%d %H:%M") in row and "2026-09-01 07:50" in row
    assert "starting" in page.text[page.text.find('data-user="u01-s1"'):]
    only_u01 = main_text(page_client(app, "it-ops").get("/pages/workspaces?school=u01").text)
    assert "u01-s1" in only_u01 and "c01-s1" not in only_u01


def test_an_operator_stops_a_workspace_in_chinese_and_it_is_audited(quota_client):
    app = quota_client.app
    hub = _hub(app)
    client = page_client(app, "it-ops", "zh-CN")
    page = client.get("/pages/workspaces")
    assert "停止工作区" in page.text and '<html lang="zh-CN">' in page.text
    answer = client.post("/pages/workspaces/stop", data={"csrf": csrf_of(page.text), "user": "c01-s1", "server": "",
                                                         "school": "c01"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].endswith("stopped=c01-s1&school=c01")
    assert hub.stopped == ["c01-s1"]
    after = client.get(answer.headers["location"])
    assert "c01-s1" in main_text(after.text) and "正在停止" in main_text(after.text)
    book = app.state.book
    audit = book.read_policy(lambda session, now: book.policy.audit_log(session, accounts=False))
    assert [(c.by, c.subject, c.target, c.old, c.new) for c in audit][:1] == [("it-ops", "workspace", "c01-s1", "running", "stopped")]
    again = client.post("/pages/workspaces/stop", data={"csrf": csrf_of(page.text), "user": "c01-s1"},
                        follow_redirects=False)
    assert again.headers["location"].endswith("gone=c01-s1")


def test_stop_needs_the_pages_token_and_an_operator(quota_client):
    app = quota_client.app
    hub = _hub(app)
    client = page_client(app, "it-ops")
    assert client.post("/pages/workspaces/stop", data={"csrf": "0" * 64, "user": "c01-s1"}).status_code == 403
    staff = page_client(app, "staff-admin")
    page = staff.get("/pages/workspaces")
    assert page.status_code == 200 and "Stop workspace" not in page.text and "c01-s1" in page.text
    assert staff.post("/pages/workspaces/stop", data={"csrf": csrf_of(staff.get("/pages/teacher").text),
                                                      "user": "c01-s1"}).status_code == 403
    assert hub.stopped == []


def test_a_hub_that_cannot_be_asked_is_said_so(quota_client):
    app = quota_client.app
    hub = _hub(app)
    hub.down = True
    text = main_text(page_client(app, "it-ops").get("/pages/workspaces").text)
    assert "The hub could not be asked" in text
    app.state.hub_servers = None
    text = main_text(page_client(app, "it-ops", "zh-CN").get("/pages/workspaces").text)
    assert "此配额服务没有在 Hub 下运行" in text
