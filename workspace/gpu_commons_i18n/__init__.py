"""The one message catalogue of GPU Commons: every sentence a person reads, in Simplified Chinese
and English (gettext catalogues through Babel).

The English sentence is the message id (the source text); ``locales/<locale>/LC_MESSAGES/
gpu_commons.po`` holds each language's translation. Code marks a sentence where it arises and
renders it where the reader's language is known::

    from gpu_commons_i18n import _, _n, negotiate, render

    message = _("Your account '{account}' is not registered with any school.", account=name)
    str(message)                       # the English sentence (logs, tests, old callers)
    render(message, "zh-CN")          # the student's language
    _n("{n} whole GPU free", "{n} whole GPUs free", free)   # plurals, right in both languages
    negotiate("zh-TW,zh;q=0.9,en;q=0.5")                     # -> "zh-CN"

- :func:`_` / :func:`_n` make a :class:`Message`: a ``str`` (its English text) that remembers its
  id and parameters, so an exception, a lease reason or a progress event can carry it unchanged
  to the page that knows the reader's language. Parameters may be messages themselves.
- :func:`translate` / :func:`ngettext` render at once in a given language.
- :func:`negotiate` picks a supported language from an ``Accept-Language`` header (or a cookie's
  value), falling back to a default (the alliance's: zh-CN in the demo).

Parameters are written ``{name}`` (``str.format``); a translation must use the same names, which
the completeness test checks (tests/test_i18n_catalogue.py) together with: every marked sentence
of the code and the hub's templates has a translation in every catalogue, none fuzzy, none stale.
A sentence without a translation shows in English, never as a raw message id.

The ``.po`` files are read and compiled in memory when first used (about 10 ms), so there is no
compiled ``.mo`` file that could be out of date; see docs/i18n.md.
"""

from __future__ import annotations

import functools
import io
import string
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

DOMAIN = "gpu_commons"
LOCALES_DIR = Path(__file__).resolve().parent / "locales"
# Language tags as browsers and <html lang> write them -> the catalogue's folder.
CATALOGUES = {"zh-CN": "zh_CN", "en": "en"}
SUPPORTED: tuple[str, ...] = tuple(CATALOGUES)
DEFAULT_LOCALE = "zh-CN"
COOKIE_NAME = "gpu_commons_lang"  # the hub's language switch remembers the choice here


class Message(str):
    """A sentence to translate: its English text as a ``str``, plus its id and parameters.

    ``str(message)`` and every ``str`` operation see the English sentence, so logs and existing
    callers keep working; :meth:`render` gives it in another language."""

    msgid: str
    plural: str | None
    n: int | None
    params: dict

    def __new__(cls, msgid: str, params: dict | None = None, plural: str | None = None, n: int | None = None):
        params = dict(params or {})
        self = super().__new__(cls, _render_one(msgid, plural, n, params, "en"))
        self.msgid, self.plural, self.n, self.params = msgid, plural, n, params
        return self

    def render(self, locale: str | None) -> str:
        return _render_one(self.msgid, self.plural, self.n, self.params, locale)

    def __reduce__(self):  # pickling / deep copies keep the message, not only its English text
        return (Message, (self.msgid, self.params, self.plural, self.n))

    def as_json(self) -> dict:
        """The message as plain data (to store or send), :func:`from_json` reads it back."""
        params = {k: (v.as_json() if isinstance(v, Message) else v) for k, v in self.params.items()}
        data = {"msgid": self.msgid, "params": params}
        if self.plural is not None:
            data.update(plural=self.plural, n=self.n)
        return data


class Localized(str):
    """Text made for one language at a time (a page fragment, e.g. the profile form): ``str()``
    is the English text, :meth:`render` calls ``make(locale)``."""

    def __new__(cls, make):
        self = super().__new__(cls, make("en"))
        self._make = make
        return self

    def render(self, locale: str | None) -> str:
        return self._make(locale)


def from_json(data: dict) -> Message:
    params = {k: (from_json(v) if isinstance(v, dict) and "msgid" in v else v) for k, v in data.get("params", {}).items()}
    return Message(data["msgid"], params, data.get("plural"), data.get("n"))


def _(msgid: str, **params) -> Message:
    """Mark a sentence for translation (extracted by the completeness test); render it later."""
    return Message(msgid, params)


def _n(singular: str, plural: str, n: int, **params) -> Message:
    """Mark a sentence with a plural; ``n`` chooses the form and is also the parameter ``{n}``."""
    return Message(singular, {"n": n, **params}, plural, n)


