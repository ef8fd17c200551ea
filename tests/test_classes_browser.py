"""Classes and teachers beyond the alliance file, on the real stack (hub, proxy, quota service) in
Chromium, once per language: alliance staff create a class with a new teacher on the classes
page (the teacher's slip is shown once), the teacher signs in at the hub with the slip's
password, chooses their own, is in their school's group with its teacher role, sees the class
on their page and imports a small roster (GBK, as Excel writes it) into it; a student chooses
their own password, the teacher prints them a new one-time password (the chosen one and the old
slip stop working, the new slip leads to choosing again) and removes the other student (a page
asks first; their slip then opens nothing). axe-core finds no serious or critical violation on the
classes page, the teacher's slip, the created class's edit page and its removal confirmation (not
confirmed: the class is kept), the teacher's page with the account-care buttons, the new slip and
the confirmation. Screenshots go to $PAGES_SCREENSHOTS (default: the test's temporary folder)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.axe import serious_violations
from tests.browser import log_in
from tests.hub_client import log_in as api_log_in
from tests.stack import started_stack

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALLIANCE = """
name: Classes test alliance
language: zh-CN
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: test-pool, name: Test pool, gpus: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - id: c01
    name: 青山中学
    tier: county
    students: [c01-s1]
    teachers: [c01-teacher]
    classes: [{id: ai-club, name: 人工智能社, teachers: [c01-teacher], students: [c01-s1]}]
  - {id: u01, tier: urban, students: [u01-s1]}
