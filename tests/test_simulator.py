"""The trace simulator as an operator runs it: `gpu-commons simulate` and `gpu-commons scenario`.

Small hand-written alliances and traces whose results are worked out by hand in the
comments, the output files (summary.json, schools.csv, three PNGs), the scenario
generator, and every kind of bad input: the run must stop with a message naming the
file, the line (trace) or field (alliance) and the fix, and write nothing.

Most runs call :func:`quota.cli.main` in-process (the same code the console script runs,
without a second interpreter start per case); one test runs the installed script.
"""

from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from quota.alliance import load_alliance
from quota.cli import main

# The minimal alliance form, verbatim.
MINIMAL_ALLIANCE = """\
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools: [{id: uni-a, gpus: 8}]
schools: [{id: c01, tier: county}, {id: u01, tier: urban}]
"""

POLICIES = ["fair", "fcfs", "static", "optimum"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def minimal_alliance(gpus: int) -> str:
    return MINIMAL_ALLIANCE.replace("gpus: 8", f"gpus: {gpus}")


def gpu_commons(capsys, *argv) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse rejects bad options by exiting
        rc = exc.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def simulate(capsys, tmp_path: Path, alliance: str, trace: str, policy: str, *extra) -> tuple[dict, Path]:
    """Simulate and return (summary.json, output folder); fails the test on a non-zero exit."""
    out = tmp_path / f"out-{policy}"
    rc, _, err = gpu_commons(
        capsys, "simulate", "--alliance", write(tmp_path / "alliance.yaml", alliance),
        "--trace", write(tmp_path / "trace.csv", trace), "--policy", policy, "--out", out, *extra,
    )
    assert rc == 0, err
    return json.loads((out / "summary.json").read_text()), out


# -- the minimal alliance form ---------------------------------------------------------


def test_minimal_alliance_form_loads_with_defaults(tmp_path):
    alliance = load_alliance(write(tmp_path / "alliance.yaml", MINIMAL_ALLIANCE))
    assert {name: tier.weight for name, tier in alliance.tiers.items()} == {"county": 2, "urban": 1}
    assert [(p.id, p.gpus, p.sliced_gpus) for p in alliance.pools] == [("uni-a", 8, 0)]
    schools = [(s.id, s.tier, alliance.weight_of(s)) for s in alliance.schools]
    assert schools == [("c01", "county", 2), ("u01", "urban", 1)]


def test_installed_script_simulates_the_minimal_form(tmp_path):
    """The real console script, in its own process, on the issue's files verbatim."""
    script = Path(sys.executable).with_name("gpu-commons")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "quota"]
    alliance = write(tmp_path / "alliance.yaml", MINIMAL_ALLIANCE)
    trace = write(tmp_path / "trace.csv", "arrival_s,user,school,duration_s,gpu_milli\n"
                                          "0,c01-s1,c01,600,1000\n60,u01-s1,u01,600,500\n")
    out = tmp_path / "out"
    done = subprocess.run(
        [*command, "simulate", "--alliance", alliance, "--trace", trace, "--policy", "fair", "--out", out,
         "--no-plots"], capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    # 8 GPUs, two requests that fit at once: nobody waits; in the window [0, 60] only the
    # first session runs: 1 GPU of 8 = 0.125
    assert summary["utilization"] == pytest.approx(1 / 8)
    assert summary["tiers"]["county"]["p95_wait_s"] == 0 and summary["tiers"]["urban"]["p95_wait_s"] == 0
    assert "wrote" in done.stdout


# -- a trace small enough to work out by hand ------------------------------------------

# Two whole GPUs (county weight 2, urban 1: guarantees 4/3 and 2/3 GPU).
#   t=0    c1 (county) and u1 (urban) each take a GPU for 600 s: both GPUs busy until 600.
#   t=300  u2 (urban) arrives with patience 120 s; no GPU frees before 600, nobody holds
#          more than it may, so it gives up at 420 and counts a wait of 120 s.
#   t=900  c2 (county) arrives to idle GPUs and starts at once (wait 0).
# The window is first to last arrival, [0, 900]: 2 GPUs x 600 s used of 2 x 900 s -> 2/3.
# Served in the window: c01 600 GPU-s, u01 600 GPU-s = exactly what the optimum gives
# them (0.1667 GPU-hours each), so Jain's index is 1.
# Waits: county [0, 0]; urban [0, 120] -> p50 60, p95 0.95 * 120 = 114 (linear percentile).
# Every policy agrees here: nothing can be reclaimed, and static's partition (1 + 1 GPU by
# largest remainder) matches what each school uses.
HAND_TRACE = """\
arrival_s,user,school,duration_s,gpu_milli,patience_s
0,c01-s1,c01,600,1000,
0,u01-s1,u01,600,1000,
300,u01-s2,u01,600,1000,120
900,c01-s2,c01,300,1000,
"""


@pytest.mark.parametrize("policy", POLICIES)
def test_hand_worked_trace(capsys, tmp_path, policy):
    summary, out = simulate(capsys, tmp_path, minimal_alliance(2), HAND_TRACE, policy, "--no-plots")
    assert summary["policy"] == policy
    assert summary["requests"] == 4
    assert summary["capacity_gpus"] == 2
    assert summary["utilization"] == pytest.approx(2 / 3)
    assert summary["jain_index"] == pytest.approx(1.0)
    assert summary["capacity_violations"] == 0
    assert summary["preemptions"] == 0
    county, urban = summary["tiers"]["county"], summary["tiers"]["urban"]
    assert county == pytest.approx(county | {"p50_wait_s": 0, "p95_wait_s": 0, "served_fraction": 1.0, "abandoned": 0})
    assert urban["p50_wait_s"] == pytest.approx(60)
    assert urban["p95_wait_s"] == pytest.approx(114)
    assert urban["served_fraction"] == pytest.approx(0.5)
    assert urban["abandoned"] == 1
    assert summary["outcomes"] == {"abandoned": 1, "completed": 3}
    rows = {row["school"]: row for row in csv.DictReader((out / "schools.csv").open())}
    for school, tier in (("c01", "county"), ("u01", "urban")):
        assert rows[school]["tier"] == tier
        assert float(rows[school]["served_gpu_hours"]) == pytest.approx(600 / 3600, abs=1e-4)
        assert float(rows[school]["entitled_gpu_hours"]) == pytest.approx(600 / 3600, abs=1e-4)


@pytest.mark.parametrize("trace", [
    "arrival_s,user,school,duration_s,gpu_milli\n0,u01-s1,u01,3600,1000\n10,c01-s1,c01,600,1000\n",
    "arrival_s,user,school,duration_s,gpu_milli,patience_s\n0,u01-s1,u01,3600,1000,\n10,c01-s1,c01,600,1000,\n",
], ids=["no-patience-column", "empty-patience-cell"])
def test_patience_defaults_to_900_s(capsys, tmp_path, trace):
    # one GPU, taken by u1 until 3600; under fcfs c1 waits behind it and gives up after
    # the default 900 s, counted as a wait of 900 s
    summary, _ = simulate(capsys, tmp_path, minimal_alliance(1), trace, "fcfs", "--no-plots")
    county = summary["tiers"]["county"]
    assert (county["abandoned"], county["served_fraction"]) == (1, 0.0)
    assert county["p50_wait_s"] == pytest.approx(900)


# -- fair share against first come, first served ---------------------------------------

# Two GPUs. The urban school floods first: four one-hour requests at t=0 (patience 1 h);
# the county school asks for one GPU for 20 minutes at t=60 (patience 15 min); one more
# short urban request at t=1800 closes the window [0, 1800].
FLOOD_TRACE = """\
arrival_s,user,school,duration_s,gpu_milli,patience_s
0,u01-s1,u01,3600,1000,3600
0,u01-s2,u01,3600,1000,3600
0,u01-s3,u01,3600,1000,3600
0,u01-s4,u01,3600,1000,3600
60,c01-s1,c01,1200,1000,900
1800,u01-s5,u01,60,1000,3600
"""


def test_fair_gives_the_county_school_its_share_where_fcfs_lets_urban_flood(capsys, tmp_path):
    fcfs, _ = simulate(capsys, tmp_path, minimal_alliance(2), FLOOD_TRACE, "fcfs", "--no-plots")
    fair, _ = simulate(capsys, tmp_path, minimal_alliance(2), FLOOD_TRACE, "fair", "--no-plots")
    static, _ = simulate(capsys, tmp_path, minimal_alliance(2), FLOOD_TRACE, "static", "--no-plots")

    # fcfs: u1 and u2 hold both GPUs until 3600 and u3, u4 queue ahead of the county
    # request, which gives up at 60 + 900 s without ever getting a GPU.
    county = fcfs["tiers"]["county"]
    assert (county["served_fraction"], county["abandoned"]) == (0.0, 1)
    assert county["p50_wait_s"] == pytest.approx(900)
    assert county["gpu_hours_served"] == 0
    # urban held both GPUs for the whole window: 2 GPUs x 1800 s = 1 GPU-hour
    assert fcfs["tiers"]["urban"]["gpu_hours_served"] == pytest.approx(1.0)
    # served / entitled: county 0, urban 1.5 -> Jain (1.5)^2 / (2 * 1.5^2) = 0.5
    assert fcfs["jain_index"] == pytest.approx(0.5)
    assert fcfs["preemptions"] == 0

    # fair: the county school (guarantee 4/3 GPU, holding 0) waits while both urban
    # sessions are borrowed (urban's guarantee is 2/3 GPU), so one is warned and stopped at
    # max(60 + 2 min warning, 0 + 10 min minimum runtime) = 600: the county request starts
    # at 600 (wait 540) and runs to 1800, 1/3 GPU-hour, exactly its entitlement.
    county = fair["tiers"]["county"]
    assert (county["served_fraction"], county["abandoned"]) == (1.0, 0)
    assert county["p50_wait_s"] == pytest.approx(540)
    assert county["gpu_hours_served"] == pytest.approx(1 / 3)
    assert county["gpu_hours_served"] == pytest.approx(county["gpu_hours_entitled"])
    assert fair["tiers"]["urban"]["gpu_hours_served"] == pytest.approx(2 / 3)
    assert fair["preemptions"] == 1
    assert fair["jain_index"] == pytest.approx(1.0)
    assert fair["utilization"] == pytest.approx(1.0)  # the GPUs never idle in the window

    # static: the county school's GPU is always its own (wait 0) but idles before 60 and
    # after 1260: (1800 urban + 1200 county) GPU-s of 3600 -> 5/6
    assert static["tiers"]["county"]["p50_wait_s"] == 0
    assert static["utilization"] == pytest.approx(5 / 6)

    for summary in (fcfs, fair, static):
        assert summary["capacity_violations"] == 0


# -- output files ----------------------------------------------------------------------


def test_a_trace_without_a_time_span_gives_strict_json(capsys, tmp_path):
    """One request: no window to measure fairness in; Jain's index is null, not NaN."""
    one = "arrival_s,user,school,duration_s,gpu_milli\n0,c01-s1,c01,600,1000\n"
    summary, out = simulate(capsys, tmp_path, minimal_alliance(2), one, "fair")
    json.loads((out / "summary.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert summary["jain_index"] is None and summary["capacity_violations"] == 0
    assert (out / "served_vs_entitlement.png").stat().st_size > 0

def test_summary_json_keys_and_types(capsys, tmp_path):
    summary, out = simulate(capsys, tmp_path, minimal_alliance(2), HAND_TRACE, "fair", "--no-plots")
    # strict JSON: no NaN or Infinity that other tools would choke on
    json.loads((out / "summary.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    for key in ("utilization", "jain_index"):
        assert isinstance(summary[key], float) and 0 <= summary[key] <= 1, key
    for key in ("capacity_violations", "preemptions"):
        assert isinstance(summary[key], int) and summary[key] >= 0, key
    assert set(summary["tiers"]) == {"county", "urban"}
    for tier in summary["tiers"].values():
        for key in ("p50_wait_s", "p95_wait_s"):
            assert isinstance(tier[key], (int, float)) and tier[key] >= 0, key
        assert tier["p50_wait_s"] <= tier["p95_wait_s"]
        assert isinstance(tier["served_fraction"], float) and 0 <= tier["served_fraction"] <= 1
        assert isinstance(tier["abandoned"], int) and tier["abandoned"] >= 0


def test_plots_are_real_pngs(capsys, tmp_path):
    _, out = simulate(capsys, tmp_path, minimal_alliance(2), FLOOD_TRACE, "fair")
    names = ["wait_by_tier.png", "utilization.png", "served_vs_entitlement.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["summary.json", "schools.csv", *names])
    for name in names:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert data[12:16] == b"IHDR"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 400 and height >= 300, (name, width, height)
        assert len(data) > 10_000, name  # a drawn chart, not an empty canvas


def test_schools_csv_lists_every_school(capsys, tmp_path):
    alliance = minimal_alliance(2).replace("{id: u01, tier: urban}]", "{id: u01, tier: urban}, {id: u02, tier: urban}]")
    _, out = simulate(capsys, tmp_path, alliance, FLOOD_TRACE, "fair", "--no-plots")
    with (out / "schools.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["school", "tier", "served_gpu_hours", "entitled_gpu_hours"]
        rows = {row["school"]: row for row in reader}
    # u02 asked for nothing: listed with zeros rather than left out
    assert sorted(rows) == ["c01", "u01", "u02"]
    assert float(rows["u02"]["served_gpu_hours"]) == 0 and float(rows["u02"]["entitled_gpu_hours"]) == 0
    assert float(rows["c01"]["served_gpu_hours"]) == pytest.approx(1 / 3, abs=1e-4)


def test_a_failed_write_leaves_no_partial_results(capsys, tmp_path, monkeypatch):
    import quota.simulator.plots

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(quota.simulator.plots, "write_plots", broken)
    alliance = write(tmp_path / "alliance.yaml", minimal_alliance(2))
    trace = write(tmp_path / "trace.csv", HAND_TRACE)
    out = tmp_path / "results" / "fair"
    with pytest.raises(OSError, match="disk full"):
        main(["simulate", "--alliance", str(alliance), "--trace", str(trace), "--policy", "fair", "--out", str(out)])
    assert not out.exists()
    assert list((tmp_path / "results").iterdir()) == []  # no scratch folder left behind


# -- the scenario generator ------------------------------------------------------------


@pytest.fixture(scope="module")
def pods(tmp_path_factory) -> Path:
    """A small stand-in for the Alibaba pod list (same columns), so the tests need no download."""
    rng = random.Random(7)
    path = tmp_path_factory.mktemp("pods") / "pods.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "num_gpu", "gpu_milli", "creation_time", "deletion_time"])
        for k in range(300):
            gpus = rng.choice([0, 1, 1, 1, 1, 2])  # CPU-only and two-GPU pods are skipped by default
            created = rng.randint(0, 10_000)
            lifetime = rng.randint(120, 4 * 3600)
            deleted = "" if k % 50 == 0 else created + lifetime  # still running when the trace ended
            writer.writerow([f"pod-{k}", gpus, rng.choice([250, 500, 1000]) if gpus == 1 else 0, created, deleted])
    return path


def scenario(capsys, pods: Path, out: Path, *args) -> tuple[int, str, str]:
    return gpu_commons(capsys, "scenario", "--pods", pods, "--out", out, *args)


def read_rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_scenario_same_seed_same_files_other_seed_other_files(capsys, tmp_path, pods):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        rc, _, err = scenario(capsys, pods, tmp_path / name, "--seed", seed)
        assert rc == 0, err
    for name in ("trace.csv", "alliance.yaml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "trace.csv").read_bytes() != (tmp_path / "c" / "trace.csv").read_bytes()


def test_scenario_sizes_the_pool_for_the_requested_oversubscription(capsys, tmp_path, pods):
    rc, out, err = scenario(capsys, pods, tmp_path / "s", "--county", 4, "--urban", 3, "--county-devices", 6,
                            "--oversubscription", 1.5)
    assert rc == 0, err
    alliance = load_alliance(tmp_path / "s" / "alliance.yaml")
    rows = read_rows(tmp_path / "s" / "trace.csv")
    tiers = {s.id: s.tier for s in alliance.schools}
    assert sorted(tiers.values()) == ["county"] * 4 + ["urban"] * 3
    # county: 3 GPU lessons a day (default) of 6 devices each, per school
    assert sum(1 for r in rows if tiers[r["school"]] == "county") == 4 * 3 * 6
    assert all(float(r["duration_s"]) <= 45 * 60 for r in rows if tiers[r["school"]] == "county")
    # demand in whole GPUs over the window (first to last arrival), against the pool
    arrivals = [float(r["arrival_s"]) for r in rows]
    asked = sum(math.ceil(int(r["gpu_milli"]) / 1000) * float(r["duration_s"]) for r in rows)
    gpus = alliance.pools[0].gpus
    ratio = asked / (gpus * (max(arrivals) - min(arrivals)))
    # the pool is the whole number of GPUs nearest to demand / 1.5, so the ratio is off by
    # at most half a GPU's worth
    assert gpus >= 2
    assert abs(ratio / 1.5 - 1) <= 0.5 / gpus + 1e-3
    assert f"demand {ratio:.2f} x capacity" in out


def test_scenario_with_a_fixed_pool(capsys, tmp_path, pods):
    rc, out, err = scenario(capsys, pods, tmp_path / "s", "--gpus", 5)
    assert rc == 0, err
    assert load_alliance(tmp_path / "s" / "alliance.yaml").pools[0].gpus == 5
    assert "pool of 5 GPUs" in out


@pytest.mark.parametrize("policy", ["fair", "fcfs"])
def test_generated_scenario_simulates(capsys, tmp_path, pods, policy):
    rc, _, err = scenario(capsys, pods, tmp_path / "s", "--seed", 3)
    assert rc == 0, err
    out = tmp_path / policy
    rc, _, err = gpu_commons(capsys, "simulate", "--alliance", tmp_path / "s" / "alliance.yaml",
                             "--trace", tmp_path / "s" / "trace.csv", "--policy", policy, "--out", out, "--no-plots")
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"] == len(read_rows(tmp_path / "s" / "trace.csv"))
    assert set(summary["tiers"]) == {"county", "urban"}
    assert summary["capacity_violations"] == 0
    assert 0 < summary["utilization"] <= 1


def test_scenario_knobs_for_class_period_traffic(capsys, tmp_path, pods):
    rc, out, err = scenario(
        capsys, pods, tmp_path / "s", "--county", 3, "--urban", 3, "--days", 3, "--county-devices", 12,
        "--county-devices-max", 30, "--county-max-milli", 500, "--patience", 480, "--patience-max", 600,
        "--flood-schools", 1, "--flood-days", "1", "--flood-factor", 6, "--evening-end", 22, "--evening-sessions", 0.5,
        "--pools", 2, "--sliced-share", 0.5, "--slices-per-gpu", 4, "--reserved-lessons", 0.5,
        "--unused-reservations", 0.5, "--gpus", 8)
    assert rc == 0, err
    alliance = load_alliance(tmp_path / "s" / "alliance.yaml")
    rows = read_rows(tmp_path / "s" / "trace.csv")
    assert [(p.id, p.gpus, p.sliced_gpus, p.slices_per_gpu) for p in alliance.pools] == [
        ("uni-a", 4, 2, 4), ("uni-b", 4, 2, 4)]
    tiers = {s.id: s.tier for s in alliance.schools}
    county = [r for r in rows if tiers[r["school"]] == "county"]
    assert all(int(r["gpu_milli"]) <= 500 for r in county)
    assert all(480 <= float(r["patience_s"]) <= 600 for r in rows)
    # class sizes: students of one school, day and period
    sizes = {}
    for r in county:
        key = (r["school"], int(float(r["arrival_s"]) // 86400), r["group"])
        sizes[key] = sizes.get(key, 0) + 1
    assert all(size <= 30 for size in sizes.values()) and max(sizes.values()) > 12
    # the booked lessons: some used (their class came), some not (no request of that class then)
    assert alliance.reservations
    used = unused = 0
    for res in alliance.reservations:
        came = [r for r in county if r["school"] == res.school and r["group"] == res.group
                and res.start <= float(r["arrival_s"]) < res.end]
        used, unused = used + bool(came), unused + (not came)
    assert used and unused
    assert "reservations" in out and "left unused" in out
    # exam day: u01 asks far more on day 1 than on days 0 and 2; evenings have some urban requests
    per_day = [sum(1 for r in rows if r["school"] == "u01" and int(float(r["arrival_s"]) // 86400) == d)
               for d in range(3)]
    assert per_day[1] > 3 * max(per_day[0], per_day[2])
    assert any(float(r["arrival_s"]) % 86400 > 17 * 3600 for r in rows if tiers[r["school"]] == "urban")
    rc, _, err = gpu_commons(capsys, "simulate", "--alliance", tmp_path / "s" / "alliance.yaml",
                             "--trace", tmp_path / "s" / "trace.csv", "--policy", "fair", "--out", tmp_path / "fair",
                             "--no-plots")
    assert rc == 0, err


def test_scenario_knob_mistakes_name_the_option_and_the_fix(capsys, tmp_path, pods):
    rc, _, err = scenario(capsys, pods, tmp_path / "s", "--county-devices", 12, "--county-devices-max", 8,
                          "--sliced-share", 1.5, "--flood-days", "4", "--days", 2)
    assert rc == 2
    assert "county_devices_max (8) must be at least county_devices (12)" in err and "--county-devices-max" in err
    assert "sliced_share must be 0 to 1" in err and "--sliced-share" in err
    assert "flood_days must each be 0 to 1" in err and "--flood-days" in err
    assert not (tmp_path / "s").exists()


def test_scenario_bad_input_writes_nothing(capsys, tmp_path, pods):
    rc, _, err = scenario(capsys, tmp_path / "missing.csv", tmp_path / "s")
    assert rc == 2 and "missing.csv" in err and "--pods" in err
    rc, _, err = scenario(capsys, pods, tmp_path / "s", "--days", 0)
    assert rc == 2 and "days must be at least 1" in err
    assert not (tmp_path / "s").exists()


# -- bad input: stop with file, line or field, and the fix; write nothing ---------------

GOOD_TRACE = "arrival_s,user,school,duration_s,gpu_milli\n0,c01-s1,c01,600,1000\n"
HEADER = "arrival_s,user,school,duration_s,gpu_milli\n"

# (id, trace text, what the message must say besides the file name)
BAD_TRACES = [
    ("unknown-school", HEADER + "0,c01-s1,c01,60,1000\n5,x99-s1,x99,60,1000\n",
     ["line 3", "'x99'", "add it under 'schools' or fix the id"]),
    ("negative-duration", HEADER + "0,c01-s1,c01,-60,1000\n", ["line 2", "duration_s", "0 or more"]),
    ("short-row", HEADER + "0,c01-s1,c01,60\n", ["line 2", "4 fields", "fill in every column"]),
    ("long-row", HEADER + "0,c01-s1,c01,60,1000,extra\n", ["line 2", "6 fields", "remove the extra field"]),
    ("missing-column", "arrival_s,user,school,duration_s\n0,c01-s1,c01,60\n",
     ["line 1", "lacks gpu_milli", "it must name arrival_s,user,school,duration_s,gpu_milli"]),
    ("gpu-milli-not-a-number", HEADER + "0,c01-s1,c01,60,half\n",
     ["line 2", "gpu_milli is 'half'", "write a whole number"]),
    ("gpu-milli-zero", HEADER + "0,c01-s1,c01,60,0\n", ["line 2", "gpu_milli", "1 or more"]),
    ("gpu-milli-negative", HEADER + "0,c01-s1,c01,60,-500\n", ["line 2", "gpu_milli", "1 or more"]),
    ("arrival-not-a-number", HEADER + "soon,c01-s1,c01,60,1000\n", ["line 2", "arrival_s", "write a number"]),
    ("negative-patience", HEADER.replace("\n", ",patience_s\n") + "0,c01-s1,c01,60,1000,-5\n",
     ["line 2", "patience_s", "0 or more"]),
    ("empty-user", HEADER + "0,,c01,60,1000\n", ["line 2", "user is empty"]),
    ("header-only", HEADER, ["no requests", "add at least one line"]),
    ("empty-file", "", ["the file is empty", "the first line must be the header"]),
    ("every-bad-line-at-once", HEADER + "0,c01-s1,c01,-1,1000\n1,c01-s1,c01,60,1000\n2,c01-s1,c01,60,0\n",
     ["line 2", "line 4", "nothing was simulated"]),
]


def run_bad(capsys, tmp_path: Path, alliance: str, trace: str, policy: str = "fair") -> tuple[int, str, Path]:
    out = tmp_path / "out"
    rc, stdout, err = gpu_commons(
        capsys, "simulate", "--alliance", write(tmp_path / "alliance.yaml", alliance),
        "--trace", write(tmp_path / "trace.csv", trace), "--policy", policy, "--out", out,
    )
    assert rc != 0, stdout
    assert not out.exists() or not any(out.iterdir()), "a failed run wrote results"
    assert "Traceback" not in err
    return rc, err, out


@pytest.mark.parametrize("trace, expected", [case[1:] for case in BAD_TRACES], ids=[case[0] for case in BAD_TRACES])
def test_bad_trace(capsys, tmp_path, trace, expected):
    _, err, _ = run_bad(capsys, tmp_path, minimal_alliance(2), trace)
    assert str(tmp_path / "trace.csv") in err
    for words in expected:
        assert words in err, (words, err)


def with_fields(**replace: str) -> str:
    """The minimal alliance with some lines replaced (keys: tiers, pools, schools) or added."""
    lines = {"tiers": "tiers: {county: {weight: 2}, urban: {weight: 1}}",
             "pools": "pools: [{id: uni-a, gpus: 2}]",
             "schools": "schools: [{id: c01, tier: county}, {id: u01, tier: urban}]"}
    lines.update(replace)
    return "\n".join(lines.values()) + "\n"


RESERVATION = "reservations: [{{id: r1, pool: uni-a, school: {school}, slices: {slices}, start: 0, end: 3600}}]"

# (id, alliance text, what the message must say besides the file name: the field and the fix)
BAD_ALLIANCES = [
    ("tier-weight-zero", with_fields(tiers="tiers: {county: {weight: 0}, urban: {weight: 1}}"),
     ["tiers.county.weight", "is 0", "write a number greater than 0"]),
    ("tier-weight-negative", with_fields(tiers="tiers: {county: {weight: 2}, urban: {weight: -1}}"),
     ["tiers.urban.weight", "is -1", "write a number greater than 0"]),
    ("tier-weight-not-a-number", with_fields(tiers="tiers: {county: {weight: two}, urban: {weight: 1}}"),
     ["tiers.county.weight", "'two'", "write a valid number"]),
    ("school-weight-zero", with_fields(schools="schools: [{id: c01, tier: county, weight: 0}, {id: u01, tier: urban}]"),
     ["schools[0] (c01).weight", "is 0", "write a number greater than 0"]),
    ("reservation-larger-than-pool", with_fields(extra=RESERVATION.format(school="c01", slices=3)),
     ["reservations[0] (r1).slices", "is 3", "reserve at most 2"]),
    ("reservation-for-unknown-school", with_fields(extra=RESERVATION.format(school="x99", slices=1)),
     ["reservations[0] (r1)", "'x99'", "add it or fix the id"]),
    ("school-with-unknown-tier", with_fields(schools="schools: [{id: c01, tier: rural}, {id: u01, tier: urban}]"),
     ["schools[0] (c01)", "'rural'", "add it to 'tiers'"]),
    ("misspelt-field", with_fields(tiers="tiers: {county: {wieght: 2}, urban: {weight: 1}}"),
     ["tiers.county.wieght", "check its spelling or remove it"]),
    ("pool-without-id", with_fields(pools="pools: [{gpus: 2}]"), ["pools[0].id", "is required; add it"]),
    ("no-gpus", with_fields(pools="pools: [{id: uni-a, gpus: 0}]"), ["pools", "give a pool gpus: 1 or more"]),
    ("not-yaml", "tiers: {county: {weight: 2}\npools: [\n", ["line 2", "not valid YAML"]),
    ("not-a-mapping", "- county\n- urban\n", ["must be a YAML mapping with tiers, pools and schools"]),
]


@pytest.mark.parametrize("alliance, expected", [case[1:] for case in BAD_ALLIANCES],
                         ids=[case[0] for case in BAD_ALLIANCES])
def test_bad_alliance(capsys, tmp_path, alliance, expected):
    _, err, _ = run_bad(capsys, tmp_path, alliance, GOOD_TRACE)
    assert str(tmp_path / "alliance.yaml") in err
    for words in expected:
        assert words in err, (words, err)


def test_missing_alliance_file(capsys, tmp_path):
    out = tmp_path / "out"
    rc, _, err = gpu_commons(capsys, "simulate", "--alliance", tmp_path / "nope.yaml",
                             "--trace", write(tmp_path / "trace.csv", GOOD_TRACE), "--policy", "fair", "--out", out)
    assert rc == 2 and str(tmp_path / "nope.yaml") in err and "cannot read" in err
    assert not out.exists()


def test_unknown_policy(capsys, tmp_path):
    rc, err, _ = run_bad(capsys, tmp_path, minimal_alliance(2), GOOD_TRACE, policy="lottery")
    assert rc == 2
    assert "--policy" in err and "'lottery'" in err
    for policy in POLICIES:  # the fix: the policies there are
        assert policy in err


def test_out_that_is_a_file_is_refused_before_simulating(capsys, tmp_path):
    target = write(tmp_path / "results", "keep me\n")
    rc, _, err = gpu_commons(capsys, "simulate", "--alliance", write(tmp_path / "alliance.yaml", minimal_alliance(2)),
                             "--trace", write(tmp_path / "trace.csv", GOOD_TRACE), "--policy", "fair", "--out", target)
    assert rc == 2 and str(target) in err and "not a folder" in err
    assert target.read_text() == "keep me\n"
