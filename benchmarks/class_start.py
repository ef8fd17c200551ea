"""A class at the bell: N students of one class press Start at the same moment.

Starts, in one run, the real platform (hub + proxy + quota service, sandboxed local
workspaces, tests/stack.py) and a stock JupyterHub (its own LocalProcessSpawner starting
stock JupyterLab from the same environment: no sandbox, no quota, no lease; what an
alliance would run instead). Then, round after round, alternating the order:

- ``platform``: the class's students press Start together (no reservation);
- ``platform+reservation``: the class has a reservation; the platform pre-starts the
  class's workspaces before the window opens (hub/prestart.py) and the students open them
  at the bell;
- ``stock``: the same students press Start together on the stock hub.

Each student's time runs from their start request (they are logged in) until their own
server answers through the proxy (``/user/<name>/api/status``): when JupyterLab would load.
Prints median, p95 and last ready times and failures per mode, the load average and the
ratios within the run; with a reservation also the memory of the idle pre-started
workspaces (their cgroups' memory use). Not part of the test suite; needs root (the
sandbox), bubblewrap and the proxy (``make install-test``)::

    .venv/bin/python benchmarks/class_start.py --students 30 --rounds 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hub_client import log_in  # noqa: E402
from tests.stack import PROXY, free_port, make_stack  # noqa: E402

CLASS = "c01-bench"
LEAD_MINUTES = 1  # the benchmark's pre-start lead (the demo's is 3): a reservation round waits this long


def alliance_text(students: int) -> str:
    names = [f"c01-s{i:02d}" for i in range(1, students + 1)]
    gpus = max(1, -(-students // 4))  # four slices per GPU, one slice per student
    return f"""
name: Class start benchmark alliance
tiers: {{county: {{weight: 2}}, urban: {{weight: 1}}}}
fairshare: {{reservation_lead_minutes: {LEAD_MINUTES}}}
pools:
  - {{id: bench-pool, gpus: {gpus}, sliced_gpus: {gpus}, slices_per_gpu: 4, simulated: true}}
profiles:
  - {{id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 60}}
schools:
  - id: c01
    tier: county
    students: [{", ".join(names)}]
    teachers: [c01-teacher]
    classes: [{{id: {CLASS}, students: [{", ".join(names)}]}}]
"""


STOCK_CONFIG = """
# A stock JupyterHub: LocalProcessSpawner starting stock JupyterLab. The students have no Unix
# accounts on this machine, so every server runs as the hub's user (root, hence --allow-root)
# in its own directory; nothing else differs from JupyterHub's defaults but http_timeout,
# raised to the platform's 90 s (at the default 30 s a storm on 2 cores fails).
import os
from jupyterhub.spawner import LocalProcessSpawner

class SameUserSpawner(LocalProcessSpawner):
    def make_preexec_fn(self, name):
        procs = {cgroup_procs!r}
        if not procs:
            return None

        def join():  # one CPU cgroup for all stock servers, beside the platform's (see StockHub)
            with open(procs, "w") as out:
                out.write(str(os.getpid()))

        return join
    def user_env(self, env):
        home = os.path.join({homes!r}, self.user.name)
        os.makedirs(home, exist_ok=True)
        env["HOME"] = home
        return env

c.JupyterHub.spawner_class = SameUserSpawner
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.http_timeout = 90
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = set({students!r})
c.JupyterHub.services = [{{"name": "bench", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "bench", "scopes": ["admin:servers", "admin:users", "access:servers"],
                            "services": ["bench"]}}]
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.JupyterHub.db_url = "sqlite:///{data}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{data}/cookie_secret"
c.JupyterHub.pid_file = "{data}/jupyterhub.pid"
"""


CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")  # cgroup v1's cpu controller, as on this machine


class StockHub:
    """A stock JupyterHub in its own directory; students are driven with one admin token.

    Its servers run in one CPU cgroup beside the platform's workspaces (``gpu-commons/``): on a
    machine shared with other work, the kernel gives each cgroup at one level its share, so the
    platform's sandboxed workspaces (each in its cgroup under ``gpu-commons/``) would otherwise
    compete as one against 30 stock servers competing one by one. Without that controller the
    servers run where the hub runs."""

    def __init__(self, data: Path, students: list[str]):
        self.cgroup = CPU_CGROUPS / "gpu-commons" / f"bench-stock-{os.getpid()}"
        if CPU_CGROUPS.is_dir():
            self.cgroup.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.token = secrets.token_hex(16)
        self.port = free_port()
        (data / "homes").mkdir(parents=True, exist_ok=True)
        self.config = data / "jupyterhub_config.py"
        self.config.write_text(STOCK_CONFIG.format(
            cgroup_procs=str(self.cgroup / "cgroup.procs") if self.cgroup.is_dir() else "",
            homes=str(data / "homes"), singleuser=str(Path(sys.prefix) / "bin" / "jupyterhub-singleuser"), students=students, token=self.token, port=self.port, hub_port=free_port(),
            proxy_port=free_port(), proxy=str(PROXY), data=data))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data / "hub.log"
        self.process = None

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(self.config)], cwd=self.data,
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the stock hub did not come up; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.cgroup.is_dir():
            for pid in (self.cgroup / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)  # a server the hub did not stop
            time.sleep(0.5)
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()

    def client(self) -> httpx.Client:
        return httpx.Client(headers={"Authorization": f"token {self.token}"}, timeout=120)


def open_workspace(base_url: str, hub: httpx.Client, name: str, profile: str | None, deadline: float) -> float | str:
    """What a student's browser does at the bell: start the server (unless it runs), follow
    the spawn page's progress, then load their server's page. Returns the seconds it took,
    or the failure's message."""
    started = time.perf_counter()
    body = {"user_options": {"profile": profile}} if profile else {}
    response = hub.post(f"{base_url}/hub/api/users/{name}/server", json=body)
    if response.status_code not in (201, 202, 400):  # 400: it is running already (pre-started)
        return f"start answered {response.status_code}: {response.text[:200]}"
    if response.status_code != 201:
        with hub.stream("GET", f"{base_url}/hub/api/users/{name}/server/progress") as events:
            for line in events.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("failed"):
                        return f"failed: {event.get('message', '')[:200]}"
                    if event.get("ready"):
                        break
                if time.perf_counter() > deadline:
                    return "neither ready nor failed in time"
    while time.perf_counter() < deadline:
        try:
            if hub.get(f"{base_url}/user/{name}/api/status").status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return "its server did not answer through the proxy"


