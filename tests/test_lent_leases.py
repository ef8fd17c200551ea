"""Lent leases (``Config.lent_lease_s``): idle capacity lent with an end the borrower is told.

In-memory scenarios: pools, schools and requests declared here, the allocator's admissions,
renewals and stops asserted (as KAI-Scheduler's integration tests do). A session beyond its
school's guarantee gets a lease of at most ``lent_lease_s``; at its end it is renewed while
nobody with a better claim waits, else it ends (``lease_expired``) and the waiting request
gets the slices at that instant. Nobody is warned and stopped for a rebalance; a school
below its guarantee still takes its share back with a warning.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
import yaml
from gpu_commons_i18n import from_json, render

from quota.alliance import parse_alliance
from quota.allocator_inputs import allocator_inputs
from quota.fairshare import Allocator, Config, PoolSpec, Request, SchoolSpec, fcfs_config, static_config

INF = math.inf
LENT = 900.0


def kinds(actions, kind: str) -> list:
    return [a for a in actions if a.kind == kind]


def two_schools(**config) -> Allocator:
    """One pool of 4 GPUs; a and b of equal weight: 2 GPUs guaranteed each."""
    return Allocator([PoolSpec("p", 4)], [SchoolSpec("a"), SchoolSpec("b")],
                     Config(max_lease_s=4 * 3600.0, lent_lease_s=LENT, **config))


def ask(alloc: Allocator, rid: str, school: str, t: float, milli: int = 1000):
    return alloc.submit(Request(rid, f"{rid}-user", school, milli), t)


def test_a_borrowed_session_is_told_when_its_lease_ends_a_guaranteed_one_gets_the_full_lease():
    alloc = two_schools()
    decisions = [ask(alloc, f"a{k}", "a", 10.0)[0] for k in range(4)]
    assert [(d.borrowed, d.lease_end) for d in decisions] == [
        (False, 10.0 + 4 * 3600), (False, 10.0 + 4 * 3600), (True, 10.0 + LENT), (True, 10.0 + LENT)]


def test_a_profile_lease_shorter_than_lent_is_kept():
    alloc = two_schools()
    for k in range(2):
        ask(alloc, f"a{k}", "a", 0.0)
    decision, _ = alloc.submit(Request("a2", "u", "a", 1000, lease_s=300.0), 0.0)
    assert decision.borrowed and decision.lease_end == 300.0


def test_a_lent_lease_nobody_better_waits_for_is_renewed_for_the_lent_length():
    alloc = two_schools()
    for k in range(3):
        ask(alloc, f"a{k}", "a", 0.0)
    assert alloc.next_wake() == LENT
    actions = alloc.advance(LENT)
    assert [(a.kind, a.session_id, a.lease_end) for a in actions] == [("renew", "a2", 2 * LENT)]


def test_lent_leases_replace_the_rebalance():
    """School b asks beyond its guarantee while a holds more per weight: with lent leases b
    waits for one of a's lent leases to end (at the time a was told at admission); without
    them the rebalance warns a session of a and stops it. b's guarantee is taken back with a
    warning either way."""
    for lent in (LENT, None):
        alloc = Allocator([PoolSpec("p", 6)], [SchoolSpec("a"), SchoolSpec("b"), SchoolSpec("c")],
                          Config(max_lease_s=4 * 3600.0, lent_lease_s=lent, min_runtime_s=0.0))
        for k in range(6):  # 2 GPUs guaranteed to each school; a takes all 6
            ask(alloc, f"a{k}", "a", 0.0)
        actions = []
        for k in range(3):  # b0 and b1 within b's guarantee, b2 would borrow
            actions += ask(alloc, f"b{k}", "b", 1000.0)[1]
        while "b2" not in alloc.sessions:
            wake = alloc.next_wake()
            actions += [(wake, a) for a in alloc.advance(wake)]
        timed = [x for x in actions if isinstance(x, tuple)]
        warns = [a for a in actions if not isinstance(a, tuple) and a.kind == "warn"] + \
            [a for _, a in timed if a.kind == "warn"]
        fair_share = [w for w in warns if "less than its fair share" in w.reason]
        stops = [(t, a.reason) for t, a in timed if a.kind == "stop"]
        if lent is None:
            assert fair_share and ("reclaimed" in {why for _, why in stops})
            continue
        assert not fair_share and len(warns) == 2  # only for b's guarantee
        admitted_b2 = next(t for t, a in timed if a.kind == "admit" and a.request_id == "b2")
        assert (admitted_b2, "lease_expired") in stops and admitted_b2 % LENT == 0


def test_the_stop_at_a_lent_lease_end_says_the_share_went_back_as_told():
    alloc = Allocator([PoolSpec("p", 2)], [SchoolSpec("a"), SchoolSpec("b")],
                      Config(max_lease_s=4 * 3600.0, lent_lease_s=LENT))
    ask(alloc, "a0", "a", 0.0)
    ask(alloc, "a1", "a", 0.0)  # borrowed: b's guarantee, lent until 900
    ask(alloc, "b0", "b", 880.0)  # within b's guarantee: warned, but the lease ends first
    actions = alloc.advance(LENT)
    stop = kinds(actions, "stop")
    assert [(s.session_id, s.reason) for s in stop] == [("a1", "lease_expired")]
    assert "borrowed" in stop[0].message
    assert [a.request_id for a in kinds(actions, "admit")] == ["b0"]


def test_the_alliance_setting_drives_the_simulator_and_the_service_alike():
    doc = {"tiers": {"county": {"weight": 2}, "urban": {"weight": 1}}, "pools": [{"id": "p", "gpus": 2}],
           "schools": [{"id": "c01", "tier": "county"}, {"id": "u01", "tier": "urban"}]}
    default = allocator_inputs(parse_alliance(doc)).config
    assert default.lent_lease_s == 15 * 60 and default.half_life_s == 10 * 60
    assert allocator_inputs(parse_alliance(doc), fcfs_config()).config.lent_lease_s is None
    assert allocator_inputs(parse_alliance(doc), static_config()).config.lent_lease_s is None
    off = {**doc, "fairshare": {"lent_lease_minutes": None}}
    assert allocator_inputs(parse_alliance(off)).config.lent_lease_s is None
    text = yaml.safe_dump({**doc, "fairshare": {"lent_lease_minutes": 5}})
    assert allocator_inputs(parse_alliance(yaml.safe_load(text))).config.lent_lease_s == 300.0


# -- the quota service tells the student how long a lent share is theirs --------------------

LENT_ALLIANCE = """
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: uni-a, gpus: 3, simulated: true}
profiles:
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 120}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2]}
  - {id: u01, tier: urban, students: [u01-s1, u01-s2]}
