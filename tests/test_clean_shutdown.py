"""Stopping the platform releases the GPU leases of running workspaces (issue 15, point 5).

The real stack: the hub stopped with SIGINT (Ctrl-C of ``gpu-commons demo``) or SIGTERM
(systemd, ``docker stop``) while a student's GPU workspace runs. The workspace's lease
must be released by the workspace's own stop, while the quota service still answers, not
left to the restart's reconciliation or to its expiry; after the restart nothing is held.
"""

from __future__ import annotations

import signal

import pytest

from tests.hub_client import log_in
from tests.stack import make_stack, PROXY

pytestmark = pytest.mark.slow

ALLIANCE = """
name: Clean shutdown test alliance
tiers: {county: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, simulated: true}
profiles:
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
"""


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_platform_releases_the_leases_of_running_workspaces(tmp_path, stop_signal):
    assert PROXY.exists(), "run `make install-test` (configurable-http-proxy)"
    alliance = tmp_path / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    stack = make_stack(tmp_path / "data", alliance)
    try:
        stack.start()
        student = log_in(stack, "c01-s1")
        started = student.start("gpu-whole", timeout=120)
        assert started.get("ready"), f"{started}\n{stack.log_tail()}"
        with stack.quota() as quota:
            granted = quota.get("/api/leases", params={"state": "granted"}).json()
        assert [(lease["user"], lease["profile"]) for lease in granted] == [("c01-s1", "gpu-whole")]

        stack.process.send_signal(stop_signal)
        assert stack.process.wait(timeout=60) is not None
        log = stack.log_tail(400)
        assert "could not release lease" not in log, log
        assert "Stopping 1 workspaces before the services" in log, log

        stack.start()  # the same data directory: what the shutdown stored is what the restart finds
        with stack.quota() as quota:
            assert quota.get("/api/leases", params={"state": "granted"}).json() == []
            lease = quota.get(f"/api/leases/{granted[0]['id']}").json()
            usage = quota.get("/api/usage", params={"user": "c01-s1"}).json()
        assert lease["state"] == "released", lease
        # released by the workspace's stop, not by the restart's reconciliation or its expiry
        assert [record["end_reason"] for record in usage] == ["released"], usage
    finally:
        stack.stop()
