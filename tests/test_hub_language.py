"""The hub's side of the languages, without a running hub: which language a request gets, the
templates rendered through JupyterHub's own loader and stock templates, and what the spawner
keeps (the student's language, why the workspace stopped) with a fake quota service."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub.app import JupyterHub
from traitlets import TraitError

from gpu_commons_i18n import COOKIE_NAME, _
from hub.i18n import HubLanguage, request_locale
from spawner.quota import SpawnRefused, stop_reason_text
from tests.spawner_fakes import FakeQuotaService, lease, leased_spawner, write_alliance

TEMPLATES = Path(__file__).resolve().parent.parent / "hub" / "templates"
STOCK = Path(JupyterHub()._template_paths_default()[0])


class FakeHandler:
    """What request_locale and the templates read of a tornado handler."""

    def __init__(self, accept: str | None = None, cookie: str | None = None, lang: str | None = None,
                 method: str = "GET", uri: str = "/hub/home"):
        headers = {"Accept-Language": accept} if accept else {}
        self.request = SimpleNamespace(method=method, headers=headers, uri=uri)
        self._cookie, self._lang, self.cookies_set = cookie, lang, []

    def get_argument(self, name, default=None):
        return self._lang if name == "lang" and self._lang else default

    def get_cookie(self, name):
        return self._cookie if name == COOKIE_NAME else None

    def set_cookie(self, name, value, **options):
        self.cookies_set.append((name, value, options))

    def static_url(self, path, include_version=True):  # JupyterHub puts the handler's own in every page
        return f"/hub/static/{path}"


@pytest.mark.parametrize("handler, default, expected", [
    (FakeHandler(accept="en-US,en;q=0.9"), "zh-CN", "en"),
    (FakeHandler(accept="fr-FR"), "zh-CN", "zh-CN"),                     # no catalogue: the alliance's
    (FakeHandler(accept="fr-FR"), "en", "en"),
    (FakeHandler(accept="en", cookie="zh-CN"), "en", "zh-CN"),           # the switch's cookie wins
    (FakeHandler(accept="en", cookie="klingon"), "en", "en"),            # a cookie no catalogue has: ignored
    (FakeHandler(accept="zh-CN", cookie="zh-CN", lang="en"), "zh-CN", "en"),  # the switch itself
    (FakeHandler(accept="zh-CN", lang="en", method="POST"), "zh-CN", "zh-CN"),  # only a page view switches
])
def test_the_language_of_a_request(handler, default, expected):
    assert request_locale(handler, default) == expected


def test_the_switch_is_remembered_in_a_cookie():
    handler = FakeHandler(accept="zh-CN", lang="en")
    assert request_locale(handler, "zh-CN", remember=True) == "en"
    [(name, value, options)] = handler.cookies_set
    assert (name, value, options["path"]) == (COOKIE_NAME, "en", "/")
    assert not FakeHandler(lang="xx").cookies_set and request_locale(FakeHandler(lang="xx"), "en", remember=True) == "en"


def test_the_default_language_is_checked_at_start_up():
    assert HubLanguage().default_locale == "zh-CN"
    with pytest.raises(TraitError, match="has no catalogue"):
        HubLanguage(default_locale="fr")


def environment() -> Environment:
    """JupyterHub's loader (hub/templates first, the stock ones under templates/) and our extension."""
    loader = ChoiceLoader([PrefixLoader({"templates": FileSystemLoader([str(STOCK)])}, "/"),
                           FileSystemLoader([str(TEMPLATES), str(STOCK)])])
    return Environment(loader=loader, autoescape=True, extensions=["hub.i18n.HubTemplates"])


def page(name: str, handler: FakeHandler, **namespace) -> str:
    base = dict(base_url="/hub/", prefix="/", user=None, login_url="/hub/login", logout_url="/hub/logout",
                static_url=handler.static_url, version_hash="", services=[], parsed_scopes=set(), xsrf="x",
                gc_default_locale="zh-CN", authenticator_login_url="/hub/login", login_service="",
                authenticator=SimpleNamespace(request_otp=False))
    return environment().get_template(name).render(**{**base, **namespace})


@pytest.mark.parametrize("accept, lang, heading, button", [("zh-CN", "zh-CN", "登录", "登录"),
                                                           ("en", "en", "Sign in", "Sign in"),
                                                           (None, "zh-CN", "登录", "登录")])
