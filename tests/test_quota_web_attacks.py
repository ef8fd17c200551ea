"""Red team against the quota service's web surface (issue 17, points 5 and 6), in-process.

Each test performs an attack a student with a token and a page on the hub's own site
could make (an open redirect after login, a cross-site or same-site forged change with the
login cookie, reading other students' lease ids, crafted tokens and JSON, floods, another
student's idempotency key, a revoked token) and asserts that it fails with a 4xx that says
what to do. Every test here failed against the service before this hardening. The hub's
OAuth is a stand-in (``FakeHubOAuth``); the real login is in tests/test_quota_oauth.py.
"""

from __future__ import annotations

import itertools
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from fastapi.testclient import TestClient

from quota.app import ServicePrefix
from quota.settings import QuotaSettings
from tests.quota_fixtures import TOKEN

STUDENT = "c01-s1"


@pytest.fixture
def database_url(tmp_path):
    """The attacks are on the routes, not the storage: SQLite only."""
    return f"sqlite:///{tmp_path / 'quota' / 'quota.sqlite'}"


SECURITY_HEADERS = ("content-security-policy", "x-frame-options", "referrer-policy", "x-content-type-options")


class FakeHubOAuth:
    """Stands in for JupyterHub's HubOAuth: any code is exchanged for the token of ``account``."""

    login_url = "/hub/api/oauth2/authorize?client_id=service-quota&response_type=code"

    def __init__(self, account: str = STUDENT):
        self.account = account

    def token_for_code(self, code: str, sync: bool = True) -> str:
        return f"tok-{self.account}"


def browser(app, account: str = STUDENT, base_url: str = "http://testserver") -> TestClient:
    """A client without a token header that logs in as a browser does: sent to the hub,
    back at /oauth_callback with a code, left with the login cookie."""
    app.state.hub_oauth = FakeHubOAuth(account)
    client = TestClient(app, base_url=base_url, follow_redirects=False)
    prefix = app.prefix if isinstance(app, ServicePrefix) else ""
    sent = client.get(f"{prefix}/api/me", headers={"Accept": "text/html"})
    assert sent.status_code == 302, sent.text
    state = parse_qs(urlsplit(sent.headers["location"]).query)["state"][0]
    back = client.get(f"{prefix}/oauth_callback", params={"code": "a-code", "state": state})
    assert back.status_code == 302, back.text
    return client


def ask(client, user=STUDENT, profile="cpu", key=None, school=None):
    body = {"user": user, "school": school or user.split("-")[0], "profile": profile}
    if key:
        body["idempotency_key"] = key
    return client.post("/api/leases", json=body)


def says_what_to_do(response) -> bool:
    detail = response.json()["detail"]
    if isinstance(detail, str):
        return len(detail.split()) >= 6
    return all(item["loc"] and len(item["msg"].split()) >= 3 for item in detail)


# -- point 5: web hardening ------------------------------------------------------------------

def test_the_login_redirect_is_one_well_formed_answer(quota_client):
    """A browser's first visit is sent to the hub: the answer's Content-Length is its body's
    (it was the redirect's 0 beside a JSON body: a traceback in the log at every first
    visit, and servers that check it cut the answer)."""
    app = quota_client.app
    app.state.hub_oauth = FakeHubOAuth()
    with TestClient(app, follow_redirects=False) as client:
        for path in ("/", "/api/me", "/api/usage"):
            sent = client.get(path, headers={"Accept": "text/html"})
            assert sent.status_code == 302 and sent.headers["location"].startswith("/hub/api/oauth2/authorize")
            assert int(sent.headers["content-length"]) == len(sent.content), (path, sent.headers)
            assert "oauth-state" in sent.headers["set-cookie"]


