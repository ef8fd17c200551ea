"""The workspace sweeper: ends what is left of workspaces whose student has no server.

A hub-managed service of the local backend (``python -m spawner.sweep``, set up by
``gpu-commons hub``). When the hub starts and every ``--interval`` seconds after, it asks the
hub which students have an active server (running, starting or stopping) and ends

- every workspace cgroup under this hub's ``cgroup_parent`` of a student without one;
- every process of a student uid (``uid_base`` … ``uid_base + uid_count - 1``) that is in
  no workspace cgroup at all (a sandbox from before cgroups, or anything started around them),
- every network link of this hub's workspaces (spawner/netns.py: the host end of a veth pair,
  found by its alias) of a student without one: the kernel removes it with the workspace's
  last process, so one is left only while something else holds its namespace,

and logs each. Nothing that began after the hub was asked is touched (a workspace starting
meanwhile keeps running), and when the hub does not answer, nothing is ended.

The decision is :func:`plan_sweep`, over plain data; :func:`sweep_once` reads /proc and the
cgroups, asks the hub, and carries it out.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import httpx

from spawner.cgroups import (
    CGROUP_ROOT,
    V1_CONTROLLERS,
    CgroupError,
    WorkspaceCgroup,
    cgroup_of,
    cgroup_version,
    workspace_names,
)
from spawner.netns import alias_for, delete_link, links_of

log = logging.getLogger("gpu-commons.sweep")

# A process this close to the hub's answer may belong to a workspace starting just then.
MARGIN_S = 1.0


@dataclass(frozen=True)
class Process:
    pid: int
    uid: int
    started: float  # wall-clock time, seconds
    cgroup: str  # e.g. '/gpu-commons/hub-1a2b/c01-s1'; '' when unknown


@dataclass(frozen=True)
class Workspace:
    name: str  # the cgroup's name: the escaped student name (spawner.local.cgroup_name)
    created: float  # wall-clock time the cgroup was made


@dataclass(frozen=True)
class Plan:
    workspaces: list[str]  # cgroups to end, by name
    processes: list[Process]  # processes outside every workspace cgroup to end
    links: list[str] = field(default_factory=list)  # host ends of workspace networks to delete, by name


def student_of(workspace: str) -> str:
    """The student whose workspace a cgroup name is (spawner.local.cgroup_name read back)."""
    return unquote(workspace.split(".", 1)[0])


def plan_sweep(active: set[str], workspaces: list[Workspace], processes: list[Process], *,
               asked_at: float, uids: range, cgroup_top: str, links: list[NetworkLink] = ()) -> Plan:
    """What to end. ``active``: students with an active server, as the hub answered at
    ``asked_at``; ``cgroup_top``: the first part of every hub's cgroup parent ('gpu-commons');
    ``links``: this hub's network links, listed before the hub was asked (so none of a
    workspace that began after)."""
    before = asked_at - MARGIN_S
    ended = [w.name for w in workspaces if student_of(w.name) not in active and w.created < before]
    inside = f"/{cgroup_top.strip('/')}/"
    strays = [
        p for p in processes
        if p.uid in uids and not (p.cgroup + "/").startswith(inside) and p.started < before
    ]
    gone = [link.name for link in links if student_of(link.workspace) not in active]
    return Plan(sorted(ended), sorted(strays, key=lambda p: p.pid), sorted(gone))


# -- reading the machine --------------------------------------------------------------------


def processes(root: str = CGROUP_ROOT) -> list[Process]:
    boot = _boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        after_name = stat.rsplit(")", 1)[1].split()
        if after_name[0] in ("Z", "X"):
            continue  # exited, only not reaped yet: it holds nothing, and it shows in no cgroup
        uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
        started = boot + int(after_name[19]) / ticks  # field 22, starttime
        found.append(Process(pid, uid, started, cgroup_of(pid, root) or ""))
    return found


def workspaces(parent: str, root: str = CGROUP_ROOT) -> list[Workspace]:
    hierarchy = Path(root) if cgroup_version(root) == 2 else Path(root) / V1_CONTROLLERS[0]
    place = hierarchy / parent.strip("/")
    found = []
    for name in workspace_names(parent, root):
        try:
            created = (place / name).stat().st_mtime  # a cgroup directory's time is when it was made
        except FileNotFoundError:
            created = 0.0  # only in another hierarchy: a leftover
        found.append(Workspace(name, created))
    return found


@dataclass(frozen=True)
class NetworkLink:
    name: str  # the host end, e.g. gcwa9fe0000
    workspace: str  # its workspace's cgroup name (from the alias)


def network_links(parent: str) -> list[NetworkLink]:
    return [NetworkLink(name, workspace) for name, workspace in links_of(parent).items()]


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return time.time() - float(Path("/proc/uptime").read_text().split()[0])


def active_students(api_url: str, token: str, timeout: float = 10.0) -> set[str]:
    """Names of the students with an active server (the hub's ``/users?state=active``)."""
    names: set[str] = set()
    url = f"{api_url.rstrip('/')}/users"
    params = {"state": "active", "offset": 0, "limit": 200}
    headers = {"Authorization": f"token {token}", "Accept": "application/jupyterhub-pagination+json"}
    with httpx.Client(timeout=timeout, headers=headers) as client:
        while True:
            response = client.get(url, params=params)
            response.raise_for_status()
            page = response.json()
            names.update(user["name"] for user in page["items"])
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return names
            params["offset"] = following["offset"]


# -- carrying it out --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    api_url: str
    token: str
    cgroup_parent: str
    uid_base: int
    uid_count: int
    cgroup_root: str = CGROUP_ROOT
    kill_timeout: float = 10.0


def sweep_once(settings: Settings) -> Plan | None:
    """One sweep; None when the hub did not answer (then nothing is ended)."""
    links = network_links(settings.cgroup_parent)  # before the question: a workspace starting later is not in it
    asked_at = time.time()
    try:
        active = active_students(settings.api_url, settings.token)
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        log.warning("the hub did not say which servers run (%s); nothing swept this time", exc)
        return None
    plan = plan_sweep(
        active, workspaces(settings.cgroup_parent, settings.cgroup_root), processes(settings.cgroup_root),
        asked_at=asked_at, uids=range(settings.uid_base, settings.uid_base + settings.uid_count),
        cgroup_top=settings.cgroup_parent.strip("/").split("/")[0], links=links,
    )
    for name in plan.workspaces:
        cgroup = WorkspaceCgroup(name, settings.cgroup_parent, settings.cgroup_root)
        try:
            killed = cgroup.kill(settings.kill_timeout)
        except CgroupError as exc:
            log.error("workspace of %s: %s", student_of(name), exc)
            continue
        log.warning("ended %d processes of %s, who has no running server (workspace cgroup %s/%s)",
                    killed, student_of(name), settings.cgroup_parent, name)
    workspace_of = {link.name: link.workspace for link in links}
    for name in plan.links:
        workspace = workspace_of.get(name)
        if workspace and delete_link(name, alias_for(settings.cgroup_parent, workspace)):
            log.warning("deleted the network link %s of %s, who has no running server", name, student_of(workspace))
    for process in plan.processes:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        log.warning("ended process %d of student uid %d: it is in no workspace (cgroup %s)",
                    process.pid, process.uid, process.cgroup or "?")
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cgroup-parent", required=True)
    parser.add_argument("--cgroup-root", default=CGROUP_ROOT)
    parser.add_argument("--uid-base", type=int, required=True)
    parser.add_argument("--uid-count", type=int, required=True)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between two sweeps")
    parser.add_argument("--once", action="store_true", help="sweep once and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname).1s %(asctime)s sweep] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per question to the hub
    settings = Settings(
        api_url=os.environ["JUPYTERHUB_API_URL"], token=os.environ["JUPYTERHUB_API_TOKEN"],
        cgroup_parent=args.cgroup_parent, cgroup_root=args.cgroup_root,
        uid_base=args.uid_base, uid_count=args.uid_count,
    )
    log.info("sweeping workspaces under %s and uids %d-%d every %g s", settings.cgroup_parent, settings.uid_base,
             settings.uid_base + settings.uid_count - 1, args.interval)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        sweep_once(settings)
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
