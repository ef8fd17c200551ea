"""Helpers for the quota pages' in-process tests: a browser-like TestClient that logs in with
the service's cookie (as the OAuth login leaves it), reads a page's CSRF token and posts forms.

``page_client(app, account, locale)``: a TestClient whose cookie holds ``tok-<account>`` (the
stand-in hub of tests/quota_fixtures.py resolves it), sending ``Accept-Language``;
``csrf_of(html)``: the token of the page's forms; ``main_text(html)``: the page's <main>
without tags, for assertions on what a person reads.
"""

from __future__ import annotations

import html as html_lib
import re

from fastapi.testclient import TestClient

from quota.deps import TOKEN_COOKIE


def page_client(app, account: str, locale: str = "en") -> TestClient:
    client = TestClient(app, headers={"accept-language": locale, "accept": "text/html",
                                      "sec-fetch-mode": "navigate", "sec-fetch-dest": "document",
                                      "sec-fetch-site": "same-origin"})
    client.cookies.set(TOKEN_COOKIE, f"tok-{account}")
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def main_text(html: str) -> str:
    main = html[html.find("<main>"):html.find("</main>")] if "<main>" in html else html
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main))).strip()


def errors_of(html: str) -> list[str]:
    """The fields the page's error list names (their ids)."""
    block = html[html.find('class="errors"'):html.find("</div>", html.find('class="errors"'))] if 'class="errors"' in html else ""
    return re.findall(r'<a href="#([a-z_]+)">', block)


def csrf_for(app, account: str) -> str:
    """The form token of ``account``'s login as the pages compute it (for accounts whose pages
    have no form): HMAC-SHA256 of the login token under the service's token."""
    import hashlib
    import hmac

    key = app.state.settings.api_token.encode()
    return hmac.new(key, f"pages-csrf:tok-{account}".encode(), hashlib.sha256).hexdigest()
