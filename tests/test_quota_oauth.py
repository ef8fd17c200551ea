"""Browser users reach the quota service through JupyterHub OAuth (real hub, proxy,
service and Chromium): a student sees their own account and usage, not another's."""

from __future__ import annotations

import json

import pytest

from tests.test_end_to_end import log_in

pytestmark = pytest.mark.browser


def page_json(page) -> dict | list:
    return json.loads(page.locator("body").inner_text())


def test_a_student_logs_in_to_the_quota_service_through_the_hub(stack, browser):
    context = browser.new_context()
    try:
        page = log_in(context, stack, "c01-s1")
        response = page.goto(f"{stack.url}/services/quota/api/me")
        assert response.status == 200, page.content()
        assert page_json(page) == {"name": "c01-s1", "role": "student", "school": "c01"}
        assert page.goto(f"{stack.url}/services/quota/api/usage").status == 200
        assert page_json(page) == []
        forbidden = page.goto(f"{stack.url}/services/quota/api/usage?user=c01-s2")
        assert forbidden.status == 403 and "c01-s2" in page.content()
        home = page.goto(f"{stack.url}/services/quota/")
        assert home.status == 200 and "Signed in as" in page.content()
    finally:
        context.close()


def test_without_a_login_the_api_answers_401_and_browsers_are_sent_to_the_hub(stack):
    import httpx

    api = httpx.get(f"{stack.url}/services/quota/api/me")
    assert api.status_code == 401 and "Authorization: token" in api.json()["detail"]
    browser_like = httpx.get(f"{stack.url}/services/quota/api/me", headers={"Accept": "text/html"})
    assert browser_like.status_code == 302 and "/hub/api/oauth2/authorize" in browser_like.headers["location"]
