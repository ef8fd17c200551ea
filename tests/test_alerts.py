"""The alert rules (helm/gpu-commons/files/prometheus-rules.yaml): promtool checks them and
runs their unit tests (tests/alerts/), they query only metrics the quota service exports,
and each one's runbook is a section of docs/operations.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.docker_engine import REPO

RULES = REPO / "helm" / "gpu-commons" / "files" / "prometheus-rules.yaml"
RULE_TESTS = REPO / "tests" / "alerts" / "prometheus-rules-test.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    if not shutil.which("promtool"):
        pytest.fail("promtool is missing; run `make install-test` (Debian package prometheus)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd)


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests():
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}  # every alert has a test


def test_the_rules_query_what_the_service_exports(quota_client):
    exported = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", quota_client.get("/metrics").text, re.MULTILINE):
        exported.update(name.removesuffix("_total") + suffix for suffix in SUFFIXES[kind])
    for rule in alert_rules():
        used = set(re.findall(r"\bgpu_commons_\w+", rule["expr"]))
        assert used <= exported, (rule["alert"], used - exported)
        assert used or 'up{job="gpu-commons-quota"}' in rule["expr"], rule["alert"]  # or the scrape job's health


def anchor(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rule) gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_its_runbook_in_the_operations_guide():
    anchors = {anchor(line.lstrip("#")) for line in OPERATIONS.read_text().splitlines() if line.startswith("#")}
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical")
        runbook = rule["annotations"]["runbook"]
        assert runbook.startswith("docs/operations.md#") and runbook.split("#")[1] in anchors, (rule["alert"], runbook)
        assert rule["alert"] in OPERATIONS.read_text(), f"docs/operations.md does not name {rule['alert']}"
