"""Keep a hub-managed service running: start it again within a second when it dies.

JupyterHub restarts a managed service that exits, but only when it next polls the process:
every ``Spawner.poll_interval`` (30 s, give or take 10 %), a setting that does not reach the
services' spawner. A quota service killed by the kernel's OOM killer or a ``kill -9`` left
every spawn failing for about half a minute. So the hub runs the service under this small
parent, which waits on its child and starts it again at once::

    python -m hub.keepalive --name quota -- python -m quota serve

- the child is started again ``first_delay_s`` (0.2 s) after it exits; a child that keeps
  dying young (within ``healthy_after_s``) waits twice as long each time, at most
  ``max_delay_s`` (4 s), so a broken configuration is retried without flooding the log;
- SIGINT or SIGTERM (the hub stopping the service) is passed on to the child, and this
  process exits with the child's status once it has ended, restarting nothing;
- the child is started with ``PR_SET_PDEATHSIG``: if this parent is killed, the child gets
  SIGTERM, so no orphan keeps the service's port or its SQLite writer lock; the hub then
  restarts this parent at its next poll;
- this process asks for the same about its own parent, the hub: a hub killed with ``kill -9``
  (or by the OOM killer) cannot stop its services, and the service it left would keep the port
  and the writer lock, so that the hub started again could start none; now SIGTERM reaches
  this process, which stops the service as for any stop.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec, and in main for ourselves
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the hub's own restart still applies


class KeepAlive:
    def __init__(self, command: list[str], name: str, first_delay_s: float = 0.2, max_delay_s: float = 4.0,
                 healthy_after_s: float = 30.0, log=None):
        self.command = command
        self.name = name
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.healthy_after_s = healthy_after_s
        self.restarts = 0
        self._log = log or (lambda message: print(f"[keepalive {name}] {message}", file=sys.stderr, flush=True))
        self._child: subprocess.Popen | None = None
        self._stopping: int | None = None  # the signal that asked us to stop

    def _stop(self, signum, _frame) -> None:
        self._stopping = signum
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signum)

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._stop)
        parent = os.getppid()
        _die_with_parent()  # the hub dies: SIGTERM here (see the module)
        if os.getppid() != parent:  # it died before we asked
            return 128 + signal.SIGTERM
        delay = self.first_delay_s
        while True:
            started = time.monotonic()
            self._child = subprocess.Popen(self.command, preexec_fn=_die_with_parent)
            code = self._child.wait()
            if self._stopping is not None:
                return code if code >= 0 else 128 - code
            ran = time.monotonic() - started
            if ran >= self.healthy_after_s:
                delay = self.first_delay_s  # it had been running well: this is a new crash, not a loop
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            self._log(f"the {self.name} service {how} after {ran:.1f} s; starting it again in {delay:.1f} s")
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and self._stopping is None:
                time.sleep(0.05)
            if self._stopping is not None:
                return 0
            self.restarts += 1
            delay = min(delay * 2, self.max_delay_s)  # the next, should it die young again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.keepalive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="service", help="the service's name, for the log")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to keep running")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to keep running after --, e.g. -- python -m quota serve")
    return KeepAlive(command, args.name).run()


if __name__ == "__main__":
    sys.exit(main())
