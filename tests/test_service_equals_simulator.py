"""The quota service decides what the simulator decides.

One school day (``tests/class_traffic.py``: over 2,000 requests, class reservations used and
unused, school and student budgets, caps, reclaims, lease renewals and ends, students who
give up in the queue) is replayed twice: by ``gpu-commons simulate`` and through the real
HTTP service on its injected clock, driven by the same event loop
(``tests/service_allocator.py``), on SQLite and on PostgreSQL. Both must admit the same
requests to the same pools at the same moments, warn, stop and refuse the same, give the
same wait estimates, and write the same ``summary.json`` and ``schools.csv``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from quota.alliance import load_alliance
from quota.allocator_inputs import allocator_inputs, pool_specs_of
from quota.app import create_app
from quota.messages import sentence
from quota.settings import QuotaSettings
from quota.simulator.run import simulate, write_outputs
from quota.simulator.trace import read_trace
from tests.class_traffic import write_scenario
from tests.postgres import postgres_server  # noqa: F401  (fixture, started only for the postgres run)
from tests.quota_fixtures import TOKEN, Clock, account_of_token
from tests.service_allocator import ServiceAllocator, instant

pytestmark = pytest.mark.slow

TIMING = ("optimum_seconds", "replay_seconds")  # how long it took, not what it decided


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    folder = tmp_path_factory.mktemp("equivalence")
    alliance_path, trace_path = write_scenario(folder)
    alliance = load_alliance(alliance_path)
    trace = read_trace(trace_path, {s.id for s in alliance.schools}, {p.id for p in alliance.profiles})
    return folder, alliance_path, trace_path, alliance, trace


@pytest.fixture(scope="module")
def simulated(scenario):
    """``gpu-commons simulate`` as a user runs it: its files, and the same run in-process for the
    decisions (the two at once, one on each core: about 6 s each)."""
    folder, alliance_path, trace_path, alliance, trace = scenario
    out = folder / "simulated"
    command = [sys.executable, "-m", "quota", "simulate", "--alliance", str(alliance_path), "--trace",
               str(trace_path), "--policy", "fair", "--out", str(out), "--no-plots"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as cli:
        try:
            decisions = simulate(alliance, trace, "fair")
            _, stderr = cli.communicate(timeout=300)
        finally:
            cli.kill()  # only if it is still running (a failure above, or past the timeout)
    assert cli.returncode == 0, stderr
    return out, decisions


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request, scenario):
    """The same day through the real service: the simulation's result, its files and the adapter."""
    folder, alliance_path, _, alliance, trace = scenario
    database_url = ""
    if request.param == "postgres":
        database_url = request.getfixturevalue("postgres_server").create_database()
    clock = Clock()
    clock.now = instant(trace.arrival[0])
    settings = QuotaSettings(alliance=alliance_path, data_dir=folder / f"quota-{request.param}", api_token=TOKEN,
                             database_url=database_url, use_nvml=False,
                             queue_heartbeat_timeout_s=1e9)  # a student who gave up withdraws (DELETE), as traced
    app = create_app(settings, clock=clock, token_resolver=account_of_token, run_timers=False)
    pool_of = {(pool.id, spec.kind): spec.id for pool in alliance.pools for spec in pool_specs_of(pool)}
    with TestClient(app, headers={"Authorization": f"token {TOKEN}"}) as client:
        service = ServiceAllocator(client, clock, app.state.book, allocator_inputs(alliance).shapes, pool_of)
        result = simulate(alliance, trace, "fair", allocator=service.make)
    out = folder / f"served-{request.param}"
    write_outputs(result, trace, out, plots=False)
    return out, result, service


def _same_times(ours: list[float], theirs: list[float]) -> bool:
    """Equal, nan for nan; the service's clock keeps microseconds, so a time the allocator
    computed (a budget running out) may sit up to one microsecond later there."""
    return len(ours) == len(theirs) and all(
        (a != a and b != b) or a == b or (math.isfinite(a) and abs(a - b) < 1e-5) for a, b in zip(ours, theirs)
    )


def test_the_day_exercises_every_rule(scenario, served):
    _, _, _, _, trace = scenario
    _, result, service = served
    day = result["replay"]
    refusals = " ".join(day.refusal).lower()
    assert len(trace) >= 2000
    assert day.stops.get("reclaimed", 0) >= 20 and day.warnings >= 20
    assert day.stops.get("lease_expired", 0) >= 1 and day.stops.get("budget_exhausted", 0) >= 1
    assert service.renewals >= 20  # sessions longer than a lease kept their GPU
    assert day.counts["abandoned"] >= 50 and day.counts["completed"] >= 500 and day.resubmitted >= 20
    assert "school's gpu budget is used up" in refusals and "your gpu budget is used up" in refusals
    assert "running or waiting, the most your school allows" in refusals  # caps (the sentence has plural forms)
    reserved = [i for i, group in enumerate(trace.group) if group == "c01-ai"]
    assert sum(day.admitted_at[i] == day.admitted_at[i] for i in reserved) >= 15  # the class got its lesson


def test_the_service_takes_the_simulators_decisions(simulated, served):
    _, expected = simulated
    _, result, _ = served
    ours, theirs = result["replay"], expected["replay"]
    assert ours.outcome == theirs.outcome
    assert ours.counts == theirs.counts and ours.stops == theirs.stops
    assert ours.warnings == theirs.warnings and ours.resubmitted == theirs.resubmitted
    assert _same_times(ours.admitted_at, theirs.admitted_at)
    assert _same_times(ours.ended_at, theirs.ended_at)
    assert _same_times(ours.wait_estimate, theirs.wait_estimate)
    assert len(ours.intervals) == len(theirs.intervals)
    for mine, other in zip(sorted(ours.intervals), sorted(theirs.intervals)):
        assert (mine[0], mine[3]) == (other[0], other[3])  # the same request held the same share
        assert _same_times([mine[1], mine[2]], [other[1], other[2]])
    for mine, other in zip(ours.refusal, theirs.refusal):  # the same rule, in the service's sentence
        said = str(sentence(other)) if other else ""  # the allocator's phrase as the service words it
        assert (mine == "") == (other == "") and mine.lower().startswith(said[:40].lower()), (mine, other)


def test_the_service_writes_the_simulators_results(simulated, served):
    cli_out, _ = simulated
    out, _, _ = served
    ours = json.loads((out / "summary.json").read_text())
    theirs = json.loads((cli_out / "summary.json").read_text())
    for key in TIMING:
        ours.pop(key), theirs.pop(key)
    assert ours == theirs
    assert (out / "schools.csv").read_text() == (cli_out / "schools.csv").read_text()

