"""Leases reconciled with the hub's servers.

``plan()`` over plain data (grace period, pending servers, a lease beside a server of another
profile, GPU servers without a lease), the reconciler against a fake hub API (an httpx mock
transport answering ``GET /users?state=active``), then the whole thing against a real hub
(tests/stack.py): a quota service started next to it with the hub's quota-service token and
JUPYTERHUB_API_URL releases the lease of a student the hub runs no server for and the GPU
lease of a student whose server runs the CPU profile, keeps those of running and
still-pending servers of their profile, and reports the GPU server it has no lease for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quota.reconcile import HeldLease, HubListing, HubServer, plan
from tests.hub_client import log_in, run_in_terminal, wait_for
from tests.quota_fixtures import TOKEN
from tests.quota_process import QuotaProcess

NOW = datetime(2026, 9, 1, 8, 0, tzinfo=timezone.utc)
GRACE = timedelta(minutes=2)
GPU = {"gpu-slice", "gpu-whole"}


def lease(lease_id: str, user: str, gpu: bool = True, age: timedelta = timedelta(hours=1),
          profile: str | None = None) -> HeldLease:
    return HeldLease(lease_id, user, gpu, NOW - age, profile or ("gpu-slice" if gpu else "cpu"))


def test_leases_of_students_without_an_active_server_are_released_after_the_grace():
    listing = HubListing(frozenset({"running", "pending"}), (
        HubServer("running", "", True, "gpu-slice"),
        HubServer("pending", "", False, "gpu-slice"),  # still starting, or waiting in the queue
    ))
    leases = [
        lease("l-running", "running"), lease("l-pending", "pending"), lease("l-gone", "gone"),
        lease("l-gone-cpu", "gone-cpu", gpu=False), lease("l-new", "new", age=timedelta(seconds=30)),
        lease("l-at-grace", "late", age=GRACE),
    ]
    decided = plan(leases, listing, NOW, GRACE, GPU)
    assert decided.release == ("l-gone", "l-gone-cpu", "l-at-grace")
    assert decided.unleased_gpu_servers == ()


def test_ready_gpu_servers_without_a_gpu_lease_are_reported():
    listing = HubListing(frozenset({"a", "b", "c", "d"}), (
        HubServer("a", "", True, "gpu-whole"),  # no lease at all
        HubServer("b", "", True, "gpu-slice"),  # only a CPU lease
        HubServer("c", "", True, "cpu"),  # a CPU server needs no GPU lease
        HubServer("d", "", False, "gpu-slice"),  # pending: its lease may still be queued
    ))
    decided = plan([lease("l-b", "b", gpu=False)], listing, NOW, GRACE, GPU)
    assert [server.user for server in decided.unleased_gpu_servers] == ["a", "b"]
    assert decided.release == ("l-b",)  # no CPU server of b's holds the CPU lease


def test_a_gpu_lease_beside_a_cpu_workspace_is_released():
    """Issue 17: a student running a CPU workspace took the GPU straight from the quota API,
    and the reconciliation kept it because the student had some server."""
    listing = HubListing(frozenset({"thief", "honest"}), (
        HubServer("thief", "", True, "cpu"),
        HubServer("honest", "", True, "gpu-whole"),
    ))
    leases = [
        lease("l-cpu", "thief", gpu=False), lease("l-stolen", "thief", profile="gpu-whole"),
        lease("l-honest", "honest", profile="gpu-whole"),
        lease("l-stolen-now", "thief", profile="gpu-slice", age=timedelta(seconds=30)),  # within the grace, for now
    ]
    decided = plan(leases, listing, NOW, GRACE, GPU)
    assert decided.release == ("l-stolen",)
    assert plan(leases, listing, NOW + GRACE, GRACE, GPU).release == ("l-stolen", "l-stolen-now")


def test_one_server_holds_one_lease_of_its_profile_the_newest():
    listing = HubListing(frozenset({"s"}), (HubServer("s", "", True, "gpu-slice"),))
    leases = [lease("l-old", "s", age=timedelta(hours=2)), lease("l-new", "s", age=timedelta(hours=1))]
    assert plan(leases, listing, NOW, GRACE, GPU).release == ("l-old",)
    two = HubListing(frozenset({"s"}), (HubServer("s", "", True, "gpu-slice"), HubServer("s", "lab", False, "gpu-slice")))
    assert plan(leases, two, NOW, GRACE, GPU).release == ()  # named servers: one lease each


def test_each_held_lease_gets_its_servers_last_activity():
    used = NOW - timedelta(minutes=3)
    listing = HubListing(frozenset({"s", "t"}), (
        HubServer("s", "", True, "gpu-slice", NOW - timedelta(minutes=40)),
        HubServer("s", "lab", True, "gpu-slice", used),  # used last: it holds the newest lease
        HubServer("t", "", True, "gpu-whole", None),  # never used since it started: nothing to tell
    ))
    leases = [lease("l-old", "s", age=timedelta(hours=2)), lease("l-new", "s", age=timedelta(hours=1)),
              lease("l-t", "t", profile="gpu-whole"), lease("l-gone", "gone")]
    decided = plan(leases, listing, NOW, GRACE, GPU)
    assert dict(decided.activity) == {"l-new": used, "l-old": NOW - timedelta(minutes=40)}
    assert decided.release == ("l-gone",)


def fake_hub(users: list[dict]) -> httpx.MockTransport:
    """The hub's REST API as the reconciler reads it: one page of ``GET /users?state=active``."""
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/users") and request.url.params["state"] == "active"
        assert request.headers["authorization"] == f"token {TOKEN}"
        return httpx.Response(200, json={"items": users, "_pagination": {"next": None}})

    return httpx.MockTransport(answer)


