"""One network namespace per local workspace, reachable only where the spawner routes it.

A workspace's namespace holds two interfaces: its own loopback and one end of a veth pair
(``eth0``, the workspace's address); the other end (``gcw…``) stays on the host. Each
workspace gets a /30 of ``workspace_subnet`` (host ``.1``, workspace ``.2``), the first whose
host end does not exist yet: the host end is named after the block's address, so no two
workspaces on the machine (of any hub, any subnet) can hold the same block:

    host (proxy, hub)  gcwa9fe0000 169.254.0.1  <-veth->  eth0 169.254.0.2  JupyterLab :port

A packet filter **inside the namespace** (iptables, applied once at creation; the student has
no capability to change it) lets in only TCP to the JupyterLab port and the answers to it, and
lets out only loopback traffic and answers: the workspace cannot open any connection through
``eth0``, so it reaches neither the host's ports (also those bound to 0.0.0.0), nor the other
workspaces, nor anything beyond. IPv6 is off in the namespace and on the host end, so there is
no link-local way around it. The host forwards nothing between veths (its rules are not
touched; the workspace cannot send new packets to be forwarded anyway).

What the workspace may reach is served **on its own loopback** by the hub (spawner/net_gates.py),
through listening sockets that the hub process makes inside the namespace.

The namespace has no name and no file: it lives while a process of the workspace or an open
file descriptor of the hub refers to it. So nothing can be left behind: a failed start closes
the descriptor, a stop ends the processes (the cgroup) and closes it, a crashed hub's
descriptors close with it and the namespace ends with the workspace's last process (which the
sweep ends when the student has no server). The kernel removes the veth pair, its addresses and
routes with the namespace; :meth:`WorkspaceNetwork.close` also deletes the host end at once.

:meth:`WorkspaceNetwork.create` runs ``ip``, ``nsenter`` and ``iptables-restore`` (about 40 ms
in all) and blocks: the spawner calls it in a worker thread.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CLONE_NEWNET = 0x40000000
LINK_PREFIX = "gcw"  # host ends: gcw<the block's address in hex>, e.g. gcwa9fe0000 (at most 15 characters)
INSIDE_LINK = "eth0"
DEFAULT_SUBNET = "169.254.0.0/17"  # link-local, never routed; leaves out 169.254.169.254 (cloud metadata)
TOOLS = {"ip": "iproute2", "nsenter": "util-linux", "iptables-restore": "iptables"}

_libc = ctypes.CDLL(None, use_errno=True)


class NetworkError(RuntimeError):
    """A workspace's network cannot be set up; phrased for the operator."""


# -- plain data: addresses, rules, commands -------------------------------------------


@dataclass(frozen=True)
class Link:
    """The veth pair of the workspace in ``slot``: a /30 of the subnet."""

    slot: int
    host_name: str
    host_address: str
    workspace_address: str
    prefix: int = 30


def slot_count(subnet: str) -> int:
    return ipaddress.IPv4Network(subnet).num_addresses // 4


def link_for(subnet: str, slot: int) -> Link:
    network = ipaddress.IPv4Network(subnet)
    if not 0 <= slot < slot_count(subnet):
        raise ValueError(f"slot {slot} is outside {subnet}")
    base = network.network_address + 4 * slot
    return Link(slot, f"{LINK_PREFIX}{int(base):08x}", str(base + 1), str(base + 2))


def is_host_end(name: str) -> bool:
    return re.fullmatch(rf"{LINK_PREFIX}[0-9a-f]{{8}}", name) is not None


def free_slots(subnet: str, link_names):
    """The slots of ``subnet`` whose host end does not exist (made by any hub), lowest first."""
    taken = {name for name in link_names if is_host_end(name)}
    base = int(ipaddress.IPv4Network(subnet).network_address)
    return (slot for slot in range(slot_count(subnet)) if f"{LINK_PREFIX}{base + 4 * slot:08x}" not in taken)


