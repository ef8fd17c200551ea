"""A borrowed GPU share taken back for a school below its guaranteed share, as the students
live it: the borrower is warned inside JupyterLab at once (with the reason), their edits
are saved, their server stops at the announced time, the county student's workspace then
starts by itself, and the student within their school's guarantee is never touched.

Real hub, quota service, sandboxed JupyterLab (the embedded backend) and Chromium. The
alliance asks for no minimum runtime and a 24-second warning (the extension saves open
documents 30 s before the end: here at once, when it learns of the reclaim), the workspace asks
the quota service about its lease every 5 s and the spawner checks it every 2 s
(tests/stack.py: QUICK_LEASE_CHECKS), so the whole story takes about a minute.
"""

from __future__ import annotations

import pytest

from tests.hub_client import log_in as api_log_in
from tests.hub_client import wait_for
from tests.lab_edits import assert_edit_kept, type_unsaved_edit
from tests.stack import QUICK_LEASE_CHECKS, running_stack
from tests.browser import LAB_READY, choose_profile, log_in

# one GPU in two slices; equal weights: each school is guaranteed one slice
ALLIANCE = """
name: Reclaim test alliance
tiers: {county: {weight: 1}, urban: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 2, simulated: true}
profiles:
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30}
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
fairshare: {min_runtime_minutes: 0, warning_minutes: 0.4}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
  - {id: u01, tier: urban, students: [u01-s1, u01-s2]}
"""


@pytest.fixture(scope="module")
def reclaim_stack(tmp_path_factory):
    spawner = {**QUICK_LEASE_CHECKS, "lease_refresh_seconds": 5, "lease_warning_minutes": [0.75, 0.4]}
    with running_stack(tmp_path_factory.mktemp("reclaim"), ALLIANCE, {"QuotaSpawnerMixin": spawner}) as stack:
        yield stack


def leases_of(stack, user):
    with stack.quota() as quota:
        return quota.get("/api/leases", params={"user": user}).json()


@pytest.mark.slow
@pytest.mark.browser
def test_a_borrowed_share_is_reclaimed_with_a_warning_in_jupyterlab_and_no_work_lost(reclaim_stack, browser):
    stack = reclaim_stack
    within = api_log_in(stack, "u01-s1")
    assert within.start("gpu-slice").get("ready")  # u01's guaranteed slice

    context = browser.new_context(locale="zh-CN")  # the student reads Chinese (tests/test_i18n_browser.py: both)
    try:
        page = log_in(context, stack, "u01-s2")  # the second urban slice is borrowed
        choose_profile(page, stack, "gpu-slice")
        page.wait_for_selector(LAB_READY, timeout=120_000)
        borrower = api_log_in(stack, "u01-s2")
        type_unsaved_edit(page, stack, borrower)

        # The county student asks: the pool is full, c01 holds less than its guarantee.
        county = api_log_in(stack, "c01-s1")
        asked = county.hub.post("/users/c01-s1/server", json={"user_options": {"profile": "gpu-slice"}})
        assert asked.status_code in (201, 202), asked.text
        [borrowed] = [lease for lease in leases_of(stack, "u01-s2") if lease["state"] == "granted"]
        wait_for(lambda: [x for x in leases_of(stack, "u01-s2") if x["reclaim_at"]], 30, "the reclaim warning")

        # Inside JupyterLab, at once, in the student's language, with the reason.
        toast = page.locator(".Toastify__toast", has_text="让给保障份额不足的学校")
        toast.first.wait_for(timeout=45_000)
        assert "请现在保存文件" in toast.first.inner_text()

        # The borrower's server stops at the announced time; the county workspace starts by itself.
        wait_for(lambda: borrower.server() is None, 120, "the borrowed workspace to stop")
        [ended] = [lease for lease in leases_of(stack, "u01-s2") if lease["id"] == borrowed["id"]]
        assert ended["state"] == "expired"
        with stack.quota() as quota:
            usage = quota.get("/api/usage", params={"user": "u01-s2"}).json()
        assert [record["end_reason"] for record in usage] == ["reclaimed"]
        wait_for(lambda: (county.server() or {}).get("ready"), 120, "the county student's workspace")
        [granted] = [lease for lease in leases_of(stack, "c01-s1") if lease["state"] == "granted"]
        assert granted["device"] == borrowed["device"]
        assert (within.server() or {}).get("ready"), "the session within its school's guarantee must keep running"
    finally:
        context.close()

    # The edit made before the reclaim was saved for the student.
    assert_edit_kept(borrower)
    for student in (borrower, county, within):
        student.stop()