def storm(base_url: str, clients: dict[str, httpx.Client], profile: str | None, timeout: float) -> dict[str, float | str]:
    """Every student at once (one thread each, released by one barrier)."""
    results: dict[str, float | str] = {}
    barrier = threading.Barrier(len(clients))

    def one(name: str, hub: httpx.Client) -> None:
        barrier.wait()
        try:
            results[name] = open_workspace(base_url, hub, name, profile, time.perf_counter() + timeout)
        except Exception as exc:  # noqa: BLE001 (a failure to count, not to stop the run)
            results[name] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=one, args=item) for item in clients.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def stop_all(base_url: str, admin: httpx.Client, names: list[str], timeout: float = 120) -> None:
    for name in names:
        admin.delete(f"{base_url}/hub/api/users/{name}/server")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [n for n in names if admin.get(f"{base_url}/hub/api/users/{n}").json()["servers"]]
        if not running:
            return
        time.sleep(1)
    raise RuntimeError(f"servers still running after {timeout} s: {running}")


def summary(results: dict[str, float | str]) -> dict:
    times = sorted(v for v in results.values() if isinstance(v, float))
    failures = {k: v for k, v in results.items() if not isinstance(v, float)}
    if not times:
        return {"failures": len(failures), "failed": failures}
    return {
        "median_s": round(statistics.median(times), 2),
        "p95_s": round(times[min(len(times) - 1, int(0.95 * len(times) + 0.5) - 1)], 2),
        "last_s": round(times[-1], 2),
        "first_s": round(times[0], 2),
        "failures": len(failures),
        **({"failed": failures} if failures else {}),
    }


def cgroup_memory_bytes(parent: str) -> int | None:
    """Memory the workspaces under the hub's cgroup parent use (cgroup v1 memory controller,
    or the v2 unified hierarchy)."""
    for path in (Path("/sys/fs/cgroup/memory") / parent / "memory.usage_in_bytes",
                 Path("/sys/fs/cgroup/unified") / parent / "memory.current", Path("/sys/fs/cgroup") / parent / "memory.current"):
        if path.exists():
            return int(path.read_text())
    return None


