"""The fair-share benchmark scripts still run, at tiny sizes (a few seconds; no timing is checked).

The real runs and their figures are in docs/fairshare.md.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pods(tmp_path_factory) -> Path:
    """A small stand-in for the Alibaba pod list, so the test needs no shared/ folder."""
    rng = random.Random(3)
    path = tmp_path_factory.mktemp("pods") / "pods.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "num_gpu", "gpu_milli", "creation_time", "deletion_time"])
        for k in range(200):
            created = rng.randint(0, 10_000)
            writer.writerow([f"pod-{k}", 1, rng.choice([250, 500, 1000]), created, created + rng.randint(120, 7200)])
    return path


def run(script: str, *args) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quality_benchmark_runs_every_policy_on_each_family(tmp_path, pods):
    out = run("fairshare_quality.py", "--days", 1, "--seeds", 2, "--families", "whole,mixed,reservations",
              "--pods", pods, "--out", tmp_path / "scenarios", "--json", tmp_path / "figures.json")
    runs = json.loads((tmp_path / "figures.json").read_text())
    assert [(r["family"], r["seed"]) for r in runs] == [
        ("whole", 1), ("whole", 2), ("mixed", 1), ("mixed", 2), ("reservations", 1), ("reservations", 2)]
    for r in runs:
        assert set(r["policies"]) == {"fair", "fcfs", "static", "optimum"}
        assert r["demand_over_capacity"] >= 1.5
        assert [t["target"] for t in r["targets"]] == [
            "Jain >= 0.95", "county GPU-h >= 95 % of entitled", "county p95 <= urban p95",
            "utilisation >= 0.95 x optimum", "reclaim stops <= 5 % of admitted", "no capacity violations"]
        assert all(p["capacity_violations"] == 0 for p in r["policies"].values())
        assert r["policies"]["fair"]["admitted"] > 0
    by_family = {r["family"]: r for r in runs if r["seed"] == 1}
    assert [sliced for _, _, sliced in by_family["whole"]["pools"]] == [0]
    assert 0 < by_family["mixed"]["pools"][0][2] < by_family["mixed"]["pools"][0][1]
    assert by_family["reservations"]["reservations"] > 0
    for family in ("whole", "mixed", "reservations"):
        assert (tmp_path / "scenarios" / family / "trace.csv").exists()
        assert (tmp_path / "scenarios" / family / "alliance.yaml").exists()
    assert "summary over seeds 1..2 of fair" in out


def test_speed_benchmark_replays_and_times_admissions(tmp_path, pods):
    run("fairshare_speed.py", "--requests", 1500, "--schools", 30, "--sessions", 100, "--decisions", 50,
        "--pods", pods, "--json", tmp_path / "figures.json")
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["replay"]["requests"] == 1500
    assert figures["replay"]["schools"] == 30
    assert figures["replay"]["capacity_violations"] == 0
    assert sum(figures["replay"]["outcomes"].values()) == 1500
    assert [(a["fill"], a["explain"]) for a in figures["admission"]] == [
        ("spread", False), ("spread", True), ("burst", False), ("burst", True)]
    assert [a["fill_seconds"] for a in figures["admission"]] == [3600, 3600, 110, 110]
    assert all(a["active_sessions"] == 100 and a["decisions"] == 50 for a in figures["admission"])
    assert all(a["cpu_p99_ms"] <= a["cpu_max_ms"] and a["lease_ends_max"] >= 0 for a in figures["admission"])