def test_after_login_the_browser_is_sent_only_to_a_page_of_the_service(quota_client):
    """The target kept in the state cookie is attacker-controlled (a same-site page can set
    cookies): whatever it holds, the callback redirects within the service."""
    app = quota_client.app
    app.state.hub_oauth = FakeHubOAuth()
    attacks = ["//evil.example/x", "/\\evil.example", "\\\\evil.example", "/\\/evil.example", "https://evil.example/",
               "http:evil.example", "/\t/evil.example", "/\n/evil.example", "javascript:alert(1)",
               " //evil.example", "/\x00//evil.example"]
    with TestClient(app, follow_redirects=False) as client:
        for target in attacks:
            client.cookies.set("gpu-commons-quota-oauth-state", f"s|{quote(target, safe='')}")
            answer = client.get("/oauth_callback", params={"code": "c", "state": "s"})
            location = answer.headers.get("location", "")
            parts = urlsplit(location)
            assert answer.status_code == 302 and location.startswith("/") and not parts.netloc and not parts.scheme, (
                target, location)
            assert not location.startswith(("//", "/\\")) and "\\" not in location and "evil" not in location, (
                target, location)
        client.cookies.set("gpu-commons-quota-oauth-state", f"s|{quote('//evil.example/x', safe='')}")
        hop = client.get("/oauth_callback", params={"code": "c", "state": "s"}, headers={"Sec-Fetch-Site": "cross-site"})
        assert hop.status_code == 200 and 'content="0;url=/"' in hop.text and "evil" not in hop.text  # see oauth.py
        client.cookies.set("gpu-commons-quota-oauth-state", f"s|{quote('/api/me?x=1')}")
        kept = client.get("/oauth_callback", params={"code": "c", "state": "s"})
        assert kept.headers["location"] == "/api/me?x=1"  # a real page of the service is kept


def test_the_login_cookie_alone_cannot_renew_release_or_ask_for_a_lease(quota_client):
    """CSRF: a page on another site, or another student's server on the hub's site, makes the
    browser send the quota cookie along with a change. Changes need the Authorization header."""
    lease = ask(quota_client, profile="gpu-whole").json()
    assert lease["state"] == "granted"
    forged = browser(quota_client.app)
    assert forged.get("/api/me").json()["name"] == STUDENT  # the cookie reads pages
    same_site = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    for headers in ({}, same_site, {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}):
        for method, path in (("POST", f"/api/leases/{lease['id']}/renew"), ("DELETE", f"/api/leases/{lease['id']}"),
                             ("POST", "/api/leases")):
            kwargs = {"json": {"user": STUDENT, "school": "c01", "profile": "cpu"}} if path == "/api/leases" else {}
            answer = forged.request(method, path, headers=headers, **kwargs)
            assert answer.status_code == 403, (method, path, headers, answer.text)
            assert "Authorization: token" in answer.json()["detail"] and says_what_to_do(answer)
    now = quota_client.get(f"/api/leases/{lease['id']}").json()
    assert (now["state"], now["expires_at"]) == ("granted", lease["expires_at"])
    assert [row["id"] for row in quota_client.get("/api/leases").json()] == [lease["id"]]
    # with the header the request passes this check and meets the role check: a student ends a
    # lease by stopping their server (issue 17, point 4), the hub ends it
    token_client = TestClient(quota_client.app, headers={"Authorization": f"token tok-{STUDENT}"})
    ending = token_client.delete(f"/api/leases/{lease['id']}")
    assert ending.status_code == 403 and "Stop My Server" in ending.json()["detail"]
    assert quota_client.delete(f"/api/leases/{lease['id']}").json()["state"] == "released"


