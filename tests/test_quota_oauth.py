"""Browser users reach the quota service through JupyterHub OAuth (real hub, proxy,
service and Chromium): a student sees their own account and usage, not another's."""

from __future__ import annotations

import json

import pytest

from tests.browser import log_in

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


def test_a_script_of_another_page_on_the_hubs_site_cannot_use_the_quota_cookie(stack, browser):
    """Issue 17: a page served on the hub's own origin (another user's server; here a hub page
    stands in for it) ran fetch() with the student's quota cookie to read their leases and
    renew or end one. Chromium sends fetch metadata, the cookie only counts for navigations,
    and changes need the Authorization header."""
    with stack.quota() as quota:
        lease = quota.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "cpu"}).json()
    context = browser.new_context()
    try:
        page = log_in(context, stack, "c01-s1")
        assert page.goto(f"{stack.url}/services/quota/api/me").status == 200  # the browser holds the quota cookie
        [cookie] = [c for c in context.cookies() if c["name"].endswith("gpu-commons-quota-token")]
        assert (cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == ("/services/quota", True, "Strict")
        page.goto(f"{stack.url}/hub/home")
        answers = page.evaluate("""async (id) => {
            const base = '/services/quota/api/leases';
            const calls = [fetch(base, {credentials: 'include'}),
                           fetch(`${base}/${id}/renew`, {method: 'POST', credentials: 'include'}),
                           fetch(`${base}/${id}`, {method: 'DELETE', credentials: 'include'})];
            return Promise.all(calls.map(async call => { const r = await call; return [r.status, await r.text()]; }));
        }""", lease["id"])
        assert [status for status, _ in answers] == [403, 403, 403], answers
        assert "Authorization: token" in answers[1][1]
    finally:
        context.close()
    with stack.quota() as quota:
        assert quota.get(f"/api/leases/{lease['id']}").json()["state"] == "granted"
        quota.delete(f"/api/leases/{lease['id']}")
