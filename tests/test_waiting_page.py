"""The waiting page and what a student reads while waiting or stopped (issue 13, point 3): the
queue's one line (place, estimate, why it got worse, a pool drained for maintenance), the form's
availability, JupyterHub's own words on the pending and stop pages, the idle release's
sentences in JupyterLab and on the hub. Fast: no hub, no browser (tests/test_i18n_browser.py
has those)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from gpu_commons_i18n import _, render
from gpu_commons_workspace import LeaseEnd, early_end_kind, warning_sentences
from quota.alliance import Profile
from quota.messages import _PHRASES as PHRASES  # the allocator's phrases as catalogue sentences
from quota.queue_reasons import ahead_reason
from spawner.form import render_profile_form
from spawner.quota import QueueLine, queued_message, stop_reason
from spawner.quota_client import Lease
from tests.hub_pages import render_page

IDLE = _("The GPU was not used for a while and others are waiting for it.")


def queued(position, wait_s=None, why=None) -> Lease:
    return Lease("l-1", "queued", "gpu-whole", None, None, None, True, None, position, None, wait_s, why)


def test_the_line_changes_only_when_its_words_do_and_says_why_the_place_got_worse():
    line = QueueLine()
    first = line.message(queued(2, 240))
    assert "number 2 in the queue" in first and "about 4 minutes" in first
    assert line.message(queued(2, 240)) is None  # the next poll: the same words, no new event
    county = _("A county school below its guaranteed share asked and goes first.")
    worse = line.message(queued(3, 300, county))
    assert render(worse, "en").startswith("All GPUs of this kind are in use. You are number 3 in the queue. "
                                          "A county school below its guaranteed share asked and goes first.")
    assert "你排在第 3 位" in render(worse, "zh-CN") or "第 3" in render(worse, "zh-CN")
    assert "县域学校" in render(worse, "zh-CN")
    same_place = line.message(queued(3, 240))  # the estimate moved: a new line, the reason kept
    assert "county school" in same_place and "about 4 minutes" in same_place
    better = line.message(queued(2, 120))
    assert "county" not in better and "number 2" in better
    # worse without the service's reason (an older service): still said, in general words
    assert "better claim" in line.message(queued(4))


def test_one_minute_is_singular():
    assert "within about 1 minute." in queued_message(queued(1, 50))
    assert "within about 2 minutes." in queued_message(queued(1, 110))


def test_a_drained_pool_is_said_as_such_while_waiting():
    message = queued_message(queued(None), drain_notes=["New drivers, back at 14:00"])
    assert render(message, "en").startswith("The GPUs for this workspace are closed for maintenance (New drivers, "
                                            "back at 14:00). You keep your place")
    assert "维护" in render(message, "zh-CN") and "New drivers" in render(message, "zh-CN")
    assert "number" not in message and "?" not in message
    assert queued_message(queued(None)).startswith("All GPUs of this kind are in use. You are in the queue.")


def row(lease_id, school, tier, minute):
    return SimpleNamespace(id=lease_id, school=school, tier=tier, seq=minute,
                           requested_at=datetime(2026, 12, 2, 9, minute, tzinfo=timezone.utc))


def test_who_came_later_and_stands_ahead():
    rows = [row("mine", "u01", "urban", 0), row("c", "c01", "county", 5), row("u", "u02", "urban", 3),
            row("behind", "c02", "county", 7)]
    places = {"c": 1, "mine": 2, "u": 3, "behind": 4}
    assert ahead_reason("mine", rows, places, {"c01": True}).msgid.startswith("A county school below")
    assert ahead_reason("mine", rows, places, {"c01": False}).msgid.startswith("A school that used less")
    assert ahead_reason("c", rows, places, {}) is None  # first: nobody ahead
    assert ahead_reason("u", rows, places, {"c01": True}).msgid.startswith("A county school")
    same_school = [row("mine", "u01", "urban", 0), row("mate", "u01", "urban", 2)]
    assert "classmate" in ahead_reason("mine", same_school, {"mate": 1, "mine": 2}, {})
    assert ahead_reason("mine", rows[:1], {"mine": 1}, {}) is None


PROFILE = Profile(id="gpu-whole", display_name="One whole GPU", description="A whole GPU.", gpu="whole", max_minutes=60)


def inventory(state="open", note="", held=False):
    return {"simulated": True, "pools": [{"id": "p", "name": "P", "state": state, "note": note, "units": [
        {"device": "0", "kind": "whole", "held": held, "lease_id": None}]}]}


def test_the_form_says_a_drained_pool_is_closed_for_maintenance():
    html = render_profile_form([PROFILE], inventory("draining", "Disk swap until 15:00"), locale="en")
    assert "closed for maintenance: Disk swap until 15:00" in html and "1 of 1" not in html
    assert "维护中" in render_profile_form([PROFILE], inventory("draining", "x"), locale="zh-CN")
    assert "closed for maintenance</span>" in render_profile_form([PROFILE], inventory("draining"), locale="en")
    # open: the plural is right for one GPU
    assert "1 of 1 whole GPU free" in render_profile_form([PROFILE], inventory(), locale="en")
    assert "the only whole GPU is in use" in render_profile_form([PROFILE], inventory(held=True), locale="en")


def test_the_spawn_page_names_each_drained_pool_with_its_note_even_while_others_stay_open():
    """The operator's note on the hub's spawn page (as on the student's quota page), also when
    another pool of the kind stays open and the profile still shows free GPUs."""
    both = inventory("draining", "Disk swap until 15:00 <b>")
    both["pools"].append({"id": "q", "name": "Q", "state": "open", "note": "", "units": [
        {"device": "1", "kind": "whole", "held": False, "lease_id": None}]})
    html = render_profile_form([PROFILE], both, locale="en")
    assert "1 of 1 whole GPU free" in html  # the open pool's
    assert '<p class="alert alert-warning gc-drain" role="status">Pool P is under maintenance: ' \
           'Disk swap until 15:00 &lt;b&gt;</p>' in html
    chinese = render_profile_form([PROFILE], both, locale="zh-CN")
    assert "资源池 P 正在维护" in chinese and "Disk swap until 15:00 &lt;b&gt;" in chinese
    assert "Pool Q" not in html and "gc-drain" not in render_profile_form([PROFILE], inventory(), locale="en")
    assert "Pool P is under maintenance.</p>" in render_profile_form([PROFILE], inventory("draining"), locale="en")


def test_the_waiting_page_has_one_line_and_jupyterhubs_words_in_the_students_language():
    user = SimpleNamespace(name="c01-s1", spawner=SimpleNamespace(options_form=None))
    for accept, stop, stopped in (("zh-CN", "正在停止…", "你的工作区已停止。"), ("en", "Stopping…", "Your workspace has stopped.")):
        html = render_page("spawn_pending.html", accept, user=user, progress_url="/hub/api/users/c01-s1/server/progress")
        dialog, words = (json.loads(w) for w in re.findall(r"var words = (\{.*?\});", html, re.S))
        assert (words["stopping"], words["stopped"]) == (stop, stopped)
        assert html.count("new EventSource") == 1  # the stock script is replaced, not run beside ours
        assert "html !== last" in html and 'id="progress-message"' in html and 'aria-live="polite"' in html
        assert "Server stopped successfully" not in html and "Stopping..." not in html
        assert dialog["Error"] == ("出错了" if accept == "zh-CN" else "Error")
    assert "刷新" in render_page("stop_pending.html", "zh-CN", user=user)


def test_an_idle_release_has_its_own_sentence_in_jupyterlab_and_on_the_hub():
    at = datetime.now(timezone.utc) + timedelta(minutes=2)
    idle_warning = _("Your GPU share goes back at {at} UTC: {reason} Save your work before then.", reason=IDLE, at="10:00")
    reclaim = _("Your GPU share goes back at {at} UTC: {reason} Save your work before then.",
                reason=_("A school below its guaranteed share asked."), at="10:00")
    assert (early_end_kind(idle_warning.as_json()), early_end_kind(reclaim.as_json()), early_end_kind(None)) == (
        "idle", "reclaimed", "reclaimed")
    lease = LeaseEnd(expires_at=at + timedelta(hours=1), locale="zh-CN").updated(
        {"state": "granted", "expires_at": (at + timedelta(hours=1)).isoformat(), "reclaim_at": at.isoformat(),
         "reason_message": idle_warning.as_json()})
    sent = lease.as_json(datetime.now(timezone.utc))
    assert (sent["ends_early"], sent["early_end"]) == (True, "idle")
    assert "其他同学在等待" in sent["messages"]["idle"] and "{at}" in sent["messages"]["idle"]
    assert warning_sentences("en")["idle"].startswith("Your GPU has not been used for a while and others are waiting")
    # the service's reason on the lease once the idle release stopped it (quota/messages.py)
    released = next(m for phrase, m in PHRASES.items() if phrase.startswith("released: the GPU was not used"))
    ended = Lease("l-1", "expired", "gpu-whole", "p", None, "whole", True, None, None, released)
    assert render(stop_reason(ended), "en").startswith("Its GPU was not used for a while")
    assert "释放" in render(stop_reason(ended), "zh-CN")
    assert early_end_kind(released.as_json()) == "idle"
    gone = LeaseEnd(expires_at=at, locale="en").updated({"state": "expired", "reason_message": released.as_json()})
    assert (gone.ends_early, gone.early_end) == (True, "idle")


def test_the_service_says_why_a_later_request_is_ahead_and_keeps_the_place_through_a_drain(quota_client, client_as):
    def ask(user):
        return quota_client.post("/api/leases", json={"user": user, "school": user.split("-")[0],
                                                      "profile": "gpu-whole"}).json()

    assert ask("u01-s1")["state"] == "granted"  # the only whole GPU
    waiting = ask("u01-s2")
    first = quota_client.get(f"/api/leases/{waiting['id']}").json()
    assert (first["queue_position"], first["queue_reason_message"]) == (1, None)
    assert ask("c01-s1")["state"] == "queued"  # a county school holding nothing: below its guarantee
    second = quota_client.get(f"/api/leases/{waiting['id']}").json()
    assert second["queue_position"] == 2
    assert second["queue_reason_message"]["msgid"] == "A county school below its guaranteed share asked and goes first."

    drained = client_as("it-ops").patch("/api/pools/uni-a", json={"state": "draining", "note": "driver update"})
    assert drained.status_code == 200
    during = quota_client.get(f"/api/leases/{waiting['id']}").json()
    assert (during["state"], during["queue_position"]) == ("queued", None)  # kept, not refused; no place
    [pool] = quota_client.get("/api/inventory").json()["pools"]
    assert (pool["state"], pool["note"], set(pool["free"].values())) == ("draining", "driver update", {0})
    client_as("it-ops").patch("/api/pools/uni-a", json={"state": "open"})
    after = quota_client.get(f"/api/leases/{waiting['id']}").json()
    assert after["state"] == "queued" and after["queue_position"] in (1, 2)


def plugin_notifications(lease_json: dict) -> list[str]:
    """What the real JupyterLab plugin shows for this answer of the server extension (node)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent
    (plugin,) = (root.parent / "workspace/gpu_commons_workspace/labextension/static").glob("remoteEntry.*.js")
    out = subprocess.run(["node", str(root / "lease_plugin_harness.js"), str(plugin), json.dumps(lease_json)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [n["message"] for n in json.loads(out) if n["command"] == "apputils:notify"]


def test_the_jupyterlab_plugin_chooses_the_idle_sentence_for_an_idle_release():
    at = datetime.now(timezone.utc) + timedelta(minutes=2)
    reclaim = _("Your GPU share goes back at {at} UTC: {reason} Save your work before then.",
                reason=_("A school below its guaranteed share asked."), at="10:00")
    idle = _("Your GPU share goes back at {at} UTC: {reason} Save your work before then.", reason=IDLE, at="10:00")
    shown = {}
    for name, reason, locale in (("idle", idle, "zh-CN"), ("idle", idle, "en"), ("reclaimed", reclaim, "en")):
        lease = LeaseEnd(expires_at=at + timedelta(hours=1), locale=locale).updated(
            {"state": "granted", "expires_at": (at + timedelta(hours=1)).isoformat(), "reclaim_at": at.isoformat(),
             "reason_message": reason.as_json()})
        [shown[name, locale]] = plugin_notifications(lease.as_json(datetime.now(timezone.utc)))
    assert shown["idle", "en"].startswith("Your GPU has not been used for a while and others are waiting: it is released at ")
    assert shown["idle", "en"].endswith("Save your work now; your files are kept.") and "{at}" not in shown["idle", "en"]
    assert "其他同学在等待" in shown["idle", "zh-CN"] and "school" not in shown["idle", "zh-CN"]
    assert shown["reclaimed", "en"].startswith("Your GPU goes back at ") and "guaranteed share" in shown["reclaimed", "en"]


def test_a_device_failure_names_the_pool_not_the_device():
    from spawner.failures import student_message

    message = student_message("device", pool="uni-a", device="MIG-5f3c-slice0")
    for locale in ("en", "zh-CN"):
        assert "MIG" not in render(message, locale) and "uni-a" in render(message, locale)
