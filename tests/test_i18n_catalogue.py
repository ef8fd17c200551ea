"""The one message catalogue (gpu_commons_i18n): complete in both languages, plurals right,
the reader's language chosen from Accept-Language with the alliance's as the fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_commons_i18n import (
    SUPPORTED, Message, _, _n, from_json, negotiate, ngettext, parse_accept_language, render, translate,
)
from gpu_commons_i18n import LOCALES_DIR
from gpu_commons_i18n.catalogue import LOCALES_IN_CHECKOUT, problems

REPO = Path(__file__).resolve().parent.parent


def test_every_sentence_of_the_code_and_templates_has_a_translation_in_every_catalogue():
    found = problems(REPO)
    assert not found, "run `.venv/bin/python -m gpu_commons_i18n.catalogue update`, translate, see docs/i18n.md:\n" + \
        "\n".join(map(str, found))


def test_the_completeness_check_finds_a_sentence_nobody_translated(tmp_path):
    (tmp_path / "spawner").mkdir()
    (tmp_path / "spawner" / "new.py").write_text(
        'from gpu_commons_i18n import _\nMESSAGE = _("A sentence no catalogue has yet.")\n')
    found = {(p.locale, p.msgid, p.what) for p in problems(tmp_path, catalogue_root=REPO)}
    assert ("zh_CN", "A sentence no catalogue has yet.", "missing") in found
    assert ("en", "A sentence no catalogue has yet.", "missing") in found
    # ... and every translation that this tree no longer uses is stale
    assert any(what == "stale" for _l, _m, what in found)


def test_templates_are_extracted_too(tmp_path):
    (tmp_path / "hub" / "templates").mkdir(parents=True)
    (tmp_path / "hub" / "templates" / "x.html").write_text('<p>{{ _("Only in a template.") }}</p>')
    found = {(p.locale, p.msgid, p.what) for p in problems(tmp_path, catalogue_root=REPO)}
    assert ("zh_CN", "Only in a template.", "missing") in found


def test_the_installed_catalogues_are_the_checkouts():
    """The hub, the quota service and JupyterLab read the installed copy (`make install`,
    the images): one older than the checkout would show old sentences."""
    for po in sorted((REPO / LOCALES_IN_CHECKOUT).glob("*/LC_MESSAGES/*.po")):
        installed = LOCALES_DIR / po.relative_to(REPO / LOCALES_IN_CHECKOUT)
        assert installed.exists() and installed.read_bytes() == po.read_bytes(), \
            f"{installed} differs from {po}: run `make install` (or pip install --no-deps ./workspace)"


@pytest.mark.parametrize("n", [1, 2, 5])
def test_plurals_are_right_in_both_languages(n):
    english = ngettext("{free} of {n} whole GPU free", "{free} of {n} whole GPUs free", n, "en", free=0)
    chinese = ngettext("{free} of {n} whole GPU free", "{free} of {n} whole GPUs free", n, "zh-CN", free=0)
    assert english == (f"0 of {n} whole GPU free" if n == 1 else f"0 of {n} whole GPUs free")
    assert chinese == f"{n} 块整卡 GPU 中有 0 块空闲"
    assert ngettext("{n} minute", "{n} minutes", n, "en") == (f"{n} minute" if n == 1 else f"{n} minutes")


def test_a_message_is_its_english_sentence_and_renders_in_the_readers_language():
    message = _("Unknown profile '{profile}'. Choose one of: {choices}.", profile="gpu-huge", choices="cpu")
    assert message == "Unknown profile 'gpu-huge'. Choose one of: cpu."
    assert isinstance(message, str)
    assert render(message, "zh-CN") == "没有名为“gpu-huge”的配置。请从以下选择：cpu。"
    assert render("a sentence from elsewhere", "zh-CN") == "a sentence from elsewhere"


def test_nested_messages_and_their_json_round_trip():
    wait = _n("A GPU should be free within about {n} minute.", "A GPU should be free within about {n} minutes.", 4)
    place = _("All GPUs of this kind are in use. You are number {position} in the queue.", position=2)
    keep = _("Keep this page open and your workspace will start by itself.")
    message = _("{place} {wait} {keep_open}", place=place, wait=wait, keep_open=keep)
    copy = from_json(message.as_json())
    assert copy == message and isinstance(copy, Message)
    assert copy.render("zh-CN") == "这类 GPU 都在使用中。你在队列中排第 2 位。预计约 4 分钟内会有 GPU 空出。请保持此页面打开，轮到你时工作区会自动启动。"


def test_a_sentence_without_a_translation_shows_in_english_never_as_an_id():
    assert translate("No catalogue has this sentence, {name}.", "zh-CN", name="Li") == "No catalogue has this sentence, Li."


@pytest.mark.parametrize("header, default, expected", [
    ("zh-CN,zh;q=0.9,en;q=0.8", "en", "zh-CN"),
    ("en-US,en;q=0.9", "zh-CN", "en"),
    ("zh-TW", "en", "zh-CN"),            # same language: Simplified rather than English
    ("zh-Hans-CN", "en", "zh-CN"),
    ("fr-FR,de;q=0.8", "zh-CN", "zh-CN"),  # no catalogue: the alliance's language
    ("fr-FR,de;q=0.8", "en", "en"),
    ("fr;q=1,en;q=0.5,zh;q=0.7", "en", "zh-CN"),  # by quality, not by position
    ("en;q=0,zh-CN;q=0.1", "en", "zh-CN"),   # q=0 means "not this one"
    ("", "zh-CN", "zh-CN"),
    (None, "en", "en"),
    ("*", "zh-CN", "zh-CN"),
    ("en;q=abc, zh-CN", "en", "zh-CN"),     # a broken quality counts as 0
])
def test_negotiation(header, default, expected):
    assert negotiate(header, SUPPORTED, default) == expected


def test_accept_language_order():
    assert parse_accept_language("da, en-gb;q=0.8, en;q=0.7") == ["da", "en-gb", "en"]
