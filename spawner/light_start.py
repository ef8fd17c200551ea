"""A lighter start of a local workspace, and a line for the starts when a class comes at once.

Where one JupyterLab start's seconds went (benchmarks/class_start.py, docs/class-start.md):

- imports: ``jsonschema`` builds an RFC 3987 parser at import when ``rfc3987_syntax`` is
  installed (1.2 of the 1.7 CPU-seconds until the server listens). A shim on the workspace's
  ``PYTHONPATH`` (spawner/start_shims/) leaves it out;
- server extensions: ``jupyter_lsp`` (no language server is installed) and ``notebook_shim``
  (classic Notebook extensions) are switched off; JupyterLab, its terminals and the workspace
  extension stay;
- the hub's readiness check: after ``start()`` returns, JupyterHub polls the server with a
  random back-off that grows to 5 s, so a server that listens a moment after a poll is seen
  up to 5 s late. ``start()`` here returns only once the server listens (a connect every
  50 ms), so the hub's first check finds it;
- many starts at once share 2 cores: 30 started together all finish near the end. The start
  line lets ``concurrent_starts`` start at a time and the others wait in order, so the first
  students are in after a few seconds; the waiting page says how many are ahead. With it
  JupyterHub's own limit (429 "too many users starting") is off (hub/config.py).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from traitlets import Bool, Dict, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from gpu_commons_i18n import _n

SHIMS_DIR = Path(__file__).resolve().with_name("start_shims")
LIGHT_SINGLEUSER = "light_singleuser"  # SHIMS_DIR/light_singleuser.py, run with ``python -m``

# Server extensions of the hub's environment a student's JupyterLab does not need.
SKIPPED_SERVER_EXTENSIONS = {"jupyter_lsp": False, "notebook_shim": False}


def server_extension_args(switched: dict[str, bool]) -> list[str]:
    """The server's command-line switch (merged over the environment's own config)."""
    if not switched:
        return []
    items = ", ".join(f"{name!r}: {bool(on)}" for name, on in sorted(switched.items()))
    return [f"--ServerApp.jpserver_extensions={{{items}}}"]


def with_shims(env: dict, shims: Path = SHIMS_DIR) -> dict:
    """``env`` with the start shims first on ``PYTHONPATH``."""
    rest = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{shims}:{rest}" if rest else str(shims)
    return env


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def wait_listening(host: str, port: int, alive: Callable[[], Awaitable[bool]], timeout: float,
                         interval: float = 0.05) -> None:
    """Until ``host:port`` accepts a connection. Raises RuntimeError when ``alive()`` says the
    server ended first, TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(accepts, host, port):
        if not await alive():
            raise RuntimeError(f"the workspace's server ended before it listened on {host}:{port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workspace's server did not listen on {host}:{port} within {timeout:g} s")
        await asyncio.sleep(interval)


@dataclass(order=True)
class _Place:
    key: tuple
    seq: int
    turn: asyncio.Future = field(compare=False)


class StartLine:
    """At most ``width`` starts at a time; the others wait, lowest key first (then in arrival
    order). One line per hub process (all its spawners share the machine)."""

    def __init__(self, width: int):
        self.width = max(1, width)
        self.starting = 0
        self._waiting: list[_Place] = []
        self._seq = itertools.count()

    def ahead_of(self, place: _Place) -> int:
        return sum(1 for other in self._waiting if other < place and not other.turn.done())

    async def enter(self, key: tuple, on_wait: Callable[[int], None] = lambda ahead: None,
                    report_every: float = 1.0) -> None:
        """Returns when it is this start's turn; ``on_wait(ahead)`` is called when the place
        is taken and whenever the number ahead changes."""
        if self.starting < self.width and not self._waiting:
            self.starting += 1
            return
        place = _Place(key, next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, place)
        told = None
        try:
            while not place.turn.done():
                ahead = self.ahead_of(place)
                if ahead != told:
                    on_wait(ahead)
                    told = ahead
                await asyncio.wait([place.turn], timeout=report_every)
        except BaseException:
            if place.turn.done() and not place.turn.cancelled():
                self._hand_on()  # its turn came as it left: pass it on
            else:
                place.turn.cancel()
                self._drop_cancelled()
            raise

    def leave(self) -> None:
        self._hand_on()

    def _hand_on(self) -> None:
        self._drop_cancelled()
        if self._waiting:
            heapq.heappop(self._waiting).turn.set_result(None)  # the turn passes on; ``starting`` stays
        else:
            self.starting -= 1

    def _drop_cancelled(self) -> None:
        kept = [p for p in self._waiting if not p.turn.cancelled()]
        if len(kept) != len(self._waiting):
            self._waiting = kept
            heapq.heapify(self._waiting)


_LINES: dict[int, StartLine] = {}


def start_line(width: int) -> StartLine:
    return _LINES.setdefault(width, StartLine(width))


