"""Browser login through JupyterHub OAuth, and who am I.

A browser that opens the service (through the hub's proxy, at /services/quota/) without
a token is sent to the hub's OAuth authorize page; the hub sends it back to
``/oauth_callback`` with a code, which is exchanged for a token kept in an HttpOnly
cookie. JupyterHub's HubOAuth does the exchange; this module only wires it to FastAPI.

The page to return to is kept in the state cookie, which a page on the hub's site can
overwrite: it is followed only when it is a path of this service (:func:`safe_target`).
The login cookie is HttpOnly, SameSite=Strict, scoped to the service's path, and over https
Secure with the ``__Secure-`` prefix (``__Host-`` needs Path=/; see docs/security.md).
"""

from __future__ import annotations

import hmac
import secrets
from html import escape
from urllib.parse import quote, unquote, urlencode, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from quota.deps import SECURE_PREFIX, Caller, over_https, token_cookie_name

router = APIRouter(tags=["login"])
STATE_COOKIE = "gpu-commons-quota-oauth-state"


class Me(BaseModel):
    name: str = Field(description="JupyterHub account.")
    role: str = Field(description="hub, operator, staff, school_admin, teacher or student.")
    school: str | None = Field(description="School of a student, teacher or school admin; null otherwise.")


def _prefix(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/") or ""


def _state_cookie_name(request: Request) -> str:
    return SECURE_PREFIX + STATE_COOKIE if over_https(request) else STATE_COOKIE


def safe_target(wanted: str, prefix: str) -> str:
    r"""``wanted`` when it is a path of this service (under ``prefix``), else the service's home.
    Refused: another host (``//host``, ``/\host``, backslashes anywhere, which browsers read as
    slashes), a scheme (``https:``, ``javascript:``), control characters and spaces (browsers
    drop tabs and newlines, so ``/\t/host`` is ``//host``), and paths outside the service."""
    home = prefix + "/"
    if not wanted.startswith("/") or wanted.startswith("//") or "\\" in wanted:
        return home
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in wanted):
        return home
    parts = urlsplit(wanted)
    if parts.scheme or parts.netloc or not (parts.path == prefix or parts.path.startswith(home)):
        return home
    return wanted


def login_redirect(request: Request) -> RedirectResponse:
    """Send a browser to the hub's OAuth page, remembering where it wanted to go."""
    hub_oauth = request.app.state.hub_oauth
    if hub_oauth is None:
        raise HTTPException(401, "Browser login needs the hub; send 'Authorization: token <JupyterHub API token>'.")
    state = secrets.token_urlsafe(16)
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"{hub_oauth.login_url}&{urlencode({'state': state})}", status_code=302)
    response.set_cookie(_state_cookie_name(request), f"{state}|{quote(wanted)}", httponly=True, samesite="lax",
                        secure=over_https(request), path=_prefix(request) or "/", max_age=600)
    return response


@router.get("/oauth_callback", include_in_schema=False)
def oauth_callback(request: Request, code: str = "", state: str = ""):
    hub_oauth = request.app.state.hub_oauth
    if hub_oauth is None:
        raise HTTPException(404, "Browser login is off: this service does not run under JupyterHub.")
    remembered, _, wanted = request.cookies.get(_state_cookie_name(request), "").partition("|")
    if not code or not remembered or not hmac.compare_digest(state, remembered):
        raise HTTPException(400, "The login link is stale or was opened in another browser; open the page again.")
    try:
        token = hub_oauth.token_for_code(code, sync=True)
    except Exception as exc:
        raise HTTPException(502, f"The hub did not accept the login ({exc.__class__.__name__}); open the page again.") from None
    target = safe_target(unquote(wanted), _prefix(request))
    if request.headers.get("sec-fetch-site") == "cross-site":
        # a login begun from a link on another site: a SameSite=Strict cookie is not sent along the rest of
        # that redirect chain, so the browser goes on from a page of this site instead
        response = HTMLResponse(f'<!doctype html><meta charset=utf-8><meta http-equiv="refresh" content="0;url='
                                f'{escape(target)}"><title>Signed in</title><p><a href="{escape(target)}">Continue</a>')
    else:
        response = RedirectResponse(target, status_code=302)
    path = _prefix(request) or "/"
    response.set_cookie(token_cookie_name(request), token, httponly=True, samesite="strict",
                        secure=over_https(request), path=path)
    response.delete_cookie(_state_cookie_name(request), path=path, secure=over_https(request), httponly=True)
    return response


@router.get("/api/me", response_model=Me, tags=["login"])
def who_am_i(caller: Caller) -> Me:
    """The caller's account, role and school."""
    return Me(name=caller.name, role=caller.role.value, school=caller.school)