staff: [staff-admin]
operators: [it-ops]
"""
WORDS = {"zh-CN": {"created": "及其新教师已创建", "slip": "一次性密码", "choose": "设置你的密码", "class": "班级"},
         "en": {"created": "is created with its new teacher", "slip": "One-time password", "choose": "Choose your password",
                "class": "Class"}}


@pytest.fixture(scope="module")
def classes_stack(tmp_path_factory):
    alliance = tmp_path_factory.mktemp("alliance") / "alliance.yaml"
    alliance.write_text(ALLIANCE, encoding="utf-8")
    with started_stack(tmp_path_factory.mktemp("data"), alliance, tail=200) as platform:
        yield platform


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("PAGES_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _slip(page) -> tuple[str, str]:
    slip = page.locator(".slip").first
    return slip.locator("dd code").first.inner_text(), slip.locator("code.password").inner_text()


def _hub_login(stack, account: str, password: str) -> int:
    """The status of a login form posted to the hub (302: logged in, 200: the set-password page)."""
    with httpx.Client(base_url=stack.url, timeout=30) as web:
        web.get("/hub/login")
        return web.post("/hub/login", data={"username": account, "password": password,
                                            "_xsrf": web.cookies.get("_xsrf", "")}).status_code


def _choose_password(browser, stack, locale: str, account: str, one_time: str, own: str) -> None:
    context = browser.new_context(locale=locale)
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/hub/login")
        page.fill("input[name=username]", account)
        page.fill("input[name=password]", one_time)
        page.click("#login_submit")
        page.fill("#new_password_input", own)
        page.fill("#new_password_again_input", own)
        page.click("#set_password_submit")
        page.wait_for_url(re.compile(r".*/hub/(spawn|home).*"), timeout=30_000)
    finally:
        context.close()


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_staff_create_a_class_whose_new_teacher_signs_in_and_imports_a_roster(classes_stack, browser, shots,
                                                                               tmp_path, locale):
    tag = locale.lower().replace("-", "")
    class_id, teacher_id, class_name = f"grade9-{tag}", f"t-{tag}", f"九年级 AI <{tag}>"
    found = {}
    staff_context = browser.new_context(locale=locale, bypass_csp=True)  # axe-core is injected as a script
    try:
        staff = log_in(staff_context, classes_stack, "staff-admin")
        staff.goto(f"{classes_stack.url}/services/quota/")
        staff.click("nav a[href$='/pages/classes']")
        staff.wait_for_selector("#class_id")
        found["classes page"] = serious_violations(staff)
        staff.select_option("#school", "c01")
        staff.fill("#class_id", class_id)
        staff.fill("#name", class_name)
        staff.fill("#teacher", teacher_id)
        staff.fill("#teacher_last_name", "王")
        staff.fill("#teacher_first_name", "老师")
        staff.screenshot(path=str(shots / f"classes-form-{locale}.png"), full_page=True)
        staff.click("form[action$='/pages/classes'] button")
        staff.wait_for_selector(".slip")
        assert WORDS[locale]["created"] in staff.inner_text("h1")
        slip_text = staff.locator(".slip").inner_text()
        assert WORDS[locale]["slip"] in slip_text and class_name in slip_text and "青山中学" in slip_text
        account, one_time = _slip(staff)
        assert account == teacher_id and re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", one_time)
        found["teacher's slip"] = serious_violations(staff)
        staff.screenshot(path=str(shots / f"classes-teacher-slip-{locale}.png"), full_page=True)
        staff.goto(f"{classes_stack.url}/services/quota/pages/classes")
        assert class_name in staff.inner_text("main")  # escaped: the name shows as written
        # the created class's edit page, and its removal confirmation (kept: nothing is removed)
        staff.click(f"a[href*='/pages/classes/edit'][href*='class_id={class_id}']")
        staff.wait_for_selector("#name")
        assert class_id in staff.inner_text("h1") and staff.input_value("#teacher") == teacher_id
        found["class edit page"] = serious_violations(staff)
        staff.screenshot(path=str(shots / f"classes-edit-{locale}.png"), full_page=True)
        staff.click("form[action$='/pages/classes/remove'] button")
        staff.wait_for_selector("input[name=confirm]", state="attached")
        found["confirm class removal"] = serious_violations(staff)
        staff.screenshot(path=str(shots / f"classes-confirm-remove-class-{locale}.png"), full_page=True)
        staff.click(f"form[action$='/pages/classes/remove'] a[href*='class_id={class_id}']")  # keep it
        staff.wait_for_selector("#name")
    finally:
        staff_context.close()

    context = browser.new_context(locale=locale, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(f"{classes_stack.url}/hub/login")
        page.fill("input[name=username]", teacher_id)
        page.fill("input[name=password]", one_time)
        page.click("#login_submit")
        page.wait_for_selector("#new_password_input")
        assert WORDS[locale]["choose"] in page.inner_text("body")
        own = f"own-pw-{tag}-t9x"
        page.fill("#new_password_input", own)
        page.fill("#new_password_again_input", own)
        page.click("#set_password_submit")
        page.wait_for_url(re.compile(r".*/hub/(spawn|home).*"), timeout=30_000)
        model = api_log_in(classes_stack, "it-ops").hub.get(f"/users/{teacher_id}").json()  # an admin reads roles
        assert model["groups"] == ["school-c01"] and "teacher-c01" in model["roles"]
        classes_stack.passwords[teacher_id] = own
        own_token = api_log_in(classes_stack, teacher_id).hub  # the role works: their school's users, not others'
        assert own_token.get("/users/c01-s1").status_code == 200 and own_token.get("/users/u01-s1").status_code == 404

        page.goto(f"{classes_stack.url}/services/quota/pages/teacher")
        body = page.inner_text("main")
        assert class_name in body and "人工智能社" not in body  # their class, not the file's
        page.click("a[href$='/pages/teacher/roster']")
        csv_file = tmp_path / "roster.csv"
        lines = ["student_id,first_name,last_name,email,class", f"s-{tag}-1,小明,王,,{class_id}",
                 f"s-{tag}-2,小红,李,,{class_id}"]
        csv_file.write_bytes("\r\n".join(lines).encode("gbk") + b"\r\n")
        page.set_input_files("#file", str(csv_file))
        page.click("form[enctype] button")
        page.wait_for_url("**/pages/teacher/roster/preview")
        assert "GB18030/GBK" in page.inner_text("main")
        page.click("form[action$='/roster/import'] button")
        page.wait_for_url("**/pages/teacher/roster/import")
        assert page.locator(".slip").count() == 2
        page.screenshot(path=str(shots / f"classes-roster-slips-{locale}.png"), full_page=True)
        slips = {slip.locator("dd code").first.inner_text(): slip.locator("code.password").inner_text()
                 for slip in page.locator(".slip").all()}
        first, second = f"s-{tag}-1", f"s-{tag}-2"
        _choose_password(browser, classes_stack, locale, first, slips[first], f"mine-{tag}-9q")
        assert _hub_login(classes_stack, first, f"mine-{tag}-9q") == 302  # their own password works

        page.goto(f"{classes_stack.url}/services/quota/pages/teacher")
        row = page.locator("tr", has_text=first).first
        assert row.locator("form[action$='/students/reset'] button").count() == 1
        found["teacher's page"] = serious_violations(page)
        page.screenshot(path=str(shots / f"classes-teacher-page-{locale}.png"), full_page=True)
        row.locator("form[action$='/students/reset'] button").click()
        page.wait_for_selector(".slip")
        account, new_slip = _slip(page)
        assert account == first and new_slip != slips[first]
        found["new slip"] = serious_violations(page)
        page.screenshot(path=str(shots / f"classes-new-slip-{locale}.png"), full_page=True)
        # the password the student chose stops working at once; the new slip leads to choosing one
        assert _hub_login(classes_stack, first, f"mine-{tag}-9q") == 403
        assert _hub_login(classes_stack, first, slips[first]) == 403
        _choose_password(browser, classes_stack, locale, first, new_slip, f"again-{tag}-9q")

        # removing the other student: a page asks first; then their slip opens nothing
        page.goto(f"{classes_stack.url}/services/quota/pages/teacher")
        page.locator("tr", has_text=second).first.locator("form[action$='/students/remove'] button").click()
        page.wait_for_selector("input[name=confirm]", state="attached")
        found["confirm removal"] = serious_violations(page)
        page.screenshot(path=str(shots / f"classes-confirm-remove-{locale}.png"), full_page=True)
        page.click("form[action$='/students/remove'] button")
        page.wait_for_url("**/pages/teacher?removed=*")
        assert second not in page.locator("table").last.inner_text()
        assert _hub_login(classes_stack, second, slips[second]) == 403
    finally:
        context.close()
    assert {where: violations for where, violations in found.items() if violations} == {}
    with classes_stack.quota() as quota:
        assert quota.get(f"/api/roster/accounts/{teacher_id}").json()["one_time_hash"] is None  # spent at the hub
        assert {"school": "c01", "class_id": class_id, "name": class_name, "teacher": teacher_id} in \
            quota.get("/api/roster/classes").json()
