"""A lease that ends stops its workspace: real hub, proxy, quota service and JupyterLab,
with a profile whose lease lasts 20 seconds, and a lease the quota service ends early."""

from __future__ import annotations

import pytest

from tests.hub_client import another_school_waits
from tests.browser import LAB_READY, choose_profile, log_in
from tests.hub_client import wait_for
from tests.quota_calls import granted_lease, leases_of
from tests.quota_calls import servers_of as server_of
from tests.stack import QUICK_LEASE_CHECKS, running_stack

pytestmark = pytest.mark.browser

SHORT_LEASES = """
tiers: {county: {weight: 2}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: gpu-slice, display_name: One GPU slice for 20 seconds, gpu: slice, max_minutes: 0.334}
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
  - {id: c02, tier: county, students: [c02-s1]}
"""



@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Overrides the shared stack: this module's leases last 20 seconds, and the spawner checks
    its lease every 2 s (tests/stack.py: QUICK_LEASE_CHECKS), so a stop is seen within seconds."""
    with running_stack(tmp_path_factory.mktemp("lease-expiry"), SHORT_LEASES,
                       {"QuotaSpawnerMixin": QUICK_LEASE_CHECKS}) as stack:
        yield stack


def test_the_workspace_stops_when_its_lease_ends(stack, browser):
    context = browser.new_context()
    try:
        page = log_in(context, stack, "c01-s1")
        choose_profile(page, stack, "gpu-slice")
        # Another school waits from the grant on, before the spawner's first poll could renew the lease.
        granted_lease(stack, "c01-s1")
        another_school_waits(stack)
        page.wait_for_selector(LAB_READY, timeout=120_000)
        [lease] = leases_of(stack, "c01-s1")
        assert lease["state"] == "granted"
        # The hub polls the spawner every 2 s here (10 s by default); the service advances at the lease's end.
        wait_for(lambda: server_of(stack, "c01-s1") == {}, 60, "the workspace to stop at the end of its lease")
        ended = wait_for(
            lambda: [item for item in leases_of(stack, "c01-s1") if item["state"] in ("expired", "released")],
            30, "the lease to end",
        )
        assert ended[0]["id"] == lease["id"]
        with stack.quota() as quota:
            [record] = quota.get("/api/usage", params={"user": "c01-s1"}).json()
        assert record["lease_id"] == lease["id"]
        assert 15 <= record["held_seconds"] <= 40
    finally:
        context.close()


def test_a_workspace_whose_lease_the_service_ended_is_stopped(stack, browser):
    context = browser.new_context()
    try:
        page = log_in(context, stack, "c01-s1")
        choose_profile(page, stack, "cpu")
        page.wait_for_selector(LAB_READY, timeout=120_000)
        [lease] = [item for item in leases_of(stack, "c01-s1") if item["state"] == "granted"]
        with stack.quota() as quota:  # as an operator or the reconciler would
            assert quota.delete(f"/api/leases/{lease['id']}").json()["state"] == "released"
        # The spawner asks the service about its lease every lease_check_interval (2 s here, 30 s by default).
        wait_for(lambda: server_of(stack, "c01-s1") == {}, 75, "the workspace without a lease to stop")
    finally:
        context.close()
