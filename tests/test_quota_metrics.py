"""The quota service's /metrics: names, labels, values, and promtool's verdict."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

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
}


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
    text = quota_client.get("/metrics").text
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert families == EXPECTED_FAMILIES
    assert "_created" not in text


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
    assert found[("gpu_commons_queue_length", (("kind", "whole"),))] == 1
    assert found[("gpu_commons_gpu_units", (("kind", "slice"), ("pool", "uni-a"), ("simulated", "true")))] == 2

    clock.advance(minutes=10)
    quota_client.delete(f"/api/leases/{granted['id']}")
    found = samples(quota_client)
    assert found[("gpu_commons_gpu_usage_seconds_total", (("school", "c01"), ("tier", "county")))] == pytest.approx(600)
    assert found[("gpu_commons_gpu_units_allocated", (("pool", "uni-a"), ("school", "u01")))] == 1  # promoted
    assert found[("gpu_commons_leases_granted_total", (("pool", "uni-a"), ("tier", "urban")))] == 1
    assert found[("gpu_commons_queue_length", (("kind", "whole"),))] == 0


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
