"""A student's whole visit in their browser's language, once in Chinese and once in English:
login → profile form → queue → JupyterLab → a stop with its reason, and the language switch
remembered. Real hub, proxy, quota service, sandboxed JupyterLab and headless Chromium whose
Accept-Language is the student's (``browser.new_context(locale=...)``).

The GPU slice is held by a student of another school when ours asks, so ours queues; once
ours is granted, that student asks again, so our 45-second lease is not renewed: the warnings
come, the workspace stops at the end (the spawner checks every 2 s here: tests/stack.py,
QUICK_LEASE_CHECKS), and the hub's home page says why and what to do next.
Screenshots of each step are written to ``$GPU_COMMONS_SCREENSHOTS`` (default: the test's
temporary folder).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser import LAB_READY, log_in
from tests.hub_client import another_school_waits, wait_for
from tests.stack import QUICK_LEASE_CHECKS, running_stack

pytestmark = [pytest.mark.slow, pytest.mark.browser]

STUDENT = "c01-s1"
# The student of another school who holds the slice first, then waits for it: one who has used
# less than ours (a fresh one each run), so our lease is not renewed at its end.
OTHER = {"zh-CN": ("c02-s1", "c02"), "en": ("c03-s1", "c03")}
ALLIANCE = """
name: Language test alliance
language: zh-CN
tiers: {county: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 0.75}
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
  - {id: c02, tier: county, students: [c02-s1]}
  - {id: c03, tier: county, students: [c03-s1]}
"""
HUB_CONFIG = {"QuotaSpawnerMixin": {**QUICK_LEASE_CHECKS, "lease_warning_minutes": [0.6, 0.3],
                                    "lease_refresh_seconds": 5, "queue_poll_interval": 1}}


@dataclass(frozen=True)
class Words:
    """What the student reads at each step, in one language."""

    locale: str
    sign_in: str
    form_heading: str
    availability: str
    queued: str
    lab_menu: str  # JupyterLab's first menu
    warning: str
    stopped: str
    next_step: str
    other_locale: str
    other_sign_out: str


WORDS = {
    "zh-CN": Words("zh-CN", "登录", "选择你的工作区", "GPU 分片都在使用中（共 1 个）：你将进入排队", "你在队列中排第 1 位", "文件",
                   "GPU 时间还剩", "你的工作区已停止。", "已保存的文件都保留在你的个人文件夹中", "en", "Logout"),
    "en": Words("en", "Sign in", "Choose your workspace", "the only GPU slice is in use: you will join the queue", "You are number 1 in the queue",
                "File", "Your GPU time ends in", "Your workspace was stopped.", "Your saved files are kept in your home folder", "zh-CN", "退出登录"),
}


@pytest.fixture(scope="module")
def language_stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("languages"), ALLIANCE, HUB_CONFIG) as stack:
        yield stack


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("GPU_COMMONS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


CHINESE = re.compile(r"[\u4e00-\u9fff]")


def last_lease(stack, user: str) -> dict:
    with stack.quota() as quota:
        return max(quota.get("/api/leases", params={"user": user}).json(), key=lambda lease: lease["requested_at"])


def active_leases(stack, user: str) -> list[dict]:
    with stack.quota() as quota:
        return [lease for lease in quota.get("/api/leases", params={"user": user}).json()
                if lease["state"] in ("granted", "queued")]


def the_other_school_holds_the_slice(stack, other: str, school: str) -> None:
    with stack.quota() as quota:
        for user in [user for user, _school in OTHER.values()]:
            for lease in active_leases(stack, user):
                quota.delete(f"/api/leases/{lease['id']}")
        held = quota.post("/api/leases", json={"user": other, "school": school, "profile": "gpu-slice"}).json()
    assert held["state"] == "granted", held


def the_other_school_lets_go(stack, other: str) -> None:
    with stack.quota() as quota:
        for lease in active_leases(stack, other):
            quota.delete(f"/api/leases/{lease['id']}")


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_a_students_visit_in_their_language(language_stack, browser, locale, shots):
    stack, words, (other_student, other_school) = language_stack, WORDS[locale], OTHER[locale]
    wait_for(lambda: not active_leases(stack, STUDENT), 90, "the previous workspace to be gone")
    the_other_school_holds_the_slice(stack, other_student, other_school)
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/hub/login")
        assert page.locator("html").get_attribute("lang") == locale
        assert page.locator("h1").inner_text() == words.sign_in
        assert page.locator("#login_submit").get_attribute("value") == words.sign_in
        page.screenshot(path=shots / f"{locale}-1-login.png")
        page.close()

        page = log_in(context, stack, STUDENT, next_url="/hub/spawn")
        assert page.locator("h1").inner_text() == words.form_heading
        assert words.availability in page.locator("label[for=profile-gpu-slice]").inner_text()
        page.screenshot(path=shots / f"{locale}-2-profile-form.png")

        page.check("#profile-gpu-slice")
        page.click("button[type=submit]")
        page.wait_for_selector(f"#progress-message:has-text('{words.queued}')", timeout=60_000)
        assert page.locator("html").get_attribute("lang") == locale
        page.screenshot(path=shots / f"{locale}-3-queue.png")

        the_other_school_lets_go(stack, other_student)
        # Once ours is granted (before the spawner's first poll could renew it), the other asks again.
        wait_for(lambda: last_lease(stack, STUDENT)["state"] == "granted", 60, "our lease to be granted")
        another_school_waits(stack, other_student, other_school)  # so the lease is not renewed at its end
        page.wait_for_selector(LAB_READY, state="visible", timeout=120_000)
        menu = page.locator(".lm-MenuBar-itemLabel").first
        wait_for(lambda: menu.inner_text() == words.lab_menu, 30, f"JupyterLab's menu to read {words.lab_menu!r}")
        page.screenshot(path=shots / f"{locale}-4-jupyterlab.png")

        toast = page.locator(".Toastify__toast", has_text=words.warning).first
        toast.wait_for(timeout=70_000)
        assert WORDS[words.other_locale].warning not in toast.inner_text()  # one language, not both glued together
        page.screenshot(path=shots / f"{locale}-5-warning.png")

        wait_for(lambda: not active_leases(stack, STUDENT), 120, "the lease to end and the workspace to stop")
        page.goto(f"{stack.url}/hub/home")
        notice = page.locator("#gc-stop-reason")
        wait_for(notice.is_visible, 60, "the home page to say why the workspace stopped")
        text = notice.inner_text()
        assert words.stopped in text and words.next_step in text, text
        # Why: the quota service's own reason for the end (an ended lease keeps only its English
        # text in the database), shown in the student's language.
        ended = last_lease(stack, STUDENT)
        assert ended["state"] == "expired" and ended["reason"], ended
        why = notice.locator("p").first.inner_text().replace(words.stopped, "").strip()
        if locale == "en":
            assert why == ended["reason"], (why, ended["reason"])
        else:
            assert CHINESE.search(why) and not re.search(r"[A-Za-z]{4,}", why.replace("GPU", "")), why
        page.screenshot(path=shots / f"{locale}-6-stopped.png")

        # The switch: the other language, remembered on the next pages (a cookie), <html lang> too.
        page.click(f"#gc-language-switch a[lang='{words.other_locale}']")
        page.goto(f"{stack.url}/hub/home")
        assert page.locator("html").get_attribute("lang") == words.other_locale
        assert page.locator("#logout").inner_text().strip() == words.other_sign_out
        assert WORDS[words.other_locale].stopped in page.locator("#gc-stop-reason").inner_text()
        page.screenshot(path=shots / f"{locale}-7-switched.png")
    finally:
        context.close()
