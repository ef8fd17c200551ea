"""Jupyter Server extension: tells JupyterLab when the workspace's GPU lease ends.

The spawner puts the lease's end and the warning times in the environment; this extension
serves them at ``<server>/gpu-commons/lease`` for the JupyterLab plugin (labextension/),
which warns the student and saves open documents before the hub stops the server. The
same times are written to the server log.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

DEFAULT_WARNINGS = (600, 120)  # ten and two minutes before the end
SAVE_BEFORE_SECONDS = 30  # open documents are saved this long before the end


@dataclass(frozen=True)
class LeaseEnd:
    expires_at: datetime | None
    warnings_seconds: tuple[int, ...] = DEFAULT_WARNINGS
    lease_id: str = ""
    profile: str = ""

    @classmethod
    def from_environment(cls, env=os.environ) -> "LeaseEnd":
        expires = env.get("GPU_COMMONS_LEASE_EXPIRES_AT", "")
        raw = env.get("GPU_COMMONS_LEASE_WARNINGS", "")
        warnings = tuple(sorted({int(float(w)) for w in raw.split(",") if w.strip()}, reverse=True)) if raw else DEFAULT_WARNINGS
        return cls(
            expires_at=datetime.fromisoformat(expires) if expires else None,
            warnings_seconds=warnings,
            lease_id=env.get("GPU_COMMONS_LEASE_ID", ""),
            profile=env.get("GPU_COMMONS_PROFILE", ""),
        )

    def warning_times(self) -> list[tuple[datetime, int]]:
        """When each warning is due, with the seconds left then, earliest first."""
        if self.expires_at is None:
            return []
        return [(self.expires_at - timedelta(seconds=s), s) for s in sorted(self.warnings_seconds, reverse=True)]

    def as_json(self, now: datetime) -> dict:
        return {
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "now": now.isoformat(),
            "warnings_seconds": list(self.warnings_seconds),
            "save_before_seconds": SAVE_BEFORE_SECONDS,
            "lease_id": self.lease_id,
            "profile": self.profile,
        }


class LeaseHandler(APIHandler):
    @web.authenticated
    def get(self):
        lease: LeaseEnd = self.settings["gpu_commons_lease"]
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(lease.as_json(datetime.now(timezone.utc))))


async def _log_warnings(lease: LeaseEnd, log) -> None:
    for when, seconds in lease.warning_times():
        delay = (when - datetime.now(timezone.utc)).total_seconds()
        if delay < 0:
            continue
        await asyncio.sleep(delay)
        log.warning("GPU lease %s ends in %d s (at %s); the server will be stopped then", lease.lease_id, seconds,
                    lease.expires_at.isoformat())


def _jupyter_server_extension_points():
    return [{"module": "gpu_commons_workspace"}]


def _load_jupyter_server_extension(serverapp):
    lease = LeaseEnd.from_environment()
    web_app = serverapp.web_app
    web_app.settings["gpu_commons_lease"] = lease
    route = url_path_join(web_app.settings["base_url"], "gpu-commons", "lease")
    web_app.add_handlers(".*$", [(route, LeaseHandler)])
    if lease.expires_at:
        serverapp.log.info("GPU lease %s ends at %s; warnings %s s before", lease.lease_id,
                           lease.expires_at.isoformat(), list(lease.warnings_seconds))
        serverapp.io_loop.add_callback(_log_warnings, lease, serverapp.log)
