"""The workspace sweeper: what it ends (a pure plan over plain data), and a real sweep of
real processes and cgroups against a small stand-in for the hub's REST API."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import subprocess
import threading
import time

import pytest

from spawner.cgroups import CgroupLimits, WorkspaceCgroup
from spawner.local import cgroup_name
from spawner.sweep import Plan, Process, Settings, Workspace, plan_sweep, student_of, sweep_once
from tests.sandboxes import cgroup_scope, wait_for

NOW = 1_800_000_000.0
STUDENTS = range(200_000, 300_000)


def plan(active, workspaces=(), processes=()):
    return plan_sweep(set(active), list(workspaces), list(processes), asked_at=NOW, uids=STUDENTS,
                      cgroup_top="gpu-commons")


def test_a_workspace_of_a_student_without_a_server_is_ended():
    old = NOW - 600
    result = plan({"c01-s1"}, [Workspace("c01-s1", old), Workspace("c01-s2", old)])
    assert result == Plan(workspaces=["c01-s2"], processes=[])


def test_a_workspace_made_after_the_hub_answered_is_left_alone():
    # The student started a server just after the hub was asked.
    assert plan(set(), [Workspace("c01-s1", NOW + 0.2), Workspace("c01-s2", NOW - 0.5)]).workspaces == []


def test_student_processes_outside_every_workspace_are_ended():
    old = NOW - 600
    processes = [
        Process(10, 200_007, old, "/"),  # a sandbox from before cgroups: ended
        Process(11, 200_008, old, "/gpu-commons/hub-1/c01-s1"),  # in this hub's workspace: the cgroup decides
        Process(12, 200_009, old, "/gpu-commons/hub-2/u01-s1"),  # another hub's workspace: never
        Process(13, 1000, old, "/"),  # not a student uid
        Process(14, 200_010, NOW + 1, "/"),  # started after the hub answered
        Process(15, 200_011, old, "/gpu-commons-other/x"),  # not under gpu-commons/
    ]
    assert [p.pid for p in plan(set(), processes=processes).processes] == [10, 15]


@pytest.mark.parametrize("user, server", [("c01-s1", ""), ("Ana.López@school", ""), ("a.b", "c"), ("x/y", "")])
def test_cgroup_names_read_back_to_their_student(user, server):
    name = cgroup_name(user, server)
    assert "/" not in name and name not in (".", "..")
    assert student_of(name) == user
    assert cgroup_name("a.b") != cgroup_name("a", "b")


# -- a real sweep -----------------------------------------------------------------------------


class _Hub(http.server.BaseHTTPRequestHandler):
    """``GET /hub/api/users?state=active`` with the hub's pagination, one user per page."""

    active: list[str] = []
    token = "sweeper-token"

    def do_GET(self):
        from urllib.parse import parse_qs, urlparse

        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path != "/hub/api/users" or query.get("state") != ["active"] or \
                self.headers.get("Authorization") != f"token {self.token}":
            self.send_response(403)
            self.end_headers()
            return
        offset = int(query.get("offset", ["0"])[0])
        items = [{"name": name, "servers": {"": {}}} for name in self.active[offset:offset + 1]]
        following = {"offset": offset + 1} if offset + 1 < len(self.active) else None
        body = json.dumps({"items": items, "_pagination": {"offset": offset, "limit": 1, "total": len(self.active),
                                                            "next": following}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def fake_hub(active: list[str]):
    _Hub.active = active
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hub/api"
    finally:
        server.shutdown()


def sleeper_in(cgroup: WorkspaceCgroup, uid: int) -> subprocess.Popen:
    cgroup.create(CgroupLimits(pids=64))
    return subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sh", "-c",
                             "setsid sh -c 'sleep 600 &' & exec sleep 600"], preexec_fn=cgroup.joiner())


def test_a_sweep_ends_leftovers_of_students_without_a_server_and_nothing_else():
    uid = random.randrange(230_000, 290_000)  # the test's own student uids: uid .. uid + 2
    with cgroup_scope() as parent, fake_hub(["c01-s1", "c01-s3"]) as api_url:
        kept = WorkspaceCgroup("c01-s1", parent)  # a running server's workspace
        ended = WorkspaceCgroup("c01-s2", parent)  # its student has no server any more
        running = sleeper_in(kept, uid)
        leftover = sleeper_in(ended, uid + 1)
        # A sandbox from before cgroups: a student uid in no workspace.
        stray = subprocess.Popen(["setpriv", f"--reuid={uid + 2}", f"--regid={uid + 2}", "--clear-groups",
                                  "sleep", "600"])
        wait_for(lambda: len(ended.pids()) == 2, 10, "the leftover's double fork")
        time.sleep(1.1)  # all of it older than the hub's answer

        result = sweep_once(Settings(api_url=api_url, token=_Hub.token, cgroup_parent=parent,
                                     uid_base=uid, uid_count=3))

        assert result.workspaces == ["c01-s2"] and [p.pid for p in result.processes] == [stray.pid]
        assert leftover.wait(5) == -9 and stray.wait(5) == -9
        assert not ended.exists()
        assert running.poll() is None and len(kept.pids()) == 2


def test_no_answer_from_the_hub_ends_nothing():
    with cgroup_scope() as parent, fake_hub([]) as api_url:
        cgroup = WorkspaceCgroup("c01-s1", parent)
        process = sleeper_in(cgroup, random.randrange(230_000, 290_000))
        wait_for(lambda: cgroup.pids(), 10, "the workspace")
        time.sleep(1.1)
        assert sweep_once(Settings(api_url=api_url, token="wrong", cgroup_parent=parent,
                                   uid_base=200_000, uid_count=1)) is None
        assert process.poll() is None and cgroup.exists()


@pytest.fixture(autouse=True)
def _needs_root():
    if os.geteuid() != 0:
        pytest.fail("the sweep tests start processes as student uids and make cgroups: run them as root")
