"""The whole platform, for real (hub, proxy, quota service, sandboxed JupyterLab): a
``setsid`` process started from a student's JupyterLab terminal ends when the student stops
the server and when the platform stops; leftovers from before the hub started (a workspace
cgroup of a student without a server, a sandbox process outside any cgroup) are swept when
it starts, and the hub log says so."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time

import httpx
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from hub.config import cgroup_parent_for
from spawner.cgroups import CgroupLimits, WorkspaceCgroup
from spawner.sweep import processes
from tests.hub_client import log_in
from tests.sandboxes import processes_of_uid, wait_for
from tests.stack import running_stack

pytestmark = pytest.mark.slow

ALLIANCE = """
name: Platform containment test alliance
tiers: {county: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30, mem_limit: 1G, pids_limit: 256}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2]}
"""


async def _type_in_terminal(stack, student, command: str) -> None:
    base = f"{stack.url}/user/{student.name}"
    headers = {"Authorization": f"token {student.token}"}
    response = httpx.post(f"{base}/api/terminals", headers=headers, timeout=30)
    response.raise_for_status()
    name = response.json()["name"]
    socket = await websocket_connect(HTTPRequest(
        f"{base.replace('http://', 'ws://')}/terminals/websocket/{name}", headers=headers))
    socket.write_message(json.dumps(["stdin", command + "\r"]))
    await asyncio.sleep(1.0)
    socket.close()


def type_in_terminal(stack, student, command: str) -> None:
    """Type a command into a new terminal of the student's JupyterLab, as the student would."""
    asyncio.run(_type_in_terminal(stack, student, command))


def sleepers(uid: int) -> list[int]:
    return [pid for pid in processes_of_uid(uid, zombies=False)
            if open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"sleep\x00901")]


def test_workspaces_end_whole_on_stop_and_platform_stop_and_leftovers_are_swept_at_start(tmp_path):
    uid_base = random.randrange(310, 390) * 1000  # this hub's students only, so its sweep touches nothing else
    parent = cgroup_parent_for(tmp_path / "data")

    # Leftovers of an earlier run: c01-s2 has no server, and a student uid runs in no workspace.
    leftover = WorkspaceCgroup("c01-s2", parent)
    leftover.create(CgroupLimits())
    old_workspace = subprocess.Popen(["setpriv", f"--reuid={uid_base + 500}", f"--regid={uid_base + 500}",
                                      "--clear-groups", "sleep", "902"], preexec_fn=leftover.joiner())
    stray = subprocess.Popen(["setpriv", f"--reuid={uid_base + 501}", f"--regid={uid_base + 501}", "--clear-groups",
                              "sleep", "903"])
    config = {"LocalQuotaSpawner": {"uid_base": uid_base, "uid_count": 1000, "sweep_interval": 2}}
    try:
        with running_stack(tmp_path, ALLIANCE, config) as stack:
            wait_for(lambda: old_workspace.poll() is not None and stray.poll() is not None, 30,
                     "the sweep at hub start to end the leftovers")
            assert not leftover.exists()
            log = stack.log_tail(400)
            assert "ended 1 processes of c01-s2, who has no running server" in log
            assert f"ended process {stray.pid} of student uid {uid_base + 501}: it is in no workspace" in log

            student = log_in(stack, "c01-s1")
            uid = uid_from_workspace(parent, "c01-s1", student, stack)
            assert uid_base < uid < uid_base + 500
            type_in_terminal(stack, student, "setsid sh -c 'sleep 901 &'")
            wait_for(lambda: sleepers(uid), 20, "the setsid sleeper")

            student.stop()
            assert processes_of_uid(uid) == []
            assert not WorkspaceCgroup("c01-s1", parent).exists()

            uid_from_workspace(parent, "c01-s1", student, stack)
            type_in_terminal(stack, student, "setsid sh -c 'sleep 901 &'")
            wait_for(lambda: sleepers(uid), 20, "the setsid sleeper of the second workspace")
            time.sleep(2.5)  # a sweep while the server runs leaves it alone
            assert sleepers(uid)
        # running_stack stopped the hub (SIGTERM, as Ctrl-C of `gpu-commons demo`)
        assert processes_of_uid(uid) == []
        assert not WorkspaceCgroup("c01-s1", parent).exists()
    finally:
        for process in (old_workspace, stray):
            if process.poll() is None:
                process.kill()
        leftover.kill()


def uid_from_workspace(parent: str, name: str, student, stack) -> int:
    """Start the student's CPU server; the uid its processes run as."""
    started = student.start("cpu", timeout=120)
    assert started.get("ready"), f"{started}\n{stack.log_tail()}"
    cgroup = f"/{parent}/{name}"
    return wait_for(lambda: next((p.uid for p in processes() if p.cgroup == cgroup and p.uid), None), 10,
                    "the workspace's processes")