def translate(msgid: str, locale: str | None, **params) -> str:
    """``msgid`` in ``locale`` (a tag such as ``zh-CN``), with ``params`` filled in."""
    return _render_one(msgid, None, None, params, locale)


def ngettext(singular: str, plural: str, n: int, locale: str | None, **params) -> str:
    return _render_one(singular, plural, n, {"n": n, **params}, locale)


def text_template(msgid: str, locale: str | None) -> str:
    """``msgid`` in ``locale`` with its ``{parameters}`` left in, for a browser to fill in
    (the JupyterLab plugin fills the time it shows in the student's clock)."""
    return translations(locale).gettext(msgid)


def plural_templates(singular: str, plural: str, locale: str | None) -> dict[str, str]:
    """Each plural form of a sentence in ``locale`` by its CLDR category (``one``, ``other``),
    ``{n}`` left in: a browser chooses with ``Intl.PluralRules``."""
    catalogue = translations(locale)
    return {"one": catalogue.ngettext(singular, plural, 1), "other": catalogue.ngettext(singular, plural, 2)}


def render(text, locale: str | None) -> str:
    """A :class:`Message` in ``locale``; any other text as it is (a sentence from elsewhere)."""
    if isinstance(text, (Message, Localized)):
        return text.render(locale)
    return "" if text is None else str(text)


def _render_one(msgid: str, plural: str | None, n: int | None, params: dict, locale: str | None) -> str:
    catalogue = translations(locale)
    text = catalogue.gettext(msgid) if plural is None else catalogue.ngettext(msgid, plural, n)
    values = {k: (v.render(locale) if isinstance(v, Message) else v) for k, v in params.items()}
    try:
        return text.format_map(values) if values or "{" in text else text
    except (KeyError, IndexError, ValueError):
        # A translation naming a parameter the code does not pass (the completeness test catches
        # it): the English sentence rather than a broken one.
        source = msgid if plural is None or n == 1 else plural
        return source.format_map(_Missing(values))


class _Missing(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def locale_folder(locale: str | None) -> str | None:
    """The catalogue folder of a supported tag (``zh-CN`` -> ``zh_CN``), else None."""
    if not locale:
        return None
    return CATALOGUES.get(_match(locale.replace("_", "-")) or "")


@functools.cache
def _load(folder: str) -> Translations | NullTranslations:
    path = LOCALES_DIR / folder / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.exists():
        return NullTranslations()
    with path.open("rb") as po:
        catalogue = read_po(po, locale=folder, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue, use_fuzzy=False)  # a fuzzy translation is not shown: English instead
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def translations(locale: str | None) -> Translations | NullTranslations:
    """The gettext catalogue of ``locale``; English for an unknown one."""
    return _load(locale_folder(locale) or "en")


# -- choosing the language ------------------------------------------------------------------

def parse_accept_language(header: str | None) -> list[str]:
    """The language tags of an Accept-Language header, most wanted first (q=0 left out)."""
    weighted = []
    for index, part in enumerate((header or "").split(",")):
        tag, _sep, rest = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        for parameter in rest.split(";"):
            name, _eq, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _q, _i, tag in sorted(weighted)]


def _match(tag: str, supported: tuple[str, ...] = SUPPORTED) -> str | None:
    """The supported tag for one wanted tag: the same tag, else the same language
    (``zh``, ``zh-TW``, ``zh-Hans-CN`` -> ``zh-CN``; ``en-GB`` -> ``en``)."""
    wanted = tag.replace("_", "-").lower()
    for candidate in supported:
        if candidate.lower() == wanted:
            return candidate
    language = wanted.split("-")[0]
    for candidate in supported:
        if candidate.lower().split("-")[0] == language:
            return candidate
    return None


def negotiate(accept_language: str | None, supported: tuple[str, ...] | list[str] = SUPPORTED,
              default: str = DEFAULT_LOCALE) -> str:
    """The first of the reader's languages that a catalogue has; ``default`` when none has.

    ``accept_language`` is an Accept-Language header or a single tag (the switch's cookie)."""
    supported = tuple(supported)
    for tag in parse_accept_language(accept_language):
        found = _match(tag, supported)
        if found:
            return found
    return _match(default, supported) or supported[0]


def placeholders(text: str) -> set[str]:
    """The ``{name}`` parameters of a sentence (for the completeness test)."""
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}


__all__ = ["Message", "Localized", "_", "_n", "translate", "ngettext", "render", "text_template", "plural_templates", "negotiate", "parse_accept_language",
           "translations", "from_json", "placeholders", "SUPPORTED", "DEFAULT_LOCALE", "COOKIE_NAME"]
