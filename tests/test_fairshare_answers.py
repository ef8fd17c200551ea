"""What the allocator answers besides admissions: every queue place at once
(``Allocator.places``) against one ``explain`` per request, renewal asked for before a
lease's end (``Allocator.renew``, the same rule as at the end), and budgets seeded from a
ledger when an allocator is rebuilt."""

from __future__ import annotations

import math
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.fairshare import Allocator, Config, PoolSpec, Request, SchoolSpec
from tests.fairshare_fixtures import Checker, operations, worlds


class PlacesChecker(Checker):
    checked = 0

    def check(self) -> None:
        super().check()
        alloc = self.alloc
        places = alloc.places(self.now)
        assert set(places) == set(alloc.waiting)
        for request_id in alloc.waiting:
            one = alloc.explain(request_id, self.now)
            assert (places[request_id].position, places[request_id].wait_estimate_s, places[request_id].reason) == (
                one.position, one.wait_estimate_s, one.reason), request_id
            PlacesChecker.checked += 1


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_all_places_at_once_equal_one_explain_each(data):
    world = data.draw(worlds())
    PlacesChecker(world).run(data.draw(operations(world, max_size=80)))


def test_places_equal_explain_on_a_long_queue_of_two_kinds():
    # the property's worlds are small; here hundreds wait for two kinds of GPU at once
    rng = random.Random(7)
    pools = [PoolSpec("whole", 4, 1000, "whole"), PoolSpec("mig", 14, 142, "slice")]
    schools = [SchoolSpec(f"s{k}", weight=rng.choice([1.0, 2.0])) for k in range(12)]
    alloc = Allocator(pools, schools, Config(max_lease_s=1800.0, min_runtime_s=60.0))
    now = 0.0
    for n in range(900):
        now += rng.uniform(0, 5)
        school = rng.choice(schools).id
        kind = rng.choice(["whole", "slice"])
        alloc.submit(Request(f"r{n}", f"{school}-u{n}", school, 1000 if kind == "whole" else 142, kind=kind), now,
                     explain=False)
        if n % 7 == 0 and alloc.sessions:
            alloc.release(rng.choice(sorted(alloc.sessions)), now)
    assert len(alloc.waiting) > 500
    places = alloc.places(now)
    assert {rid: (q.position, q.wait_estimate_s) for rid, q in places.items()} == {
        rid: (q.position, q.wait_estimate_s) for rid in alloc.waiting for q in [alloc.explain(rid, now)]}


def _two_schools(**config) -> Allocator:
    return Allocator([PoolSpec("p", 2)], [SchoolSpec("a"), SchoolSpec("b")],
                     Config(max_lease_s=600.0, min_runtime_s=0.0, **config))


def test_a_lease_renewed_early_runs_a_full_length_from_then():
    alloc = _two_schools()
    decision, _ = alloc.submit(Request("a1", "a-u1", "a", 1000, lease_s=300.0), 0.0)
    assert decision.kind == "admit" and decision.lease_end == 300.0  # its own length, not the config's
    renewed, actions = alloc.renew("a1", 250.0)
    assert (renewed.kind, renewed.lease_end, actions) == ("renew", 550.0, [])
    assert alloc.next_wake() == 550.0
    assert alloc.advance(300.0) == []  # the old end passes without a stop


def test_an_early_renewal_is_refused_while_a_better_claim_waits_and_the_lease_keeps_its_end():
    alloc = _two_schools(reclaim=False)
    for rid, school in (("a1", "a"), ("a2", "a")):
        assert alloc.submit(Request(rid, f"{rid}-u", school, 1000), 0.0)[0].kind == "admit"
    assert alloc.submit(Request("b1", "b-u", "b", 1000), 10.0)[0].kind == "queue"
    refused, _ = alloc.renew("a2", 20.0)
    assert refused.kind == "refuse" and "better claim" in refused.reason and refused.retry_at == 600.0
    assert alloc.sessions["a2"].lease_end == 600.0
    assert alloc.renew("nope", 20.0)[0].code == "not_running"


def test_a_session_being_reclaimed_is_not_renewed():
    alloc = _two_schools(warning_s=60.0)
    for rid in ("a1", "a2"):
        alloc.submit(Request(rid, f"{rid}-u", "a", 1000), 0.0)
    _, actions = alloc.submit(Request("b1", "b-u", "b", 1000), 10.0)
    assert [(a.kind, a.session_id) for a in actions] == [("warn", "a2")]
    refused, _ = alloc.renew("a2", 20.0)
    assert (refused.code, refused.retry_at) == ("being_reclaimed", 70.0)


def test_a_student_alone_is_renewed_at_the_end_of_every_lease():
    alloc = _two_schools()
    alloc.submit(Request("a1", "a-u1", "a", 1000), 0.0)
    for end in (600.0, 1200.0, 1800.0):
        assert [(a.kind, a.lease_end) for a in alloc.advance(end)] == [("renew", end + 600.0)]


def test_seeded_usage_counts_against_a_budget_of_a_rebuilt_allocator():
    school = SchoolSpec("a", budget_gpu_hours=1.0)
    alloc = Allocator([PoolSpec("p", 2)], [school, SchoolSpec("b")], Config(budget_period_s=7200.0), start=5000.0)
    alloc.seed_budget("a", "a-u1", 1000.0, 4600.0, 1000)  # one GPU-hour, ended before the rebuild
    refused, _ = alloc.submit(Request("a2", "a-u2", "a", 1000), 5000.0)
    assert refused.kind == "refuse" and refused.code == "budget_exhausted"
    assert refused.retry_at == math.floor(1000.0 + 7200.0) + 1  # when the hour starts leaving the window
    assert alloc.submit(Request("b1", "b-u1", "b", 1000), 5000.0)[0].kind == "admit"
