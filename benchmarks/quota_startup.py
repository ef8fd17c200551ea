"""Start-up rebuild time and memory of the quota service with 10,000 running and 2,000 queued leases.

Targets (issue 11): the start-up rebuild takes under 2 s and the service stays under 300 MB
of memory (resident set).

1. **Fill.** An alliance of 25 pools (10,000 units: 5,000 whole GPUs and 5,000 MIG slices) and
   60 schools (40 county schools of weight 2 with 240 students, 20 urban ones of weight 1 with
   120) gets 12,000 requests, one per student, through the service's own LeaseBook, on a clock
   spread over the hour before now: each school's guarantee fills up (10,000 granted leases,
   four hours long) and the rest waits (2,000 queued). A second LeaseBook rebuilt from the same
   database must report the same granted and queued leases and the same queue places and wait
   estimates. Students have a 40 GPU-hour budget, so the rebuild also seeds the budgets from the
   week's usage ledger; ``--history N`` puts N ended leases (through the same LeaseBook, in
   batches released half an hour later) in the six days before.
2. **Start.** A fresh process starts the service as ``python -m quota serve`` does (uvicorn),
   timing each phase of ``create_app``: opening the database (engine and migration check),
   and the rebuild, split into database reads (SQL and rows into objects), the mapping of
   rows onto allocator inputs, the allocator itself, the LeaseBook's own tables and the
   rebuild's journal commit; then the queue places of every queued lease (computed at the
   first poll otherwise). "Ready" is from opening the database to the places known, in wall
   time (the target) and in CPU time of the service process (less sensitive to other work on
   the machine; it leaves out PostgreSQL's own work).
3. **Poll.** A few hundred ``GET /api/leases/{id}`` of queued leases (each also a heartbeat),
   checked against the places of step 1. Memory (``VmRSS`` after a GC and the peak
   ``VmHWM`` from /proc/self/status) is read inside the service after start-up and after the polls.

On SQLite and on PostgreSQL 15 (started here as in benchmarks/quota_throughput.py, fsync on;
skipped with a message when it is not installed). The figures go into docs/quota-benchmarks.md.
Not part of the test suite.

    .venv/bin/python benchmarks/quota_startup.py
    .venv/bin/python benchmarks/quota_startup.py --database sqlite --profile
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import start_postgres  # noqa: E402
from tests.stack import REPO, free_port  # noqa: E402

TOKEN = "startup-benchmark-token"
POOLS = 25  # each 300 GPUs, 100 of them in 2 slices: 200 whole units and 200 slices
SCHOOLS = {"county": (40, 2, 240), "urban": (20, 1, 120)}  # tier: schools, weight, students each
RUNNING = {"county": 200, "urban": 100}  # per school: exactly its guarantee (half whole, half slices)
FILL_SPAN = timedelta(hours=1)  # the requests are spread over this time before now
HISTORY_SPAN = timedelta(days=6)  # --history: ended leases over this time before that
HISTORY_BATCH = 2_000  # --history: leases granted together, released half an hour later


def write_alliance(path: Path) -> Path:
    # a student budget, so that the rebuild also seeds the budgets from the week's ledger
    tiers = ", ".join(f"{tier}: {{weight: {w}, student_budget_gpu_hours: 40}}" for tier, (_, w, _) in SCHOOLS.items())
    lines = [f"tiers: {{{tiers}}}", "pools:"]
    lines += [f"  - {{id: pool-{p:02d}, gpus: 300, sliced_gpus: 100, slices_per_gpu: 2}}" for p in range(POOLS)]
    lines += ["profiles:",
              "  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 240}",
              "  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 240}",
              "schools:"]
    for tier, (count, _, students) in SCHOOLS.items():
        for i in range(count):
            school = f"{tier[0]}{i:02d}"
            lines.append(f"  - {{id: {school}, tier: {tier}, students: [{', '.join(f'{school}-s{k}' for k in range(students))}]}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def rss() -> dict[str, float]:
    """VmRSS and VmHWM (peak) of this process, in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


# -- 1. fill the database through the service's LeaseBook --------------------------------------