def server(profile: str, ready: bool = True) -> dict:
    return {"ready": ready, "pending": None if ready else "spawn", "user_options": {"profile": profile}}


def test_the_reconciler_releases_a_gpu_lease_whose_server_runs_the_cpu_profile(make_quota_app, clock, monkeypatch):
    import asyncio

    from quota.reconcile import Reconciler

    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    app = make_quota_app()
    book = app.state.book
    stolen, _ = book.request("c01-s1", "c01", "gpu-whole", None)
    cpu, _ = book.request("c01-s1", "c01", "cpu", None)
    kept, _ = book.request("u01-s1", "u01", "gpu-slice", None)
    clock.advance(minutes=1)  # past the default grace (10 s)
    hub = fake_hub([{"name": "c01-s1", "servers": {"": server("cpu")}},
                    {"name": "u01-s1", "servers": {"": server("gpu-slice", ready=False)}}])
    reconciler = Reconciler(book, "http://hub.invalid/hub/api", TOKEN, app.state.settings.reconcile_grace_s,
                            CollectorRegistry(), book.clock, transport=hub)
    decided = asyncio.run(reconciler.run_once())
    assert decided.release == (stolen.id,)
    assert {row.id: row.state for row in book.leases()} == {stolen.id: "released", cpu.id: "granted", kept.id: "granted"}
    [record] = book.usage()
    assert (record.lease_id, record.end_reason) == (stolen.id, "reconciled")

    # a hub that lists users without their servers (a role without read:servers) decides nothing
    blind = Reconciler(book, "http://hub.invalid/hub/api", TOKEN, 0, CollectorRegistry(), book.clock,
                       transport=fake_hub([{"name": "u01-s1"}]))
    assert asyncio.run(blind.run_once()) is None
    assert book.get(kept.id).state == "granted"


