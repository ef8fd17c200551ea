"""The workspace extension speaks the student's language: its lease warnings' sentences and the
quota service's reason come in it, and JupyterLab's translation setting defaults to it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from tornado import web

from gpu_commons_i18n import _
from gpu_commons_workspace import TRANSLATION_PLUGIN, LeaseEnd, set_lab_language
from quota.messages import goes_back, sentence

END = datetime(2026, 12, 2, 9, 30, tzinfo=timezone.utc)


def lease(locale: str) -> LeaseEnd:
    return LeaseEnd.from_environment({"GPU_COMMONS_LEASE_EXPIRES_AT": END.isoformat(), "GPU_COMMONS_LOCALE": locale})


def test_the_warnings_sentences_come_in_the_students_language():
    chinese = lease("zh-CN").as_json(END - timedelta(minutes=20))
    assert chinese["locale"] == "zh-CN"
    assert chinese["messages"]["warning"] == "GPU 时间还剩 {left}（{at} 结束），工作区随后停止，请现在保存文件。"
    assert chinese["messages"]["save_all"] == "全部保存"
    assert chinese["messages"]["units"]["minute"] == {"one": "{n} 分钟", "other": "{n} 分钟"}
    english = lease("en").as_json(END)["messages"]
    assert english["units"]["minute"] == {"one": "{n} minute", "other": "{n} minutes"}
    assert english["reclaimed"].startswith("Your GPU goes back at {at}")
    # a language no catalogue has: the default (the alliance's, zh-CN in the demo)
    assert lease("fr-FR").locale == "zh-CN"


def test_the_quota_services_reason_is_shown_in_the_students_language():
    reclaim = END - timedelta(minutes=20)
    reason = goes_back(sentence("a school below its guaranteed share is waiting for this GPU share"), reclaim)
    answer = {"state": "granted", "reclaim_at": reclaim.isoformat(), "reason": str(reason),
              "reason_message": reason.as_json()}
    assert lease("zh-CN").updated(answer).reason == \
        "你的 GPU 份额将于 09:10（UTC）收回：一所低于保障份额的学校正在等待这份 GPU。请在此之前保存文件。"
    assert lease("en").updated(answer).reason == str(reason)
    # a service that sends only text (a lease read back after a restart): the text as it came
    assert lease("zh-CN").updated({"state": "granted", "reason": "plain words"}).reason == "plain words"


class _Settings(web.RequestHandler):
    def initialize(self, overrides=None):
        self.overrides = overrides


def test_jupyterlab_defaults_to_the_students_language_through_its_settings_overrides():
    overrides = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}
    app = web.Application([(r"/other", _Settings, {})])
    app.add_handlers(".*$", [(r"/lab/api/settings/(.*)", _Settings, {"overrides": overrides})])  # as jupyterlab_server
    assert set_lab_language(app, "zh-CN", logging.getLogger("test"))
    assert overrides[TRANSLATION_PLUGIN] == {"locale": "zh_CN"}
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false"}  # kept
    set_lab_language(app, "en", logging.getLogger("test"))
    assert overrides[TRANSLATION_PLUGIN] == {"locale": "en"}
    assert not set_lab_language(web.Application([]), "en", logging.getLogger("test"))
