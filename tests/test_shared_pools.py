"""GPUs shared without MIG (issue 12, point 4), from the alliance file to the allocator.

A pool may declare its whole GPUs shared by ``students_per_gpu`` students, each with a cap on
the GPU memory: the file is checked (the caps must fit the GPU), the allocator counts each GPU
as that many slices, the quota service hands out that many units of one GPU, and the simulator
and the real service decide a day on such a pool the same. Bad input (caps beyond the GPU, a
trace line asking more than a unit or a pool) stops with the file, the line or field and the
fix, and nothing is simulated.
"""

from __future__ import annotations

import random

import pytest
import yaml
from fastapi.testclient import TestClient

from quota.alliance import AllianceError, parse_alliance, reservable_units
from quota.allocator_inputs import allocator_inputs, pool_specs_of
from quota.app import create_app
from quota.cli import main
from quota.fairshare.model import PoolSpec
from quota.inventory import declared_units
from quota.settings import QuotaSettings
from quota.simulator.run import simulate
from quota.simulator.trace import read_trace, write_trace
from quota.unit_holders import gpu_fractions
from tests.quota_fixtures import TOKEN, Clock, account_of_token
from tests.service_allocator import ServiceAllocator, instant

DAY = 1788249600  # 2026-09-01 08:00 UTC


def document(**pool) -> dict:
    return {
        "tiers": {"county": {"weight": 2}, "urban": {"weight": 1}},
        "fairshare": {"warning_minutes": 2, "min_runtime_minutes": 5},
        "pools": [
            {"id": "uni-t", "gpus": 2, "gpu_model": "Tesla T4",
             "shared": {"students_per_gpu": 4, "memory_per_student": "3584M", "gpu_memory": "15360M"}, **pool},
            {"id": "uni-a", "gpus": 1},
        ],
        "profiles": [
            {"id": "cpu", "display_name": "CPU", "gpu": "none"},
            {"id": "gpu-shared", "display_name": "A shared GPU", "gpu": "shared", "max_minutes": 30},
            {"id": "gpu-whole", "display_name": "A whole GPU", "gpu": "whole", "max_minutes": 45},
        ],
        "schools": [
            {"id": "c01", "tier": "county", "students": [f"c01-s{i:02d}" for i in range(1, 21)]},
            {"id": "u01", "tier": "urban", "students": [f"u01-s{i:02d}" for i in range(1, 81)]},
        ],
    }


def test_a_shared_pool_is_counted_in_students_shares():
    alliance = parse_alliance(document())
    pool = alliance.pools[0]
    assert pool_specs_of(pool) == [PoolSpec("uni-t", 8, 250, "shared")]
    assert pool.shared.memory_per_student_mib == 3584
    assert reservable_units(pool) == 8
    assert allocator_inputs(alliance).shapes["gpu-shared"].milli == 250
    units = declared_units(pool)
    assert [(u.kind, u.device, u.gpu_index, u.seat) for u in units] == [
        ("shared", str(gpu), gpu, seat) for gpu in (0, 1) for seat in range(4)]
    assert len({u.id for u in units}) == 8
    assert set(gpu_fractions(units).values()) == {0.25}  # usage: a quarter GPU per share
    # a pool with MIG GPUs as well: the shared whole GPUs keep the pool's id, the slices get -mig
    mixed = parse_alliance(document(gpus=3, sliced_gpus=1, slices_per_gpu=2)).pools[0]
    assert pool_specs_of(mixed) == [PoolSpec("uni-t", 8, 250, "shared"), PoolSpec("uni-t-mig", 2, 500, "slice")]


@pytest.mark.parametrize("shared, expected", [
    ({"students_per_gpu": 4, "memory_per_student": "5G", "gpu_memory": "16G"},
     "x.yaml: pools[0] (uni-t).shared: memory_per_student (5G) x students_per_gpu (4) = 20 GiB is more than "
     "gpu_memory (16G); set memory_per_student to at most 4096M, or students_per_gpu to at most 3"),
    ({"students_per_gpu": 1, "memory_per_student": "4G", "gpu_memory": "16G"},
     "x.yaml: pools[0] (uni-t).shared.students_per_gpu: is 1; write a number greater than or equal to 2"),
    ({"students_per_gpu": 4, "memory_per_student": "lots", "gpu_memory": "16G"},
     "x.yaml: pools[0] (uni-t).shared.memory_per_student: is 'lots', which is not a size; write e.g. 512M, 4G or 4Gi"),
    ({"students_per_gpu": 4, "memory_per_student": "4G"},
     "x.yaml: pools[0] (uni-t).shared.gpu_memory: is required; add it"),
])
def test_shared_settings_mistakes_name_the_field_and_the_fix(shared, expected):
    with pytest.raises(AllianceError) as error:
        parse_alliance(document(shared=shared), "x.yaml")
    assert str(error.value) == expected


def test_a_pool_cannot_share_gpus_it_slices():
    with pytest.raises(AllianceError, match=r"pools\[0\] \(uni-t\): shared is set, but all 2 GPU\(s\) are MIG-sliced"):
        parse_alliance(document(sliced_gpus=2), "x.yaml")


# -- the simulator and the service decide a day on a shared pool the same --------------