def fill(database_url: str, alliance_path: Path, history: int) -> dict:
    from quota.alliance import load_alliance
    from quota.db import make_engine, session_factory, upgrade
    from quota.inventory import alliance_units
    from quota.leases import LeaseBook

    alliance = load_alliance(alliance_path)
    engine = make_engine(database_url)
    upgrade(engine)
    clock = [datetime.now(timezone.utc) - FILL_SPAN - (HISTORY_SPAN if history else timedelta(0))]
    units = alliance_units(alliance, use_nvml=False)
    book = LeaseBook(alliance, units, session_factory(engine), clock=lambda: clock[0])
    started = time.perf_counter()
    everyone = [(school, user) for school in alliance.schools for user in school.students]
    batches = -(-history // HISTORY_BATCH)
    for batch in range(batches):  # ended leases: the usage ledger of the days before
        ids = []
        for n in range(batch * HISTORY_BATCH, min(history, (batch + 1) * HISTORY_BATCH)):
            school, user = everyone[n * 7919 % len(everyone)]  # a prime stride: every school, in turn
            lease, _ = book.request(user, school.id, "gpu-whole" if n % 2 else "gpu-slice", f"history-{n}")
            ids.append(lease.id)
        clock[0] += timedelta(minutes=30)
        for lease_id in ids:
            book.release(lease_id)
        clock[0] += HISTORY_SPAN / batches - timedelta(minutes=30)
    # round robin over the schools, so every school's holding grows alike and nobody is reclaimed
    students = max(count for _, _, count in SCHOOLS.values())
    order = [(school, k) for k in range(students) for school in alliance.schools if k < len(school.students)]
    order.sort(key=lambda item: item[1] >= RUNNING[item[0].tier])  # the guaranteed ones first, then those who wait
    step = FILL_SPAN / len(order)
    for school, k in order:
        user = school.students[k]
        book.request(user, school.id, "gpu-whole" if k % 2 == 0 else "gpu-slice", f"bench-{user}")
        clock[0] += step
    fill_s = time.perf_counter() - started
    live = {row.id: row.state for state in ("granted", "queued") for row in book.leases(state=state)}
    places = {lease_id: (place.position, place.wait_estimate_s) for lease_id, place in book.queue_positions().items()}

    # the same database read back by a fresh book: the same leases and places
    rebuilt = LeaseBook(alliance, units, session_factory(engine), clock=lambda: clock[0])
    again = {row.id: row.state for state in ("granted", "queued") for row in rebuilt.leases(state=state)}
    places_again = {lease_id: (place.position, place.wait_estimate_s)
                    for lease_id, place in rebuilt.queue_positions().items()}
    engine.dispose()
    counts = {state: sum(1 for s in live.values() if s == state) for state in ("granted", "queued")}
    return {"fill_s": fill_s, **counts, "rebuilt_same_leases": again == live, "rebuilt_same_places": places_again == places,
            "places": {lease_id: position for lease_id, (position, _) in places.items()}}


# -- 2. the service process, timed from the inside ---------------------------------------------


class Phases:
    """Self time per phase of the calls wrapped with :meth:`wrap` (main thread only): a call's
    time counts for its phase less the time of the wrapped calls inside it."""

    def __init__(self):
        self.self_s: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []  # [phase, time of the wrapped calls inside]
        self._thread = threading.get_ident()
        self.on = True

    @contextlib.contextmanager
    def phase(self, name: str):
        if not self.on or threading.get_ident() != self._thread or (self._stack and self._stack[-1][0] == name):
            yield
            return
        start = time.perf_counter()
        self._stack.append([name, 0.0])
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            _, inside = self._stack.pop()
            self.self_s[name] = self.self_s.get(name, 0.0) + elapsed - inside
            self.calls[name] = self.calls.get(name, 0) + 1
            if self._stack:
                self._stack[-1][1] += elapsed

    def wrap(self, owner, attribute: str, name: str, rows: bool = False) -> None:
        """Time ``owner.attribute`` as ``name``; ``rows``: it returns a result whose iteration
        (fetching the rows) is timed as the same phase."""
        original = getattr(owner, attribute)
        phases = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            with phases.phase(name):
                result = original(*args, **kwargs)
            return _TimedRows(result, phases, name) if rows else result

        setattr(owner, attribute, timed)


class _TimedRows:
    """A query result whose rows are timed as they are fetched."""

    def __init__(self, result, phases: Phases, name: str):
        self._result, self._phases, self._name = result, phases, name
        self._iter = None

    def __iter__(self):
        return self

    def __next__(self):
        if self._iter is None:
            self._iter = iter(self._result)
        with self._phases.phase(self._name):
            return next(self._iter)

    def all(self):
        with self._phases.phase(self._name):
            return self._result.all()

    def __getattr__(self, attribute):
        return getattr(self._result, attribute)


def serve(report: Path, profile: bool, bare: bool) -> int:
    """The child: ``python -m quota serve`` with the start-up timed, memory reported to ``report``.
    ``bare``: no per-phase timing (its wrappers time some 24,000 calls), only the total."""
    import gc
    import logging
    from urllib.parse import urlparse

    import uvicorn
    from sqlalchemy.orm import Session

    import quota.app
    from quota import fair_snapshot
    from quota.decayed_usage import DecayedUsage
    from quota.fairshare.policy import Allocator
    from quota.leases import LeaseBook
    from quota.settings import QuotaSettings

    def write(**fields) -> None:
        with report.open("a") as out:
            out.write(json.dumps(fields) + "\n")

    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    settings = QuotaSettings.from_environment()
    gc.collect()
    write(event="imported", **rss())

    phases = Phases()
    for name in ("load_alliance", "alliance_units") if not bare else ():
        phases.wrap(quota.app, name, "alliance")
    if not bare:
        phases.wrap(quota.app, "make_engine", "open")
        phases.wrap(quota.app, "upgrade", "open")
        phases.wrap(LeaseBook, "_rebuild", "book")
        phases.wrap(fair_snapshot, "build", "snapshot")
        phases.wrap(DecayedUsage, "at", "usage")
        for name in ("__init__", "add_reservation", "resume", "seed_usage", "seed_budget", "wait_again", "advance",
                     "next_wake"):
            phases.wrap(Allocator, name, "allocator")
        for name in ("execute", "scalars"):
            phases.wrap(Session, name, "db", rows=True)
        for name in ("scalar", "get"):
            phases.wrap(Session, name, "db")
        phases.wrap(Session, "commit", "commit")
    opened_at = []  # when create_app opens the database (after reading the alliance file)
    make_engine = quota.app.make_engine
    quota.app.make_engine = lambda url: opened_at.append((time.perf_counter(), time.process_time())) or make_engine(url)

    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    with phases.phase("create_app"):
        app = quota.app.create_app(settings)
    created = time.perf_counter()
    book = app.state.book
    with phases.phase("places"):
        places = book.queue_positions()
    ready, ready_cpu = time.perf_counter(), time.process_time()
    if profiler:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
        (report.parent / "profile.txt").write_text(text.getvalue())
    phases.on = False
    rows = book._mem.rows.values()
    counts = {state: sum(1 for row in rows if row.state == state) for state in ("granted", "queued")}
    del places, rows
    gc.collect()
    write(event="started", create_app_s=created - start, places_s=ready - created, ready_s=ready - opened_at[0][0],
          ready_cpu_s=ready_cpu - opened_at[0][1],
          phases=phases.self_s, calls=phases.calls, **counts, **rss())

    def polled(_signum, _frame):
        gc.collect()
        write(event="polled", **rss())

    signal.signal(signal.SIGUSR1, polled)
    url = urlparse(settings.bind_url)
    uvicorn.run(app, host=url.hostname, port=url.port, log_level="warning", access_log=False)
    return 0


# -- 3. the parent: start, poll, read the reports ----------------------------------------------


def wait_for(report: Path, event: str, process: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if report.exists():
            for line in report.read_text().splitlines():
                fields = json.loads(line)
                if fields["event"] == event:
                    return fields
        if process.poll() is not None:
            raise RuntimeError(f"the quota service exited with {process.returncode} before '{event}'")
        time.sleep(0.1)
    raise RuntimeError(f"no '{event}' from the quota service within {timeout} s")


async def poll(url: str, places: dict[str, int], polls: int, clients: int = 10) -> dict:
    """``polls`` reads of queued leases from ``clients`` clients; counts answers that are not
    the lease still queued at the place the filling book gave it."""
    ids = sorted(places)[:polls]
    latencies: list[float] = []
    wrong: list[str] = []

    async def one(mine: list[str]) -> None:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"token {TOKEN}"}, timeout=60) as client:
            for lease_id in mine:
                t0 = time.perf_counter()
                response = await client.get(f"/api/leases/{lease_id}")
                latencies.append(time.perf_counter() - t0)
                lease = response.json() if response.status_code == 200 else {}
                if lease.get("state") != "queued" or lease.get("queue_position") != places[lease_id]:
                    wrong.append(f"{lease_id}: {response.status_code} {response.text[:160]}")

    await asyncio.gather(*(one(ids[n::clients]) for n in range(clients)))
    latencies.sort()
    return {"polls": len(latencies), "poll_p50_ms": 1000 * latencies[len(latencies) // 2],
            "poll_p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))], "wrong_answers": len(wrong),
            "first_wrong": wrong[:3]}


def run_on(database: str, polls: int, history: int, profile: bool, bare: bool) -> dict | None:
    workdir = Path(tempfile.mkdtemp(prefix="quota-startup-"))
    try:
        server = start_postgres(fsync=True) if database == "postgres" else None
    except FileNotFoundError as exc:
        print(f"PostgreSQL skipped: {exc}")
        shutil.rmtree(workdir)
        return None
    try:
        url = server.create_database() if server else f"sqlite:///{workdir / 'quota' / 'quota.sqlite'}"
        alliance = write_alliance(workdir / "alliance.yaml")
        filled = fill(url, alliance, history)
        print(f"{database}: filled in {filled['fill_s']:.1f} s: {filled['granted']} granted, {filled['queued']} queued; "
              f"rebuilt alike: leases {filled['rebuilt_same_leases']}, places {filled['rebuilt_same_places']}", flush=True)
        report = workdir / "report.jsonl"
        port = free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("GPU_COMMONS_", "JUPYTERHUB_"))}
        environment.update(GPU_COMMONS_ALLIANCE=str(alliance), GPU_COMMONS_DATA_DIR=str(workdir / "quota"),
                           GPU_COMMONS_DATABASE_URL=url, GPU_COMMONS_API_TOKEN=TOKEN,
                           GPU_COMMONS_BIND_URL=f"http://127.0.0.1:{port}", GPU_COMMONS_USE_NVML="false")
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(report), *(["--profile"] if profile else []),
                   *(["--bare"] if bare else [])]
        with open(workdir / "service.log", "wb") as log:
            process = subprocess.Popen(command, env=environment, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            started = wait_for(report, "started", process)
            if not _answers(f"http://127.0.0.1:{port}/api/health", process):
                raise RuntimeError("the quota service did not answer /api/health:\n"
                                   + (workdir / "service.log").read_text()[-3000:])
            polled = asyncio.run(poll(f"http://127.0.0.1:{port}", filled["places"], polls))
            process.send_signal(signal.SIGUSR1)
            after = wait_for(report, "polled", process)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if profile:
            print((workdir / "profile.txt").read_text())
        filled.pop("places")
        return {"database": database, **filled, "started": started, "after_polls": after, **polled}
    finally:
        if server:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _answers(url: str, process: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return True
        time.sleep(0.1)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--polls", type=int, default=500, help="reads of queued leases after start-up")
    parser.add_argument("--history", type=int, default=0,
                        help="ended leases (request, release half an hour later) in the six days before")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the service's create_app")
    parser.add_argument("--bare", action="store_true", help="time the start-up without the per-phase breakdown")
    parser.add_argument("--serve", metavar="REPORT", help=argparse.SUPPRESS)  # the service process itself
    args = parser.parse_args()
    if args.serve:
        return serve(Path(args.serve), args.profile, args.bare)
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    results = [r for r in (run_on(database, args.polls, args.history, args.profile, args.bare) for database in databases)
               if r]
    print(f"\n{'database':9} {'open':>6} {'db read':>8} {'mapping':>8} {'allocator':>9} {'book':>6} {'commit':>7} "
          f"{'places':>7} {'READY':>7} {'cpu':>6} {'RSS up':>7} {'polled':>7} {'peak':>6} {'polls':>6} {'p99 ms':>7} {'wrong':>6}"
          "  (s; MB)")
    ok = True
    for r in results:
        s, a, p = r["started"], r["after_polls"], r["started"]["phases"]

        def cell(*names: str, width: int) -> str:
            found = [p[name] for name in names if name in p]
            return f"{sum(found):{width}.3f}" if found else f"{'-':>{width}}"

        print(f"{r['database']:9} {cell('open', width=6)} {cell('db', width=8)} {cell('snapshot', 'usage', width=8)} "
              f"{cell('allocator', width=9)} {cell('book', width=6)} {cell('commit', width=7)} {s['places_s']:7.3f} "
              f"{s['ready_s']:7.3f} {s['ready_cpu_s']:6.3f} {s['VmRSS']:7.1f} {a['VmRSS']:7.1f} {a['VmHWM']:6.1f} "
              f"{r['polls']:6d} {r['poll_p99_ms']:7.1f} {r['wrong_answers']:6d}")
        ok &= (r["granted"], r["queued"], s["granted"], s["queued"]) == (10_000, 2_000, 10_000, 2_000)
        ok &= r["rebuilt_same_leases"] and r["rebuilt_same_places"] and r["wrong_answers"] == 0
        print(f"  target: ready < 2 s: {'met' if s['ready_s'] < 2 else 'MISSED'}; "
              f"memory < 300 MB: {'met' if a['VmHWM'] < 300 else 'MISSED'}")
    print(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