def test_the_reconciler_tells_the_allocator_when_each_workspace_was_last_used(make_quota_app, clock, monkeypatch):
    """Issue 15, point 4: the allocator's touch had no caller, so "longest idle first" was
    "oldest first". The hub's last_activity of each server now reaches it."""
    import asyncio

    from quota.reconcile import Reconciler

    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    app = make_quota_app()
    book = app.state.book
    first, _ = book.request("c01-s1", "c01", "gpu-slice", None)
    second, _ = book.request("u01-s1", "u01", "gpu-slice", None)
    granted_at = clock().timestamp()
    clock.advance(minutes=30)
    used = clock() - timedelta(minutes=2)

    def activity(at):
        return {**server("gpu-slice"), "last_activity": at}

    hub = fake_hub([{"name": "c01-s1", "servers": {"": activity(used.isoformat().replace("+00:00", "Z"))}},
                    {"name": "u01-s1", "servers": {"": activity(None)}}])
    reconciler = Reconciler(book, "http://hub.invalid/hub/api", TOKEN, 10, CollectorRegistry(), book.clock,
                            transport=hub)
    decided = asyncio.run(reconciler.run_once())
    assert decided.release == () and dict(decided.activity) == {first.id: used}
    sessions = book._memory().allocator.sessions
    assert sessions[first.id].last_active == used.timestamp()
    assert sessions[second.id].last_active == granted_at  # not used since its grant: still idle since then
    # an older report (a page of the hub listed before a newer one arrived) changes nothing
    assert book.touch(first.id, used - timedelta(minutes=10))
    assert sessions[first.id].last_active == used.timestamp()
    # a moment in the future (a clock ahead on the hub's host) counts as now
    assert book.touch(second.id, clock() + timedelta(hours=1))
    assert sessions[second.id].last_active == clock().timestamp()


def test_nothing_is_released_when_the_hub_cannot_be_asked(make_quota_app, monkeypatch):
    import asyncio

    from quota.reconcile import reconciler_for

    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)  # the app must not build its own reconciler
    app = make_quota_app()
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")  # nothing listens on port 9
    book = app.state.book
    book.request("c01-s1", "c01", "gpu-slice", None)
    reconciler = reconciler_for(book, app.state.settings, app.state.metrics.registry, book._clock)
    assert asyncio.run(reconciler.run_once()) is None
    assert [row.state for row in book.leases()] == ["granted"]

    exposition = generate_latest(app.state.metrics.registry).decode()
    assert metric(exposition, "gpu_commons_reconciliations_total") == 1  # the failed pass
    if not shutil.which("promtool"):
        pytest.fail("promtool is missing; run `make install-test` (Debian package prometheus)")
    checked = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def metric(exposition: str, name: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(exposition)
               for sample in family.samples if sample.name == name)


@pytest.mark.slow
def test_against_a_real_hub(stack, tmp_path):
    gpu_student, cpu_student, pending_student = (log_in(stack, name) for name in ("c01-s1", "u01-s1", "c01-s2"))
    started_pending = False
    service = QuotaProcess(
        stack.alliance_file, f"sqlite:///{tmp_path / 'reconcile.sqlite'}", tmp_path / "quota", token=stack.quota_token,
        env={"JUPYTERHUB_API_URL": f"http://127.0.0.1:{stack.ports['hub_api_port']}/hub/api",
             "GPU_COMMONS_RECONCILE_INTERVAL_S": "0.5", "GPU_COMMONS_RECONCILE_GRACE_S": "3"},
    )
    try:
        assert gpu_student.start("gpu-slice").get("ready")  # takes the test alliance's only slice
        assert cpu_student.start("cpu").get("ready")
        # the next GPU start waits in the hub's queue: a pending server
        response = pending_student.hub.post("/users/c01-s2/server", json={"user_options": {"profile": "gpu-slice"}})
        assert response.status_code == 202, response.text
        started_pending = True
        assert pending_student.server()["pending"] == "spawn"

        service.start()
        with service.client() as quota:
            ask = lambda user, profile: quota.post(  # noqa: E731
                "/api/leases", json={"user": user, "school": user[:3], "profile": profile}).json()
            # u01-s1 runs a CPU workspace: a GPU lease beside it is not its workspace's (the slice, free in
            # this service's own database)
            beside_cpu = ask("u01-s1", "gpu-slice")
            assert beside_cpu["state"] == "granted"
            kept_running, kept_pending = ask("u01-s1", "cpu"), ask("c01-s2", "gpu-slice")
            assert kept_pending["state"] == "queued"  # behind the lease beside the CPU workspace
            orphan = ask("c01-ghost", "cpu")  # a student the hub runs nothing for
            assert quota.get(f"/api/leases/{orphan['id']}").json()["state"] == "granted"  # within the grace

            ended = {orphan["id"], beside_cpu["id"]}
            released = wait_for(lambda: all(quota.get(f"/api/leases/{lease_id}").json()["state"] == "released"
                                            for lease_id in ended), 20, "the orphan lease to be reconciled")
            assert released
            records = quota.get("/api/usage").json()
            assert {(record["lease_id"], record["end_reason"]) for record in records} == {
                (lease_id, "reconciled") for lease_id in ended}
            assert quota.get(f"/api/leases/{kept_pending['id']}").json()["state"] == "granted"  # the slice moved on
            time.sleep(4)  # a few more passes, all past the grace of the leases that have servers
            for kept in (kept_running, kept_pending):
                assert quota.get(f"/api/leases/{kept['id']}").json()["state"] == "granted"

            exposition = quota.get("/metrics").text
            assert metric(exposition, "gpu_commons_leases_reconciled_total") == 2
            assert metric(exposition, "gpu_commons_gpu_servers_unleased") == 1  # c01-s1's GPU server
            assert metric(exposition, "gpu_commons_reconciliations_total") >= 3
            quota.delete(f"/api/leases/{kept_pending['id']}")
            assert ask("c01-s1", "gpu-slice")["state"] == "granted"
            wait_for(lambda: metric(quota.get("/metrics").text, "gpu_commons_gpu_servers_unleased") == 0, 10,
                     "the GPU server to count as leased")
        assert "holds no GPU lease" in service.log_tail(200)
    finally:
        service.stop()
        if started_pending:
            pending_student.hub.delete("/users/c01-s2/server")
        for student in (gpu_student, cpu_student, pending_student):
            try:
                student.stop()
            except (AssertionError, httpx.HTTPError):
                pass


