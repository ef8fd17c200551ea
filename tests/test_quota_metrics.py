"""The quota service's /metrics: names, labels, values, and promtool's verdict."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.quota_fixtures import TOKEN

EXPECTED_FAMILIES = {
    "gpu_commons_lease_requests": "counter",
    "gpu_commons_leases_granted": "counter",
    "gpu_commons_gpu_units": "gauge",
    "gpu_commons_gpu_units_allocated": "gauge",
    "gpu_commons_queue_length": "gauge",
    "gpu_commons_gpu_usage_seconds": "counter",
    "gpu_commons_leases_reclaimed": "counter",
    "gpu_commons_gpus_guaranteed": "gauge",
    "gpu_commons_gpus_held": "gauge",
    "gpu_commons_fair_share_priority_gpu_seconds": "gauge",
    "gpu_commons_gpus_queued": "gauge",
    "gpu_commons_gpus_entitled": "gauge",
    "gpu_commons_gpu_unit_idle_seconds": "gauge",
    "gpu_commons_queue_longest_wait_seconds": "gauge",
    "gpu_commons_queue_wait_seconds": "histogram",
    "gpu_commons_decision_duration_seconds": "histogram",
    "gpu_commons_journal_commit_duration_seconds": "histogram",
    "gpu_commons_journal_inputs_stored": "counter",
    "gpu_commons_journal_commit_failures": "counter",
    "gpu_commons_http_request_duration_seconds": "histogram",
    "gpu_commons_budget_gpu_hours": "gauge",
    "gpu_commons_budget_used_gpu_hours": "gauge",
}
# quota/metrics.py's rule: gpu_commons_<noun>_<verb or unit>, a unit spelled out where there is one
NAME_RULE = re.compile(r"^gpu_commons_[a-z]+(_[a-z]+)+$")
UNITS = ("_seconds", "_gpu_hours", "_gpu_seconds")
COUNTS = ("_units", "_length", "_gpus", "_guaranteed", "_held", "_queued", "_entitled", "_allocated")


def samples(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def ask(client, user, profile="gpu-slice"):
    return client.post("/api/leases", json={"user": user, "school": user.split("-")[0], "profile": profile}).json()


def test_metric_families_and_their_types(quota_client):
    ask(quota_client, "c01-s1")  # a held unit, so its idle time is there
    text = quota_client.get("/metrics").text
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert families == EXPECTED_FAMILIES
    assert "_created" not in text


def test_names_follow_the_rule_written_in_metrics_py():
    for name, kind in EXPECTED_FAMILIES.items():
        assert NAME_RULE.match(name), name
        if kind == "histogram":  # a histogram measures something with a unit
            assert name.endswith("_seconds"), name
        elif kind == "gauge":  # a gauge is a count of things or has its unit
            assert name.endswith(UNITS + COUNTS), name


def test_values_follow_the_leases(quota_client, clock):
    granted = ask(quota_client, "c01-s1", profile="gpu-whole")
    ask(quota_client, "u01-s1", profile="gpu-whole")  # queued
    ask(quota_client, "c01-s1", profile="gpu-slice")  # refused: one GPU lease per student
    found = samples(quota_client)
    assert found[("gpu_commons_lease_requests_total", (("outcome", "granted"), ("tier", "county")))] == 1
    assert found[("gpu_commons_lease_requests_total", (("outcome", "refused"), ("tier", "county")))] == 1
    assert found[("gpu_commons_lease_requests_total", (("outcome", "queued"), ("tier", "urban")))] == 1
    assert found[("gpu_commons_gpu_units_allocated", (("pool", "uni-a"), ("school", "c01")))] == 1
    assert found[("gpu_commons_gpu_units_allocated", (("pool", "uni-a"), ("school", "u01")))] == 0
    assert found[("gpu_commons_queue_length", (("kind", "whole"), ("tier", "urban")))] == 1
    assert found[("gpu_commons_queue_length", (("kind", "whole"), ("tier", "county")))] == 0
    assert found[("gpu_commons_gpu_units", (("kind", "slice"), ("pool", "uni-a"), ("simulated", "true")))] == 2

    clock.advance(minutes=10)
    quota_client.delete(f"/api/leases/{granted['id']}")
    found = samples(quota_client)
    assert found[("gpu_commons_gpu_usage_seconds_total", (("school", "c01"), ("tier", "county")))] == pytest.approx(600)
    assert found[("gpu_commons_gpu_units_allocated", (("pool", "uni-a"), ("school", "u01")))] == 1  # promoted
    assert found[("gpu_commons_leases_granted_total", (("pool", "uni-a"), ("tier", "urban")))] == 1
    assert found[("gpu_commons_queue_length", (("kind", "whole"), ("tier", "urban")))] == 0
    # u01-s1 waited the 10 minutes in the queue
    assert found[("gpu_commons_queue_wait_seconds_count", (("tier", "urban"),))] == 1
    assert found[("gpu_commons_queue_wait_seconds_sum", (("tier", "urban"),))] == pytest.approx(600)
    assert found[("gpu_commons_queue_wait_seconds_count", (("tier", "county"),))] == 0


def test_promtool_accepts_the_exposition(quota_client):
    if not shutil.which("promtool"):
        pytest.fail("promtool is missing; run `make install-test` (Debian package prometheus)")
    ask(quota_client, "c01-s1")
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=quota_client.get("/metrics").text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_fair_share_metrics_follow_guarantees_holdings_and_reclaims(quota_client, clock):
    found = samples(quota_client)
    # 2 GPUs; c01 (county, weight 2) is guaranteed 2/3 of them, u01 (urban) 1/3
    assert found[("gpu_commons_gpus_guaranteed", (("school", "c01"), ("tier", "county")))] == pytest.approx(4 / 3)
    assert found[("gpu_commons_gpus_guaranteed", (("school", "u01"), ("tier", "urban")))] == pytest.approx(2 / 3)
    ask(quota_client, "u01-s1")
    ask(quota_client, "u01-s2")
    clock.advance(minutes=15)
    found = samples(quota_client)
    assert found[("gpu_commons_gpus_held", (("school", "u01"), ("tier", "urban")))] == pytest.approx(1.0)
    # 15 minutes of one GPU plus the 10-minute entry penalty of each half, decayed over an hour, weight 1
    urban = found[("gpu_commons_fair_share_priority_gpu_seconds", (("school", "u01"), ("tier", "urban")))]
    assert 0.8 * 25 * 60 < urban < 25 * 60
    assert found[("gpu_commons_fair_share_priority_gpu_seconds", (("school", "c01"), ("tier", "county")))] == 0

    county = ask(quota_client, "c01-s1")  # below its guarantee: the borrowed half is reclaimed
    assert county["state"] == "queued"
    clock.advance(minutes=1)
    quota_client.get(f"/api/leases/{county['id']}")  # the hub keeps the queue place
    clock.advance(minutes=1)
    quota_client.app.state.book.sweep()
    found = samples(quota_client)
    assert found[("gpu_commons_leases_reclaimed_total", (("tier", "urban"),))] == 1
    assert found[("gpu_commons_leases_reclaimed_total", (("tier", "county"),))] == 0
    assert found[("gpu_commons_gpus_held", (("school", "c01"), ("tier", "county")))] == pytest.approx(0.5)


def test_latency_histograms_count_decisions_commits_and_answers(quota_client):
    first = ask(quota_client, "c01-s1")
    ask(quota_client, "u01-s1")
    assert quota_client.get(f"/api/leases/{first['id']}").status_code == 200
    assert quota_client.get("/no/such/page").status_code == 404
    found = samples(quota_client)
    assert found[("gpu_commons_decision_duration_seconds_count", ())] >= 2
    assert found[("gpu_commons_journal_inputs_stored_total", ())] >= 2  # the two requests (and the start-up's)
    assert found[("gpu_commons_journal_commit_duration_seconds_count", ())] >= 1
    assert found[("gpu_commons_journal_commit_failures_total", ())] == 0
    post = ("gpu_commons_http_request_duration_seconds_count",
            (("code", "201"), ("method", "POST"), ("route", "/api/leases")))
    assert found[post] == 2
    lease = ("gpu_commons_http_request_duration_seconds_count",
             (("code", "200"), ("method", "GET"), ("route", "/api/leases/{lease_id}")))
    assert found[lease] == 1  # by the route's template: one series, whatever the lease
    unmatched = ("gpu_commons_http_request_duration_seconds_count",
                 (("code", "404"), ("method", "GET"), ("route", "unmatched")))
    assert found[unmatched] == 1


def test_a_failed_commit_is_counted_and_answered_503(quota_client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from quota.journal import Batch

    def write(batch, session):
        raise OperationalError("INSERT INTO leases", {}, Exception("disk is full"))

    monkeypatch.setattr(Batch, "write", write)
    answer = quota_client.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "gpu-slice"})
    assert answer.status_code == 503
    monkeypatch.undo()
    found = samples(quota_client)
    assert found[("gpu_commons_journal_commit_failures_total", ())] == 1
    assert found[("gpu_commons_http_request_duration_seconds_count",
                  (("code", "503"), ("method", "POST"), ("route", "/api/leases")))] == 1


def test_entitlement_is_the_guarantee_capped_by_what_the_school_asks(quota_client, clock):
    # one whole GPU and two slices; c01 is guaranteed 4/3 GPUs, u01 2/3
    county = ask(quota_client, "c01-s1", profile="gpu-whole")
    ask(quota_client, "u01-s1", profile="gpu-whole")  # queued: the only whole GPU is taken
    clock.advance(minutes=5)
    found = samples(quota_client)
    assert found[("gpu_commons_gpus_queued", (("school", "u01"), ("tier", "urban")))] == 1
    assert found[("gpu_commons_gpus_entitled", (("school", "c01"), ("tier", "county")))] == pytest.approx(1)
    assert found[("gpu_commons_gpus_entitled", (("school", "u01"), ("tier", "urban")))] == pytest.approx(2 / 3)
    assert found[("gpu_commons_queue_longest_wait_seconds", (("tier", "urban"),))] == pytest.approx(300)
    assert found[("gpu_commons_queue_longest_wait_seconds", (("tier", "county"),))] == 0
    [(unit, idle)] = [(dict(labels)["unit"], value) for (name, labels), value in found.items()
                      if name == "gpu_commons_gpu_unit_idle_seconds"]
    assert idle == pytest.approx(300) and unit.startswith("uni-a/")

    assert quota_client.app.state.book.touch(county["id"])  # the workspace was used
    clock.advance(minutes=1)
    found = samples(quota_client)
    assert found[("gpu_commons_gpu_unit_idle_seconds", (("pool", "uni-a"), ("unit", unit)))] == pytest.approx(60)


def test_budgets_of_the_schools_that_have_one(make_quota_app, quota_alliance, clock):
    quota_alliance.write_text(quota_alliance.read_text().replace(
        "- {id: u01, tier: urban,", "- {id: u01, tier: urban, budget_gpu_hours: 10,"))
    with TestClient(make_quota_app(), headers={"Authorization": f"token {TOKEN}"}) as client:
        ask(client, "u01-s1", profile="gpu-whole")
        clock.advance(minutes=30)
        found = samples(client)
    assert found[("gpu_commons_budget_gpu_hours", (("school", "u01"), ("tier", "urban")))] == 10
    assert found[("gpu_commons_budget_used_gpu_hours", (("school", "u01"), ("tier", "urban")))] == pytest.approx(0.5)
    assert not any(name.startswith("gpu_commons_budget") and ("school", "c01") in labels
                   for name, labels in found)
