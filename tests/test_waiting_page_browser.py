"""The waiting page in real Chromium, in Chinese and in English (issue 13, point 3): one line
that updates in place with the place in the queue; when a county school below its guaranteed
share asks after the student, the line says the place got worse and why; when the operator
drains the pool for maintenance, the waiting page and the profile form say so with the note.
Real hub, proxy and quota service (tests/stack.py); the student never gets a GPU here.

The pool has two slices: a student of the urban school (above its guaranteed half slice) and
one of the county school hold them; the urban student who waits is number 1 until a second
county student asks. Screenshots go to ``$GPU_COMMONS_SCREENSHOTS`` (default: the test's
temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import log_in
from tests.hub_client import wait_for
from tests.stack import running_stack

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ALLIANCE = """
name: Waiting page alliance
language: zh-CN
tiers: {county: {weight: 3}, urban: {weight: 1}}
pools:
  - {id: test-pool, name: Test pool, gpus: 2, sliced_gpus: 2, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30}
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2, c01-s3, c01-s4]}
  - {id: u01, tier: urban, students: [u01-s1, u01-s2, u01-s3, u01-s4, u01-s5]}
operators: [it-ops]
"""
HUB_CONFIG = {"QuotaSpawnerMixin": {"queue_poll_interval": 1}}
NOTE = "New drivers, back at 14:00"

WORDS = {
    "zh-CN": {"first": "你在队列中排第 1 位", "second": "你在队列中排第 2 位", "why": "县域学校", "closed": "维护",
              "form": "维护中，暂停使用"},
    "en": {"first": "You are number 1 in the queue", "second": "You are number 2 in the queue",
           "why": "A county school below its guaranteed share asked and goes first.",
           "closed": "closed for maintenance", "form": "closed for maintenance"},
}
# Per language: the urban student who waits, the holders, the county student who asks later,
# the student who opens the form while the pool drains.
CAST = {"zh-CN": ("u01-s1", "u01-s2", "c01-s1", "c01-s2", "u01-s5"),
        "en": ("u01-s3", "u01-s4", "c01-s3", "c01-s4", "u01-s5")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("waiting"), ALLIANCE, HUB_CONFIG) as stack:
        yield stack


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("GPU_COMMONS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def ask(stack, user: str, school: str) -> dict:
    with stack.quota() as quota:
        return quota.post("/api/leases", json={"user": user, "school": school, "profile": "gpu-slice"}).json()


def leases_of(stack, user: str) -> list[dict]:
    with stack.quota() as quota:
        return quota.get("/api/leases", params={"user": user}).json()


def set_pool(browser, stack, state: str, note: str) -> None:
    """The operator opens or drains the pool on the quota service's operators' page."""
    context = browser.new_context(locale="en")
    try:
        page = log_in(context, stack, "it-ops")
        page.goto(f"{stack.url}/services/quota/pages/operator")
        form = page.locator("form:has(input[name=id][value=test-pool])")
        form.locator("select[name=state]").select_option(state)
        form.locator("input[name=note]").fill(note)
        form.locator("button").click()
        page.wait_for_url("**/pages/operator?saved=test-pool")
    finally:
        context.close()


def end_all(stack) -> None:
    with stack.quota() as quota:
        for lease in quota.get("/api/leases").json():
            if lease["state"] in ("granted", "queued"):
                quota.delete(f"/api/leases/{lease['id']}")


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_the_waiting_page_has_one_line_that_says_the_place_why_it_got_worse_and_a_drain(stack, browser, locale, shots):
    words = WORDS[locale]
    waiting, urban_holder, county_later, county_holder, reader = CAST[locale]
    end_all(stack)
    assert ask(stack, urban_holder, "u01")["state"] == "granted"
    assert ask(stack, county_holder, "c01")["state"] == "granted"
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    try:
        page = log_in(context, stack, waiting, next_url="/hub/spawn")
        page.check("#profile-gpu-slice")
        page.click("button[type=submit]")
        line = page.locator("#progress-message")
        page.wait_for_selector(f"#progress-message:has-text('{words['first']}')", timeout=60_000)
        page.wait_for_timeout(4000)  # a few of the spawner's 1 s polls: the same words, no new line
        log = page.locator("#progress-log .progress-log-event")
        logged = log.evaluate_all("events => events.map(e => e.textContent)")  # the log is collapsed: not rendered
        assert len([t for t in logged if words["first"] in t]) == 1, logged
        assert page.locator("#progress-details").get_attribute("open") is None  # the log stays collapsed
        page.screenshot(path=shots / f"waiting-{locale}-1-first.png")
        # JupyterHub's error dialog (written by its page.html outside any block) in the page's language
        title, button = (page.locator(f"#error-dialog {part}").text_content().strip()
                         for part in (".modal-title", ".modal-footer button"))
        assert (title, button) == (("出错了", "好的") if locale == "zh-CN" else ("Error", "OK"))

        later = ask(stack, county_later, "c01")  # below its guaranteed share: goes first
        assert later["state"] == "queued", later
        page.wait_for_selector(f"#progress-message:has-text('{words['second']}')", timeout=30_000)
        assert words["why"] in line.inner_text(), line.inner_text()
        assert "MIG" not in line.inner_text() and "test-pool/" not in line.inner_text()
        page.screenshot(path=shots / f"waiting-{locale}-2-worse.png")

        set_pool(browser, stack, "draining", NOTE)
        page.wait_for_selector(f"#progress-message:has-text('{NOTE}')", timeout=60_000)
        text = line.inner_text()
        assert words["closed"] in text and "?" not in text, text
        page.screenshot(path=shots / f"waiting-{locale}-3-drain.png")

        form = log_in(context.browser.new_context(locale=locale), stack, reader, next_url="/hub/spawn")
        availability = form.locator("label[for=profile-gpu-slice] .gc-availability").inner_text()
        assert words["form"] in availability and NOTE in availability, availability
        form.screenshot(path=shots / f"waiting-{locale}-4-form-drain.png")
        form.context.close()

        page.click("#stop-server-btn")  # JupyterHub's stop button, with the catalogue's words
        assert page.locator("#stop-server-btn").inner_text() == ("正在停止…" if locale == "zh-CN" else "Stopping…")
        wait_for(lambda: not [lease for lease in leases_of(stack, waiting) if lease["state"] == "queued"], 60,
                 "the stop to give the place back")
    finally:
        context.close()
        end_all(stack)
        with stack.quota() as quota:
            drained = quota.get("/api/pools").json()[0]["state"] == "draining"
        if drained:
            set_pool(browser, stack, "open", "")


def test_jupyterhubs_home_page_script_speaks_the_students_language(stack, browser):
    from tests.hub_client import log_in as api_log_in

    student = api_log_in(stack, "u01-s5", "zh-CN")
    assert student.start("cpu").get("ready")
    context = browser.new_context(locale="zh-CN")
    try:
        page = log_in(context, stack, "u01-s5", next_url="/hub/home")
        # home.js binds #stop once RequireJS has loaded it, which can come after the page's load event
        # on a busy machine: a click before that does nothing
        page.wait_for_function("() => { const $ = window.jQuery, stop = document.getElementById('stop');"
                               " return $ && stop && ($._data(stop, 'events') || {}).click; }", timeout=30_000)
        page.click("#stop")  # home.js writes "Start My Server" and its title in English
        start = page.locator("#start")
        wait_for(lambda: start.inner_text().strip() == "启动我的工作区", 60, "the start button's words in Chinese")
        wait_for(lambda: start.get_attribute("title") == "启动你的工作区", 10, "the start button's title in Chinese")
        assert "Start" not in page.locator("body").inner_text()
    finally:
        context.close()
        if student.server() is not None:
            student.stop()