def firewall_rules(server_port: int) -> str:
    """The namespace's packet filter (``iptables-restore`` input): in, TCP to the server's
    port and the answers to it; out, loopback and answers only (new connections are refused at
    once: a reset for TCP, an ICMP error otherwise, so a student's tool fails fast)."""
    return "\n".join([
        "*filter",
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT DROP [0:0]",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A INPUT -i {INSIDE_LINK} -p tcp --dport {server_port} -m conntrack --ctstate NEW -j ACCEPT",
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset",
        "-A OUTPUT -j REJECT --reject-with icmp-admin-prohibited",
        "COMMIT",
        "",
    ])


def host_commands(link: Link, alias: str) -> str:
    """``ip -batch`` input for the host end, once IPv6 is off on it."""
    return (f"addr add {link.host_address}/{link.prefix} dev {link.host_name}\n"
            f"link set dev {link.host_name} alias {alias}\n"
            f"link set dev {link.host_name} up\n")


def inside_commands(link: Link) -> str:
    """``ip -batch`` input inside the namespace."""
    return (f"link set dev lo up\n"
            f"addr add {link.workspace_address}/{link.prefix} dev {INSIDE_LINK}\n"
            f"link set dev {INSIDE_LINK} up\n")


def missing_tools(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The programs a workspace network needs that are not on PATH, with their Debian package."""
    return [f"{tool} (Debian package {package})" for tool, package in TOOLS.items() if not which(tool)]


def host_links() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


def alias_for(cgroup_parent: str, workspace: str) -> str:
    """The host end's alias: the hub (its cgroup parent) and the workspace (its cgroup's name)."""
    return f"gpu-commons:{cgroup_parent.strip('/')}/{workspace}"


def links_of(cgroup_parent: str) -> dict[str, str]:
    """This hub's host ends on the machine: interface name -> workspace (cgroup name)."""
    prefix = alias_for(cgroup_parent, "")
    found = {}
    for name in host_links():
        alias = link_alias(name) if is_host_end(name) else ""
        if alias.startswith(prefix) and "/" not in alias[len(prefix):]:
            found[name] = alias[len(prefix):]
    return found


def delete_link(name: str, alias: str) -> bool:
    """Delete a host end (and so its pair) if it still has ``alias``."""
    if link_alias(name) != alias:
        return False
    return _run(["ip", "link", "delete", name]).returncode == 0


def link_alias(name: str) -> str:
    try:
        return Path(f"/sys/class/net/{name}/ifalias").read_text().strip()
    except OSError:
        return ""