def test_the_login_page_extends_the_stock_one_in_the_requests_language(accept, lang, heading, button):
    html = page("login.html", FakeHandler(accept=accept, uri="/hub/login?next=%2Fhub%2Fspawn"))
    assert f'<html lang="{lang}">' in html
    assert f"<h1>{heading}</h1>" in html and f"value='{button}'" in html
    assert 'require.config' in html  # the stock page around it
    # the switch links to this page in the other language, keeping its query
    other = "en" if lang == "zh-CN" else "zh-CN"
    assert re.search(rf'href="/hub/login\?next=%2Fhub%2Fspawn&amp;lang={other}"', html), html


def test_a_login_refusal_from_the_authenticator_shows_in_the_pages_language():
    refusal = _("Too many failed logins for this account (at most {limit} in {window}).", limit=10, window="5")
    html = page("login.html", FakeHandler(accept="zh-CN"), login_error=refusal)
    assert "此账号登录失败次数过多（5内最多 10 次）。" in html
    html = page("login.html", FakeHandler(accept="zh-CN"), login_error="Invalid username or password")
    assert "用户名或密码错误" in html  # JupyterHub's own sentence


def test_the_spawn_page_shows_the_spawners_error_in_the_pages_language():
    error = SpawnRefused(_("Unknown profile '{profile}'. Choose one of: {choices}.", profile="x", choices="cpu"))
    user = SimpleNamespace(name="c01-s1", spawner=SimpleNamespace(stop_reason={}, options_form=None))
    html = page("spawn.html", FakeHandler(accept="zh-CN"), user=user, for_user=user, spawner_options_form="<p>form</p>",
                error_message=error.jupyterhub_message, url="/hub/spawn")
    assert "没有名为“x”的配置。请从以下选择：cpu。" in html and "<h1>选择你的工作区</h1>" in html


@pytest.fixture
async def service():
    fake = FakeQuotaService()
    yield fake
    await fake.close()


async def test_the_spawner_speaks_the_language_of_the_request_that_started_it(service, tmp_path):
    service.answer("POST", "/api/leases", lease("queued", queue_position=2), lease("granted"))
    service.answer("GET", "/api/leases/l-1", lease("granted"))
    spawner = leased_spawner(service, write_alliance(tmp_path))
    spawner.handler = FakeHandler(accept="zh-CN,zh;q=0.9")
    await spawner.start()
    events = [event async for event in spawner.progress()]
    assert events[0]["message"] == "正在申请One GPU slice…"
    assert "你在队列中排第 2 位。" in events[1]["message"]
    assert spawner.get_state()["locale"] == "zh-CN"
    assert "in the queue" in str(spawner._events[1]["message"])  # the log and the tests keep the English


async def test_a_refusal_reaches_the_spawn_page_in_the_students_language(service, tmp_path):
    reason = {"msgid": "The GPU-hour budget is used up.", "params": {}}
    service.answer("POST", "/api/leases", lease("refused", reason="The GPU-hour budget is used up.", reason_message=reason))
    spawner = leased_spawner(service, write_alliance(tmp_path))
    spawner.handler = FakeHandler(accept="zh-CN")
    with pytest.raises(SpawnRefused) as refused:
        await spawner.start()
    assert str(refused.value) == "The GPU-hour budget is used up."
    assert refused.value.jupyterhub_html_message == "GPU 时数预算已用完。"  # JupyterHub's progress stream shows it


async def test_why_the_workspace_stopped_is_kept_in_the_state_for_the_hubs_pages(service, tmp_path):
    service.answer("POST", "/api/leases", lease("granted"))
    spawner = leased_spawner(service, write_alliance(tmp_path), lease_check_interval=0)
    spawner.handler = FakeHandler(accept="en")
    await spawner.start()
    goes_back = {"msgid": "Your GPU share goes back at {at} UTC: {reason} Save your work before then.",
                 "params": {"at": "09:10", "reason": {"msgid": "Someone with a better claim is waiting.", "params": {}}}}
    service.answer("GET", "/api/leases/l-1", lease("expired", ends_in=None, reason="(English)", reason_message=goes_back))
    assert await spawner.poll() == 0
    state = spawner.get_state()
    assert stop_reason_text(state["stop_reason"], "zh-CN") == \
        "你的 GPU 份额将于 09:10（UTC）收回：有优先级更高的同学在等待。请在此之前保存文件。"
    assert stop_reason_text(state["stop_reason"], "en").startswith("Your GPU share goes back at 09:10 UTC")
    again = leased_spawner(service, write_alliance(tmp_path))
    again.load_state(state)  # after a hub restart
    assert stop_reason_text(again.stop_reason, "en") == stop_reason_text(state["stop_reason"], "en")
    assert again.locale == "en"
