"""Start the real platform for a test: hub, configurable-http-proxy and the quota service.

`gpu-commons hub` is started as a subprocess on free loopback ports with its own data
directory, exactly as an operator would start it; the hub starts the proxy and the quota
service itself. Accounts get known passwords through the same code `make demo` uses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from hub.config import prometheus_token_path, quota_token_path
from hub.passwords import set_passwords
from quota.alliance import load_alliance

REPO = Path(__file__).resolve().parent.parent
PROXY = REPO / ".build" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"


# The spawner's checks of a running workspace every 2 s (the hub's poll of the spawner, 10 s by
# default, and the spawner's question to the quota service whether the lease still holds, 30 s):
# the same code sees a lease that ended, within seconds instead of half a minute. For the hub
# settings of the tests that wait for a workspace to stop (QuotaSpawnerMixin's traits).
QUICK_LEASE_CHECKS = {"poll_interval": 2, "lease_check_interval": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    data_dir: Path
    alliance_file: Path
    ports: dict[str, int]
    passwords: dict[str, str]
    hub_args: list[str] = field(default_factory=list)  # e.g. ["--backend", "docker", "--config", FILE]
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    _log: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['port']}"

    @property
    def quota_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['quota_port']}"

    @property
    def quota_token(self) -> str:
        return quota_token_path(self.data_dir).read_text().strip()

    @property
    def prometheus_token(self) -> str:
        return prometheus_token_path(self.data_dir).read_text().strip()

    def quota(self) -> httpx.Client:
        return httpx.Client(base_url=self.quota_url, headers={"Authorization": f"token {self.quota_token}"}, timeout=10)

    def hub_api(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/hub/api", headers={"Authorization": f"token {token}"}, timeout=30)

    def start(self, timeout: float = 60) -> None:
        set_passwords(self.data_dir, self.passwords)
        command = [sys.executable, "-m", "quota.cli", "hub", "--alliance", str(self.alliance_file)]
        command += ["--data-dir", str(self.data_dir), "--proxy-command", str(PROXY)]
        for name, port in self.ports.items():
            command += [f"--{name.replace('_', '-')}", str(port)]
        command += self.hub_args
        self.log_path = self.data_dir / "hub.log"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the hub exited with {self.process.returncode}:\n{self.log_tail()}")
            if _answers(f"{self.url}/hub/api/") and _answers(f"{self.quota_url}/api/health"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the hub did not come up within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the hub stops the proxy, the quota service and the servers
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def make_stack(data_dir: Path, alliance_file: Path, hub_args: list[str] | None = None) -> Stack:
    alliance = load_alliance(alliance_file)
    passwords = {account: f"pw-{account}-{os.urandom(4).hex()}" for account in alliance.accounts()}
    ports = {name: free_port() for name in ("port", "hub_api_port", "proxy_api_port", "quota_port")}
    return Stack(data_dir=data_dir, alliance_file=alliance_file, ports=ports, passwords=passwords,
                 hub_args=list(hub_args or []))


@contextlib.contextmanager
def started_stack(data_dir: Path, alliance_file: Path, hub_args: list[str] = (), tail: int = 100):
    """A started stack; stopped on exit (also when it did not come up), with the last
    ``tail`` lines of its log printed."""
    if not PROXY.exists():
        pytest.fail(f"configurable-http-proxy is not installed at {PROXY}; run `make install-test`")
    stack = make_stack(data_dir, alliance_file, hub_args=list(hub_args))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        print(stack.log_tail(tail))


@contextlib.contextmanager
def running_stack(here: Path, alliance_text: str, hub_config: dict, hub_args: list[str] = (), tail: int = 100):
    """:func:`started_stack` on its own alliance file and hub settings (``hub_config``, given
    to the hub as a --config YAML), both written into ``here``."""
    alliance = here / "alliance.yaml"
    alliance.write_text(alliance_text)
    config = here / "hub-config.yaml"
    config.write_text(yaml.safe_dump(hub_config))
    with started_stack(here / "data", alliance, [*hub_args, "--config", str(config)], tail) as stack:
        yield stack
