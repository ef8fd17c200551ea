"""The pure first-come-first-served allocator (quota.allocator)."""

from quota.allocator import NO_SUCH_KIND, BudgetSpent, Hold, Request, Unit, decide, promote, queue_positions

UNITS = [Unit("p/0", "p", "whole"), Unit("p/s0", "p", "slice"), Unit("p/s1", "p", "slice")]


def ask(lease_id, kind="slice", user=None):
    return Request(lease_id, user or f"user-{lease_id}", kind)


def test_grants_the_first_free_unit_of_the_kind():
    decision = decide(ask("a"), UNITS, held={"p/s0"}, waiting=[], active_gpu_leases_of_user=0, max_gpu_leases_per_user=1)
    assert (decision.outcome, decision.unit) == ("granted", UNITS[2])


def test_queues_when_every_unit_of_the_kind_is_held():
    decision = decide(ask("a"), UNITS, held={"p/s0", "p/s1"}, waiting=[], active_gpu_leases_of_user=0, max_gpu_leases_per_user=1)
    assert (decision.outcome, decision.queue_position, decision.unit) == ("queued", 1, None)


def test_a_newcomer_never_overtakes_someone_waiting_for_the_same_kind():
    waiting = [ask("early"), ask("other-kind", kind="whole")]
    decision = decide(ask("late"), UNITS, held={"p/0", "p/s0", "p/s1"}, waiting=waiting, active_gpu_leases_of_user=0, max_gpu_leases_per_user=1)
    assert (decision.outcome, decision.queue_position) == ("queued", 2)
    # Even a unit freed a moment ago goes to the earlier request first.
    decision = decide(ask("late"), UNITS, held={"p/0", "p/s0"}, waiting=waiting[:1], active_gpu_leases_of_user=0, max_gpu_leases_per_user=1)
    assert (decision.outcome, decision.queue_position) == ("queued", 2)


def test_cpu_requests_are_granted_without_a_unit():
    decision = decide(ask("a", kind=None), UNITS, held={u.id for u in UNITS}, waiting=[ask("w")], active_gpu_leases_of_user=5, max_gpu_leases_per_user=1)
    assert (decision.outcome, decision.unit) == ("granted", None)


def test_a_kind_no_pool_has_is_refused_with_a_reason():
    decision = decide(ask("a", kind="whole"), UNITS[1:], held=set(), waiting=[], active_gpu_leases_of_user=0, max_gpu_leases_per_user=1)
    assert decision.outcome == "refused" and decision.reason == NO_SUCH_KIND


def test_a_student_at_the_cap_is_refused():
    decision = decide(ask("a"), UNITS, held=set(), waiting=[], active_gpu_leases_of_user=1, max_gpu_leases_per_user=1)
    assert decision.outcome == "refused" and "Stop one before starting another" in decision.reason


def test_promote_serves_the_queue_in_order_and_never_double_books():
    waiting = [ask("1"), ask("2", kind="whole"), ask("3"), ask("4")]
    grants = promote(waiting, UNITS, held={"p/s0"})
    assert [(request.lease_id, unit.id) for request, unit in grants] == [("1", "p/s1"), ("2", "p/0")]


def test_promote_lets_other_kinds_pass_a_blocked_head():
    grants = promote([ask("1", kind="whole"), ask("2")], UNITS, held={"p/0"})
    assert [(request.lease_id, unit.id) for request, unit in grants] == [("2", "p/s0")]


def test_queue_positions_count_per_kind():
    waiting = [ask("1"), ask("2", kind="whole"), ask("3")]
    assert queue_positions(waiting) == {"1": 1, "2": 1, "3": 2}


def test_same_input_same_decision():
    args = dict(units=UNITS, held={"p/s0"}, waiting=[ask("w", kind="whole")], active_gpu_leases_of_user=0, max_gpu_leases_per_user=1)
    assert decide(ask("a"), **args) == decide(ask("a"), **args)


def test_a_reservation_keeps_units_for_its_school():
    units = [Unit("p/0", "p", "whole"), Unit("p/1", "p", "whole")]
    holds = [Hold("p", "whole", "c01", 1)]
    args = dict(units=units, waiting=[], active_gpu_leases_of_user=0, max_gpu_leases_per_user=1, holds=holds)
    outsider = Request("x", "u01-s1", "whole", school="u01")
    assert decide(outsider, held=set(), **args).outcome == "granted"
    assert decide(outsider, held={"p/0"}, **args).outcome == "queued"  # the last unit is c01's
    insider = Request("y", "c01-s1", "whole", school="c01")
    assert decide(insider, held={"p/0"}, **args).unit == units[1]


def test_promote_uses_up_the_hold_then_serves_others():
    units = [Unit("p/0", "p", "whole"), Unit("p/1", "p", "whole")]
    waiting = [Request("u", "u01-s1", "whole", "u01"), Request("c", "c01-s1", "whole", "c01"), Request("u2", "u01-s2", "whole", "u01")]
    grants = promote(waiting, units, held=set(), holds=[Hold("p", "whole", "c01", 1)])
    assert [request.lease_id for request, _ in grants] == ["u", "c"]


def test_a_spent_budget_is_refused_with_the_time_to_retry():
    decision = decide(
        ask("a"), UNITS, held=set(), waiting=[], active_gpu_leases_of_user=0, max_gpu_leases_per_user=1,
        budget_spent=BudgetSpent("school", retry_after_s=5400),
    )
    assert decision.outcome == "refused" and "Your school used all GPU hours" in decision.reason and "1.5 hours" in decision.reason
