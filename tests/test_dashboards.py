"""The Grafana dashboards (quota/dashboards.py -> helm/gpu-commons/files/dashboards/*.json):
the committed JSON is what the module makes, and every panel's query, run by a real
Prometheus that scraped a real quota service through some traffic, returns data."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest

from quota import dashboards
from tests.fake_nvml import gpus_json, install
from tests.prometheus_server import PrometheusServer
from tests.quota_process import QuotaProcess

RULES = dashboards.OUT.parent / "prometheus-rules.yaml"
T4_BUSY = {"name": "Tesla T4", "memory_mib": 15360, "mig": None, "utilisation": 37}
# what Grafana puts in for its variables; windows long enough for this test's minute of traffic
GRAFANA_VARIABLES = (("$__rate_interval", "2m"), ("$__range_s", "600"), ("$__range", "10m"))

# one real whole GPU (NVML answered by tests/fake_nvml.py, 37 % busy) beside two simulated slices
ALLIANCE = """
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: uni-t, gpus: 1, simulated: false}
  - {id: uni-a, gpus: 1, sliced_gpus: 1, slices_per_gpu: 2, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 120}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 60}
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 60}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2, c01-s3]}
  - {id: u01, tier: urban, budget_gpu_hours: 50, students: [u01-s1, u01-s2, u01-s3]}
"""


def targets(model: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the dashboard."""
    return [(panel["title"], target["expr"]) for panel in dashboards.panels(model) for target in panel.get("targets", [])]


def as_grafana_sends_it(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES:
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


@pytest.mark.parametrize("name", sorted(dashboards.BOARDS))
def test_the_committed_json_is_what_the_module_makes(name):
    committed = (dashboards.OUT / f"{name}.json").read_text()
    assert committed == dashboards.render(dashboards.BOARDS[name]), (
        f"helm/gpu-commons/files/dashboards/{name}.json is stale: run `.venv/bin/python -m quota.dashboards`")


@pytest.mark.parametrize("name", sorted(dashboards.BOARDS))
def test_every_panel_is_described_and_uses_the_chosen_prometheus(name):
    model = json.loads((dashboards.OUT / f"{name}.json").read_text())
    assert model["uid"].startswith("gpu-commons-") and "gpu-commons" in model["tags"]
    [variable] = model["templating"]["list"]
    assert (variable["type"], variable["name"], variable["query"]) == ("datasource", "datasource", "prometheus")
    found = dashboards.panels(model)
    assert len({panel["id"] for panel in found}) == len(found)  # no two panels share an id
    for panel in found:
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert [target["refId"] for target in panel["targets"]] == list("ABCDEFGH"[: len(panel["targets"])])


def _ask(client: httpx.Client, user: str, profile: str) -> dict:
    answer = client.post("/api/leases", json={"user": user, "school": user.split("-")[0], "profile": profile})
    assert answer.status_code < 500, answer.text
    return answer.json()


def drive(client: httpx.Client) -> None:
    """Grants, a queue, a refusal, a release that grants a queued lease, unknown pages."""
    whole = _ask(client, "c01-s1", "gpu-whole")
    queued = _ask(client, "u01-s1", "gpu-whole")  # the pool's only whole GPU is taken
    _ask(client, "c01-s2", "gpu-slice")
    _ask(client, "u01-s2", "gpu-slice")
    _ask(client, "u01-s3", "gpu-slice")  # both slices are taken: stays queued
    _ask(client, "c01-s2", "gpu-slice")  # refused: one GPU lease per student
    assert (whole["state"], queued["state"]) == ("granted", "queued")
    assert client.get("/no/such/page").status_code == 404
    assert httpx.get(client.base_url.join("/api/leases")).status_code == 401  # no token
    time.sleep(2)
    assert client.get(f"/api/leases/{queued['id']}").json()["state"] == "queued"
    client.delete(f"/api/leases/{whole['id']}")  # u01-s1 is granted the whole GPU after its wait
    assert client.get(f"/api/leases/{queued['id']}").json()["state"] == "granted"


@pytest.mark.slow
def test_every_panel_query_returns_data_from_a_real_prometheus(tmp_path):
    alliance = tmp_path / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    nvml = install(tmp_path / "fake-nvml")
    service = QuotaProcess(alliance, f"sqlite:///{tmp_path / 'quota' / 'quota.sqlite'}", tmp_path / "quota", env={
        "PYTHONPATH": str(nvml.parent), "FAKE_NVML_GPUS": gpus_json([T4_BUSY]), "GPU_COMMONS_USE_NVML": "true",
        "GPU_COMMONS_GPU_ACTIVITY_INTERVAL_S": "1"})
    prometheus = PrometheusServer(tmp_path / "prometheus", {dashboards.JOB: [f"127.0.0.1:{service.port}"]},
                                  rule_files=[RULES])
    service.start()
    try:
        prometheus.start()
        prometheus.wait_for(f'up{{job="{dashboards.JOB}"}} == 1')  # scraped before the traffic: rates see it
        with service.client() as client:
            drive(client)
            prometheus.wait_for('gpu_commons_queue_wait_seconds_count{tier="urban"} > 0')
            prometheus.wait_for("gpu_commons_gpu_usage_seconds_total > 0")
            prometheus.wait_for("gpu_commons_gpu_unit_busy_ratio > 0.3")  # the real GPU, held and busy
            time.sleep(3)  # a few more scrapes after the last answer, for the rates
            empty = []
            for name, board in sorted(dashboards.BOARDS.items()):
                for title, expr in targets(dashboards.build(board)):
                    result = prometheus.query(as_grafana_sends_it(expr))
                    values = [float(series["value"][1]) for series in result]
                    if not any(math.isfinite(value) for value in values):
                        empty.append(f"{name} / {title}: {expr} -> {values}")
            assert empty == [], "panels without data:\n" + "\n".join(empty)

            # the alert rules load and evaluate in a real Prometheus as well
            rules = [rule for group in prometheus.rules() for rule in group["rules"]]
            assert {rule["name"] for rule in rules} >= {"GpuCommonsQuotaServiceDown", "GpuCommonsJournalErrors"}
            assert [rule["name"] for rule in rules if rule["health"] != "ok"] == []
    finally:
        prometheus.stop()
        service.stop()
