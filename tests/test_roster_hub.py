"""The hub's side of imported students (hub/roster.py, hub/auth.py), fast: the set-password
ticket (bound to the account, its expiry and the unspent one-time hash), the password file
written once per account, the chosen password's checks, and the authenticator asking the quota
service only about names the alliance file does not list (a fake service over httpx's mock
transport)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from hub import roster
from hub.auth import AllianceAuthenticator
from hub.passwords import check_password, load_hashes
from quota.roster_store import hash_one_time

SECRET = b"cookie-secret"


def test_a_ticket_names_its_account_until_it_expires_or_the_one_time_password_changes():
    value = roster.ticket(SECRET, "s1", "$2b$05$hash", now=1000.0)
    assert roster.ticket_account(SECRET, value, "$2b$05$hash", now=1000.0 + roster.TICKET_S - 1) == "s1"
    assert roster.ticket_account(SECRET, value, "$2b$05$hash", now=1000.0 + roster.TICKET_S + 1) is None
    assert roster.ticket_account(SECRET, value, None, now=1000.0) is None  # spent
    assert roster.ticket_account(SECRET, value, "$2b$05$other", now=1000.0) is None  # replaced
    assert roster.ticket_account(b"another-secret", value, "$2b$05$hash", now=1000.0) is None
    forged = value.replace("s1:", "s2:", 1)
    assert roster.ticket_account(SECRET, forged, "$2b$05$hash", now=1000.0) is None
    assert roster.ticket_account(SECRET, "garbage", "$2b$05$hash", now=1000.0) is None


def test_the_password_file_takes_a_students_own_password_once(tmp_path):
    path = str(tmp_path / "passwords.json")
    assert roster.store_password(path, "s1", "my-own-password")
    assert not roster.store_password(path, "s1", "a-second-try")  # another tab: already set
    assert check_password("my-own-password", load_hashes(path)["s1"])
    assert roster.password_problem("short", "short") is not None
    assert roster.password_problem("long-enough", "long-enougH") is not None
    assert roster.password_problem("long-enough", "long-enough") is None


def _authenticator(tmp_path, calls: list, one_time: str | None, state: dict | None = None):
    """A hub's authenticator against a fake quota service that knows imported student ``s1``;
    ``state["one_time"]`` (when given) is the one-time password it holds now (None: spent)."""
    state = state if state is not None else {"one_time": one_time}

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, request.headers.get("authorization")))
        if request.url.path.endswith("/ghost"):
            return httpx.Response(404, json={"detail": "none"})
        current = state["one_time"]
        return httpx.Response(200, json={"account": "s1", "school": "c01", "class_id": "ai-club", "name": "Li",
                                         "one_time_hash": hash_one_time(current) if current else None})

    transport = httpx.MockTransport(answer)
    real = httpx.AsyncClient
    auth = AllianceAuthenticator(password_file=str(tmp_path / "passwords.json"), quota_url="http://quota",
                                 quota_api_token="hub-token", allowed_users={"c01-s1"})
    return auth, (lambda **kw: real(transport=transport, **kw))


@pytest.mark.parametrize("one_time", ["abcd-efgh-jkmn", None])
def test_the_authenticator_asks_the_service_only_about_names_the_file_does_not_list(tmp_path, monkeypatch, one_time):
    calls: list = []
    auth, client = _authenticator(tmp_path, calls, one_time)
    monkeypatch.setattr(roster.httpx, "AsyncClient", client)

    async def scenario():
        assert await auth.check_allowed("c01-s1") and calls == []  # the file's account: not asked
        assert await auth.check_allowed("s1")
        assert not await auth.check_allowed("ghost")
        first = await auth.first_login("s1", "abcd-efgh-jkmn", SECRET)
        wrong = await auth.first_login("s1", "wrong-password", SECRET)
        return first, wrong

    first, wrong = asyncio.run(scenario())
    assert wrong is None
    assert (first is not None) == (one_time is not None)  # a spent one-time password opens nothing
    assert {c[2] for c in calls} == {"token hub-token"} and all(c[1].startswith("/api/roster/accounts/") for c in calls)


def test_a_new_slip_voids_the_password_the_student_chose(tmp_path, monkeypatch):
    """The teacher printed a new slip (the service holds an unspent one-time password again):
    the password the student chose no longer logs in, the new slip's opens the set-password
    page and the old own password is forgotten; the old slip opens nothing."""
    state = {"one_time": None}  # spent: the student chose their own
    auth, client = _authenticator(tmp_path, [], None, state)
    monkeypatch.setattr(roster.httpx, "AsyncClient", client)
    roster.store_password(auth.password_file, "s1", "my-own-password")

    async def login(password):
        return await auth.authenticate(None, {"username": "s1", "password": password})

    assert asyncio.run(login("my-own-password")) == "s1"
    assert asyncio.run(auth.first_login("s1", "abcd-efgh-jkmn", SECRET)) is None  # the old slip: spent
    state["one_time"] = "new2-slip-pass"  # the teacher's reset
    assert asyncio.run(login("my-own-password")) is None
    assert asyncio.run(auth.first_login("s1", "abcd-efgh-jkmn", SECRET)) is None
    assert "s1" in load_hashes(auth.password_file)  # a wrong try forgets nothing
    assert asyncio.run(auth.first_login("s1", "new2-slip-pass", SECRET)) is not None
    assert "s1" not in load_hashes(auth.password_file)  # the new password is chosen on the page that follows
    assert roster.store_password(auth.password_file, "s1", "my-new-password")


def test_a_removed_student_is_not_allowed_even_after_the_hub_created_their_user(tmp_path, monkeypatch):
    calls: list = []
    auth, client = _authenticator(tmp_path, calls, "abcd-efgh-jkmn")
    monkeypatch.setattr(roster.httpx, "AsyncClient", client)
    auth.allowed_users = {"c01-s1", "ghost"}  # JupyterHub adds the users it created
    assert asyncio.run(auth.check_allowed("c01-s1"))
    assert not asyncio.run(auth.check_allowed("ghost"))  # the service no longer has them (404)


def test_the_prestart_service_sees_the_imported_students_of_a_class():
    from hub.prestart import students_of
    from quota.alliance import parse_alliance

    alliance = parse_alliance({"tiers": {"county": {}}, "pools": [{"id": "p", "gpus": 1}], "schools": [
        {"id": "c01", "tier": "county", "students": ["c01-s1"],
         "classes": [{"id": "ai-club", "students": ["c01-s1"]}, {"id": "robots"}]}]})
    listed = [{"account": "r-1", "school": "c01", "class_id": "ai-club"},
              {"account": "r-2", "school": "c01", "class_id": "robots"}]

    created = [{"school": "c01", "class_id": "grade9", "name": "Grade 9", "teacher": "new-teacher"}]
    listed.append({"account": "r-3", "school": "c01", "class_id": "grade9"})

    def answer(request, status):
        if status != 200:
            return httpx.Response(status, json={})
        return httpx.Response(200, json=created if request.url.path.endswith("/classes") else listed)

    async def scenario(status):
        transport = httpx.MockTransport(lambda request: answer(request, status))
        async with httpx.AsyncClient(transport=transport, base_url="http://quota") as quota:
            return await roster.with_imported(alliance, quota)

    merged = asyncio.run(scenario(200))
    assert students_of(merged, "c01", "ai-club", units=5) == (["c01-s1", "r-1"], [])
    assert students_of(merged, "c01", "robots", units=5) == (["r-2"], [])
    assert students_of(merged, "c01", "grade9", units=5) == (["r-3"], [])  # a class created on the classes page
    assert "new-teacher" in merged.school("c01").classes[-1].teachers
    assert asyncio.run(scenario(404)) == alliance  # a service without the roster: the file's students
