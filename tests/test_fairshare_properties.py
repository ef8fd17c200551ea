"""Properties of the allocator over random pools, schools and request streams.

Every call is checked by :class:`tests.fairshare_fixtures.Checker` against its own
bookkeeping: capacity is never exceeded, no session within its school's guarantee is
reclaimed (and never before the minimum runtime or the warning), reservations are
honoured (also ones booked mid-stream), no admissible request waits while slices idle,
and the same input gives the same output. Worlds mix the fair policy and FIFO order.

The example counts keep the whole fair-share suite well under a minute on two cores;
raise them locally (``HYPOTHESIS_PROFILE`` is not used: edit SETTINGS) to search harder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fairshare_fixtures import Checker, operations, worlds

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw, **kwargs):
    world = draw(worlds(**kwargs))
    return world, draw(operations(world))


@SETTINGS
@given(scenarios())
def test_invariants_hold_on_every_call(scenario):
    world, ops = scenario
    Checker(world).run(ops)


@SETTINGS
@given(scenarios(budgets=True))
def test_invariants_hold_with_budgets_and_caps(scenario):
    world, ops = scenario
    Checker(world).run(ops)


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_same_input_same_output(scenario):
    world, ops = scenario
    assert Checker(world).run(ops) == Checker(world).run(ops)


REPLAY = """
import hashlib, random
from quota.fairshare import Config, PoolSpec, SchoolSpec, Reservation
from tests.fairshare_fixtures import Checker, World
rng = random.Random(7)
pools = [PoolSpec("gpu", 6), PoolSpec("mig", 14, 142)]
schools = [SchoolSpec(f"school-{k}", weight=rng.choice([1.0, 2.0]), borrowing_limit_milli=rng.choice([None, 2000]),
                      max_sessions_per_student=2) for k in range(7)]
world = World(pools, schools, Config(max_lease_s=900.0, min_runtime_s=60.0, warning_s=30.0),
              [Reservation("lab", "gpu", "school-3", 2, 600.0, 1800.0, "g1")])
ops = []
for _ in range(400):
    ops.append((rng.uniform(0, 60), rng.choice([
        ("submit", rng.randrange(7), rng.randrange(6), rng.choice([250, 500, 1000, 2000]), rng.choice([None, "g1"]), None),
        ("release", rng.randrange(1000)), ("touch", rng.randrange(1000)), ("cancel", rng.randrange(1000)),
    ])))
print(hashlib.sha256(repr(Checker(world).run(ops)).encode()).hexdigest())
"""


def test_same_output_whatever_the_hash_seed():
    """Python randomises str hashes per process; nothing the allocator decides may depend
    on set or dict order of strings."""
    root = Path(__file__).resolve().parent.parent
    digests = {
        subprocess.run([sys.executable, "-c", REPLAY], cwd=root, check=True, capture_output=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1


def reclaim_flood(world, steps) -> int:
    """A flood of one-GPU requests from the first school, then one small request from the
    last school; returns how many reclaims the checker saw (and checked)."""
    checker = Checker(world)
    ops = [(dt, ("submit", 0, k % 6, 1000, None, None)) for k, dt in enumerate(steps)]
    ops += [(1.0, ("submit", len(world.schools) - 1, 0, 250, None, None))]
    checker.run(ops)
    return checker.reclaims


def test_reclaims_happen_and_stay_within_the_rules():
    """The checker's reclaim rules must run on real reclaims, not vacuously: across the
    examples at least some floods have to end in a reclaim."""
    seen = []

    # derandomized: which worlds get drawn must not decide whether this test passes (with
    # random draws about one run in forty drew no world where a flood ends in a reclaim)
    @settings(max_examples=80, deadline=None, derandomize=True)
    @given(worlds(reservations=False), st.lists(st.floats(0, 60), min_size=30, max_size=60))
    def flood(world, steps):
        seen.append(reclaim_flood(world, steps))

    flood()
    assert sum(seen) > 0