fairshare: {lent_lease_minutes: 15}
"""


@pytest.fixture
def quota_alliance(tmp_path):
    path = tmp_path / "alliance.yaml"
    path.write_text(LENT_ALLIANCE)
    return path


def test_the_service_tells_a_borrower_until_when_the_share_is_lent(quota_client, clock):
    # u01 (weight 1 of 3) is guaranteed one GPU; its second is lent from c01's idle share
    own = quota_client.post("/api/leases", json={"user": "u01-s1", "school": "u01", "profile": "gpu-whole"}).json()
    lent = quota_client.post("/api/leases", json={"user": "u01-s2", "school": "u01", "profile": "gpu-whole"}).json()
    assert own["state"] == lent["state"] == "granted"
    assert own["reason"] is None
    granted = datetime.fromisoformat(lent["granted_at"])
    assert datetime.fromisoformat(lent["expires_at"]) - granted == timedelta(minutes=15)
    until = (granted + timedelta(minutes=15)).strftime("%H:%M")
    assert lent["reason"] == (f"This GPU share is lent to you from idle capacity until {until} UTC; it is renewed "
                              "then if nobody with a better claim is waiting. Save your work before then.")
    message = lent["reason_message"]
    assert message["params"]["until"] == until
    assert render(from_json(message), "zh-CN").startswith("这份 GPU 是从空闲容量借给你的，可用到 " + until)
    # nobody waits at its end: renewed for 15 more minutes, and told so
    clock.advance(minutes=15)
    quota_client.app.state.book.advance()
    renewed = quota_client.get(f"/api/leases/{lent['id']}").json()
    assert datetime.fromisoformat(renewed["expires_at"]) - granted == timedelta(minutes=30)
    assert (granted + timedelta(minutes=30)).strftime("%H:%M") in renewed["reason"]