class LinedStart(LoggingConfigurable):
    """The start line in front of any backend (spawner/backends.py, spawner/docker.py,
    spawner/kubernetes.py): more students starting at once than ``concurrent_starts`` wait their
    turn, in the quota step's order (``start_priority``), instead of JupyterHub's 429."""

    concurrent_starts = Integer(
        help="""How many workspaces start at the same time; more wait in line (in the allocator's
        order: see ``start_priority``) and the waiting page tells each how many are ahead. 0 = no
        line. Defaults: the number of CPU cores for local workspaces and Docker containers (a
        JupyterLab start is CPU-bound, so starting more at once only makes every one of them later),
        100 for Kubernetes pods (JupyterHub's own concurrent_spawn_limit: the cluster's nodes start
        them).

        Example::

            c.LocalQuotaSpawner.concurrent_starts = 4
        """,
    ).tag(config=True)

    @default("concurrent_starts")
    def _one_per_core(self):
        return os.cpu_count() or 2

    def start_priority(self) -> tuple:
        """This start's key in the line: lower goes first (the quota step gives its school's)."""
        return ()

    def _line_wait_message(self, ahead: int) -> None:
        report = getattr(self, "_report", None)
        message = _n("Starting your workspace: {n} student is ahead of you.",
                     "Starting your workspace: {n} students are ahead of you.", ahead)
        if report is not None:
            report(62, message)
        else:
            self.log.info("%s: %s", self.user.name, message)

    async def start(self):
        line = start_line(self.concurrent_starts) if self.concurrent_starts > 0 else None
        if line is not None:
            await line.enter(self.start_priority(), self._line_wait_message)
        try:
            return await self._start_in_turn()
        finally:
            if line is not None:
                line.leave()

    async def _start_in_turn(self):
        """The backend's own start (the class after this one), once it is this start's turn."""
        return await super().start()


class LightStart(LinedStart):
    """The start line and a lighter start, mixed in front of the sandboxed local spawner
    (spawner/backends.py)."""

    server_extensions = Dict(
        SKIPPED_SERVER_EXTENSIONS,
        help="""Server extensions switched on (True) or off (False) in every workspace, over the
        environment's own Jupyter config. Off by default: ``jupyter_lsp`` (no language server is
        installed for students) and ``notebook_shim`` (extensions of the classic Notebook).

        Example::

            c.LocalQuotaSpawner.server_extensions = {"jupyter_lsp": True, "notebook_shim": False}
        """,
    ).tag(config=True)

    wait_for_listen = Bool(
        True,
        help="""Return from ``start()`` only once the workspace's server listens (checked every
        ``listen_check_interval``), so the hub's first readiness check finds it instead of a
        backed-off later one. Off: return once the process runs (JupyterHub's own behaviour).""",
    ).tag(config=True)

    lab_extension_manager = Unicode(
        "readonly",
        help="""JupyterLab's extension manager in every workspace (``c.LabApp.extension_manager``):
        "readonly" lists the installed extensions; JupyterLab's default, "pypi", also builds an
        HTTPS client for PyPI at every start to offer installs, which cannot work in a workspace
        (its Python environment is read-only and it reaches no outside network). Empty: the
        environment's own setting.

        Example::

            c.LocalQuotaSpawner.lab_extension_manager = "pypi"
        """,
    ).tag(config=True)

    defer_hub_imports = Bool(
        True,
        help="""Start the workspace's server with ``python -m light_singleuser``
        (spawner/start_shims/light_singleuser.py): ``jupyterhub-singleuser`` without running the
        hub's own handlers, ORM, SQLAlchemy and Alembic, which its modules import but a single-user
        server never uses (about 0.3 CPU-seconds of each start). Where the installed JupyterHub does
        not import them as that module expects, the server imports them as usual and says so in the
        hub log. Off: ``jupyterhub-singleuser`` itself. Ignored when ``cmd`` is set.

        Example::

            c.LocalQuotaSpawner.defer_hub_imports = False
        """,
    ).tag(config=True)

    listen_check_interval = Float(
        0.05,
        help="Seconds between two checks, while a workspace starts, whether its server listens yet.",
    ).tag(config=True)

    @default("cmd")
    def _light_singleuser(self):
        if self.defer_hub_imports:
            return [sys.executable, "-m", LIGHT_SINGLEUSER]
        return super()._singleuser_in_this_environment()

    @default("args")
    def _light_args(self):
        lab = [f"--LabApp.extension_manager={self.lab_extension_manager}"] if self.lab_extension_manager else []
        return server_extension_args(self.server_extensions) + lab

    async def _start_in_turn(self):
        host, port = await super()._start_in_turn()
        if self.wait_for_listen:
            await wait_listening(host, port, self._still_running, self.http_timeout, self.listen_check_interval)
        return host, port

    async def _still_running(self) -> bool:
        proc = getattr(self, "proc", None)  # LocalProcessSpawner's Popen
        return proc.poll() is None if proc is not None else await self.poll() is None

    @default("read_only_paths")
    def _prefixes_and_shims(self):
        return [*super()._python_prefixes(), str(SHIMS_DIR)]

    def user_env(self, env):
        return with_shims(super().user_env(env))
