"""FastAPI dependencies: who is calling (``Caller``) and the app's LeaseBook (``Book``)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from quota.auth import Principal, Role, principal_for
from quota.leases import LeaseBook

TOKEN_COOKIE = "gpu-commons-quota-token"


def _token_of(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("token", "bearer") and token.strip():
        return token.strip()
    return request.cookies.get(TOKEN_COOKIE, "")


async def current_principal(request: Request) -> Principal:
    """The caller, from a JupyterHub API token (header) or the OAuth login cookie. Async so
    that the hub's own token costs no trip to a worker thread; asking the hub about any
    other token runs in one."""
    token = _token_of(request)
    if not token and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        from quota.routes.oauth import login_redirect  # a browser: log in through the hub

        response = login_redirect(request)
        raise HTTPException(response.status_code, "Log in through the hub.", headers=dict(response.headers))
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing token: send the header 'Authorization: token <a JupyterHub API token>', "
            "or log in through the hub at /services/quota/.",
        )
    state = request.app.state
    if hmac.compare_digest(token, state.settings.api_token):
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
