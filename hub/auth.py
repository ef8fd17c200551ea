"""Log in with an alliance account: name and password checked against bcrypt hashes.

- The bcrypt check (tens of milliseconds of CPU) runs in a small pool of worker threads, never
  on the hub's event loop: a flood of logins must not slow every other page and API call.
- An unknown account costs the same as a wrong password (its password is checked against a
  dummy hash of the same cost), so the answer's timing does not tell which accounts exist.
- Failed logins are limited per account and per address (hub/login_limits.py): one more is
  refused on the login page, without checking the password, with the time to try again
  (HTTP 429 and ``Retry-After``).
- Students a teacher imported (not in the alliance file) are asked of the quota service; their
  one-time password opens a page where they choose their own, and only then are they logged
  in (hub/roster.py).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import httpx
from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LoginHandler
from tornado.httputil import url_concat
from traitlets import Float, Integer, List, Unicode

from gpu_commons_i18n import _
from hub import roster
from hub.login_limits import LoginLimiter
from hub.passwords import DEFAULT_ROUNDS, check_password, load_hashes

# bcrypt releases the GIL: two threads keep the 2-core hub responsive while checking two at once
_BCRYPT = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")
_COST = re.compile(r"^\$2[abxy]?\$(\d{2})\$")


def client_address(request, trusted_proxies=()) -> str:
    """The address a login came from: the last address of ``X-Forwarded-For`` that is not one
    of ``trusted_proxies`` (configurable-http-proxy appends the address it was reached from),
    else the connection's peer. ``X-Real-Ip`` is not read: the proxy passes it on as the
    client sent it."""
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    for address in reversed(forwarded):
        if address not in trusted_proxies:
            return address
    context = getattr(getattr(request, "connection", None), "context", None)
    peer = getattr(context, "address", None)
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return request.remote_ip or "unknown"


class RateLimitedLoginHandler(LoginHandler):
    """The hub's login page, refusing a login while its account or address has had too many
    failed logins (429, with the reason and the time to try again on the page)."""

    async def post(self):
        auth = self.authenticator
        limiter: LoginLimiter = auth.login_limiter
        account = auth.normalize_username(self.get_body_argument("username", "", strip=True))
        address = client_address(self.request, auth.login_trusted_proxies)
        now = time.time()
        refused = limiter.refusal(account, address, now)
        if refused is not None:
            wait = math.ceil(refused.retry_after_s)
            auth.log.warning("Login refused for %r from %s: too many failed logins per %s; retry in %d s",
                             account[:32], address, refused.limit, wait)
            self.set_status(429)
            self.set_header("Retry-After", str(wait))
            message = refused.message(limiter.per_account, limiter.per_address, limiter.window_s)
            self.finish(await self._render(login_error=message, username=account[:32]))
            return
        attempt = limiter.begin(account, address, now)
        try:
            if self.get_body_argument("ticket", ""):
                await self._set_password()
                return
            first = await auth.first_login(account, self.get_body_argument("password", ""), self.settings["cookie_secret"])
            if first is not None:  # a one-time password: choose your own before anything else
                limiter.succeeded(attempt)
                self.finish(await self._render_set_password(first, account))
                return
            await super().post()
        finally:
            if getattr(self, "_jupyterhub_user", None) is not None:
                limiter.succeeded(attempt)

    async def login_user(self, data=None):
        user = await super().login_user(data)
        if user is not None:
            await self.authenticator.join_roster_school(user, self.db)
        return user

    def _render_set_password(self, ticket: str, account: str, error=None):
        return self.render_template(
            "set_password.html", ticket=ticket, username=account, login_error=error,
            authenticator_login_url=url_concat(self.authenticator.login_url(self.hub.base_url),
                                               {"next": self.get_argument("next", "")}),
            login_url=self.settings["login_url"], authenticator=self.authenticator, custom_html="",
            xsrf=self.xsrf_token.decode("ascii"), min_length=roster.MIN_PASSWORD,
        )

    async def _set_password(self):
        """The form of the set-password page: keep the new password's hash, spend the one-time
        password at the quota service, log in (hub/roster.py)."""
        auth = self.authenticator
        value = self.get_body_argument("ticket", "")
        account = value.rsplit(":", 2)[0]
        record = await auth.roster_record(account)
        valid = roster.ticket_account(self.settings["cookie_secret"], value, (record or {}).get("one_time_hash"), time.time())
        if valid is None or record is None:
            self.set_status(403)
            self.finish(await self._render(login_error=_("This page has expired, or your password is already set. "
                                                        "Sign in again."), username=account[:32]))
            return
        problem = roster.password_problem(self.get_body_argument("new_password", ""),
                                          self.get_body_argument("new_password_again", ""))
        if problem is not None:
            self.set_status(422)
            self.finish(await self._render_set_password(value, account, problem))
            return
        loop = asyncio.get_running_loop()
        stored = await loop.run_in_executor(_BCRYPT, roster.store_password, auth.password_file, account,
                                            self.get_body_argument("new_password", ""))
        if not stored:
            self.set_status(403)
            self.finish(await self._render(login_error=_("This page has expired, or your password is already set. "
                                                        "Sign in again."), username=account[:32]))
            return
        try:
            await roster.password_spent(auth.quota_url, auth.quota_api_token, account)
        except httpx.HTTPError as exc:  # the hub refuses it anyway: the account has its own hash now
            auth.log.warning("The quota service was not told that %s's one-time password is spent: %s", account, exc)
        user = await self.auth_to_user({"name": account})
        self.set_login_cookie(user)
        user._auth_refreshed = time.monotonic()
        await auth.join_roster_school(user, self.db)
        auth.log.info("%s chose their own password and logged in", account)
        self._jupyterhub_user = user
        self.redirect(self.get_next_url(user))


class AllianceAuthenticator(Authenticator):
    """Accounts come from the alliance file; their password hashes from ``password_file``.

    Set a password with ``gpu-commons set-password ACCOUNT``.
    """

    password_file = Unicode(
        help="""Path of the JSON file of bcrypt password hashes (account -> hash).

        Written by `gpu-commons set-password` and `gpu-commons demo`; keep it readable
        by the hub only. Example::

            c.AllianceAuthenticator.password_file = "/srv/gpu-commons/passwords.json"
        """,
    ).tag(config=True)

    login_failures_per_account = Integer(
        10, min=0,
        help="""Failed logins one account name may have within ``login_failure_window`` seconds;
        the next login for it is refused (HTTP 429, the login page says when to try again)
        without checking the password. Unknown names are counted the same way. 0 = no limit.

        Example::

            c.AllianceAuthenticator.login_failures_per_account = 10
        """,
    ).tag(config=True)

    login_failures_per_address = Integer(
        50, min=0,
        help="""Failed logins from one network address within ``login_failure_window`` seconds
        before logins from it are refused for a while. A school often reaches the hub from a
        single address for a whole classroom: keep this well above a class's typing errors.
        0 = no limit.

        Example::

            c.AllianceAuthenticator.login_failures_per_address = 50
        """,
    ).tag(config=True)

    login_failure_window = Float(
        300.0, min=1.0,
        help="""Seconds over which failed logins are counted (a sliding window); a refused
        login may be tried again once enough of the counted failures are this old.

        Example::

            c.AllianceAuthenticator.login_failure_window = 300
        """,
    ).tag(config=True)

    login_trusted_proxies = List(
        Unicode(),
        help="""Addresses of proxies in front of configurable-http-proxy (an ingress, a load
        balancer), skipped when reading the login's address from ``X-Forwarded-For``; without
        them every login would seem to come from the ingress.

        Example::

            c.AllianceAuthenticator.login_trusted_proxies = ["10.0.0.5"]
        """,
    ).tag(config=True)

    quota_url = Unicode(
        help="""Where the hub reaches the quota service, to ask it about students a teacher imported
        (accounts not in the alliance file). Empty: only the alliance file's accounts log in.
        ``gpu-commons hub`` sets it. Example::

            c.AllianceAuthenticator.quota_url = "http://127.0.0.1:8181"
        """,
    ).tag(config=True)

    quota_api_token = Unicode(
        help="""The hub's token for the quota service (the same as ``c.QuotaSpawnerMixin.quota_api_token``).""",
    ).tag(config=True)

    _limiter: LoginLimiter | None = None
    _dummy_hashes: dict[int, str] = {}

    @property
    def login_limiter(self) -> LoginLimiter:
        if self._limiter is None:
            self._limiter = LoginLimiter(self.login_failures_per_account, self.login_failures_per_address,
                                         self.login_failure_window)
        return self._limiter

    def get_handlers(self, app):
        return [("/login", RateLimitedLoginHandler)]

    async def authenticate(self, handler, data):
        username = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        loop = asyncio.get_running_loop()
        # a teacher printed a new slip (or the account never chose its own password): only the
        # slip opens it (first_login), a password chosen before no longer does
        void = bool((await self.roster_record(username) or {}).get("one_time_hash"))
        if not await loop.run_in_executor(_BCRYPT, self.check, "" if void else username, password):
            self.log.warning("Failed login for %r", username[:32])
            return None
        return username

    def check(self, username: str, password: str) -> bool:
        """Whether ``password`` is ``username``'s (blocking: bcrypt; run it in a worker thread).
        An unknown account is checked against a dummy hash of the same cost, so it takes
        as long as a wrong password."""
        hashes = load_hashes(self.password_file) if self.password_file else {}
        hashed = hashes.get(username)
        if hashed is None:
            check_password(password, self._dummy_hash(_cost_of(next(iter(hashes.values()), ""))))
            return False
        return check_password(password, hashed)

    # -- students a teacher imported (hub/roster.py) ------------------------------------------

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # the alliance file's accounts, as configured: JupyterHub adds every user it creates to
        # allowed_users later (allow_existing_users), imported students too
        self._file_accounts = frozenset(self.allowed_users)

    def _in_file(self, username: str) -> bool:
        return username in self._file_accounts

    async def roster_record(self, username: str) -> dict | None:
        """The quota service's record of an imported account; None for the file's accounts, for
        unknown names and while the service cannot answer."""
        if self._in_file(username) or not self.quota_url:
            return None
        try:
            return await roster.roster_account(self.quota_url, self.quota_api_token, username)
        except (httpx.HTTPError, ValueError) as exc:
            self.log.warning("The quota service could not say whether %r is an imported account: %s", username[:32], exc)
            return None

    async def first_login(self, username: str, password: str, secret: bytes) -> str | None:
        """A ticket for the set-password page when ``password`` is the account's unspent
        one-time password; else None. The service holds an unspent one-time password only
        until the account chooses its own, so one it holds while the hub has the account's own
        password is a new slip (a teacher reset it): the old own password is then forgotten."""
        if self._in_file(username):
            return None
        record = await self.roster_record(username)
        hashed = (record or {}).get("one_time_hash")
        if not hashed:
            return None
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(_BCRYPT, check_password, password, hashed):
            return None
        if self.password_file:
            await loop.run_in_executor(_BCRYPT, roster.forget_password, self.password_file, username)
        return roster.ticket(secret, username, hashed, time.time())

    async def check_allowed(self, username, authentication=None):
        """The file's accounts as JupyterHub checks them; any other name only while the quota
        service has it as an imported student or a created teacher (JupyterHub adds every user
        it created to ``allowed_users``: a student removed from their class would pass)."""
        if self._in_file(username) or not self.quota_url:
            return super().check_allowed(username, authentication)
        return await self.roster_record(username) is not None

    async def join_roster_school(self, user, db) -> None:
        """An imported student or created teacher into their school's group and the quota
        pages' role (a teacher also their school's teacher role)."""
        record = await self.roster_record(user.name)
        if record is not None:
            roster.join_school(db, user.orm_user if hasattr(user, "orm_user") else user, record["school"],
                               record.get("role", "student"))

    async def refresh_user(self, user, handler=None):
        """Imported students: their school's group again (after a restart of the hub, a move
        by a new import); one no longer in the roster must log in again (and cannot)."""
        if self._in_file(user.name) or not self.quota_url:
            return True
        try:
            record = await roster.roster_account(self.quota_url, self.quota_api_token, user.name)
        except (httpx.HTTPError, ValueError):
            return True  # the service is away: keep the login as it is
        if record is None:
            return False
        roster.join_school(handler.db if handler is not None else user.db, user.orm_user, record["school"],
                           record.get("role", "student"))
        return True

    @classmethod
    def _dummy_hash(cls, cost: int) -> str:
        if cost not in cls._dummy_hashes:
            cls._dummy_hashes[cost] = bcrypt.hashpw(b"no account has this password", bcrypt.gensalt(cost)).decode()
        return cls._dummy_hashes[cost]


def _cost_of(hashed: str) -> int:
    """The cost (log2 rounds) of a bcrypt hash; the default for anything else."""
    found = _COST.match(hashed)
    cost = int(found.group(1)) if found else DEFAULT_ROUNDS
    return cost if 4 <= cost <= 16 else DEFAULT_ROUNDS
