"""Leases reconciled with the hub's servers.

``plan()`` over plain data (grace period, pending servers, GPU servers without a lease), then
the whole thing against a real hub (tests/stack.py): a quota service started next to it
with the hub's quota-service token and JUPYTERHUB_API_URL releases the lease of a student
the hub runs no server for, keeps those of running and still-pending servers, and reports
the GPU server it has no lease for.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quota.reconcile import HeldLease, HubListing, HubServer, plan
from tests.hub_client import log_in, wait_for
from tests.quota_process import QuotaProcess

NOW = datetime(2026, 9, 1, 8, 0, tzinfo=timezone.utc)
GRACE = timedelta(minutes=2)
GPU = {"gpu-slice", "gpu-whole"}


def lease(lease_id: str, user: str, gpu: bool = True, age: timedelta = timedelta(hours=1)) -> HeldLease:
    return HeldLease(lease_id, user, gpu, NOW - age)


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
    assert decided.release == ()


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
            kept_running, kept_pending = ask("u01-s1", "cpu"), ask("c01-s2", "cpu")
            orphan = ask("c01-ghost", "cpu")  # a student the hub runs nothing for
            assert quota.get(f"/api/leases/{orphan['id']}").json()["state"] == "granted"  # within the grace

            released = wait_for(lambda: quota.get(f"/api/leases/{orphan['id']}").json()["state"] == "released",
                                20, "the orphan lease to be reconciled")
            assert released
            [record] = quota.get("/api/usage").json()
            assert (record["lease_id"], record["end_reason"]) == (orphan["id"], "reconciled")
            time.sleep(4)  # a few more passes, all past the grace of the leases that have servers
            for kept in (kept_running, kept_pending):
                assert quota.get(f"/api/leases/{kept['id']}").json()["state"] == "granted"

            exposition = quota.get("/metrics").text
            assert metric(exposition, "gpu_commons_leases_reconciled_total") == 1
            assert metric(exposition, "gpu_commons_gpu_servers_unleased") == 1  # c01-s1's GPU server
            assert metric(exposition, "gpu_commons_reconciliations_total") >= 3
            ask("c01-s1", "gpu-slice")
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
