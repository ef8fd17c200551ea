"""Light on a slow link, seen by a real browser on a real platform: the hub's pages and
JupyterLab come compressed, versioned files are cached for a year, nothing comes from an
outside host, and JupyterLab does not ask about the official Jupyter news.

How fast that is on a county school's link is measured by benchmarks/slow_link.py, not here.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.browser import LAB_READY, Wire, log_in
from tests.hub_client import log_in as log_in_api

pytestmark = [pytest.mark.slow, pytest.mark.browser]

STUDENT = "c01-s1"
YEAR_S = 365 * 24 * 3600
NEWS_QUESTION = re.compile(r"Jupyter news|Jupyter 官方新闻|新闻")
NOTIFICATION_SETTINGS = "@jupyterlab/apputils-extension:notification"


def max_age(cache_control: str) -> int:
    found = re.search(r"max-age=(\d+)", cache_control)
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def running_workspace(stack):
    student = log_in_api(stack, STUDENT)
    event = student.start("cpu")
    assert event.get("ready"), event
    yield student
    student.stop()


def news_toasts(page) -> list[str]:
    return [text for text in page.locator(".Toastify__toast").all_inner_texts() if NEWS_QUESTION.search(text)]


def lab_api(page, method: str, url: str, body: dict | None = None):
    """A call of JupyterLab's server from the page, as JupyterLab makes it (the session's
    cookie and its XSRF token); the answer's JSON, or its status when it has no body."""
    return page.evaluate(
        """async ([method, url, body]) => {
            const xsrf = decodeURIComponent((document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || "");
            const answer = await fetch(url, {method, body: body === null ? undefined : JSON.stringify(body),
                                             headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"}});
            const text = await answer.text();
            if (!answer.ok) throw new Error(`${method} ${url}: ${answer.status} ${text}`);
            return text ? JSON.parse(text) : answer.status;
        }""",
        [method, url, body],
    )


def open_lab(page, stack) -> None:
    page.goto(f"{stack.url}/user/{STUDENT}/lab", wait_until="commit", timeout=120_000)
    page.wait_for_selector(LAB_READY, state="visible", timeout=120_000)


def test_hub_and_jupyterlab_come_compressed_and_cached_from_the_hub_alone(stack, browser, running_workspace):
    context = browser.new_context()
    try:
        page = context.new_page()
        wire = Wire.watch(context, page)
        page.goto(f"{stack.url}/hub/login", wait_until="load")
        login = wire.find(r"/hub/login$")
        assert login.headers.get("content-encoding") in ("gzip", "br"), login.headers
        style = wire.find(r"/hub/static/css/style\.min\.css\?v=")
        assert style.headers.get("content-encoding") in ("gzip", "br"), style.headers
        assert max_age(style.headers.get("cache-control", "")) >= YEAR_S, style.headers
        page.close()

        page = log_in(context, stack, STUDENT, next_url="/hub/home")
        wire = Wire.watch(context, page)
        open_lab(page, stack)
        core = wire.find(r"/static/lab/jlab_core\.[0-9a-f]+\.js")
        assert core.headers.get("content-encoding") == "br", (
            f"JupyterLab's core came {core.headers.get('content-encoding') or 'uncompressed'}, not precompressed "
            "with brotli: run `make install` (python -m gpu_commons_workspace.static_files)")
        assert core.wire_bytes < 700_000, core  # 2.57 MB as it is
        assert "immutable" in core.headers.get("cache-control", "") and max_age(core.headers["cache-control"]) >= YEAR_S
        lab_page = wire.find(rf"/user/{STUDENT}/lab$")
        assert "jlab_core" in lab_page.headers.get("link", "") and "rel=preload" in lab_page.headers["link"]
        assert len([url for url in wire.requested.values() if "/jlab_core." in url]) == 1  # the preload is used
        lease_plugin = wire.find(r"/lab/extensions/gpu-commons-lease/static/remoteEntry\.[0-9a-f]{20}\.js$")
        assert max_age(lease_plugin.headers.get("cache-control", "")) >= YEAR_S, lease_plugin.headers
        settings = wire.find(r"/lab/api/settings\?")
        assert settings.headers.get("content-encoding") == "gzip", settings.headers  # the API, compressed as sent
        assert not wire.hosts_other_than(stack.url)
    finally:
        context.close()


def test_jupyterlab_does_not_ask_about_the_jupyter_news(stack, browser, running_workspace):
    context = browser.new_context()
    try:
        page = log_in(context, stack, STUDENT, next_url="/hub/home")
        open_lab(page, stack)
        page.wait_for_timeout(3000)  # the question would come once JupyterLab is restored
        assert news_toasts(page) == []
        settings_url = f"/user/{STUDENT}/lab/api/settings/{NOTIFICATION_SETTINGS}"
        default = lab_api(page, "GET", settings_url)["schema"]["properties"]["fetchNews"]["default"]
        assert default == "false"

        # The control: a student who sets "ask me" gets the question, so the check above can see it.
        status = lab_api(page, "PUT", settings_url, {"raw": json.dumps({"fetchNews": "none"})})
        assert status == 204, status
        open_lab(page, stack)
        page.locator(".Toastify__toast", has_text=NEWS_QUESTION).first.wait_for(timeout=30_000)
        assert news_toasts(page)
    finally:
        context.close()
