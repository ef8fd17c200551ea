"""One cgroup per local workspace: its limits, and how to end every process in it.

A sandbox's processes cannot leave their cgroup (its files belong to root), so the cgroup
is the whole workspace: a double-forked, ``setsid`` or re-parented process is still in it.
Ending a workspace freezes the cgroup (nothing in it can fork any more), sends SIGKILL to
every process in it, thaws it so the kills land, waits until it is empty and removes it.

Both layouts of the kernel's cgroup file system are handled:

- v1, one hierarchy per controller (these test machines): the workspace is the directory
  ``<parent>/<name>`` in each of the memory, pids, cpu and freezer hierarchies;
- v2, the unified hierarchy (Debian 12's default): one directory ``<parent>/<name>``; the
  ancestors' ``cgroup.subtree_control`` enable memory, pids and cpu, ``cgroup.kill`` ends it.

Nothing here is asynchronous: :meth:`WorkspaceCgroup.kill` waits (at most its timeout) and
the spawner runs it in a worker thread.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CGROUP_ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "pids", "cpu", "freezer")
V2_CONTROLLERS = ("memory", "pids", "cpu")
CFS_PERIOD_US = 100_000


class CgroupError(RuntimeError):
    """The cgroup file system cannot do what a workspace needs; phrased for the operator."""


@dataclass(frozen=True)
class CgroupLimits:
    """What the kernel enforces on one workspace; None = no limit."""

    memory: int | None = None  # bytes, /tmp (a tmpfs) included; no swap beyond it
    cpu: float | None = None  # cores: a CFS quota per 100 ms period, shared by all its threads
    pids: int | None = None  # processes and threads at once


def cgroup_version(root: str = CGROUP_ROOT) -> int:
    return 2 if (Path(root) / "cgroup.controllers").exists() else 1


class WorkspaceCgroup:
    """The cgroup ``<parent>/<name>`` of one workspace, in every hierarchy it needs."""

    def __init__(self, name: str, parent: str = "gpu-commons", root: str = CGROUP_ROOT):
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"{name!r} cannot name a cgroup")
        self.name = name
        self.parent = parent.strip("/")
        self.root = Path(root)
        self.version = cgroup_version(root)
        relative = f"{self.parent}/{name}" if self.parent else name
        if self.version == 2:
            self.dirs = {"": self.root / relative}
        else:
            self.dirs = {controller: self.root / controller / relative for controller in V1_CONTROLLERS}

    def __repr__(self) -> str:
        return f"WorkspaceCgroup({self.parent}/{self.name}, v{self.version})"

    # -- reading ---------------------------------------------------------------------

    def exists(self) -> bool:
        return any(path.is_dir() for path in self.dirs.values())

    def pids(self) -> set[int]:
        """Every process in the workspace (in any of its hierarchies)."""
        found: set[int] = set()
        for path in self.dirs.values():
            try:
                found.update(int(line) for line in (path / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                continue
        return found

    def oom_kills(self) -> int:
        """Processes the kernel ended at the memory limit since the cgroup was made."""
        path = self.dirs[""] / "memory.events" if self.version == 2 else self.dirs["memory"] / "memory.oom_control"
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except FileNotFoundError:
            pass
        return 0

    # -- making it -------------------------------------------------------------------

    def create(self, limits: CgroupLimits) -> None:
        """Make the cgroup (empty) and write its limits."""
        if self.version == 2:
            self._create_v2(limits)
        else:
            self._create_v1(limits)

    def _create_v1(self, limits: CgroupLimits) -> None:
        for controller, path in self.dirs.items():
            hierarchy = self.root / controller
            if not (hierarchy / "cgroup.procs").exists():
                raise CgroupError(
                    f"the cgroup v1 hierarchy {hierarchy} is not mounted, so a workspace cannot be contained; "
                    f"mount it (mount -t cgroup -o {controller} cgroup {hierarchy}) or set cgroup_root"
                )
            _mkdir(path)
        memory, cpu, pids = self.dirs["memory"], self.dirs["cpu"], self.dirs["pids"]
        if limits.memory is not None:
            _write(memory / "memory.limit_in_bytes", limits.memory)
            if (memory / "memory.memsw.limit_in_bytes").exists():
                _write(memory / "memory.memsw.limit_in_bytes", limits.memory)  # not more by swapping
        if limits.cpu is not None:
            _write(cpu / "cpu.cfs_period_us", CFS_PERIOD_US)
            _write(cpu / "cpu.cfs_quota_us", _cfs_quota(limits.cpu))
        if limits.pids is not None:
            _write(pids / "pids.max", limits.pids)

    def _create_v2(self, limits: CgroupLimits) -> None:
        path = self.dirs[""]
        values = (limits.memory, limits.pids, limits.cpu)
        wanted = [name for name, value in zip(V2_CONTROLLERS, values) if value is not None]
        # Each ancestor hands the controllers down to its children.
        ancestor = self.root
        for part in path.relative_to(self.root).parts:
            available = (ancestor / "cgroup.controllers").read_text().split()
            missing = [name for name in wanted if name not in available]
            if missing:
                raise CgroupError(
                    f"the cgroup v2 controllers {', '.join(missing)} are not available in {ancestor} "
                    "(cgroup.controllers), so the workspace's limits cannot be enforced; enable them for the hub's "
                    "cgroup (systemd: Delegate=yes on its unit) or leave those limits empty"
                )
            enabled = (ancestor / "cgroup.subtree_control").read_text().split()
            for name in wanted:
                if name not in enabled:
                    _write(ancestor / "cgroup.subtree_control", f"+{name}")
            ancestor = ancestor / part
            _mkdir(ancestor)
        if limits.memory is not None:
            _write(path / "memory.max", limits.memory)
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", 0)
        if limits.cpu is not None:
            _write(path / "cpu.max", f"{_cfs_quota(limits.cpu)} {CFS_PERIOD_US}")
        if limits.pids is not None:
            _write(path / "pids.max", limits.pids)

    def joiner(self) -> Callable[[], None]:
        """A function for ``Popen(preexec_fn=...)``: the child joins the cgroup before it
        runs anything else, so every process it starts is born inside."""
        files = [str(path / "cgroup.procs") for path in self.dirs.values()]

        def join() -> None:
            pid = str(os.getpid()).encode()
            for name in files:
                fd = os.open(name, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)

        return join

    # -- ending it -------------------------------------------------------------------

    def kill(self, timeout: float = 10.0) -> int:
        """End every process of the workspace and remove the cgroup; returns how many
        processes were killed. Raises :class:`CgroupError` when some are still there after
        ``timeout`` seconds (a process stuck in the kernel); the cgroup is then kept."""
        if not self.exists():
            return 0
        deadline = time.monotonic() + timeout
        if self.version == 2 and (self.dirs[""] / "cgroup.kill").exists():
            killed = len(self.pids())
            _write(self.dirs[""] / "cgroup.kill", 1)  # the kernel freezes and kills in one step
        else:
            killed = self._freeze_and_kill(deadline)
        while self.pids():
            if time.monotonic() > deadline:
                raise CgroupError(
                    f"{self}: processes {sorted(self.pids())} were sent SIGKILL but are still there after {timeout:g} s"
                )
            time.sleep(0.01)
        self._remove(deadline)
        return killed

    def _freeze_and_kill(self, deadline: float) -> int:
        state, frozen, thawed = self._freezer()
        if state:
            _write(state, frozen)
            while state.read_text().strip() not in (frozen, "1") and time.monotonic() < deadline:
                time.sleep(0.005)
        killed: set[int] = set()
        try:
            # Without a freezer a process may fork between reading and killing: go round until empty.
            while (pids := self.pids() - killed) and time.monotonic() < deadline:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed |= pids
                if state:
                    break
        finally:
            if state:
                _write(state, thawed)
        return len(killed)

    def _freezer(self) -> tuple[Path | None, str, str]:
        if self.version == 2:
            path = self.dirs[""] / "cgroup.freeze"
            return (path, "1", "0") if path.exists() else (None, "", "")
        path = self.dirs["freezer"] / "freezer.state"
        return (path, "FROZEN", "THAWED") if path.exists() else (None, "", "")

    def _remove(self, deadline: float) -> None:
        for path in self.dirs.values():
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:  # EBUSY for a moment while the last exits are accounted
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(f"{self}: cannot remove {path}: {exc}") from None
                    time.sleep(0.01)


def workspace_names(parent: str = "gpu-commons", root: str = CGROUP_ROOT) -> list[str]:
    """The workspace cgroups under ``parent`` (by name), in any hierarchy."""
    parent = parent.strip("/")
    if cgroup_version(root) == 2:
        places = [Path(root) / parent]
    else:
        places = [Path(root) / controller / parent for controller in V1_CONTROLLERS]
    names: set[str] = set()
    for place in places:
        if place.is_dir():
            names.update(entry.name for entry in place.iterdir() if entry.is_dir())
    return sorted(names)


def cgroup_of(pid: int, root: str = CGROUP_ROOT) -> str | None:
    """The cgroup path of a process ('/gpu-commons/…'): in the pids hierarchy on v1, the
    unified one on v2; None when the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    version = cgroup_version(root)
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if (version == 2 and _id == "0") or (version == 1 and "pids" in controllers.split(",")):
            return path
    return None


def _cfs_quota(cores: float) -> int:
    return max(1000, round(cores * CFS_PERIOD_US))  # the kernel's least quota is 1 ms


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CgroupError(f"cannot create the cgroup {path}: {exc}; the hub must run as root") from None


def _write(path: Path, value) -> None:
    try:
        with open(path, "w") as out:
            out.write(str(value))
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc}") from None
