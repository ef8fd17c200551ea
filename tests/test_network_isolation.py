"""Red team, network (issue 17, points 3 and 9): from inside a real workspace (hub, proxy,
quota service, sandboxed JupyterLab; commands typed into the student's JupyterLab terminal),
a student tries to reach what they must not: the proxy's API, another student's server and
kernel, the quota service's other routes, a port a test bound on the host, and to listen on
the host's interfaces. Each must fail, while the workspace still works: JupyterLab through
the proxy, the hub API, and its own lease at the quota service (what the workspace extension
asks).

Against a hub whose workspaces share the host's network (before issue 17, point 3, or with
``network_isolation = False``) every attempt succeeds and these tests fail."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.hub_client import log_in, run_in_terminal
from tests.sandboxes import wait_for
from tests.stack import free_port, running_stack

pytestmark = pytest.mark.slow

ALLIANCE = """
name: Network isolation test alliance
tiers: {county: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30, mem_limit: 1G}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30, mem_limit: 1G}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2]}
"""

# Run inside the workspace as the student: each probe's outcome into a JSON file of the home,
# then hold a socket listening on 0.0.0.0 for the test to try from the host.
PROBE = r'''
import json, os, socket, sys, time, urllib.request, urllib.error
plan = json.load(open(sys.argv[1]))
token = os.environ["JUPYTERHUB_API_TOKEN"]
found = {"env": {k: os.environ.get(k, "") for k in ("JUPYTERHUB_API_URL", "GPU_COMMONS_QUOTA_URL", "GPU_COMMONS_LEASE_ID")}}

def connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=3):
            return "connected"
    except OSError as exc:
        return f"failed: {exc}"

def get(url, auth=True):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return {"status": answer.status, "body": answer.read().decode(errors="replace")[:2000]}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode(errors="replace")[:2000]}
    except OSError as exc:
        return {"status": None, "body": f"failed: {exc}"}

found["connect"] = {f"{host}:{port}": connect(host, port) for host, port in plan["connect"]}
found["get"] = {url: get(url) for url in plan["get"]}
quota = os.environ.get("GPU_COMMONS_QUOTA_URL", "")
lease = os.environ.get("GPU_COMMONS_LEASE_ID", "")
found["own_lease"] = get(f"{quota}/api/leases/{lease}")
found["other_lease"] = get(f"{quota}/api/leases/{plan['other_lease']}")
found["quota_routes"] = {path: get(f"{quota}{path}") for path in plan["quota_paths"]}
found["hub_api"] = get(os.environ["JUPYTERHUB_API_URL"] + "/user")
hub_root = os.environ["JUPYTERHUB_API_URL"].rsplit("/api", 1)[0]
found["hub_pages"] = {path: get(hub_root + path, auth=False) for path in ("/login", "/home", "/spawn")}
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    listener.bind(("0.0.0.0", plan["listen_port"]))
    listener.listen()
    found["listening"] = True
except OSError as exc:
    found["listening"] = f"failed: {exc}"
with open(plan["out"] + ".tmp", "w") as out:
    json.dump(found, out)
os.rename(plan["out"] + ".tmp", plan["out"])
time.sleep(60)
'''


def servers(data_dir: Path) -> dict[str, tuple[str, int]]:
    """Each running server's address as the hub stored it (the proxy routes there)."""
    with sqlite3.connect(data_dir / "jupyterhub.sqlite") as db:
        rows = db.execute("select users.name, servers.ip, servers.port from spawners join servers "
                          "on spawners.server_id = servers.id join users on spawners.user_id = users.id").fetchall()
    return {name: (ip or "127.0.0.1", port) for name, ip, port in rows}


