"""The hub's pages in the student's language (gpu_commons_i18n, the one message catalogue).

- :func:`request_locale`: the language of one request: the switch (``?lang=en``, then remembered
  in the ``gpu_commons_lang`` cookie), else the cookie, else ``Accept-Language``, else the
  alliance's language (``HubLanguage.default_locale``).
- :class:`HubTemplates`: a Jinja extension for JupyterHub's template environments
  (``c.JupyterHub.jinja_environment_options``): it gives the templates ``_()``/``_n()``, which
  render a sentence in the request's language, ``tr()`` for a message that comes from the
  spawner (an error carries a :class:`~gpu_commons_i18n.Message`), ``page_locale()`` and
  ``language_links()`` for the switch, and makes the stock ``<html lang="en">`` follow the
  language. The templates themselves (hub/templates/) extend JupyterHub's stock ones.

Jinja calls these helpers with the template's context; the request is found through the
handler's ``static_url``, which JupyterHub puts in every page's namespace.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jinja2 import pass_context
from jinja2.ext import Extension
from markupsafe import Markup, escape
from traitlets import TraitError, Unicode, validate
from traitlets.config import Configurable

from gpu_commons_i18n import COOKIE_NAME, DEFAULT_LOCALE, SUPPORTED, negotiate, ngettext, render, translate

LANGUAGE_NAMES = {"zh-CN": "中文", "en": "English"}
COOKIE_DAYS = 365


class HubLanguage(Configurable):
    """The language of the hub's pages, of the spawner's messages and of JupyterLab when the
    student's browser asks for none that the platform has."""

    default_locale = Unicode(
        DEFAULT_LOCALE,
        help="""The language for a browser whose Accept-Language names none of the platform's
        languages (zh-CN, en), and before a student chose one with the switch on every page.
        ``gpu-commons hub`` sets it from the alliance file's ``language``.

        Example::

            c.HubLanguage.default_locale = "zh-CN"
        """,
    ).tag(config=True)

    @validate("default_locale")
    def _supported(self, proposal):
        value = proposal["value"]
        if value not in SUPPORTED:
            raise TraitError(f"c.HubLanguage.default_locale = {value!r} has no catalogue; use one of {', '.join(SUPPORTED)}")
        return value


def chosen_locale(value: str | None) -> str | None:
    """A supported tag for the switch's or the cookie's value, else None."""
    if not value:
        return None
    found = negotiate(value, SUPPORTED, default="")
    return found if value.replace("_", "-").split("-")[0].lower() == found.split("-")[0].lower() else None


def request_locale(handler, default: str = DEFAULT_LOCALE, remember: bool = False) -> str:
    """The language of ``handler``'s request; with ``remember``, a ``?lang=`` choice is kept in
    the cookie (the page that shows the switch sets it)."""
    cached = getattr(handler, "_gpu_commons_locale", None)
    if cached:
        return cached
    switched = chosen_locale(handler.get_argument("lang", None)) if handler.request.method == "GET" else None
    if switched and remember:
        handler.set_cookie(COOKIE_NAME, switched, path="/", expires_days=COOKIE_DAYS, samesite="Lax")
    locale = (switched or chosen_locale(handler.get_cookie(COOKIE_NAME))
              or negotiate(handler.request.headers.get("Accept-Language"), SUPPORTED, default))
    handler._gpu_commons_locale = locale
    return locale


def _handler(context):
    static_url = context.get("static_url")
    return getattr(static_url, "__self__", None)


@pass_context
def page_locale(context) -> str:
    handler = _handler(context)
    default = context.get("gc_default_locale") or DEFAULT_LOCALE
    if handler is None:
        return context.get("gc_locale") or default
    return request_locale(handler, default, remember=True)


@pass_context
def gettext(context, msgid: str, **params) -> str:
    return translate(msgid, page_locale(context), **params)


@pass_context
def plural_gettext(context, singular: str, plural: str, n: int, **params) -> str:
    return ngettext(singular, plural, n, page_locale(context), **params)


@pass_context
def tr(context, text) -> str:
    """A message from the spawner or the authenticator (a Message) in the page's language;
    any other text as it came."""
    return render(text, page_locale(context))


@pass_context
def language_links(context) -> Markup:
    """Links to this page in each language: the switch, remembered in a cookie."""
    handler = _handler(context)
    current = page_locale(context)
    uri = handler.request.uri if handler is not None else "?"
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("lang", "_xsrf")]
    links = []
    for tag in SUPPORTED:
        href = urlunsplit(("", "", parts.path, urlencode(query + [("lang", tag)]), ""))
        name = LANGUAGE_NAMES.get(tag, tag)
        if tag == current:
            links.append(f'<span class="gc-lang-current" lang="{tag}" aria-current="true">{escape(name)}</span>')
        else:
            links.append(f'<a class="gc-lang-link" lang="{tag}" hreflang="{tag}" href="{escape(href)}">{escape(name)}</a>')
    return Markup(" | ".join(links))


class HubTemplates(Extension):
    """Added to both of JupyterHub's Jinja environments (``jinja_environment_options``)."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.globals.update(_=gettext, _n=plural_gettext, tr=tr, page_locale=page_locale,
                                   language_links=language_links, stop_reason_of=stop_reason_of)

    def preprocess(self, source, name, filename=None):
        # The stock page.html writes <html lang="en"> outside any block.
        return source.replace('<html lang="en">', '<html lang="{{ page_locale() }}">')


def configure_templates(c, default_locale: str, templates_dir: str) -> None:
    """Point the hub at hub/templates/ and the extension, with the alliance's language."""
    c.JupyterHub.template_paths = [templates_dir, *[p for p in c.JupyterHub.get("template_paths", []) if p != templates_dir]]
    options = dict(c.JupyterHub.get("jinja_environment_options", {}))
    extensions = list(options.get("extensions", []))
    if "hub.i18n.HubTemplates" not in extensions:
        extensions.append("hub.i18n.HubTemplates")
    options["extensions"] = extensions
    c.JupyterHub.jinja_environment_options = options
    variables = dict(c.JupyterHub.get("template_vars", {}))
    variables["gc_default_locale"] = default_locale
    c.JupyterHub.template_vars = variables


@pass_context
def stop_reason_of(context, spawner) -> str:
    """Why ``spawner``'s workspace last stopped by itself, in the page's language ('' if it did not)."""
    from spawner.quota import stop_reason_text

    return stop_reason_text(getattr(spawner, "stop_reason", None), page_locale(context))
