"""FastAPI dependencies: who is calling (``Caller``) and the app's LeaseBook (``Book``).

A caller proves who they are with a JupyterHub API token, in the ``Authorization`` header
(the hub's spawner, scripts, the workspace) or in the login cookie a browser gets from
the OAuth login (quota/routes/oauth.py). The cookie is ambient: the browser sends it with
any request to the service, also one a page of another site or another user's server on
this hub makes it send. So the cookie only reads, and only for the browser's own
navigations: a change (POST, PUT, PATCH, DELETE) needs the header, and a read whose fetch
metadata says a script or a frame asked (``Sec-Fetch-Mode`` other than ``navigate``,
``Sec-Fetch-Dest`` other than ``document``) is refused. See docs/security.md.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from quota.auth import Principal, Role, principal_for
from quota.leases import LeaseBook

TOKEN_COOKIE = "gpu-commons-quota-token"
SECURE_PREFIX = "__Secure-"  # the browser keeps such a cookie only when set over https with Secure
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_TOKEN_CHARS = 512

COOKIE_CHANGES = (
    "Changes need the header 'Authorization: token <your JupyterHub API token>' (create one on the hub's token "
    "page): the quota service's login cookie only lets a browser read its pages, so that a page of another site, "
    "or another user's server on this hub, cannot act in your name."
)
COOKIE_SCRIPTS = (
    "The quota service's login cookie counts only when you open its pages in the browser yourself (the address "
    "bar or a link), not for scripts or frames of other pages; a script must send the header "
    "'Authorization: token <your JupyterHub API token>'."
)
BAD_TOKEN = (
    "This token has characters no JupyterHub token has (they are at most {limit} ASCII letters, digits and "
    "punctuation); copy it again from the hub's token page, or log in again at the hub."
)


def over_https(request: Request) -> bool:
    """Did the browser use https (directly, or to the hub's proxy, which says so in X-Forwarded-Proto)?"""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def token_cookie_name(request: Request) -> str:
    """``__Secure-gpu-commons-quota-token`` over https, else ``gpu-commons-quota-token``.
    (``__Host-`` would need Path=/, which would send the token to every user's server.)"""
    return SECURE_PREFIX + TOKEN_COOKIE if over_https(request) else TOKEN_COOKIE


def _token_of(request: Request) -> tuple[str, bool]:
    """The token and whether it came from the login cookie."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("token", "bearer") and token.strip():
        return token.strip(), False
    cookie = request.cookies.get(token_cookie_name(request), "")
    return cookie, bool(cookie)


def _looks_like_a_token(token: str) -> bool:
    return len(token) <= MAX_TOKEN_CHARS and all("!" <= char <= "~" for char in token)


def _check_cookie_use(request: Request) -> None:
    """CSRF and same-site script defence for cookie-authenticated requests (see the module).
    A page's form POST whose CSRF token and origin quota/pages/web.py checked passes."""
    if request.method not in SAFE_METHODS and not request.scope.get("gpu_commons.csrf_checked"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, COOKIE_CHANGES)
    mode, dest = request.headers.get("sec-fetch-mode"), request.headers.get("sec-fetch-dest")
    if (mode and mode != "navigate") or (dest and dest != "document"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, COOKIE_SCRIPTS)


async def current_principal(request: Request) -> Principal:
    """The caller, from a JupyterHub API token (header) or the OAuth login cookie. Async so
    that the hub's own token costs no trip to a worker thread; asking the hub about any
    other token runs in one."""
    token, from_cookie = _token_of(request)
    if not token and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        from quota.routes.oauth import login_redirect  # a browser: log in through the hub

        response = login_redirect(request)
        # only where to go and the state cookie: the redirect's own Content-Length (0) does not
        # fit the error body rendered for this exception (a traceback at every first visit)
        headers = {name: value for name, value in response.headers.items() if name in ("location", "set-cookie")}
        raise HTTPException(response.status_code, "Log in through the hub.", headers=headers)
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing token: send the header 'Authorization: token <a JupyterHub API token>', "
            "or log in through the hub at /services/quota/.",
        )
    if not _looks_like_a_token(token):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, BAD_TOKEN.format(limit=MAX_TOKEN_CHARS))
    if from_cookie:
        _check_cookie_use(request)
    state = request.app.state
    if hmac.compare_digest(token.encode(), state.settings.api_token.encode()):
        return Principal("hub", Role.hub)
    name = await run_in_threadpool(state.resolve_token, token)
    if name is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "This token is not valid here (unknown, expired, revoked, or without access to the quota service); "
            "log in again at the hub or create a new token on the hub's token page.",
        )
    principal = principal_for(name, state.book.alliance)
    if principal is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"The account '{name}' has no role in the alliance (student, teacher, school admin, staff or operator); "
            "ask alliance staff to add it to the alliance file.",
        )
    return principal


async def get_book(request: Request) -> LeaseBook:
    return request.app.state.book


Caller = Annotated[Principal, Depends(current_principal)]
Book = Annotated[LeaseBook, Depends(get_book)]
Authorized = [Depends(current_principal)]


def require(*roles: Role):
    """A dependency that lets only the given roles through (403 naming them otherwise)."""
    allowed = set(roles)

    def check(caller: Caller) -> Principal:
        if caller.role not in allowed:
            names = ", ".join(sorted(role.value for role in allowed))
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"Only {names} may do this; you are {caller.role.value}.")
        return caller

    return Depends(check)


def forbid(message: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, message)