def test_a_script_of_the_same_site_cannot_read_pages_with_the_login_cookie(quota_client):
    """A same-origin page (another student's server on the hub's site) fetching quota pages
    with the victim's cookie: only top-level navigations are answered with the cookie."""
    client = browser(quota_client.app)
    navigation = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert client.get("/api/me", headers=navigation).status_code == 200
    for headers in ({"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
                    {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"},
                    {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}):
        answer = client.get("/api/leases", headers=headers)
        assert answer.status_code == 403 and says_what_to_do(answer), (headers, answer.text)


def test_the_quota_cookie_is_httponly_samesite_strict_and_secure_over_https(make_quota_app, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/quota/")
    app = make_quota_app()
    with TestClient(app):
        for base_url, secure in (("https://hub.example", True), ("http://127.0.0.1", False)):
            client = browser(app, base_url=base_url)
            [token_cookie] = [c for c in client.cookies.jar if c.name.endswith("gpu-commons-quota-token")]
            assert token_cookie.path == "/services/quota"  # never sent to students' servers at /user/…
            assert token_cookie.secure is secure and token_cookie.name.startswith("__Secure-") is secure
            assert token_cookie.has_nonstandard_attr("HttpOnly")
            assert token_cookie.get_nonstandard_attr("SameSite").lower() == "strict"
            assert client.get("/services/quota/api/me").json()["name"] == STUDENT
    with TestClient(app, base_url="https://hub.example") as plain_named:  # an http cookie does not count over https
        plain_named.cookies.set("gpu-commons-quota-token", f"tok-{STUDENT}")
        assert plain_named.get("/services/quota/api/me").status_code == 401


def test_every_answer_carries_the_security_headers(quota_client):
    answers = [quota_client.get("/api/health"), quota_client.get("/api/leases"), quota_client.get("/nowhere"),
               TestClient(quota_client.app).get("/api/me"), quota_client.get("/"), quota_client.get("/docs"),
               quota_client.post("/api/leases", content=b"x" * 70_000, headers={"Content-Type": "application/json"}),
               quota_client.get("/metrics")]
    for answer in answers:
        missing = [name for name in SECURITY_HEADERS if name not in answer.headers]
        assert missing == [], (answer.request.url, answer.status_code, missing)
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "http" not in policy and "*" not in policy, policy
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["x-content-type-options"] == "nosniff"
    docs = quota_client.get("/docs")
    assert docs.status_code == 200 and "POST /api/leases" in docs.text and "https://" not in docs.text


def test_inventory_shows_lease_ids_only_to_those_who_may_act_on_them(quota_client, client_as):
    mine = ask(quota_client, "c01-s1", profile="gpu-whole").json()
    theirs = ask(quota_client, "u01-s1", profile="gpu-slice").json()

    def ids_seen_by(account):
        inventory = client_as(account).get("/api/inventory").json()
        [pool] = inventory["pools"]
        assert pool["free"] == {"whole": 0, "slice": 1} and sum(unit["held"] for unit in pool["units"]) == 2
        return {unit["lease_id"] for unit in pool["units"]} - {None}

    assert ids_seen_by("c01-s2") == set()
    assert ids_seen_by("c01-s1") == {mine["id"]}
    assert ids_seen_by("c01-teacher") == {mine["id"]}  # c01-s1 is in the teacher's class: they may end it
    assert ids_seen_by("staff-admin") == ids_seen_by("it-ops") == {mine["id"], theirs["id"]}


# -- point 6: bad input gets a 4xx, never a 500 -----------------------------------------------

WEIRD_TOKENS = ["café".encode(), b"\xed\xa0\x80", b"\xff\xfe\x00x", b"tok-c01-s1\xc2\xa0", b"\x80" * 5000, b"\x7f"]


def test_tokens_of_any_bytes_are_refused_with_401(make_quota_app):
    with TestClient(make_quota_app(), raise_server_exceptions=False) as client:
        for token, (method, path) in itertools.product(
                WEIRD_TOKENS, (("GET", "/api/leases"), ("GET", "/api/me"), ("POST", "/api/leases"), ("GET", "/"))):
            for headers in ({"Authorization": b"token " + token}, {"Authorization": b"Bearer " + token},
                            {"Cookie": b"gpu-commons-quota-token=" + token}):
                answer = client.request(method, path, headers=headers)
                assert answer.status_code == 401 and says_what_to_do(answer), (method, path, token[:20], answer.text[:200])


NOT_JSON_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e309", b"1" + b"0" * 400]


def test_nan_infinity_and_huge_numbers_are_422_naming_the_field(quota_client, client_as):
    staff = client_as("staff-admin")
    staff.headers["Content-Type"] = "application/json"
    calls = [("PATCH", "/api/tiers/county", b'{"weight": %s}', "weight"),
             ("PATCH", "/api/schools/c01/quota", b'{"budget_gpu_hours": %s}', "budget_gpu_hours"),
             ("POST", "/api/reservations", b'{"pool": "uni-a", "school": "c01", "units": %s, '
              b'"starts_at": "2026-09-01T09:00:00Z", "ends_at": "2026-09-01T10:00:00Z"}', "units")]
    for (method, path, body, field), number in itertools.product(calls, NOT_JSON_NUMBERS):
        answer = staff.request(method, path, content=body % number)
        assert answer.status_code == 422, (path, number[:10], answer.text[:300])
        assert ["body", field] in [item["loc"] for item in answer.json()["detail"]] and says_what_to_do(answer)
    assert ask(quota_client).status_code == 201  # the service still decides


def test_lone_surrogates_in_json_are_422(quota_client, client_as):
    calls = [(quota_client, "POST", "/api/leases", b'{"user": "c01-s1", "school": "\\ud800", "profile": "cpu"}'),
             (quota_client, "POST", "/api/leases", b'{"user": "\\udc80", "school": "c01", "profile": "cpu"}'),
             (quota_client, "POST", "/api/leases", b'{"user": "c01-s1", "school": "c01", "profile": "cpu", '
                                                   b'"idempotency_key": "k\\ud83d"}'),
             (client_as("it-ops"), "PATCH", "/api/pools/uni-a", b'{"state": "open", "note": "\\udfff"}'),
             (client_as("c01-teacher"), "POST", "/api/reservations",
              b'{"pool": "uni-a", "school": "c01", "units": 1, "note": "\\ud800", '
              b'"starts_at": "2026-09-01T09:00:00Z", "ends_at": "2026-09-01T10:00:00Z"}'),
             (quota_client, "POST", "/api/leases", b'{"\\ud800": 1, "user": "c01-s1", "school": "c01", "profile": "cpu"}')]
    for client, method, path, body in calls:
        answer = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422 and says_what_to_do(answer), (path, body, answer.text[:300])
        assert "surrogate" in answer.text
    assert quota_client.get("/api/leases").json() == []


def test_extreme_dates_are_422_and_leave_the_service_deciding(quota_client, client_as):
    teacher = client_as("c01-teacher")
    for starts, ends in (("9999-12-31T23:00:00-05:00", "9999-12-31T23:30:00-05:00"),
                         ("0001-01-01T00:00:00+05:00", "0001-01-01T01:00:00+05:00"),
                         ("2026-09-01T09:00:00Z", "9999-12-31T23:59:59.999999-23:59")):
        answer = teacher.post("/api/reservations", json={"pool": "uni-a", "school": "c01", "units": 1,
                                                         "starts_at": starts, "ends_at": ends})
        assert answer.status_code == 422 and says_what_to_do(answer) and "between" in answer.text, answer.text[:300]
    for since in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
        answer = quota_client.get("/api/usage/report", params={"since": since})
        assert answer.status_code == 422 and "between" in answer.text, answer.text[:300]
    assert ask(quota_client).status_code == 201  # no write failed, the allocator was not dropped


def test_a_body_over_64_kb_is_413_naming_the_limit(quota_client):
    big = b'{"user": "c01-s1", "school": "c01", "profile": "cpu", "idempotency_key": "' + b"k" * 70_000 + b'"}'
    for content in (big, iter([big[:40_000], big[40_000:]])):  # with and without Content-Length
        answer = quota_client.post("/api/leases", content=content, headers={"Content-Type": "application/json"})
        assert answer.status_code == 413 and "65536 bytes" in answer.json()["detail"], answer.text[:300]
        assert says_what_to_do(answer) and len(answer.content) < 1000
    assert quota_client.get("/api/leases").json() == []


def test_a_422_does_not_echo_a_large_input(quota_client):
    answer = quota_client.post("/api/leases", json={"user": "u" * 60_000, "school": "c01", "profile": "cpu"})
    assert answer.status_code == 422 and says_what_to_do(answer)
    assert len(answer.content) < 2000, len(answer.content)
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "user"] and "60000 characters" in error["input"]


def test_another_students_idempotency_key_neither_returns_nor_blocks_their_lease(quota_client, client_as):
    """Keys were global: another student's key returned their lease. Now only the hub asks
    for leases (issue 17, point 4), so a student's request with any key is refused unseen."""
    hub_key = "c01-s2-default-0123456789abcdef"  # the hub's key for another student's spawn
    theirs = ask(quota_client, "c01-s2", profile="gpu-slice", key=hub_key).json()
    thief = client_as("c01-s1")
    for user in ("c01-s1", "c01-s2"):
        stolen = ask(thief, user, key=hub_key)
        assert stolen.status_code == 403 and theirs["id"] not in stolen.text and says_what_to_do(stolen)
    # the hub's retry still returns the same lease; the key used for another student is 409
    assert ask(quota_client, "c01-s2", profile="gpu-slice", key=hub_key).json()["id"] == theirs["id"]
    assert ask(quota_client, "c01-s1", profile="gpu-slice", key=hub_key).status_code == 409


def test_lease_requests_are_rate_limited_per_student_refused_ones_too(make_quota_app, clock):
    with TestClient(make_quota_app(lease_requests_per_minute=4), headers={"Authorization": f"token {TOKEN}"}) as hub:
        assert ask(hub, profile="gpu-whole").json()["state"] == "granted"
        assert ask(hub, profile="gpu-whole").json()["state"] == "refused"  # one GPU workspace per student
        for _ in range(2):
            lease = ask(hub).json()
            hub.delete(f"/api/leases/{lease['id']}")
        flood = ask(hub)
        assert flood.status_code == 429 and says_what_to_do(flood), flood.text
        assert "4 lease requests a minute" in flood.json()["detail"]
        assert 0 < int(flood.headers["Retry-After"]) <= 60
        assert ask(hub, "c01-s2").status_code == 201  # another student is not held back
        clock.advance(seconds=61)
        assert ask(hub).status_code == 201


def test_the_default_settings_limit_a_flood_of_cpu_leases(quota_client, client_as):
    """The attack as found: a student asking for 200 CPU leases in a loop got 200. Their
    token now gets none (issue 17, point 4); asked through the hub (a student restarting
    their server in a loop), the limits hold."""
    student = client_as(STUDENT)
    assert {ask(student).status_code for _ in range(200)} == {403}
    assert quota_client.get("/api/leases", params={"user": STUDENT}).json() == []
    answers = [ask(quota_client).status_code for _ in range(200)]
    granted = [lease for lease in quota_client.get("/api/leases", params={"user": STUDENT}).json()
               if lease["state"] == "granted"]
    assert len(granted) <= 3 and set(answers) <= {201, 409, 429} and answers.count(429) > 150


def test_a_student_holds_at_most_the_cap_of_cpu_leases(make_quota_app):
    with TestClient(make_quota_app(max_cpu_leases_per_student=2), headers={"Authorization": f"token {TOKEN}"}) as hub:
        first, second = ask(hub, key="k1").json(), ask(hub, key="k2").json()
        assert first["state"] == second["state"] == "granted"
        third = ask(hub, key="k3")
        assert third.status_code == 409 and "2 CPU workspaces" in third.json()["detail"] and says_what_to_do(third)
        assert ask(hub, key="k1").status_code == 200  # a retry of one held is answered as before
        hub.delete(f"/api/leases/{first['id']}")
        assert ask(hub, key="k3").status_code == 201


def test_a_revoked_token_stops_working_within_5_seconds(monkeypatch, quota_alliance):
    """The hub's answer about a token is cached; a token revoked at the hub must stop
    working at the quota service within 5 s."""
    import jupyterhub.services.auth as hub_auth_module

    from quota.auth import hub_oauth_client, hub_token_resolver

    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:1/hub/api")
    now = [1000.0]
    monkeypatch.setattr(hub_auth_module.time, "monotonic", lambda: now[0])
    valid = {"tok-c01-s1"}

    auth = hub_oauth_client(TOKEN, QuotaSettings(alliance=quota_alliance, api_token=TOKEN).token_cache_s)

    async def hub_answers(method, url, **kwargs):
        token = kwargs["headers"]["Authorization"].removeprefix("token ")
        return {"kind": "user", "name": "c01-s1", "scopes": ["access:services"]} if token in valid else None

    monkeypatch.setattr(auth, "_api_request", hub_answers)
    monkeypatch.setattr(type(auth), "access_scopes", set(), raising=False)
    resolve = hub_token_resolver(auth)
    assert resolve("tok-c01-s1") == "c01-s1"
    valid.clear()  # revoked at the hub
    now[0] += 5.01
    assert resolve("tok-c01-s1") is None
