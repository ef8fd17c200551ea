"""Real sandboxed workspaces for tests, without a hub: the local backend behind the quota
step, its lease from the fake quota service (tests/spawner_fakes.py), running a shell
script instead of JupyterLab inside the real bubblewrap sandbox and cgroup.

- :func:`workspace_spawner`: a ``LocalQuotaSpawner`` whose workspace runs ``script``;
- :func:`processes_of_uid`: the host's processes of a uid, read from /proc;
- :func:`wait_for`: poll a condition with a deadline;
- :func:`cgroup_scope`: a context manager that gives the test its own cgroup parent and
  ends whatever is left under it afterwards (also when the code under test failed to).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path
from types import SimpleNamespace

from spawner.backends import LocalQuotaSpawner
from spawner.cgroups import CGROUP_ROOT, V1_CONTROLLERS, WorkspaceCgroup, cgroup_version, workspace_names
from tests.spawner_fakes import LOG, FakeQuotaService, student

HUB = SimpleNamespace(public_host="", api_url="http://127.0.0.1:1/hub/api", base_url="/hub/")


def processes_of_uid(uid: int, zombies: bool = True) -> list[int]:
    """Pids of ``uid``'s processes; ``zombies=False`` leaves out the exited ones whose parent
    has not reaped them yet (a workspace's ``sleep`` does not reap its children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields["Uid"].split()[0]) == uid and (zombies or not fields["State"].strip().startswith("Z")):
                found.append(int(entry))
    return found


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def cgroup_scope():
    """A cgroup parent of the test's own; on exit every workspace cgroup left in it is ended
    and the parent removed."""
    # Under gpu-commons/, where every hub's sweeper leaves processes alone unless the parent is its own.
    parent = f"gpu-commons/test-{os.getpid()}-{random.randrange(16**6):06x}"
    try:
        yield parent
    finally:
        for name in workspace_names(parent):
            WorkspaceCgroup(name, parent).kill()
        places = [Path(CGROUP_ROOT)] if cgroup_version() == 2 else [Path(CGROUP_ROOT) / c for c in V1_CONTROLLERS]
        for place in places:
            with contextlib.suppress(OSError):
                (place / parent).rmdir()


def workspace_spawner(service: FakeQuotaService, alliance: Path, homes: Path, cgroup_parent: str, script: str,
                      profile: str = "cpu", **config) -> LocalQuotaSpawner:
    """A local workspace that runs ``script`` (sh) as the student, in the sandbox, under a
    lease of ``profile``. The student's uid is random, so a test can find its processes."""
    user = student()
    user.id = random.randrange(1000, 90000)
    user.url = f"/user/{user.name}/"
    user.progress_url = f"/hub/api/users/{user.name}/server/progress"
    config.setdefault("interrupt_timeout", 2)
    config.setdefault("term_timeout", 2)
    config.setdefault("wait_for_listen", False)  # the script does not listen on the server's port
    spawner = LocalQuotaSpawner(
        user=user, hub=HUB, user_options={"profile": profile}, alliance_file=str(alliance), log=LOG,
        homes_dir=str(homes), cgroup_parent=cgroup_parent, queue_poll_interval=0.001,
        cmd=["/bin/sh", "-c", script, "workspace"], **config,
    )
    spawner._quota_client = service.client()
    return spawner