THEFT = r"""
import json, os, urllib.request
base, token = os.environ.get("GPU_COMMONS_QUOTA_URL", "QUOTA_URL"), os.environ["JUPYTERHUB_API_TOKEN"]
def call(method, path, body=None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "token " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:  # the workspace's own network does not reach the service (issue 17, point 3)
        return 0, str(error)
mine = os.environ["GPU_COMMONS_LEASE_ID"]
user = os.environ["JUPYTERHUB_USER"]
found = {"ask": call("POST", "/api/leases", {"user": user, "school": user[:3], "profile": "gpu-slice"}),
         "renew": call("POST", f"/api/leases/{mine}/renew"), "end": call("DELETE", f"/api/leases/{mine}"),
         "read": call("GET", f"/api/leases/{mine}")}
open(os.path.expanduser("~/.theft.tmp"), "w").write(json.dumps(found))
os.replace(os.path.expanduser("~/.theft.tmp"), os.path.expanduser("~/theft.json"))
"""


@pytest.mark.slow
def test_a_cpu_workspaces_token_cannot_take_renew_or_end_a_lease(stack):
    """Issue 17, point 4, as found: from a terminal in a CPU workspace, the server's own token
    (JUPYTERHUB_API_TOKEN in its environment) took the only GPU straight from the quota API."""
    student = log_in(stack, "u01-s1")
    try:
        assert student.start("cpu").get("ready")
        with student.contents() as contents:
            script = THEFT.replace("QUOTA_URL", stack.quota_url)  # a CPU workspace is not told it: it is no secret
            contents.put("theft.py", json={"type": "file", "format": "text", "content": script}).raise_for_status()
        found = json.loads(run_in_terminal(student, "python3 ~/theft.py || python ~/theft.py", "theft.json"))
        # With the workspace in its own network namespace (the embedded default) a CPU workspace does
        # not reach the quota service at all (0: refused); where it does (isolation off), the service
        # refuses the server's token (403) and says what to do.
        codes = [found[step][0] for step in ("ask", "renew", "end", "read")]
        assert codes in ([0, 0, 0, 0], [403, 403, 403, 200]), found
        if codes[0] == 403:
            assert "start your server" in found["ask"][1] and "Stop My Server" in found["end"][1]
        with stack.quota() as quota:
            leases = quota.get("/api/leases", params={"user": "u01-s1"}).json()
        assert [(lease["profile"], lease["state"]) for lease in leases if lease["state"] == "granted"] == [("cpu", "granted")]
    finally:
        student.stop()
