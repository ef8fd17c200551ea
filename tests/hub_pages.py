"""Render the hub's templates as JupyterHub does (hub/templates over the stock ones, the
language extension) without a hub: a fake handler carries the request's language."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub.app import JupyterHub

TEMPLATES = Path(__file__).resolve().parent.parent / "hub" / "templates"
STOCK = Path(JupyterHub()._template_paths_default()[0])


class Handler:
    def __init__(self, accept: str, uri: str = "/hub/home"):
        self.request = SimpleNamespace(method="GET", headers={"Accept-Language": accept}, uri=uri)

    def get_argument(self, name, default=None):
        return default

    def get_cookie(self, name):
        return None

    def set_cookie(self, name, value, **options):
        pass

    def static_url(self, path, include_version=True):
        return f"/hub/static/{path}"


def render_page(name: str, accept: str, **namespace) -> str:
    loader = ChoiceLoader([PrefixLoader({"templates": FileSystemLoader([str(STOCK)])}, "/"),
                           FileSystemLoader([str(TEMPLATES), str(STOCK)])])
    environment = Environment(loader=loader, autoescape=True, extensions=["hub.i18n.HubTemplates"])
    handler = Handler(accept)
    base = dict(base_url="/hub/", prefix="/", user=None, login_url="/hub/login", logout_url="/hub/logout",
                static_url=handler.static_url, version_hash="", services=[], parsed_scopes=set(), xsrf="x",
                gc_default_locale="zh-CN")
    return environment.get_template(name).render(**{**base, **namespace})
