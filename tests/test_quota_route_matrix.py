"""Every route of the quota service x every role: the status each gets (issue 14, point 6).

The table below has one row per route the FastAPI app serves (the API, the pages and their forms,
the public ones); a route without a row fails :func:`test_every_route_has_a_row`, a row without a
route fails too. Each row is asked once per role (anonymous, a student, a teacher of the school,
a teacher of another school, the school's admin, staff, an operator, the hub), with a request a
person of that role could send: a refused role must get the status the row says (and a route
that changes something is asked by each allowed role in an app of its own, so one allowed call
does not change what the next sees). What an allowed call does is tested where the route is
(tests/test_quota_roles.py, tests/test_quota_pages_roles.py and the route's own tests); this
matrix says who gets in. The sample things the paths name are in tests/route_matrix.py.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.quota_fixtures import QUOTA_ALLIANCE, TOKEN, Clock
from tests.route_matrix import ROLES, concrete, every_route, fresh_app, sample, statuses

PUBLIC = statuses(200, anonymous=200)
ANY_ROLE = statuses(200)
HUB_ONLY = statuses(403, hub=200)
STAFF_PAGES = statuses(403, staff=200, operator=200, hub=200)  # staff change, operators and the hub read
TEACHING = statuses(403, teacher=200, other_teacher=200, school_admin=200, staff=200, hub=200)


def _tomorrow(names):
    start = names["now"] + timedelta(days=1, hours=2)
    return {"pool": "uni-a", "school": "c01", "class_id": "ai-club", "units": 1, "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat()}


def _form(**fields):
    return lambda names: {"data": {key: value.format(**names) for key, value in fields.items()}}


def _json(build):
    return lambda names: {"json": build(names) if callable(build) else build}


NOTHING = lambda names: {}  # noqa: E731
ROUTES = {  # (method, path) -> (the request's body, the status per role)
    ("GET", "/"): (NOTHING, ANY_ROLE),
    ("GET", "/api/health"): (NOTHING, PUBLIC),
    ("GET", "/api/ready"): (NOTHING, PUBLIC),
    ("GET", "/metrics"): (NOTHING, PUBLIC),  # Prometheus scrapes without a token (docs/observability)
    ("GET", "/openapi.json"): (NOTHING, PUBLIC),
    ("GET", "/docs"): (NOTHING, PUBLIC),
    ("GET", "/pages/static/pages.css"): (NOTHING, PUBLIC),
    ("GET", "/oauth_callback"): (NOTHING, statuses(404, anonymous=404)),  # browser login is off without a hub
    ("GET", "/api/me"): (NOTHING, ANY_ROLE),
    ("GET", "/api/inventory"): (NOTHING, ANY_ROLE),
    ("GET", "/api/pools"): (NOTHING, ANY_ROLE),
    ("GET", "/api/queue"): (NOTHING, ANY_ROLE),
    ("GET", "/api/schools"): (NOTHING, ANY_ROLE),
    ("GET", "/api/schools/{school_id}"): (NOTHING, ANY_ROLE),
    ("GET", "/api/tiers"): (NOTHING, ANY_ROLE),
    ("GET", "/api/reservations"): (NOTHING, ANY_ROLE),
    ("GET", "/api/usage"): (NOTHING, ANY_ROLE),  # each sees only whose usage they may (test_quota_roles)
    ("GET", "/api/usage/report"): (NOTHING, ANY_ROLE),
    ("GET", "/api/leases"): (NOTHING, ANY_ROLE),
    ("GET", "/api/leases/{lease_id}"): (NOTHING, statuses(200, other_teacher=403)),  # c01-s1's own lease
    ("POST", "/api/leases"): (_json({"user": "c01-s2", "school": "c01", "profile": "cpu"}), statuses(403, hub=201)),
    ("POST", "/api/leases/{lease_id}/renew"): (NOTHING, HUB_ONLY),
    ("DELETE", "/api/leases/{lease_id}"): (NOTHING, statuses(200, student=200, other_teacher=403)
                                          | {"student": 403}),  # a student stops their server instead
    ("DELETE", "/api/leases/by-key/{idempotency_key}"): (NOTHING, statuses(403, hub=404)),  # no such key
    ("POST", "/api/reservations"): (_json(_tomorrow), statuses(403, teacher=201, school_admin=201, staff=201, hub=201)),
    ("DELETE", "/api/reservations/{reservation_id}"): (NOTHING, statuses(403, teacher=200, school_admin=200,
                                                                         staff=200, hub=200)),
    ("PUT", "/api/reservations/{reservation_id}/prestarts/{account}"): (_json({"outcome": "ready"}), HUB_ONLY),
    ("PATCH", "/api/schools/{school_id}/quota"): (_json({"weight": 3}), statuses(403, staff=200)),
    ("PATCH", "/api/tiers/{tier_id}"): (_json({"weight": 3}), statuses(403, staff=200)),
    ("PATCH", "/api/pools/{pool_id}"): (_json({"state": "draining", "note": "maintenance"}), statuses(403, operator=200)),
    ("POST", "/api/library/opens"): (_json({"user": "c01-s1", "opens": {}}), HUB_ONLY),
    ("GET", "/api/library/attached/{user}"): (NOTHING, HUB_ONLY),
    ("GET", "/api/library/usage"): (NOTHING, statuses(200, student=403)),
    ("GET", "/api/roster/accounts"): (NOTHING, HUB_ONLY),
    ("GET", "/api/roster/classes"): (NOTHING, HUB_ONLY),
    ("GET", "/api/roster/accounts/{account}"): (NOTHING, statuses(403, hub=404)),  # a file account: not imported
    ("POST", "/api/roster/accounts/{account}/password-set"): (NOTHING, statuses(403, hub=404)),
    # the pages (their forms also with the login cookie and CSRF token: tests/test_quota_pages_roles.py)
    ("GET", "/pages/me"): (NOTHING, statuses(403, student=200)),
    ("GET", "/pages/teacher"): (NOTHING, TEACHING),
    ("GET", "/pages/teacher/roster"): (NOTHING, TEACHING),
    ("GET", "/pages/classes"): (NOTHING, statuses(403, school_admin=200, staff=200, hub=200)),
    ("GET", "/pages/staff"): (NOTHING, STAFF_PAGES),
    ("GET", "/pages/staff/equity.csv"): (NOTHING, STAFF_PAGES),
    ("GET", "/pages/operator"): (NOTHING, STAFF_PAGES),
    ("GET", "/pages/workspaces"): (NOTHING, STAFF_PAGES),
    # a form's address opened as a page leads back to its form
    ("GET", "/pages/teacher/roster/import"): (NOTHING, statuses(303, anonymous=303)),
    ("GET", "/pages/teacher/roster/preview"): (NOTHING, statuses(303, anonymous=303)),
    ("GET", "/pages/teacher/students/reset"): (NOTHING, statuses(303, anonymous=303)),
    ("GET", "/pages/teacher/students/remove"): (NOTHING, statuses(303, anonymous=303)),
    ("POST", "/pages/teacher/book"): (_form(class_id="c01/ai-club", pool="uni-a", units="1", date="{tomorrow}",
                                            start="10:00", end="11:00", tz="UTC", action="book"),
                                      statuses(403, teacher=303, other_teacher=422, school_admin=303, staff=303,
                                               hub=303)),  # another school's teacher: not one of their classes
    ("POST", "/pages/teacher/cancel"): (_form(reservation_id="{reservation_id}"),
                                        statuses(403, teacher=303, school_admin=303, staff=303, hub=303)),
    ("POST", "/pages/teacher/stop"): (_form(lease_id="{lease_id}"),
                                      statuses(403, teacher=303, school_admin=303, staff=303, hub=303)),
    ("POST", "/pages/teacher/library"): (_form(class_id="c01/ai-club", entry="no-such-entry", action="attach"),
                                         statuses(403, teacher=422, other_teacher=422, school_admin=422, staff=422,
                                                  hub=422)),  # who may; an unknown entry is then refused
    ("POST", "/pages/teacher/roster/preview"): (lambda names: {"data": {"csrf": ""}, "files": {
        "file": ("r.csv", b"id,first_name,last_name,email,class\nnew-1,Ada,Li,,c01/ai-club\n")}},
        statuses(403, teacher=200, other_teacher=422, school_admin=200, staff=200, hub=200)),
    ("POST", "/pages/teacher/roster/import"): (_form(file="bm90IGEgY3N2"),  # "not a csv": refused as a file
                                               statuses(403, teacher=422, other_teacher=422, school_admin=422,
                                                        staff=422, hub=422)),
    # the file's students change in the file: account care refuses them for everyone
    ("POST", "/pages/teacher/students/reset"): (_form(account="c01-s1"), statuses(403)),
    ("POST", "/pages/teacher/students/remove"): (_form(account="c01-s1"), statuses(403)),
    ("POST", "/pages/classes"): (_form(school="c01", class_id="robots", name="Robots", teacher="c01-teacher"),
                                 statuses(403, school_admin=303, staff=303, hub=303)),
    # a class and a teacher created on the classes page (the sample): the school's admin and staff care for them
    ("GET", "/pages/classes/edit"): (lambda names: {"params": {"school": "c01", "class_id": names["created_class"]}},
                                     statuses(403, school_admin=200, staff=200, hub=200)),
    ("POST", "/pages/classes/change"): (_form(school="c01", class_id="{created_class}", name="Renamed",
                                              teacher="c01-teacher"), statuses(403, school_admin=303, staff=303, hub=303)),
    ("POST", "/pages/classes/remove"): (_form(school="c01", class_id="{created_class}", confirm="yes"),
                                        statuses(403, school_admin=303, staff=303, hub=303)),
    ("POST", "/pages/classes/teachers/reset"): (_form(account="{created_teacher}"),
                                                statuses(403, school_admin=200, staff=200, hub=200)),
    ("GET", "/pages/classes/change"): (NOTHING, statuses(303, anonymous=303)),
    ("GET", "/pages/classes/remove"): (NOTHING, statuses(303, anonymous=303)),
    ("GET", "/pages/classes/teachers/reset"): (NOTHING, statuses(303, anonymous=303)),
    ("POST", "/pages/staff/school"): (_form(id="c01", weight="3"), statuses(403, staff=303)),
    ("POST", "/pages/staff/tier"): (_form(id="urban", weight="3"), statuses(403, staff=303)),
    ("POST", "/pages/operator/pool"): (_form(id="uni-a", state="draining", note="maintenance"), statuses(403, operator=303)),
    ("POST", "/pages/workspaces/stop"): (_form(user="c01-s1"), statuses(403, operator=422)),  # no hub: said so
}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def test_every_route_has_a_row(tmp_path):
    app = fresh_app(tmp_path, QUOTA_ALLIANCE, Clock())
    served = every_route(app)
    assert served - set(ROUTES) == set(), "routes without a row in the matrix: add one"
    assert set(ROUTES) - served == set(), "rows for routes the app does not serve"
    assert all(set(expected) == set(ROLES) for _body, expected in ROUTES.values())


def _ask(hub, clock, method, path, body, role):
    names = sample(hub, clock) | {"now": clock(), "tomorrow": (clock() + timedelta(days=1)).date().isoformat()}
    token = ROLES[role]
    client = TestClient(hub.app, headers={"Authorization": f"token {token}"} if token else {})
    return client.request(method, concrete(path, names), follow_redirects=False, **body(names))


@pytest.mark.parametrize("method,path", sorted(ROUTES, key=lambda route: (route[1], route[0])))
def test_each_role_gets_the_status_its_row_says(tmp_path, method, path):
    body, expected = ROUTES[(method, path)]
    got = {}
    shared = None
    with contextlib.ExitStack() as running:
        for role in ROLES:
            own = method in WRITES and expected[role] < 400  # a change is asked in an app of its own
            if own or shared is None:
                clock = Clock()
                hub = running.enter_context(TestClient(fresh_app(tmp_path / role, QUOTA_ALLIANCE, clock),
                                                       headers={"Authorization": f"token {TOKEN}"}))
                app_of_role = (hub, clock)
                if not own:
                    shared = app_of_role
            else:
                app_of_role = shared
            got[role] = _ask(*app_of_role, method, path, body, role).status_code
    assert got == expected