def kernel_ports(home: Path) -> list[int]:
    """The ports of the kernels running in a workspace, from their connection files."""
    ports = []
    for path in (home / ".local" / "share" / "jupyter" / "runtime").glob("kernel-*.json"):
        info = json.loads(path.read_text())
        ports += [info[key] for key in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
    return ports


def lease_of(stack, name: str) -> str:
    with stack.quota() as quota:
        answer = quota.get("/api/leases", params={"user": name, "state": "granted"})
        answer.raise_for_status()
        running = [lease for lease in answer.json() if lease["state"] == "granted"]
    assert running, answer.json()
    return running[0]["id"]


@pytest.fixture
def host_listener():
    """A port bound on 0.0.0.0 of the host, as any service of the machine might be."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses (not loopback)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " lo " not in line]


def test_a_workspace_reaches_only_the_hub_api_and_its_own_lease(tmp_path, host_listener):
    uid_base = random.randrange(400, 480) * 1000
    config = {"LocalQuotaSpawner": {"uid_base": uid_base, "uid_count": 1000},
              "QuotaSpawnerMixin": {"lease_refresh_seconds": 2}}
    with running_stack(tmp_path, ALLIANCE, config) as stack:
        other = log_in(stack, "c01-s2")
        assert other.start("cpu", timeout=120).get("ready"), stack.log_tail()
        answer = httpx.post(f"{stack.url}/user/c01-s2/api/kernels", headers={"Authorization": f"token {other.token}"},
                            json={"name": "python3"}, timeout=60)  # a kernel of the other student's, with its ports
        answer.raise_for_status()
        homes = stack.data_dir / "homes"
        kernels = wait_for(lambda: kernel_ports(homes / "c01-s2"), 30, "the other student's kernel")

        student = log_in(stack, "c01-s1")
        assert student.start("gpu-slice", timeout=120).get("ready"), stack.log_tail()
        addresses = servers(stack.data_dir)
        other_ip, other_port = addresses["c01-s2"]
        own_ip, _own_port = addresses["c01-s1"]

        listen_port = free_port()
        plan = {
            "connect": [
                ["127.0.0.1", stack.ports["proxy_api_port"]],  # the proxy's API
                [other_ip, other_port], ["127.0.0.1", other_port],  # the other student's server
                *[[host, port] for port in kernels for host in {other_ip, "127.0.0.1"}],  # and kernels
                ["127.0.0.1", host_listener],  # a port the test bound on 0.0.0.0 of the host
                *[[address, host_listener] for address in host_addresses()],
                *[[address, stack.ports["port"]] for address in host_addresses()],  # the public proxy on the host
            ],
            "get": [f"http://127.0.0.1:{stack.ports['proxy_api_port']}/api/routes"],
            "other_lease": lease_of(stack, "c01-s2"),
            "quota_paths": ["/api/inventory", "/api/me", "/api/leases", "/metrics", "/"],
            "listen_port": listen_port,
            "out": "/home/jovyan/probe.json",
        }
        home = homes / "c01-s1"
        (home / "probe.py").write_text(PROBE)
        (home / "plan.json").write_text(json.dumps(plan))
        found = json.loads(run_in_terminal(student, f"{sys.executable} probe.py plan.json", "probe.json", timeout=120))

        print(json.dumps(found, indent=1))
        # Every attempt, and what came of it when it got through (all are listed, not only the first).
        breaches = [f"connected to {target}" for target, outcome in found["connect"].items() if outcome == "connected"]
        breaches += [f"GET {url}: {answer['status']}" for url, answer in found["get"].items() if answer["status"]]
        for name, answer in [("another student's lease", found["other_lease"]), *found["quota_routes"].items()]:
            if not (answer["status"] == 403 and "may only read its own GPU lease" in answer["body"]
                    and "只能读取自己的 GPU 租约" in answer["body"]):
                breaches.append(f"quota {name}: {answer['status']} {' '.join(answer['body'].split())[:80]}")
        assert found["listening"] is True  # inside its own namespace it may listen: only it can connect there
        for host in ("127.0.0.1", own_ip):  # ... not the host, on its loopback or the workspace's address
            try:
                socket.create_connection((host, listen_port), timeout=3).close()
                breaches.append(f"the host reached the workspace's listener at {host}:{listen_port}")
            except OSError:
                pass
        for path, answer in found["hub_pages"].items():  # the hub's own pages: the login form above all
            if answer["status"] != 403 or "may only use the hub's API here" not in answer["body"]:
                breaches.append(f"hub {path}: {answer['status']} {' '.join(answer['body'].split())[:80]}")
        assert breaches == [], "\n".join(breaches)
        assert "lease gate refused GET /api/inventory" in stack.log_tail(400)

        # The quota service: its own lease, still.
        assert found["own_lease"]["status"] == 200, found["own_lease"]
        assert json.loads(found["own_lease"]["body"])["id"] == found["env"]["GPU_COMMONS_LEASE_ID"]

        # Still a working workspace: the hub API answers with its own identity, JupyterLab through the proxy.
        assert found["hub_api"]["status"] == 200 and json.loads(found["hub_api"]["body"])["name"] == "c01-s1"
        with student.contents() as contents:
            assert contents.get("probe.json").status_code == 200

        # The workspace extension follows its lease through the lease gate: the lease ends (as a
        # reclaim would end it) and JupyterLab's lease endpoint says so within a few refreshes.
        with stack.quota() as quota:
            quota.delete(f"/api/leases/{found['env']['GPU_COMMONS_LEASE_ID']}").raise_for_status()
        lease_page = f"{stack.url}/user/c01-s1/gpu-commons/lease"
        wait_for(lambda: httpx.get(lease_page, headers={"Authorization": f"token {student.token}"}, timeout=10)
                 .json().get("ends_early"), 20, "the extension to learn through its gate that the lease ended")


def test_after_a_hub_restart_the_running_workspace_reaches_the_hub_and_its_lease_again(tmp_path):
    """The hub is restarted while the workspace runs (JupyterHub leaves servers and proxy up for
    that: cleanup_servers and cleanup_proxy off): its gates went with the old hub process, and
    the new one serves them again when it first polls the server."""
    uid_base = random.randrange(480, 560) * 1000
    config = {"LocalQuotaSpawner": {"uid_base": uid_base, "uid_count": 1000},
              "JupyterHub": {"cleanup_servers": False, "cleanup_proxy": False}}
    with running_stack(tmp_path, ALLIANCE, config) as stack, proxy_ended_after(stack):
        student = log_in(stack, "c01-s1")
        assert student.start("gpu-slice", timeout=120).get("ready"), stack.log_tail()
        home = stack.data_dir / "homes" / "c01-s1"
        (home / "ask.py").write_text(ASK)
        first = json.loads(run_in_terminal(student, f"{sys.executable} ask.py before.json", "before.json"))
        assert first == {"hub": 200, "lease": 200}, first

        stack.stop()  # SIGTERM: the hub ends, the workspace and the proxy run on
        assert servers(stack.data_dir)["c01-s1"][0].startswith("169.254.")
        stack.start()
        wait_for(lambda: "gates of workspace network" in stack.log_tail(400), 60, "the gates served again")
        after = json.loads(run_in_terminal(student, f"{sys.executable} ask.py after.json", "after.json"))
        assert after == {"hub": 200, "lease": 200}, f"{after}\n{stack.log_tail()}"
        student.stop()


@contextlib.contextmanager
def proxy_ended_after(stack):
    """With cleanup_proxy off the hub leaves its proxy running when it stops: end it after the test."""
    try:
        yield
    finally:
        pid_file = stack.data_dir / "proxy.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


ASK = r'''
import json, os, sys, urllib.request, urllib.error
headers = {"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}
def status(url):
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return str(exc)
found = {"hub": status(os.environ["JUPYTERHUB_API_URL"] + "/user"),
         "lease": status(os.environ["GPU_COMMONS_QUOTA_URL"] + "/api/leases/" + os.environ["GPU_COMMONS_LEASE_ID"])}
json.dump(found, open(sys.argv[1] + ".tmp", "w"))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
'''
