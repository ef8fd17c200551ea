"""JupyterHub's admin page is for the roles that can use it (issue 14, point 5).

Teachers and alliance staff had the admin page's scope alone, so every button there failed in
front of them ("Failed to create user.", a blank "Manage Groups", "Shutdown Hub" doing nothing).
Now the alliance's operators (university IT) are JupyterHub admins, for whom the buttons work,
and teachers and staff get no admin page (their pages are the quota service's); a teacher still
lists their own school's accounts through the API.
"""

from __future__ import annotations

import httpx
import pytest

from tests.hub_client import log_in
from tests.stack import started_stack

pytestmark = pytest.mark.slow

ALLIANCE = """
name: Admin page test alliance
tiers: {county: {weight: 1}, urban: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1], teachers: [c01-teacher]}
  - {id: u01, tier: urban, students: [u01-s1]}
staff: [staff-admin]
operators: [it-ops]
"""


def admin_page(stack, account) -> httpx.Response:
    """/hub/admin as the account's browser gets it (logged in with its password)."""
    with httpx.Client(base_url=stack.url, timeout=30, headers={"Accept-Language": "en"}) as web:
        web.get("/hub/login")
        web.post("/hub/login", data={"username": account.name, "password": stack.passwords[account.name],
                                     "_xsrf": web.cookies.get("_xsrf", "")})
        home = web.get("/hub/home")
        assert home.status_code == 200, home.status_code
        page = web.get("/hub/admin")
        page.home_text = home.text
        return page


def test_only_operators_get_the_admin_page_and_its_buttons_work_for_them(tmp_path):
    alliance = tmp_path / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    with started_stack(tmp_path / "data", alliance) as stack:
        teacher, staff, operator = (log_in(stack, name) for name in ("c01-teacher", "staff-admin", "it-ops"))
        for account in (teacher, staff):
            me = account.hub.get("/user").json()
            assert "admin-ui" not in me["scopes"] and not me["admin"], me
            page = admin_page(stack, account)
            assert page.status_code == 403 and 'href="/hub/admin"' not in page.home_text
            assert "pages/workspaces" not in page.home_text
            assert 'href="/hub/../services/quota/">GPU Commons pages' in page.home_text  # their pages instead
        # what a teacher needs from the hub still works: their own school's accounts
        assert {user["name"] for user in teacher.hub.get("/users").json()} == {"c01-s1", "c01-teacher"}

        assert operator.hub.get("/user").json()["admin"] is True
        page = admin_page(stack, operator)
        # the hub's header leads IT to the quota service's workspaces page (in the page's language);
        # JupyterHub's own admin page (English only) stays reachable by its address
        assert page.status_code == 200 and 'href="/hub/../services/quota/pages/workspaces"' in page.home_text
        assert 'href="/hub/admin"' not in page.home_text
        # the admin page's buttons are API calls: creating a group and adding a member succeed
        assert operator.hub.post("/groups/it-test").status_code == 201
        assert operator.hub.post("/groups/it-test/users", json={"users": ["c01-s1"]}).status_code == 200
