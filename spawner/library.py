"""The alliance's library in a workspace: where it is mounted and what a student's classes attach.

The library (datasets and open models, ``library`` in the alliance file, put in place by
``gpu-commons library add``) is stored once per pool and mounted read-only at
:data:`spawner.specs.LIBRARY_PATH` in every workspace: a ``--ro-bind`` in the local sandbox
(this module's :class:`LocalLibrary`), a read-only mount on Docker and Kubernetes (the pool's
``library_*`` settings, spawner/pools.py, built by spawner/builders). The workspace extension
reads the environment made here to link a class's entries into ``~/datasets`` and to count
openings per class (docs/library.md).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
from traitlets import Dict, Float, Unicode
from traitlets.config import LoggingConfigurable

from quota.alliance import Alliance
from spawner.specs import LIBRARY_PATH


def library_env(alliance: Alliance, account: str, answer: dict | None = None) -> dict[str, str]:
    """What the workspace extension needs: the mount point, the entries attached to the
    student's classes (id -> path below the mount) and those classes (for the usage counts).
    ``answer``: the quota service's GET /api/library/attached/<account> (the file's entries and
    those teachers attached on their page); None = the hub's alliance file alone (same rule,
    quota.alliance.Alliance.attached_library, without the page's attachments)."""
    if answer is not None:
        attached, classes = dict(answer.get("entries") or {}), list(answer.get("classes") or [])
    else:
        attached = {entry.id: entry.path for entry in alliance.attached_library(account)}
        classes = alliance.classes_of(account)
    return {
        "GPU_COMMONS_LIBRARY": LIBRARY_PATH,
        "GPU_COMMONS_LIBRARY_ATTACHED": json.dumps(attached, sort_keys=True),
        "GPU_COMMONS_CLASSES": ",".join(classes),
    }


def library_binds(root: str, mount_path: str = LIBRARY_PATH) -> list[str]:
    """bwrap arguments that show ``root`` read-only at ``mount_path`` (its parents passable by
    the student's uid); none when no root is set."""
    if not root:
        return []
    binds = []
    for parent in reversed(Path(mount_path).parents[:-1]):
        binds += ["--perms", "0755", "--dir", str(parent)]
    return binds + ["--ro-bind", root, mount_path]


class LocalLibrary(LoggingConfigurable):
    """The local backend's library root (mixed into LocalQuotaSpawner)."""

    library_root = Unicode(
        "",
        help="""Directory on this server that holds the alliance's library (datasets and open models),
        as ``gpu-commons library add --root`` fills it; bound read-only at /srv/library in every
        workspace, so no student can write or delete there. Empty = no library. ``gpu-commons hub``
        sets it to ``<data-dir>/library`` when that directory exists.

        Example::

            c.LocalQuotaSpawner.library_root = "/srv/gpu-commons/library"
        """,
    ).tag(config=True)

    def library_sandbox_binds(self) -> list[str]:
        root = self.library_root
        if root and not os.path.isdir(root):
            self.log.warning("c.LocalQuotaSpawner.library_root = %r is not a directory; workspaces start without "
                             "the library (create it with gpu-commons library add --root %s)", root, root)
            return []
        return library_binds(os.path.realpath(root) if root else "")


def new_opens(answer: dict, reported: dict) -> tuple[dict[str, int], dict]:
    """The openings a workspace counted since the last report (``reported``: what was sent of
    the same server; a restarted server counts from 0), and what will have been sent then."""
    server, counts = str(answer.get("server", "")), answer.get("opens") or {}
    before = reported.get("opens", {}) if reported.get("server") == server else {}
    fresh = {entry: int(n) - before.get(entry, 0) for entry, n in sorted(counts.items())
             if isinstance(n, int) and n > before.get(entry, 0)}
    return fresh, {"server": server, "opens": {entry: int(n) for entry, n in counts.items() if isinstance(n, int)}}


class LibraryUsageCollector(LoggingConfigurable):
    """Collects the library's openings from the running workspace (its server extension's
    ``/gpu-commons/library/opens``, with the server's own token) and reports them to the quota
    service, at most every ``library_usage_interval`` and before the server stops. Mixed into
    every quota spawner (spawner/quota.py)."""

    library_usage_interval = Float(
        60.0,
        help="""Seconds between two collections of a running workspace's library openings (at the
        hub's polls of the server, so no more often than c.Spawner.poll_interval); 0 = never
        collect, the library's usage stays unknown.

        Example::

            c.QuotaSpawnerMixin.library_usage_interval = 300
        """,
    ).tag(config=True)

    _library_reported = Dict()
    _library_collected_at = Float(0.0)

    async def collect_library_opens(self, force: bool = False) -> None:
        server = getattr(self, "server", None)
        if not self.library_usage_interval or server is None or not self.api_token:
            return
        if not force and time.monotonic() - self._library_collected_at < self.library_usage_interval:
            return
        self._library_collected_at = time.monotonic()
        url = server.url.rstrip("/") + "/gpu-commons/library/opens"
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(url, headers={"Authorization": f"token {self.api_token}"})
            response.raise_for_status()
            fresh, reported = new_opens(response.json(), self._library_reported)
        except (httpx.HTTPError, ValueError) as exc:
            self.log.debug("%s: library openings not collected: %s", self._log_name, exc)
            return
        if not fresh:
            self._library_reported = reported
            return
        try:
            await self.quota.report_library_opens(self.user.name, fresh)
        except Exception as exc:  # QuotaUnavailable, QuotaRejected: counted again at the next collection
            self.log.warning("%s: library openings not reported: %s", self._log_name, exc)
            return
        self._library_reported = reported