def trace_rows(seed: int = 5) -> list[tuple]:
    """A county class at the bell asking for shared GPUs, urban students all morning asking for both kinds."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, 21):  # 20 students for 8 shares: a queue, and reclaims from urban borrowers
        rows.append((DAY + 3600 + int(rng.uniform(0, 180)), f"c01-s{i:02d}", "c01", int(rng.uniform(1200, 2400)), 250,
                     int(rng.uniform(300, 600)), "", "gpu-shared"))
    t = DAY
    while t < DAY + 4 * 3600:
        t += int(rng.expovariate(1 / 60)) + 1
        profile = "gpu-whole" if rng.random() < 0.2 else "gpu-shared"
        rows.append((t, f"u01-s{rng.randint(1, 80):02d}", "u01", int(rng.lognormvariate(7.3, 0.6)) + 60,
                     1000 if profile == "gpu-whole" else 250, int(rng.uniform(300, 900)), "", profile))
    return sorted(rows)


def test_the_service_decides_a_shared_pool_as_the_simulator(tmp_path):
    day = document()
    # the county class booked 4 of the 8 shares for its lesson
    day["reservations"] = [{"id": "c01-lesson", "pool": "uni-t", "school": "c01", "slices": 4,
                            "start": DAY + 3600, "end": DAY + 2 * 3600}]
    alliance_path = tmp_path / "alliance.yaml"
    alliance_path.write_text(yaml.safe_dump(day))
    write_trace(tmp_path / "trace.csv", trace_rows())
    alliance = parse_alliance(day)
    trace = read_trace(tmp_path / "trace.csv", {"c01", "u01"}, {"gpu-shared", "gpu-whole"})
    expected = simulate(alliance, trace, "fair")["replay"]

    clock = Clock()
    clock.now = instant(trace.arrival[0])
    settings = QuotaSettings(alliance=alliance_path, data_dir=tmp_path / "quota", api_token=TOKEN, use_nvml=False,
                             queue_heartbeat_timeout_s=1e9)
    app = create_app(settings, clock=clock, token_resolver=account_of_token, run_timers=False)
    pool_of = {(pool.id, spec.kind): spec.id for pool in alliance.pools for spec in pool_specs_of(pool)}
    with TestClient(app, headers={"Authorization": f"token {TOKEN}"}) as client:
        service = ServiceAllocator(client, clock, app.state.book, allocator_inputs(alliance).shapes, pool_of)
        served = simulate(alliance, trace, "fair", allocator=service.make)["replay"]
        # while it ran, the service handed out shares of the two GPUs: at most 4 leases on one device
        usage = client.get("/api/usage").json()
    shared = [r for r in usage if r["unit_kind"] == "shared"]
    assert shared and {r["device"] for r in shared} == {"0", "1"} and {r["pool"] for r in shared} == {"uni-t"}
    assert all(abs(r["gpu_seconds"] - r["held_seconds"] / 4) < 1e-6 for r in shared)

    assert served.outcome == expected.outcome
    assert served.counts == expected.counts and served.stops == expected.stops
    assert served.admitted_at == expected.admitted_at and served.ended_at == expected.ended_at
    assert sorted(served.intervals) == sorted(expected.intervals)
    # the day used what the shared pool is for: four students on each GPU at once, and a queue
    shares = [(start, end) for _, start, end, milli in expected.intervals if milli == 250]  # only uni-t has them
    at_once = peak = 0
    for _, step in sorted([(start, 1) for start, _ in shares] + [(end, -1) for _, end in shares]):
        at_once += step
        peak = max(peak, at_once)
    assert peak == 8
    assert expected.counts["completed"] >= 20 and expected.counts["abandoned"] >= 1  # some waited in vain


# -- bad input: a trace asking more than a unit or a pool ---------------------------------


def run_simulate(capsys, tmp_path, rows: list[tuple]) -> tuple[int, str]:
    (tmp_path / "alliance.yaml").write_text(yaml.safe_dump(document()))
    write_trace(tmp_path / "trace.csv", rows)
    rc = main(["simulate", "--alliance", str(tmp_path / "alliance.yaml"), "--trace", str(tmp_path / "trace.csv"),
               "--policy", "fair", "--out", str(tmp_path / "out"), "--no-plots"])
    return rc, capsys.readouterr().err


def test_a_trace_line_asking_more_than_a_unit_or_a_pool_stops_the_run(capsys, tmp_path):
    rows = [(0, "c01-s01", "c01", 600, 250, 900, "", "gpu-shared"),
            (5, "c01-s02", "c01", 600, 500, 900, "", "gpu-shared"),
            (9, "u01-s01", "u01", 600, 3000, 900, "", "")]
    rc, err = run_simulate(capsys, tmp_path, rows)
    trace = tmp_path / "trace.csv"
    assert rc == 2 and not (tmp_path / "out").exists()
    assert (f"{trace}: line 3: gpu_milli is 500, but profile 'gpu-shared' gets one unit: one student's share of a "
            "shared GPU, 250 milli; write gpu_milli of at most 250, or name a profile of a larger unit") in err
    assert (f"{trace}: line 4: gpu_milli is 3000, more than any pool holds (the largest, uni-t: 8 slice(s) of 250 "
            "milli = 2000); write a smaller gpu_milli, split the request, or add GPUs to a pool") in err
    assert "line 2" not in err and "nothing was simulated" in err
    rc, err = run_simulate(capsys, tmp_path, rows[:1] + [(9, "u01-s01", "u01", 600, 2000, 900, "", "")])
    assert rc == 0, err  # 2000 milli fits in the 8 shares of uni-t


def test_a_reservation_on_a_shared_pool_holds_shares_and_prestarts_the_shared_profile():
    from hub.prestart import profile_for
    from quota.alliance import reservable_kind

    alliance = parse_alliance(document())
    assert [reservable_kind(pool) for pool in alliance.pools] == ["shared", "whole"]
    assert [profile_for(alliance, pool.id) for pool in alliance.pools] == ["gpu-shared", "gpu-whole"]
