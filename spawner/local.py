"""The embedded backend: one sandboxed JupyterLab process per student on the GPU server.

Students have no Unix accounts on the server. Each workspace runs

    bwrap (own PID, IPC and mount namespaces; only system dirs, read-only)
      -> setpriv (drops to the student's own uid, no capabilities)
        -> jupyterhub-singleuser

with the student's home directory bound at ``/home/jovyan``. Other students' homes and
the platform's data directory are simply not mounted, and each home is mode 0700 and
owned by that student's uid, so a workspace can neither read nor write another's files,
and nothing runs as root.

Each workspace is also one cgroup (spawner/cgroups.py) that every process of it is born
in and cannot leave: the kernel holds it to the workspace's memory, CPU and process limits,
and stopping the workspace ends every process in it, double-forked and ``setsid`` ones too,
before stop() returns (so before the quota step releases the lease). Its /tmp is a tmpfs of
the ``tmp_size``; a home with a ``home_quota`` is an ext4 image of that size (spawner/homes.py).

With ``network_isolation`` (the default where the hub is root and ``ip`` exists) each workspace
also has its own network namespace (spawner/netns.py): JupyterLab listens on the workspace's own
address, which only the host (the proxy, the hub's readiness check) can connect to, and the
workspace can open connections only to two gates on its own loopback that the hub serves
(spawner/net_gates.py): the hub API, and the quota service's route for its own lease.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shutil
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Any, Bool, Float, Integer, List, Unicode, default, validate

from spawner.cgroups import CGROUP_ROOT, CgroupError, CgroupLimits, WorkspaceCgroup
from spawner.failures import WorkspaceFailed
from spawner.homes import HomeQuotaError, mount_home, unmount_home
from spawner.limits import WorkspaceLimits
from spawner.net_gates import GatePlan, WorkspaceGates, inside_env
from spawner.netns import DEFAULT_SUBNET, Link, NetworkError, WorkspaceNetwork, alias_for, link_for, slot_count
from spawner.quota import WorkspaceStillRunning
from spawner.specs import Resources

SANDBOX_HOME = "/home/jovyan"


def cgroup_name(user: str, server: str = "") -> str:
    """The workspace's cgroup: the student's name (and the server's, for a named server),
    with anything but a-z, 0-9, '_' and '-' written as %XX, so the sweep can read it back."""

    def escape(text: str) -> str:
        return re.sub(r"[^a-z0-9_-]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)

    return escape(user) + (f".{escape(server)}" if server else "")


class SandboxedLocalSpawner(WorkspaceLimits, LocalProcessSpawner):
    homes_dir = Unicode(
        help="""Directory that holds one home directory per student (created 0700, owned by the student's uid).

        Example::

            c.SandboxedLocalSpawner.homes_dir = "/srv/gpu-commons/homes"
        """,
    ).tag(config=True)

    uid_base = Integer(
        200000,
        help="""Students run as uid ``uid_base + <JupyterHub user id>``; pick a range no system account uses.

        Example::

            c.SandboxedLocalSpawner.uid_base = 200000
        """,
    ).tag(config=True)

    uid_count = Integer(
        100000,
        help="""How many uids from ``uid_base`` on belong to students. The workspace sweeper
        (spawner/sweep.py) ends any process of these uids that is in no running workspace.
        """,
    ).tag(config=True)

    cgroup_root = Unicode(
        CGROUP_ROOT,
        help="Where the kernel's cgroup file system is mounted (v1 hierarchies or the v2 unified one).",
    ).tag(config=True)

    cgroup_parent = Unicode(
        "gpu-commons",
        help="""The cgroup, below the root of each hierarchy, that holds one cgroup per workspace
        (``<cgroup_parent>/<student>``). One per hub: the hub's sweeper ends what it finds there
        for students without a running server. ``gpu-commons hub`` sets it from the data directory.

        Example::

            c.LocalQuotaSpawner.cgroup_parent = "gpu-commons/main"
        """,
    ).tag(config=True)

    sweep_interval = Float(
        60.0,
        help="""Seconds between two runs of the workspace sweeper (a hub-managed service that
        ends the processes of students who have no running server; it also runs at hub start).""",
    ).tag(config=True)

    stop_kill_timeout = Float(
        10.0,
        help="""Seconds to wait, once every process of a stopping workspace was sent SIGKILL,
        until its cgroup is empty. Past it stop() fails and the lease is kept (a GPU is not
        handed on while a process may still use it).""",
    ).tag(config=True)

    network_isolation = Bool(
        help="""Give each workspace its own network namespace (docs/security.md, "Workspace network"):
        reachable only from the host (the proxy), and reaching only the hub API and the quota
        service's route for its own lease, through gates the hub serves on the workspace's
        loopback. No other host port, no other workspace, no outside network, no DNS.

        On by default where the hub runs as root and ``ip`` (iproute2) is installed; it also needs
        ``iptables-restore`` (iptables) and ``nsenter`` (util-linux). When it is on and cannot be
        set up, the start fails with the reason in the hub log and nothing of the network is left.

        Example::

            c.LocalQuotaSpawner.network_isolation = True
        """,
    ).tag(config=True)

    @default("network_isolation")
    def _isolate_where_possible(self):
        return os.geteuid() == 0 and shutil.which("ip") is not None

    workspace_subnet = Unicode(
        DEFAULT_SUBNET,
        help="""IPv4 block from which each isolated workspace gets a /30 (the host end ``.1``, the
        workspace ``.2``): a /17 holds 8192 workspaces. Pick a block the server does not route
        elsewhere; the default is link-local space (never routed) without 169.254.169.254.

        Example::

            c.LocalQuotaSpawner.workspace_subnet = "10.250.0.0/16"
        """,
    ).tag(config=True)

    @validate("workspace_subnet")
    def _a_subnet_of_slots(self, proposal):
        value = proposal["value"]
        try:
            network = ipaddress.IPv4Network(value)
        except ValueError as exc:
            raise ValueError(f"c.LocalQuotaSpawner.workspace_subnet = {value!r} is not an IPv4 subnet: {exc}") from None
        if network.prefixlen > 30:
            raise ValueError(f"c.LocalQuotaSpawner.workspace_subnet = {value!r} is smaller than one /30")
        return str(network)

    bwrap_path = Unicode("/usr/bin/bwrap", help="Path of bubblewrap (Debian package `bubblewrap`).").tag(config=True)
    setpriv_path = Unicode("/usr/bin/setpriv", help="Path of setpriv (Debian package `util-linux`).").tag(config=True)

    read_only_paths = List(
        Unicode(),
        help="""Host directories visible read-only inside every workspace, besides /usr and /etc.

        Defaults to the Python environment the hub runs in (its prefix and base prefix), which
        holds jupyterhub-singleuser and JupyterLab.
        """,
    ).tag(config=True)

    @default("read_only_paths")
    def _python_prefixes(self):
        return sorted({sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix)})

    @default("cmd")
    def _singleuser_in_this_environment(self):
        return [str(Path(sys.prefix) / "bin" / "jupyterhub-singleuser")]

    @default("default_url")
    def _open_lab(self):
        return "/lab"

    @default("notebook_dir")
    def _home_as_notebook_dir(self):
        return SANDBOX_HOME

    @property
    def student_uid(self) -> int:
        return self.uid_base + self.user.id

    @property
    def home_on_host(self) -> Path:
        return Path(self.homes_dir) / self.user.name

    @property
    def cgroup(self) -> WorkspaceCgroup:
        return WorkspaceCgroup(cgroup_name(self.user.name, self.name or ""), self.cgroup_parent, self.cgroup_root)

    def ensure_home(self, quota: int | None = None) -> None:
        home = self.home_on_host
        home.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(home.parent, 0o711)  # students may pass through, never list
        home.mkdir(mode=0o700, exist_ok=True)
        os.chown(home, self.student_uid, self.student_uid)
        os.chmod(home, 0o700)
        if quota:
            mount_home(home, quota, self.student_uid, self.log)

    def workspace_resources(self) -> Resources:
        """The limits of the workspace being started; the quota step gives its profile's."""
        return self.resources_for(None)

    def sandbox_command(self, resources: Resources | None = None) -> list[str]:
        """The bwrap + setpriv prefix that confines one student's workspace."""
        uid = str(self.student_uid)
        resources = resources or self.default_resources()
        command = [self.bwrap_path, "--unshare-pid", "--unshare-ipc"]
        command += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        # /tmp first: a Python environment that lives under /tmp is bound on top of it, not hidden by it.
        if resources.tmp_size:
            command += ["--size", str(resources.tmp_size)]  # then writes fail with ENOSPC
        command += ["--perms", "1777", "--tmpfs", "/tmp"]
        for name in ("bin", "sbin", "lib", "lib64"):
            if os.path.islink(f"/{name}"):
                command += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        for path in self.read_only_paths:
            # Parents that bwrap creates default to 0700: let the student's uid pass through them.
            for parent in reversed(Path(path).parents[:-1]):
                command += ["--perms", "0755", "--dir", str(parent)]
            command += ["--ro-bind", path, path]
        command += ["--perms", "0755", "--dir", "/home", "--bind", str(self.home_on_host), SANDBOX_HOME]
        command += ["--proc", "/proc", "--dev", "/dev", "--chdir", SANDBOX_HOME]
        command += ["--", self.setpriv_path, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        command += ["--inh-caps=-all", "--bounding-set=-all", "--"]
        return command

    def make_preexec_fn(self, name):
        # Only join the workspace's cgroup (and network): bwrap needs root to build the sandbox, setpriv drops it inside.
        join_cgroup = self.cgroup.joiner()
        join_network = self._network.joiner() if self._network is not None else None

        def join() -> None:
            join_cgroup()
            if join_network is not None:
                join_network()

        return join

    def user_env(self, env):
        env["USER"] = self.user.name
        env["HOME"] = SANDBOX_HOME
        env["SHELL"] = "/bin/bash"
        env["PATH"] = f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin"
        return env

    async def move_certs(self, paths):
        raise NotImplementedError("internal SSL is not supported by the sandboxed local spawner")

    async def start(self):
        if self.user.id >= self.uid_count:
            raise RuntimeError(f"user {self.user.name} (id {self.user.id}) is past uid_count ({self.uid_count}); "
                               "raise c.LocalQuotaSpawner.uid_count")
        resources = self.workspace_resources()
        singleuser = list(self.cmd)
        try:
            await asyncio.to_thread(self._prepare, resources)
            if self.network_isolation:
                await self._open_network()
            self.cmd = self.sandbox_command(resources) + singleuser
            return await super().start()
        except BaseException:
            try:
                await self._end_workspace()
            except WorkspaceStillRunning:
                pass  # logged; the start's own error is the one to report
            raise
        finally:
            self.cmd = singleuser

    def _prepare(self, resources: Resources) -> None:
        """The home (mounted when it has a quota) and a fresh cgroup with the limits."""
        try:
            self.ensure_home(resources.home_quota)
        except HomeQuotaError as exc:
            raise RuntimeError(f"the home of {self.user.name} cannot be mounted: {exc}") from None
        cgroup = self.cgroup
        if cgroup.exists():
            left = cgroup.kill(self.stop_kill_timeout)
            self.log.warning("%s: ended %d processes left from an earlier workspace", self._log_name, left)
        cgroup.create(CgroupLimits(memory=resources.mem_limit, cpu=resources.cpu_limit, pids=resources.pids_limit))
        self._oom_kills_seen = 0  # a new cgroup counts from 0

    async def stop(self, now=False):
        try:
            await super().stop(now=now)  # SIGINT, SIGTERM, SIGKILL to the server: it may close its kernels
        finally:
            await self._end_workspace()

    async def _end_workspace(self) -> None:
        """Every process still in the workspace's cgroup ends (then the cgroup is removed,
        and the home image unmounted)."""
        cgroup = self.cgroup
        try:
            killed = await asyncio.to_thread(cgroup.kill, self.stop_kill_timeout)
        except CgroupError as exc:
            self.log.error("%s: %s", self._log_name, exc)
            raise WorkspaceStillRunning(str(exc)) from None
        if killed:
            self.log.info("%s: ended %d processes left in the workspace after its server", self._log_name, killed)
        await self._close_network()
        await asyncio.to_thread(unmount_home, self.home_on_host, self.log)

    # -- the workspace's network ------------------------------------------------------

    _network = Any(None)  # WorkspaceNetwork while the workspace has one
    _gates = Any(None)  # WorkspaceGates serving it
    network_slot = Integer(-1)  # kept in the state with the gates' plan, for a hub that restarts meanwhile
    _gate_plan = Any(None)
    _configured_ip = Any(None)

    def workspace_lease_id(self) -> str:
        """The lease whose route the lease gate lets through (the quota step's)."""
        return ""

    def env_inside(self, env: dict) -> dict:
        """The environment with the hub's and quota service's URLs pointing at the gates."""
        return inside_env(env, self._gates.plan) if self._gates is not None else env

    @property
    def network_alias(self) -> str:
        """The host end's alias (``ip link`` shows it): which hub's workspace it is."""
        return alias_for(self.cgroup_parent, self.cgroup.name)

    async def _open_network(self) -> None:
        await self._close_network()  # one of an earlier start whose stop never came (a lost process)
        if self.port == 0:
            self.port = random_port()
        plan = GatePlan.from_env(self.get_env())  # the URLs as the host reaches them
        try:
            network = await asyncio.to_thread(WorkspaceNetwork.create, self.workspace_subnet, self.port,
                                              self.network_alias)
        except NetworkError as exc:
            self.log.error("%s: %s", self._log_name, exc)
            raise self._network_failed(exc) from None
        try:
            self._gates = await WorkspaceGates.open(network, plan, self.workspace_lease_id, self.log)
        except BaseException as exc:
            await asyncio.to_thread(network.close)
            if isinstance(exc, OSError):
                self.log.error("%s: cannot open the gates of the workspace network: %s", self._log_name, exc)
                raise self._network_failed(exc) from None
            raise
        self._network, self.network_slot, self._gate_plan = network, network.link.slot, plan
        if self._configured_ip is None:
            self._configured_ip = self.ip
        self.ip = network.link.workspace_address
        self.log.info("%s: workspace network %s, JupyterLab at %s:%d", self._log_name, network.link.host_name,
                      self.ip, self.port)

    def _network_failed(self, exc: Exception) -> Exception:
        """What the student reads (the reason is the operator's, in the hub log)."""
        lease = getattr(self, "_lease", None)
        return WorkspaceFailed("config", pool=getattr(lease, "pool", "") or "local", detail=str(exc))

    async def _close_network(self) -> None:
        gates, network, slot = self._gates, self._network, self.network_slot
        self._gates = self._network = self._gate_plan = None
        self.network_slot = -1  # first, so that a poll meanwhile does not serve the gates again
        if gates is not None:
            await gates.close()
        if network is None and 0 <= slot < slot_count(self.workspace_subnet):
            # After a hub restart the namespace ends with the workspace's processes; its host end may linger.
            network = WorkspaceNetwork(-1, link_for(self.workspace_subnet, slot), self.network_alias)
        if network is not None:
            await asyncio.to_thread(network.close)
        if self._configured_ip is not None:
            self.ip, self._configured_ip = self._configured_ip, None

    async def _reopen_gates(self) -> None:
        """After a hub restart: serve the gates again in the running workspace's namespace."""
        link: Link = link_for(self.workspace_subnet, self.network_slot)
        network = None
        try:
            network = await asyncio.to_thread(WorkspaceNetwork.attach, self.pid, link, self.network_alias)
            self._gates = await WorkspaceGates.open(network, self._gate_plan or GatePlan(),
                                                    self.workspace_lease_id, self.log)
        except (NetworkError, OSError) as exc:
            self.log.error("%s: cannot serve the gates of the running workspace again: %s", self._log_name, exc)
            if network is not None:
                os.close(network.fd)  # the workspace keeps its namespace; only this descriptor goes
            return
        self._network = network
        self.log.info("%s: gates of workspace network %s served again", self._log_name, link.host_name)

    def get_state(self):
        state = super().get_state()
        if self.network_slot >= 0:
            state["network"] = {"slot": self.network_slot, "gates": (self._gate_plan or GatePlan()).as_state()}
        return state

    def load_state(self, state):
        super().load_state(state)
        network = state.get("network") or {}
        self.network_slot = network.get("slot", -1)
        self._gate_plan = GatePlan.from_state(network["gates"]) if "gates" in network else None

    _oom_kills_seen = Integer(0)

    async def poll(self):
        status = await super().poll()
        if status is None and self._gates is None and self.network_slot >= 0 and self.pid:
            await self._reopen_gates()
        if status is None:
            kills = self.cgroup.oom_kills()
            if kills > self._oom_kills_seen:
                limit = self.workspace_resources().mem_limit
                self.log.warning("%s: %d process(es) ended at the workspace's memory limit (%s bytes)",
                                 self._log_name, kills - self._oom_kills_seen, limit)
                self._oom_kills_seen = kills
        return status

    async def _signal(self, sig):
        # Signal the whole process group (bwrap and the server inside it): bwrap does not forward signals.
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

