"""The operators' workspaces page on the real stack (hub, proxy, quota service) in Chromium, once
per language: a student's CPU workspace runs; the operator follows the hub header's
*Workspaces* link (JupyterHub's own admin page, English only, stays reachable by its address),
filters by the student's school, sees the workspace and stops it; the hub then has no server for
the student. axe-core finds no serious or critical violation on the page. Screenshots go to
$PAGES_SCREENSHOTS (default: the test's temporary folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.axe import serious_violations
from tests.browser import log_in
from tests.hub_client import log_in as api_log_in
from tests.hub_client import wait_for
from tests.stack import started_stack

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALLIANCE = """
name: Workspaces test alliance
language: zh-CN
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: test-pool, name: Test pool, gpus: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - {id: c01, name: 青山中学, tier: county, students: [c01-s1, c01-s2], teachers: [c01-teacher]}
  - {id: u01, tier: urban, students: [u01-s1]}
staff: [staff-admin]
operators: [it-ops]
"""
WORDS = {"zh-CN": {"link": "工作区", "stop": "停止工作区", "stopping": "正在停止", "all": "所有学校"},
         "en": {"link": "Workspaces", "stop": "Stop workspace", "stopping": "is stopping", "all": "All schools"}}
STUDENT = {"zh-CN": "c01-s1", "en": "c01-s2"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    alliance = tmp_path_factory.mktemp("alliance") / "alliance.yaml"
    alliance.write_text(ALLIANCE, encoding="utf-8")
    with started_stack(tmp_path_factory.mktemp("data"), alliance, tail=200) as platform:
        yield platform


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_an_operator_stops_a_students_workspace_from_the_workspaces_page(stack, browser, tmp_path, locale):
    shots = Path(os.environ.get("PAGES_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    words, account = WORDS[locale], STUDENT[locale]
    student = api_log_in(stack, account)
    started = student.start("cpu")
    assert started.get("ready"), started
    other = api_log_in(stack, "u01-s1")
    if other.server() is None:
        assert other.start("cpu").get("ready")

    context = browser.new_context(locale=locale, bypass_csp=True)  # axe-core is injected as a script
    try:
        page = log_in(context, stack, "it-ops")
        page.goto(f"{stack.url}/hub/home")
        link = page.locator("#gc-workspaces")
        assert link.inner_text().strip() == words["link"]
        assert page.locator("a[href$='/hub/admin']").count() == 0
        link.click()
        page.wait_for_selector("#school-filter")
        assert page.locator("html").get_attribute("lang") == locale
        assert words["all"] in page.inner_text("#school-filter")
        page.select_option("#school-filter", "c01")
        page.click("form[method=get] button")
        page.wait_for_url("**school=c01**")
        row = page.locator(f"tr[data-user='{account}']")
        assert row.count() == 1 and "c01" in row.inner_text()
        assert page.locator("tr[data-user='u01-s1']").count() == 0  # another school's, filtered out
        assert serious_violations(page) == []
        page.screenshot(path=str(shots / f"workspaces-{locale}.png"), full_page=True)
        row.get_by_role("button").click()
        page.wait_for_selector(".notice")
        assert words["stopping"] in page.inner_text(".notice") and account in page.inner_text(".notice")
        wait_for(lambda: student.server() is None, 90, f"{account}'s server to stop")
        assert other.server() is not None  # only the one asked for
        page.screenshot(path=str(shots / f"workspaces-stopped-{locale}.png"), full_page=True)
        assert page.goto(f"{stack.url}/hub/admin").status == 200  # JupyterHub's own page, by its address
    finally:
        context.close()
