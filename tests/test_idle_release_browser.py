"""An idle GPU released for a waiting student, as the idle student then reads it (issue 13,
point 3 with the allocator's idle release, quota/fairshare/idle.py): the lease is warned with the
idle reason (what the workspace extension turns into JupyterLab's idle sentence, early_end
"idle"), the workspace stops, and the hub's home page says why in the student's language.

Real hub, quota service, sandboxed JupyterLab and Chromium. The county tier releases a GPU unused
for 15 s while someone waits, with a 15 s warning, and the spawner checks its lease every 2 s
(tests/stack.py: QUICK_LEASE_CHECKS); nobody uses the workspace (it was started through the
hub's API), so the story takes under a minute.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_commons_workspace import early_end_kind
from tests.browser import log_in
from tests.hub_client import log_in as api_log_in
from tests.hub_client import wait_for
from tests.stack import QUICK_LEASE_CHECKS, running_stack

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ALLIANCE = """
name: Idle release test alliance
language: zh-CN
tiers: {county: {weight: 1, idle_release_minutes: 0.25}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30}
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
fairshare: {min_runtime_minutes: 0, warning_minutes: 0.25}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
  - {id: c02, tier: county, students: [c02-s1]}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("idle"), ALLIANCE, {"QuotaSpawnerMixin": QUICK_LEASE_CHECKS}) as stack:
        yield stack


def leases_of(stack, user):
    with stack.quota() as quota:
        return quota.get("/api/leases", params={"user": user}).json()


def lease(stack, lease_id):
    """One lease as the spawner and the workspace extension read it (with its reason_message)."""
    with stack.quota() as quota:
        return quota.get(f"/api/leases/{lease_id}").json()


def test_an_idle_gpu_is_released_and_the_student_reads_why(stack, browser, tmp_path):
    shots = Path(os.environ.get("GPU_COMMONS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    idle = api_log_in(stack, "c01-s1", "zh-CN")
    assert idle.start("gpu-slice").get("ready")
    with stack.quota() as quota:
        waiting = quota.post("/api/leases", json={"user": "c02-s1", "school": "c02", "profile": "gpu-slice"}).json()
    assert waiting["state"] == "queued", waiting

    warned = wait_for(lambda: [x for x in leases_of(stack, "c01-s1") if x["state"] == "granted" and x["reclaim_at"]],
                      150, "the idle warning")
    answer = lease(stack, warned[0]["id"])
    assert answer["reclaim_at"] and early_end_kind(answer["reason_message"]) == "idle", answer
    wait_for(lambda: idle.server() is None, 150, "the idle workspace to stop")
    ended = lease(stack, warned[0]["id"])
    assert ended["state"] == "expired" and early_end_kind(ended["reason_message"]) == "idle", ended

    context = browser.new_context(locale="zh-CN")
    try:
        page = log_in(context, stack, "c01-s1", next_url="/hub/home")
        notice = page.locator("#gc-stop-reason")
        wait_for(notice.is_visible, 60, "the home page to say why the workspace stopped")
        assert "它的 GPU 有一段时间没有被使用" in notice.inner_text(), notice.inner_text()
        page.screenshot(path=shots / "idle-release-zh-CN-home.png")
        page.goto(f"{stack.url}/hub/home?lang=en")
        assert "Its GPU was not used for a while and others were waiting for it" in page.locator("#gc-stop-reason").inner_text()
    finally:
        context.close()
        with stack.quota() as quota:
            for other in leases_of(stack, "c02-s1"):
                if other["state"] in ("granted", "queued"):
                    quota.delete(f"/api/leases/{other['id']}")
