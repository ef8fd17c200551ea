"""Idle release (issue 15, point 4): a GPU left unused while others wait goes to them.

In-memory allocators on hand-built alliances (rule 6 of quota.fairshare.policy), then the
quota service with a settable clock: the warning reaches the lease (for JupyterLab), the stop
ends it with the reason ``idle`` in the ledger and the waiting student gets the GPU.
"""

from __future__ import annotations

from datetime import timedelta

from quota.fairshare import Allocator, Config, PoolSpec, Request, SchoolSpec
from quota.fairshare.policy import IDLE_STOPPED

MIN = 60.0
IDLE = 30 * MIN
WARNING = 2 * MIN


def alliance(idle_s=IDLE, gpus: int = 1) -> Allocator:
    schools = [SchoolSpec("c01", tier="county", weight=2, idle_release_s=idle_s),
               SchoolSpec("u01", tier="urban", weight=1, idle_release_s=idle_s)]
    return Allocator([PoolSpec("p", gpus)], schools, Config(warning_s=WARNING, max_lease_s=8 * 3600))


def ask(alloc: Allocator, request_id: str, school: str, t: float):
    return alloc.submit(Request(request_id, f"{request_id}-user", school, 1000), t)


def test_an_idle_gpu_is_warned_and_released_when_someone_waits():
    alloc = alliance()
    assert ask(alloc, "a", "u01", 0)[0].kind == "admit"
    assert ask(alloc, "b", "c01", 10 * MIN)[0].kind == "queue"
    assert alloc.next_wake() == IDLE  # nothing else happens: time alone must decide it
    warned = alloc.advance(IDLE)
    assert [(w.kind, w.session_id, w.stop_at) for w in warned] == [("warn", "a", IDLE + WARNING)]
    assert alloc.next_wake() == IDLE + WARNING
    assert alloc.renew("a", IDLE + MIN)[0].code == "being_reclaimed"  # a warned session is not renewed
    actions = alloc.advance(IDLE + WARNING)
    assert [(a.kind, getattr(a, "reason", None)) for a in actions] == [("stop", "idle"), ("admit", None)]
    assert actions[0].message == IDLE_STOPPED and actions[1].request_id == "b"


def test_use_keeps_the_gpu_and_nobody_waiting_keeps_it_too():
    alloc = alliance()
    ask(alloc, "a", "u01", 0)
    ask(alloc, "b", "c01", MIN)
    alloc.touch("a", 20 * MIN)  # the student typed, or the GPU was busy
    assert alloc.advance(IDLE) == []
    assert alloc.next_wake() == 20 * MIN + IDLE
    assert [a.kind for a in alloc.advance(20 * MIN + IDLE)] == ["warn"]

    quiet = alliance()
    ask(quiet, "a", "u01", 0)
    assert quiet.advance(10 * IDLE) == []  # idle for hours, but nobody waits: it stays
    assert ask(quiet, "b", "c01", 10 * IDLE)[1][0].kind == "warn"  # someone asks: warned at once


def test_only_as_many_as_the_waiting_need_longest_idle_first():
    alloc = alliance(gpus=3)
    for k, t in (("a", 0), ("b", 5 * MIN), ("c", 10 * MIN)):
        ask(alloc, k, "u01", t)
    ask(alloc, "w", "u01", 11 * MIN)  # its own school holds them all: no reclaim, only the idle rule
    warned = alloc.advance(10 * MIN + IDLE)  # all three idle by then
    assert [w.session_id for w in warned if w.kind == "warn"] == ["a"]


def test_schools_without_the_rule_keep_their_gpus():
    alloc = alliance(idle_s=None)
    ask(alloc, "a", "u01", 0)
    ask(alloc, "b", "c01", MIN)
    assert alloc.next_wake() == 8 * 3600  # only the lease's end
    assert alloc.advance(4 * 3600) == []


def test_the_service_warns_the_lease_then_ends_it_idle_and_grants_the_waiting(
        make_quota_app, quota_alliance, clock):
    quota_alliance.write_text(quota_alliance.read_text().replace(
        "tiers: {county: {weight: 2}, urban: {weight: 1}}",
        "tiers: {county: {weight: 2, idle_release_minutes: 30}, urban: {weight: 1}}"))
    book = make_quota_app().state.book
    # a county student within the school's guarantee: no reclaim would ever take this GPU
    idle, _ = book.request("c01-s1", "c01", "gpu-whole", None)
    waiting, _ = book.request("u01-s1", "u01", "gpu-whole", None)
    assert (idle.state, waiting.state) == ("granted", "queued")
    clock.advance(minutes=29)
    book.get(waiting.id)  # the waiting student's page keeps asking
    book.advance()
    assert book.get(idle.id).reclaim_at is None
    clock.advance(minutes=1)
    book.get(waiting.id)
    book.advance()
    warned = book.get(idle.id)
    assert warned.reclaim_at == clock() + timedelta(minutes=2)  # fairshare.warning_minutes of the alliance
    assert "not used for a while" in warned.reason
    clock.advance(minutes=2)
    book.get(waiting.id)
    book.advance()
    assert book.get(idle.id).state == "expired" and book.get(waiting.id).state == "granted"
    [record] = book.usage(user="c01-s1")
    assert record.end_reason == "idle"
