"""The end of a lease, as a student lives it: warned inside JupyterLab, edits saved, the
server stopped, and the files there again at the next start.

Real hub, quota service, sandboxed JupyterLab (the embedded backend) and Chromium, with a
one-minute lease and warnings at 45 and 24 seconds instead of 10 and 2 minutes, and the
spawner checking its lease every 2 s (tests/stack.py: QUICK_LEASE_CHECKS); the defaults
themselves are checked on the extension's settings.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gpu_commons_workspace import DEFAULT_WARNINGS, LeaseEnd
from spawner.backends import LocalQuotaSpawner
from tests.hub_client import log_in as api_log_in
from tests.hub_client import wait_for
from tests.lab_edits import assert_edit_kept, type_unsaved_edit
from tests.stack import QUICK_LEASE_CHECKS, running_stack
from tests.hub_client import another_school_waits
from tests.browser import LAB_READY, choose_profile, log_in
from tests.quota_calls import granted_lease

ALLIANCE = """
name: Lease enforcement test alliance
tiers: {county: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 1}
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
  - {id: c02, tier: county, students: [c02-s1]}
"""

WARNING = "Your GPU time ends in"



def test_warnings_default_to_ten_and_two_minutes():
    assert DEFAULT_WARNINGS == (600, 120)
    assert LocalQuotaSpawner().lease_warning_minutes == [10, 2]
    end = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
    lease = LeaseEnd.from_environment({"GPU_COMMONS_LEASE_EXPIRES_AT": end.isoformat(), "GPU_COMMONS_LEASE_ID": "l-1"})
    assert lease.warning_times() == [(end - timedelta(minutes=10), 600), (end - timedelta(minutes=2), 120)]
    assert LeaseEnd.from_environment({"GPU_COMMONS_LEASE_WARNINGS": "24,45"}).warnings_seconds == (45, 24)
    assert LeaseEnd.from_environment({}).warning_times() == []  # no end, no warnings



def test_the_extension_follows_a_lease_that_ends_early():
    end = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
    lease = LeaseEnd.from_environment({
        "GPU_COMMONS_LEASE_EXPIRES_AT": end.isoformat(), "GPU_COMMONS_LEASE_ID": "l-1",
        "GPU_COMMONS_QUOTA_URL": "http://127.0.0.1:8181/", "GPU_COMMONS_LEASE_REFRESH_S": "5",
    })
    assert (lease.quota_url, lease.refresh_seconds) == ("http://127.0.0.1:8181", 5.0)
    assert lease.updated({"state": "granted", "reclaim_at": None}) is lease  # nothing changed
    reclaim = end - timedelta(minutes=20)
    early = lease.updated({"state": "granted", "reclaim_at": reclaim.isoformat(), "reason": "goes back"})
    assert (early.expires_at, early.reason) == (reclaim, "goes back")
    assert early.warning_times()[-1] == (reclaim - timedelta(minutes=2), 120)
    later = end + timedelta(minutes=5)  # a reclaim after the booked end changes nothing
    assert lease.updated({"state": "granted", "reclaim_at": later.isoformat()}) is lease
    over = lease.updated({"state": "expired"})  # ended already: warn and save now
    assert over.expires_at <= datetime.now(timezone.utc)

@pytest.fixture(scope="module")
def short_lease_stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("lease-end"), ALLIANCE,
                       {"QuotaSpawnerMixin": {**QUICK_LEASE_CHECKS, "lease_warning_minutes": [0.75, 0.4]}}) as stack:
        yield stack


@pytest.mark.slow
@pytest.mark.browser
def test_student_is_warned_in_jupyterlab_and_keeps_their_work_when_the_lease_ends(short_lease_stack, browser):
    stack = short_lease_stack
    context = browser.new_context()
    try:
        page = log_in(context, stack, "c01-s1")
        choose_profile(page, stack, "gpu-slice")
        # Another school waits from the grant on, before the spawner's first poll could renew the lease.
        granted_lease(stack, "c01-s1")
        another_school_waits(stack)
        page.wait_for_selector(LAB_READY, timeout=120_000)

        # A file saved earlier, then edited in JupyterLab and not saved by the student.
        student = api_log_in(stack, "c01-s1")
        type_unsaved_edit(page, stack, student)

        # Both warnings show inside JupyterLab, in the student's language (this browser asks for
        # English; tests/test_i18n_browser.py sees them in Chinese).
        toasts = page.locator(".Toastify__toast", has_text=WARNING)
        toasts.first.wait_for(timeout=60_000)
        assert "GPU 时间还剩" not in toasts.first.inner_text()
        wait_for(lambda: toasts.count() >= 2, 60, "the second warning")

        # The hub stops the server when the lease ends; the lease is over.
        wait_for(lambda: student.server() is None, 90, "the server to stop at the lease's end")
        def lease_over():
            with stack.quota() as quota:
                [lease] = quota.get("/api/leases", params={"user": "c01-s1"}).json()
            return lease["state"] in ("expired", "released")

        wait_for(lease_over, 30, "the lease to end")
    finally:
        context.close()

    # The next start finds the file, with the edit saved for the student before the end.
    assert_edit_kept(student)
    student.stop()
