"""What every page of the quota service shares: the reader's language, the login, the CSRF
token of forms, the page's Content-Security-Policy, and rendering a template.

- Language: ``?lang=`` (the switch, remembered in the hub's ``gpu_commons_lang`` cookie,
  Path=/ so the hub and this service read the same choice), else that cookie, else
  ``Accept-Language``, else the alliance's ``language``.
- Login: the service's OAuth cookie (quota/deps.py). A GET page is a navigation and reads
  with it as every other read does. A form POST carries ``csrf``, an HMAC of the login
  token under the service's own secret (:func:`csrf_token`): a page of another site
  cannot read it, so it cannot forge it. The POST is also refused when the browser says it
  came from another origin (``Origin``, ``Sec-Fetch-Site``). Only then does
  :func:`form_caller` resolve the cookie as for a read. See docs/security.md ("Pages").
- Headers: pages allow styles and forms of this service only, nothing else
  (:data:`PAGE_POLICY`); no script at all.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from gpu_commons_i18n import COOKIE_NAME, SUPPORTED, Message, _, negotiate, ngettext, render, translate
from quota.auth import Principal
from quota.deps import _token_of, current_principal

log = logging.getLogger("quota.pages")
HERE = Path(__file__).resolve().parent
LANGUAGE_NAMES = {"zh-CN": "中文", "en": "English"}
COOKIE_DAYS = 365
PAGE_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
               "base-uri 'none'; frame-ancestors 'none'")
MAX_FORM_FIELDS = 200

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def chosen_locale(value: str | None) -> str | None:
    """A supported tag for the switch's or the cookie's value, else None."""
    if not value:
        return None
    found = negotiate(value, SUPPORTED, default="")
    return found if found and value.replace("_", "-").split("-")[0].lower() == found.split("-")[0].lower() else None


def page_locale(request: Request) -> str:
    switched = chosen_locale(request.query_params.get("lang"))
    default = request.app.state.book.alliance.language
    return (switched or chosen_locale(request.cookies.get(COOKIE_NAME))
            or negotiate(request.headers.get("accept-language"), SUPPORTED, default))


def prefix(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def csrf_token(request: Request) -> str:
    """The form token of this login: HMAC-SHA256 of the login cookie under the service's token."""
    token, from_cookie = _token_of(request)
    key = request.app.state.settings.api_token.encode()
    return hmac.new(key, b"pages-csrf:" + token.encode(), hashlib.sha256).hexdigest() if token else ""


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from a page of another origin: its
    ``Sec-Fetch-Site`` is not same-origin, or its ``Origin`` names another host. ``Origin: null``
    (a browser hiding the origin) passes only with ``Sec-Fetch-Site: same-origin``."""
    site = request.headers.get("sec-fetch-site")
    if site and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin == "null":
        return site == "same-origin"
    if origin:
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
        return urlsplit(origin).netloc == host
    return True


@dataclass
class Form:
    """A posted form: its fields (first value of each) and all values of each name."""

    fields: dict[str, str]
    lists: dict[str, list[str]]

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default).strip()


async def read_form(request: Request) -> Form:
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "The form could not be read; open the page again.") from None
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
        lists.setdefault(name, []).append(value)
    return Form(fields, lists)


CSRF_REFUSED = ("This form is stale or did not come from this service's own page (its CSRF token is missing or "
                "wrong); open the page again and send the form from there.")


async def form_caller(request: Request) -> tuple[Principal, Form]:
    """The caller of a form POST, after the CSRF checks (see the module); 403 otherwise."""
    form = await read_form(request)
    return await checked_caller(request, form.get("csrf")), form


async def checked_caller(request: Request, sent_token: str) -> Principal:
    """The caller of a form whose CSRF token was ``sent_token`` (a form read otherwise, e.g. a
    file upload), after the checks of :func:`form_caller`; 403 otherwise."""
    token, from_cookie = _token_of(request)
    if from_cookie:
        expected = csrf_token(request)
        origin_ok = same_origin(request)
        token_ok = hmac.compare_digest(sent_token.strip().encode(), expected.encode())
        if not (origin_ok and token_ok):
            log.warning("form refused on %s: %s (Origin %r, Host %r, X-Forwarded-Host %r, Sec-Fetch-Site %r)",
                        request.url.path, "wrong or missing CSRF token" if origin_ok else "another origin",
                        request.headers.get("origin"), request.headers.get("host"),
                        request.headers.get("x-forwarded-host"), request.headers.get("sec-fetch-site"))
            raise HTTPException(status.HTTP_403_FORBIDDEN, CSRF_REFUSED)
        request.scope["gpu_commons.csrf_checked"] = True
    return await current_principal(request)


def language_links(request: Request, current: str) -> Markup:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    links = []
    for tag in SUPPORTED:
        href = f"{prefix(request)}{request.url.path[len(prefix(request)):] if request.url.path.startswith(prefix(request)) else request.url.path}?{urlencode(query + [('lang', tag)])}"
        name = LANGUAGE_NAMES.get(tag, tag)
        if tag == current:
            links.append(f'<span lang="{tag}" aria-current="true">{escape(name)}</span>')
        else:
            links.append(f'<a lang="{tag}" hreflang="{tag}" href="{escape(href)}">{escape(name)}</a>')
    return Markup(" | ".join(links))


def page(request: Request, caller: Principal, template: str, status_code: int = 200, **context) -> HTMLResponse:
    """Render ``template`` in the reader's language with the page's headers."""
    locale = page_locale(request)
    html = _env.get_template(template).render(
        _=lambda msgid, **params: translate(msgid, locale, **params),
        _n=lambda singular, plural, n, **params: ngettext(singular, plural, n, locale, **params),
        tr=lambda text: render(text, locale),
        locale=locale, base=prefix(request), caller=caller, csrf=csrf_token(request),
        language_links=language_links(request, locale), role_name=render(role_label(caller.role.value), locale),
        nav=[(href, render(label, locale)) for href, label in nav_for(caller)], **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers["content-security-policy"] = PAGE_POLICY
    response.headers["referrer-policy"] = "same-origin"  # the form's POST then names its origin
    switched = chosen_locale(request.query_params.get("lang"))
    if switched:
        response.set_cookie(COOKIE_NAME, switched, path="/", max_age=COOKIE_DAYS * 86400, samesite="lax")
    return response


def back_to(request: Request, path: str, **query) -> RedirectResponse:
    """After a form: back to the page (303, so a reload does not post again)."""
    suffix = f"?{urlencode(query)}" if query else ""
    return RedirectResponse(f"{prefix(request)}{path}{suffix}", status_code=303)


# -- what each role finds in the header ---------------------------------------------------

def role_label(role: str) -> Message:
    return {
        "hub": _("the hub"), "operator": _("operator"), "staff": _("alliance staff"),
        "school_admin": _("school admin"), "teacher": _("teacher"), "student": _("student"),
    }[role]


def nav_for(caller: Principal) -> list[tuple[str, Message]]:
    """The pages a role may open (the routes check again)."""
    role = caller.role.value
    links = []
    if role in ("teacher", "school_admin", "staff", "hub"):
        links.append(("/pages/teacher", _("Classes and bookings")))
    if role in ("school_admin", "staff", "hub"):
        links.append(("/pages/classes", _("Classes and teachers")))
    if role in ("staff", "hub", "operator"):
        links.append(("/pages/staff", _("Shares and equity")))
    if role in ("operator", "hub", "staff"):
        links.append(("/pages/operator", _("Pools and queue")))
        links.append(("/pages/workspaces", _("Workspaces")))
    if role == "student":
        links.append(("/pages/me", _("My GPU time")))
    return links


def field_errors(errors, labels: dict[str, Message], locale: str) -> list[dict]:
    """Errors as the page shows them: the field's id, its label and the fix, in ``locale``."""
    return [{"field": e.field, "label": render(labels.get(e.field, e.field), locale), "message": render(e.message, locale)}
            for e in errors]
