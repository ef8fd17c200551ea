"""How often the student opened each library entry, counted where the opening happens.

An opening is a click on the catalogue page's "open in a notebook" (``OpenEntry``): the server
extension counts it, then reports it to ``GPU_COMMONS_LIBRARY_USAGE_URL`` (the quota service's
``POST /api/library/opens``, with the server's own JupyterHub token), which attributes it to the
student's classes from the alliance file. Nothing reads the student's files: a notebook they
later reopen, or code that reads /srv/library directly, is not counted (docs/library.md, "Usage").
Reports that fail (the service restarting) are kept and sent again with the next ones.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

RETRY_SECONDS = 60


@dataclass
class LibraryUsage:
    url: str = ""
    token: str = ""
    log: object = None
    opened_here: Counter = field(default_factory=Counter)  # every opening in this server's life
    unsent: Counter = field(default_factory=Counter)
    _loop: object = None

    @classmethod
    def from_environment(cls, env=os.environ, log=None) -> "LibraryUsage":
        return cls(url=env.get("GPU_COMMONS_LIBRARY_USAGE_URL", "").rstrip("/"),
                   token=env.get("JUPYTERHUB_API_TOKEN", ""), log=log)

    def opened(self, entry_id: str) -> None:
        self.opened_here[entry_id] += 1
        self.unsent[entry_id] += 1
        if self.log is not None:
            self.log.info("library: %s opened (%d in this workspace)", entry_id, self.opened_here[entry_id])
        if self._loop is not None and self.url:
            self._loop.add_callback(self.send)

    def start(self, io_loop) -> None:
        self._loop = io_loop

    async def send(self) -> bool:
        """Report what is unsent; True when the service took it (or nothing was due)."""
        if not self.unsent or not self.url:
            return True
        batch = dict(self.unsent)
        request = HTTPRequest(f"{self.url}/api/library/opens", method="POST",
                              headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
                              body=json.dumps({"opens": batch}), request_timeout=10)
        try:
            await AsyncHTTPClient().fetch(request)
        except (HTTPClientError, OSError) as exc:
            if self.log is not None:
                self.log.warning("library: usage not reported (%s); sent again later", exc)
            if self._loop is not None:
                self._loop.call_later(RETRY_SECONDS, lambda: self._loop.add_callback(self.send))
            return False
        self.unsent.subtract(batch)
        self.unsent = +self.unsent
        return True
