"""A county student logs in through a real browser and gets a GPU-leased JupyterLab workspace.

Real hub, real configurable-http-proxy, real quota service, real sandboxed JupyterLab
processes and real headless Chromium. The test alliance has exactly one GPU slice, so a
second student queues until the first one stops.
"""

from __future__ import annotations

import re

import pytest

from tests.browser import LAB_READY, choose_profile, log_in
from tests.hub_client import wait_for
from tests.quota_calls import leases_of

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def run_cell(page, code: str) -> str:
    """Open a new Python notebook from the launcher, run one cell, return its output text."""
    page.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    editor.wait_for(timeout=60_000)
    # Keys typed before the kernel is up can be lost: wait for the status bar to say Idle.
    page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=90_000)
    editor.click()
    page.keyboard.type(code)
    page.locator(".jp-Notebook .jp-Cell .cm-content", has_text=code[:20]).first.wait_for(timeout=10_000)
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output").first
    output.wait_for(timeout=90_000)
    return output.inner_text().strip()



def test_county_student_gets_a_gpu_slice_and_a_second_student_queues(stack, browser):
    first = browser.new_context()
    second = browser.new_context()
    try:
        # 1. The county student logs in, picks the GPU slice and reaches JupyterLab.
        page = log_in(first, stack, "c01-s1")
        assert "Simulated GPUs" in page.content()  # the UI says plainly that the inventory is simulated
        choose_profile(page, stack, "gpu-slice")
        page.wait_for_selector(LAB_READY, timeout=120_000)

        granted = [lease for lease in leases_of(stack, "c01-s1") if lease["state"] == "granted"]
        assert len(granted) == 1, leases_of(stack, "c01-s1")
        lease = granted[0]
        assert lease["school"] == "c01" and lease["tier"] == "county" and lease["profile"] == "gpu-slice"
        assert lease["device"] == "MIG-sim-test-pool-gpu0-slice0"

        # 2. The notebook sees exactly the device the lease assigned.
        printed = run_cell(page, "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.getuid())")
        device, uid = printed.split()
        assert device == lease["device"]
        assert uid != "0"  # the workspace does not run as root

        # 3. The lease shows in the quota service's metrics.
        metrics = stack.quota().get("/metrics").text
        assert re.search(r'gpu_commons_gpu_units_allocated\{[^}]*school="c01"[^}]*\} 1\.0', metrics), metrics

        # 4. A second student asking while the only slice is taken sees a queue position, not an error.
        waiting = log_in(second, stack, "c01-s2")
        choose_profile(waiting, stack, "gpu-slice")
        waiting.wait_for_selector("text=number 1 in the queue", timeout=60_000)
        assert [lease["state"] for lease in leases_of(stack, "c01-s2")] == ["queued"]

        # 5. The first student stops the server: the lease is released and its usage recorded.
        page.goto(f"{stack.url}/hub/home")
        page.click("#stop")
        page.wait_for_selector("#start", timeout=60_000)
        released = wait_for(
            lambda: [item for item in leases_of(stack, "c01-s1") if item["id"] == lease["id"] and item["state"] == "released"],
            30,
            "the first lease to be released",
        )
        assert released
        with stack.quota() as quota:
            usage = quota.get("/api/usage", params={"user": "c01-s1"}).json()
        assert [record["lease_id"] for record in usage] == [lease["id"]]
        assert usage[0]["gpu_seconds"] > 0 and usage[0]["end_reason"] == "released"

        # 6. ... and the queued student gets the workspace by itself.
        waiting.wait_for_selector(LAB_READY, timeout=120_000)
        second_lease = [item for item in leases_of(stack, "c01-s2") if item["state"] == "granted"]
        assert second_lease and second_lease[0]["device"] == lease["device"]
    finally:
        first.close()
        second.close()


def test_hub_metrics_need_a_read_metrics_token(stack):
    with stack.hub_api(stack.prometheus_token) as hub:
        response = hub.get(f"{stack.url}/hub/metrics")
    assert response.status_code == 200 and "jupyterhub_" in response.text
    anonymous = stack.hub_api("not-a-token").get(f"{stack.url}/hub/metrics")
    assert anonymous.status_code in (401, 403)
