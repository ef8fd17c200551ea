"""Log in with an alliance account: name and password checked against bcrypt hashes.

- The bcrypt check (tens of milliseconds of CPU) runs in a small pool of worker threads, never
  on the hub's event loop: a flood of logins must not slow every other page and API call.
- An unknown account costs the same as a wrong password (its password is checked against a
  dummy hash of the same cost), so the answer's timing does not tell which accounts exist.
- Failed logins are limited per account and per address (hub/login_limits.py): one more is
  refused on the login page, without checking the password, with the time to try again
  (HTTP 429 and ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

import bcrypt
from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LoginHandler
from traitlets import Float, Integer, List, Unicode

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
            await super().post()
        finally:
            if getattr(self, "_jupyterhub_user", None) is not None:
                limiter.succeeded(attempt)


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
        if not await loop.run_in_executor(_BCRYPT, self.check, username, password):
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