def book_lesson(stack, in_seconds: float, students: int) -> dict:
    starts = datetime.now(timezone.utc) + timedelta(seconds=in_seconds)
    with stack.quota() as quota:
        response = quota.post("/api/reservations", json={
            "pool": "bench-pool", "school": "c01", "class_id": CLASS, "units": students,
            "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(minutes=30)).isoformat(), "note": "benchmark"})
    response.raise_for_status()
    return response.json()


def cancel_lesson(stack, reservation_id: str) -> None:
    with stack.quota() as quota:
        quota.delete(f"/api/reservations/{reservation_id}")


def wait_prestarted(stack, admin: httpx.Client, names: list[str], timeout: float) -> float:
    """Until every student's server is ready (the pre-start done); returns when that was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        users = {u["name"]: u for u in admin.get(f"{stack.url}/hub/api/users").json()}
        if all((users.get(n, {}).get("servers", {}).get("") or {}).get("ready") for n in names):
            return time.monotonic()
        time.sleep(1)
    raise RuntimeError("the class's workspaces were not all pre-started in time")


HUB_LOG_STAMP = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="storms per mode (alternating the order)")
    parser.add_argument("--modes", default="platform,stock,platform+reservation",
                        help="comma-separated: platform, platform+reservation, stock")
    parser.add_argument("--timeout", type=float, default=240, help="seconds one student waits at most")
    parser.add_argument("--json", default="", help="also write the results to this file")
    parser.add_argument("--concurrent-starts", type=int, default=None,
                        help="the platform's start line width (default: the spawner's, one per core)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    # stopped from outside: still stop both hubs (and so every workspace) on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"stopped by SIGTERM"))
    names = [f"c01-s{i:02d}" for i in range(1, args.students + 1)]

    root = Path(tempfile.mkdtemp(prefix="class-start-"))
    alliance = root / "alliance.yaml"
    alliance.write_text(alliance_text(args.students))
    hub_args = []
    if args.concurrent_starts is not None:
        (root / "hub.yaml").write_text(f"LocalQuotaSpawner:\n  concurrent_starts: {args.concurrent_starts}\n")
        hub_args = ["--config", str(root / "hub.yaml")]
    platform = make_stack(root / "platform", alliance, hub_args) if any(m.startswith("platform") for m in modes) else None
    stock = StockHub(root / "stock", names) if "stock" in modes else None
    results: dict[str, list[dict]] = {m: [] for m in modes}
    memory = []
    load = {"before": os.getloadavg()}
    try:
        platform_clients = {}
        if platform:
            platform.start()
            for name in names:
                platform_clients[name] = log_in(platform, name).hub  # logged in before the bell
            platform_admin = platform.hub_api(platform.quota_token)  # reads users and servers
        if stock:
            stock.start()
            stock_admin = stock.client()
            for name in names:
                stock_admin.post(f"{stock.url}/hub/api/users/{name}")
            stock_clients = {name: stock.client() for name in names}
        for round_ in range(args.rounds):
            order = modes if round_ % 2 == 0 else list(reversed(modes))
            for mode in order:
                if mode == "stock":
                    got = storm(stock.url, stock_clients, None, args.timeout)
                    stop_all(stock.url, stock_admin, names)
                elif mode == "platform":
                    got = storm(platform.url, {n: _with_base(c) for n, c in platform_clients.items()}, "gpu-slice",
                                args.timeout)
                    _stop_platform(platform, platform_clients)
                else:
                    lesson = book_lesson(platform, LEAD_MINUTES * 60 + 20, args.students)
                    bell = datetime.fromisoformat(lesson["starts_at"]).timestamp()
                    wait_prestarted(platform, platform_admin, names, LEAD_MINUTES * 60 + 20 + args.timeout)
                    all_ready = time.time()
                    time.sleep(max(0.0, bell - time.time()))
                    time.sleep(5)  # idle a moment: what 30 waiting workspaces hold
                    memory.append({"idle_prestarted_workspaces": len(names),
                                   "cgroup_memory_bytes": cgroup_memory_bytes(_cgroup_parent(platform)),
                                   "all_ready_s_before_bell": round(bell - all_ready, 1)})
                    got = storm(platform.url, {n: _with_base(c) for n, c in platform_clients.items()}, "gpu-slice",
                                args.timeout)
                    _stop_platform(platform, platform_clients)
                    cancel_lesson(platform, lesson["id"])
                results[mode].append(summary(got))
                print(f"round {round_ + 1} {mode}: {json.dumps(results[mode][-1])}", flush=True)
    finally:
        load["after"] = os.getloadavg()
        for hub in (platform, stock):
            if hub:
                hub.stop()
    out = {"students": args.students, "cores": os.cpu_count(), "concurrent_starts": args.concurrent_starts,
           "load_average": load, "rounds": results,
           "prestarted_memory": memory}
    last = {m: statistics.median(r["last_s"] for r in rs if "last_s" in r) for m, rs in results.items()
            if any("last_s" in r for r in rs)}
    if "stock" in last and not any(r["failures"] for r in results["stock"]):  # a failed start has no ready time
        out["last_ready_vs_stock"] = {m: round(v / last["stock"], 2) for m, v in last.items() if m != "stock"}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


def _with_base(client: httpx.Client) -> httpx.Client:
    """The student's client without its /hub/api base (open_workspace gives whole URLs)."""
    return httpx.Client(headers=dict(client.headers), timeout=120)


def _stop_platform(stack, clients: dict[str, httpx.Client]) -> None:
    for name, hub in clients.items():
        hub.delete(f"/users/{name}/server")
    deadline = time.monotonic() + 120
    for name, hub in clients.items():
        while hub.get(f"/users/{name}").json()["servers"] and time.monotonic() < deadline:
            time.sleep(0.5)


def _cgroup_parent(stack) -> str:
    from hub.config import cgroup_parent_for

    return cgroup_parent_for(stack.data_dir)


if __name__ == "__main__":
    sys.exit(main())