# -- the namespace ---------------------------------------------------------------------


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _in_thread(work: Callable[[], object]):
    """Run ``work`` in a fresh thread (a namespace switch stays in that thread) and return its result."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="gpu-commons-netns")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _new_namespace() -> int:
    """A new, empty network namespace (IPv6 off), as an open descriptor."""

    def work() -> int:
        host = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            try:
                for conf in ("all", "default"):  # per namespace: these are the new one's
                    Path(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6").write_text("1")
            except FileNotFoundError:
                pass  # a kernel without IPv6
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            _check(_libc.setns(host, CLONE_NEWNET), "setns back to the hub's namespace")
            return fd
        finally:
            os.close(host)

    return _in_thread(work)


def _run(command: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30)


class WorkspaceNetwork:
    """The network namespace of one running workspace, held by an open descriptor."""

    def __init__(self, fd: int, link: Link, alias: str):
        self.fd = fd
        self.link = link
        self.alias = alias  # the host end's alias: whose workspace it is

    def __repr__(self) -> str:
        return f"WorkspaceNetwork({self.link.host_name}, {self.link.workspace_address})"

    @property
    def path(self) -> str:
        """The namespace as a file other root processes can open."""
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    @classmethod
    def create(cls, subnet: str, server_port: int, alias: str) -> "WorkspaceNetwork":
        """A namespace with its veth pair on a free slot of ``subnet`` and its packet filter;
        on any error nothing of it is left and :class:`NetworkError` says why."""
        missing = missing_tools()
        if missing:
            raise NetworkError(
                f"a workspace network needs {', '.join(missing)}; install it (scripts/install-debs.sh iproute2 "
                "iptables util-linux) or set c.LocalQuotaSpawner.network_isolation = False")
        try:
            fd = _new_namespace()
        except OSError as exc:
            raise NetworkError(f"cannot make a network namespace for a workspace: {exc}; the hub must run as root, "
                               "or set c.LocalQuotaSpawner.network_isolation = False") from None
        network = None
        try:
            link = cls._add_veth(fd, subnet)
            network = cls(fd, link, alias)
            network._configure(server_port)
            return network
        except BaseException:
            if network is not None:
                network.close(ours=True)  # made just now: its name is ours, alias or not
            else:
                os.close(fd)
            raise

    @classmethod
    def attach(cls, pid: int, link: Link, alias: str) -> "WorkspaceNetwork":
        """The namespace of a running workspace's process (after a hub restart)."""
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NetworkError(f"cannot open the network namespace of process {pid}: {exc}") from None
        return cls(fd, link, alias)

    @staticmethod
    def _add_veth(fd: int, subnet: str) -> Link:
        path = f"/proc/{os.getpid()}/fd/{fd}"
        for slot in free_slots(subnet, host_links()):
            link = link_for(subnet, slot)
            added = _run(["ip", "link", "add", link.host_name, "type", "veth", "peer", "name", INSIDE_LINK,
                          "netns", path])
            if added.returncode == 0:
                return link
            if "File exists" not in added.stderr:
                raise NetworkError(f"cannot add the veth pair {link.host_name}: {added.stderr.strip()}")
            # another hub or start took this slot just now: the next one
        raise NetworkError(
            f"no free address block left in c.LocalQuotaSpawner.workspace_subnet = {subnet!r} "
            f"({slot_count(subnet)} workspaces of /30 each are running); give it a larger subnet")

    def _configure(self, server_port: int) -> None:
        link = self.link
        try:
            Path(f"/proc/sys/net/ipv6/conf/{link.host_name}/disable_ipv6").write_text("1")  # before it is up
        except FileNotFoundError:
            pass
        steps = [
            (["ip", "-batch", "-"], host_commands(link, self.alias)),
            (["nsenter", f"--net={self.path}", "ip", "-batch", "-"], inside_commands(link)),
            (["nsenter", f"--net={self.path}", "iptables-restore", "-w", "5"], firewall_rules(server_port)),
        ]
        for command, stdin in steps:
            result = _run(command, stdin)
            if result.returncode != 0:
                raise NetworkError(f"cannot set up the workspace network {link.host_name} "
                                   f"({' '.join(command[-3:])}): {result.stderr.strip()}")

    def joiner(self) -> Callable[[], None]:
        """A function for ``Popen(preexec_fn=...)``: the child enters the namespace."""
        fd, setns = self.fd, _libc.setns

        def join() -> None:
            if setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the workspace's network namespace")

        return join

    def listen(self, host: str, port: int) -> socket.socket:
        """A listening TCP socket inside the namespace (it stays there; the hub serves it)."""
        fd = self.fd

        def work() -> socket.socket:
            back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _check(_libc.setns(fd, CLONE_NEWNET), "setns into the workspace's network namespace")
                try:
                    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    try:
                        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        server.bind((host, port))
                        server.listen(64)
                        server.setblocking(False)
                    except BaseException:
                        server.close()
                        raise
                    return server
                finally:
                    _check(_libc.setns(back, CLONE_NEWNET), "setns back to the hub's namespace")
            finally:
                os.close(back)

        return _in_thread(work)

    def close(self, ours: bool = False) -> None:
        """Delete the veth pair now and let the namespace go (it ends with its last process).

        The pair is deleted while the descriptor still holds the namespace, so the host end of
        that name is this workspace's, not one a later start took after the kernel freed it."""
        try:
            if ours:
                _run(["ip", "link", "delete", self.link.host_name])
            else:
                delete_link(self.link.host_name, self.alias)
        finally:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
