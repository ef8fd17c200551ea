"""Lease request + release throughput and latency of the real quota service.

Starts the service as it runs in production (``python -m quota serve``: uvicorn, one
process) on SQLite and on PostgreSQL 15 (started here, fsync on), then lets N clients,
each a different student, ask for a lease and release it again as fast as they can for a
fixed time. In the same run it measures what the same service answers of ``/api/health``
(the ceiling of one uvicorn process), the pairs' p99 at about half the full rate, and polls
of queued leases. Prints pairs per second, the ratios to the health rate and p50/p99 latency;
the figures go into docs/quota-benchmarks.md. Not part of the test suite.

    .venv/bin/python benchmarks/quota_throughput.py --clients 200 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import start_postgres  # noqa: E402
from tests.quota_process import start_services  # noqa: E402

PROFILES = ("cpu", "gpu-slice", "gpu-whole")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def rate_of(url: str, headers: dict, clients: int, seconds: float, path_of) -> dict:
    """Calls per second and p99 of ``GET path_of(client number)`` from ``clients`` clients."""
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    async def one(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, verify=False) as client:
            path = path_of(n)
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    errors.append(f"GET {path} {response.status_code} {response.text[:120]}")

    await asyncio.gather(*(one(n) for n in range(clients)))
    return {"calls_per_second": len(latencies) / seconds, "p99_ms": 1000 * percentile(latencies, 99),
            "errors": len(errors), "first_errors": errors[:3]}


async def queued_leases(url: str, headers: dict, users: list[str]) -> list[str]:
    """Fill the pool with the first students' whole-GPU leases and queue the rest: their ids."""
    ids = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, verify=False) as client:
        for user in users:
            lease = (await client.post("/api/leases", json={"user": user, "school": user[:3], "profile": "gpu-whole"})).json()
            if lease["state"] == "queued":
                ids.append(lease["id"])
    return ids


async def load(url: str, headers: dict, clients: int, seconds: float, warmup: float, pause_s: float = 0.0) -> dict:
    latencies = {"request": [], "release": []}
    errors: list[str] = []
    pairs = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def student(client: httpx.AsyncClient, user: str, rng: random.Random) -> None:
        nonlocal pairs
        while time.perf_counter() < stop_at:
            body = {"user": user, "school": user[:3], "profile": rng.choice(PROFILES)}
            t0 = time.perf_counter()
            response = await client.post("/api/leases", json=body)
            t1 = time.perf_counter()
            if response.status_code != 201:
                errors.append(f"POST {response.status_code} {response.text[:120]}")
                continue
            lease_id = response.json()["id"]
            response = await client.delete(f"/api/leases/{lease_id}")
            t2 = time.perf_counter()
            if response.status_code != 200:
                errors.append(f"DELETE {response.status_code} {response.text[:120]}")
                continue
            if t0 >= measure_from and t2 <= stop_at:
                latencies["request"].append(t1 - t0)
                latencies["release"].append(t2 - t1)
                pairs += 1
            if pause_s:
                await asyncio.sleep(pause_s * rng.uniform(0.5, 1.5))

    async def one_student(user: str, seed: int) -> None:
        # a client (one keep-alive connection) per student: httpx's shared pool costs O(connections) per call
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, verify=False) as client:  # plain HTTP
            await student(client, user, random.Random(seed))

    users = [f"{school}-s{i}" for i in range((clients + 1) // 2) for school in ("c01", "u01")][:clients]
    await asyncio.gather(*(one_student(user, n) for n, user in enumerate(users)))
    return {
        "pairs_per_second": pairs / seconds,
        "pairs": pairs,
        "errors": len(errors),
        "first_errors": errors[:3],
        **{f"{call}_p50_ms": 1000 * percentile(values, 50) for call, values in latencies.items()},
        **{f"{call}_p99_ms": 1000 * percentile(values, 99) for call, values in latencies.items()},
        **{f"{call}_mean_ms": 1000 * statistics.fmean(values) if values else float("nan") for call, values in latencies.items()},
    }


def run_on(database: str, clients: int, seconds: float, warmup: float) -> dict:
    """On one service: the health rate, request + release pairs at full load, then at about
    half the pairs' rate (each client pausing), then polls of queued leases."""
    workdir = Path(tempfile.mkdtemp(prefix="quota-bench-"))
    server = start_postgres(fsync=True) if database == "postgres" else None
    try:
        url = server.create_database() if server else f"sqlite:///{workdir / 'quota' / 'quota.sqlite'}"
        # 8 GPUs, 4 of them in 2 slices: 4 whole units and 8 slices, as a small university pool
        # each client asks as fast as it can for one student: the per-student rate limit would answer 429
        [service] = start_services(workdir, url, students=2 * clients, gpus=8, sliced_gpus=4, slices_per_gpu=2,
                                   env={"GPU_COMMONS_LEASE_REQUESTS_PER_MINUTE": "0"})
        try:
            health = asyncio.run(rate_of(service.url, service.headers, clients, seconds, lambda n: "/api/health"))
            full = asyncio.run(load(service.url, service.headers, clients, seconds, warmup))
            # half the offered load: each client waits about clients / (rate / 2) seconds between pairs
            pause = clients / max(1.0, full["pairs_per_second"] / 2)
            half = asyncio.run(load(service.url, service.headers, clients, seconds, warmup, pause_s=pause))
            users = [f"{school}-s{i}" for i in range(clients, 2 * clients) for school in ("c01", "u01")][:clients]
            ids = asyncio.run(queued_leases(service.url, service.headers, users))
            polls = asyncio.run(rate_of(service.url, service.headers, clients, seconds,
                                        lambda n: f"/api/leases/{ids[n % len(ids)]}"))
        finally:
            service.stop()
        return {"database": database, "clients": clients, "seconds": seconds, **full,
                "health_per_second": health["calls_per_second"],
                "half_load_pairs_per_second": half["pairs_per_second"],
                "half_load_request_p99_ms": half["request_p99_ms"], "half_load_release_p99_ms": half["release_p99_ms"],
                "queued_polled": len(ids), "polls_per_second": polls["calls_per_second"], "poll_p99_ms": polls["p99_ms"],
                "errors": full["errors"] + half["errors"] + polls["errors"] + health["errors"]}
    finally:
        if server:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients, each a different student")
    parser.add_argument("--seconds", type=float, default=30, help="measured time per database")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before measuring")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    results = [run_on(database, args.clients, args.seconds, args.warmup) for database in databases]
    print(f"{'database':10} {'health/s':>9} {'pairs/s':>8} {'ratio':>6} {'req p50':>8} {'req p99':>8} {'rel p99':>8} "
          f"{'half p99':>9} {'polls/s':>8} {'ratio':>6} {'errors':>6}  (ms)")
    for r in results:
        half_p99 = max(r["half_load_request_p99_ms"], r["half_load_release_p99_ms"])
        print(f"{r['database']:10} {r['health_per_second']:9.0f} {r['pairs_per_second']:8.1f} "
              f"{r['pairs_per_second'] / r['health_per_second']:6.3f} {r['request_p50_ms']:8.1f} {r['request_p99_ms']:8.1f} "
              f"{r['release_p99_ms']:8.1f} {half_p99:9.1f} {r['polls_per_second']:8.0f} "
              f"{r['polls_per_second'] / r['health_per_second']:6.3f} {r['errors']:6d}")
    print(json.dumps(results, indent=2))
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
