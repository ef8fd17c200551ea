"""The quota pages in real Chromium through the real hub, proxy and quota service, in zh-CN and
en: a teacher books GPUs for a lesson (check first, then book) and staff change a county
school's share and find it in the audit log. Screenshots go to $PAGES_SCREENSHOTS (default: the
test's temporary folder) to look at; each page's bytes over the wire are counted (2 Mbit/s)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser import log_in
from tests.stack import started_stack

pytestmark = pytest.mark.browser

ALLIANCE = """
name: Pages test alliance
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: test-pool, name: Test pool, gpus: 2, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 30}
schools:
  - id: c01
    name: County School 1
    tier: county
    students: [c01-s1, c01-s2]
    teachers: [c01-teacher]
    classes: [{id: ai-club, name: AI club, teachers: [c01-teacher], students: [c01-s1, c01-s2]}]
  - {id: u01, tier: urban, students: [u01-s1]}
staff: [staff-admin]
operators: [it-ops]
"""
WORDS = {
    "zh-CN": {"booked": "上课铃响时", "fits": "每节课都有足够的 GPU", "saved": "已保存 c01 的设置", "audit": "策略修改审计日志"},
    "en": {"booked": "will be ready at the bell", "fits": "Every lesson fits", "saved": "Saved the settings of c01",
           "audit": "Audit log of policy changes"},
}


@pytest.fixture(scope="module")
def pages_stack(tmp_path_factory):
    alliance = tmp_path_factory.mktemp("alliance") / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    with started_stack(tmp_path_factory.mktemp("data"), alliance, tail=200) as platform:
        yield platform


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("PAGES_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wire_bytes(context, page):
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    counted = {"bytes": 0, "hosts": set()}
    cdp.on("Network.loadingFinished", lambda event: counted.__setitem__("bytes", counted["bytes"] + event["encodedDataLength"]))
    cdp.on("Network.requestWillBeSent", lambda event: counted["hosts"].add(urlsplit(event["request"]["url"]).netloc)
           if urlsplit(event["request"]["url"]).scheme in ("http", "https") else None)  # data: URLs load nothing
    return counted


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_a_teacher_books_gpus_for_a_lesson(pages_stack, browser, shots, locale):
    context = browser.new_context(locale=locale)
    try:
        page = log_in(context, pages_stack, "c01-teacher")
        wire = _wire_bytes(context, page)
        page.goto(f"{pages_stack.url}/services/quota/pages/teacher")
        assert page.locator("html").get_attribute("lang") == locale
        assert wire["hosts"] == {urlsplit(pages_stack.url).netloc}, wire  # nothing from another host
        assert wire["bytes"] < 30_000, wire  # the page and its style sheet: about 0.1 s at 2 Mbit/s
        day = (datetime.now(timezone.utc) + timedelta(days=2 if locale == "en" else 3)).date().isoformat()
        page.fill("#date", day)
        page.fill("#start", "10:00")
        page.fill("#end", "11:30")
        page.fill("#units", "1")
        page.fill("#note", "CNN lesson")
        page.click("button[value=check]")
        assert WORDS[locale]["fits"] in page.content(), page.content()
        page.screenshot(path=str(shots / f"teacher-check-{locale}.png"), full_page=True)
        page.click("button[value=book]")
        page.wait_for_url("**/pages/teacher?*booked=1")
        assert WORDS[locale]["booked"] in page.locator(".notice").inner_text()
        assert "CNN lesson" in page.locator("main").inner_text()
        page.screenshot(path=str(shots / f"teacher-booked-{locale}.png"), full_page=True)
        with pages_stack.quota() as quota:
            booked = [r for r in quota.get("/api/reservations").json() if r["starts_at"].startswith(day)]
        assert [(r["class_id"], r["units"], r["starts_at"][11:16]) for r in booked] == [("ai-club", 1, "02:00")]
    finally:
        context.close()


@pytest.mark.parametrize("locale, share", [("zh-CN", "0.6"), ("en", "0.55")])
def test_staff_change_a_county_schools_share(pages_stack, browser, shots, locale, share):
    context = browser.new_context(locale=locale)
    try:
        page = log_in(context, pages_stack, "staff-admin")
        page.goto(f"{pages_stack.url}/services/quota/pages/staff")
        form = page.locator("form:has(input[name=id][value=c01])")
        form.locator("input[name=guaranteed_share]").fill("1.5")  # first a value out of range
        form.locator("button").click()
        assert page.locator(".errors a[href='#guaranteed_share']").count() == 1
        page.screenshot(path=str(shots / f"staff-refused-{locale}.png"), full_page=True)
        form = page.locator("form:has(input[name=id][value=c01])")
        form.locator("input[name=guaranteed_share]").fill(share)
        form.locator("button").click()
        page.wait_for_url("**/pages/staff?saved=c01")
        assert WORDS[locale]["saved"] in page.locator(".notice").inner_text()
        audit = page.locator("#audit + table").inner_text()
        assert "staff-admin" in audit and share in audit
        assert page.locator("svg[role=img]").count() == 2  # the equity view's charts
        page.screenshot(path=str(shots / f"staff-saved-{locale}.png"), full_page=True)
        with pages_stack.quota() as quota:
            assert quota.get("/api/schools/c01").json()["guaranteed_share"] == float(share)
    finally:
        context.close()


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_every_page_has_no_serious_accessibility_violation(pages_stack, browser, locale):
    from tests.axe import serious_violations

    found = {}
    for account, path in (("c01-teacher", "pages/teacher"), ("staff-admin", "pages/staff"), ("it-ops", "pages/operator"),
                          ("c01-s1", "pages/me"), ("c01-s1", "")):
        context = browser.new_context(locale=locale, bypass_csp=True)
        try:
            page = log_in(context, pages_stack, account)
            page.goto(f"{pages_stack.url}/services/quota/{path}")
            found[path or "/"] = serious_violations(page)
        finally:
            context.close()
    assert all(not violations for violations in found.values()), found


def test_the_accessibility_check_finds_a_field_without_a_label(browser):
    from tests.axe import serious_violations

    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content('<!doctype html><html lang="en"><title>x</title><main><form><input name="weight"></form></main></html>')
        assert "label" in {rule for rule, _help, _target in serious_violations(page)}
    finally:
        context.close()


def test_a_booked_class_gets_the_gpus_while_another_schools_student_queues(pages_stack, browser, shots):
    """The booking a teacher made on the page holds the pool for the class: the class's student
    is granted a GPU, a student of another school waits (the hub asks for leases as it does
    when each presses Start)."""
    from zoneinfo import ZoneInfo

    local = datetime.now(ZoneInfo("Asia/Shanghai"))
    start = max(local - timedelta(minutes=5), local.replace(hour=0, minute=0))
    end = min(start + timedelta(minutes=60), local.replace(hour=23, minute=59))
    context = browser.new_context(locale="en")
    try:
        page = log_in(context, pages_stack, "c01-teacher")
        page.goto(f"{pages_stack.url}/services/quota/pages/teacher")
        page.fill("#date", local.date().isoformat())
        page.fill("#start", start.strftime("%H:%M"))
        page.fill("#end", end.strftime("%H:%M"))
        page.fill("#units", "2")
        page.click("button[value=book]")
        page.wait_for_url("**/pages/teacher?*booked=1")
    finally:
        context.close()
    with pages_stack.quota() as quota:
        ask = lambda user, school: quota.post("/api/leases", json={"user": user, "school": school, "profile": "gpu-whole"}).json()
        mine, other = ask("c01-s1", "c01"), ask("u01-s1", "u01")
        try:
            assert (mine["state"], other["state"]) == ("granted", "queued"), (mine, other)
        finally:
            for lease in (mine, other):
                quota.delete(f"/api/leases/{lease['id']}")
            for booking in quota.get("/api/reservations").json():
                quota.delete(f"/api/reservations/{booking['id']}")


@pytest.mark.parametrize("locale, notice", [("zh-CN", "资源池 Test pool 正在维护"), ("en", "Pool Test pool is under maintenance")])
def test_an_operator_drains_a_pool_and_a_student_sees_the_notice(pages_stack, browser, shots, locale, notice):
    context = browser.new_context(locale=locale)
    try:
        page = log_in(context, pages_stack, "it-ops")
        page.goto(f"{pages_stack.url}/services/quota/pages/operator")
        form = page.locator("form:has(input[name=id][value=test-pool])")
        form.locator("select[name=state]").select_option("draining")
        form.locator("input[name=note]").fill("back at 14:00 / 14:00 恢复")
        form.locator("button").click()
        page.wait_for_url("**/pages/operator?saved=test-pool")
        page.screenshot(path=str(shots / f"operator-drained-{locale}.png"), full_page=True)
        student = log_in(browser.new_context(locale=locale), pages_stack, "c01-s1")
        student.goto(f"{pages_stack.url}/services/quota/pages/me")
        assert notice in student.locator(".notice").inner_text()
        assert "back at 14:00 / 14:00 恢复" in student.locator(".notice").inner_text()
        student.screenshot(path=str(shots / f"student-notice-{locale}.png"), full_page=True)
        student.goto(f"{pages_stack.url}/hub/spawn")  # the hub's spawn page says it too, above the profiles
        drain = student.locator("#spawn_form .gc-drain")
        assert notice in drain.inner_text() and "back at 14:00 / 14:00 恢复" in drain.inner_text()
        student.screenshot(path=str(shots / f"spawn-notice-{locale}.png"), full_page=True)
        student.context.close()
        page.goto(f"{pages_stack.url}/services/quota/pages/operator")  # open it again
        form = page.locator("form:has(input[name=id][value=test-pool])")
        form.locator("select[name=state]").select_option("open")
        form.locator("input[name=note]").fill("")
        form.locator("button").click()
        page.wait_for_url("**/pages/operator?saved=test-pool")
        with pages_stack.quota() as quota:
            assert quota.get("/api/pools").json()[0]["state"] == "open"
    finally:
        context.close()
