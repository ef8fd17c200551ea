"""How often the student opened each library entry, counted where the opening happens.

An opening is a click on the catalogue page's "open in a notebook" (``OpenEntry`` in
library.py): this server counts it and serves the counts at ``GET <server>/gpu-commons/library/opens``
(its own JupyterHub token). The hub's spawner collects them while the workspace runs and
before it stops (spawner/library.py) and reports them to the quota service, which attributes
them to the student's classes from the alliance file. So the counts need no way out of the
workspace (its network may reach nothing but the hub, docs/security.md), and nothing reads the
student's files: a notebook they reopen later, or code that reads /srv/library directly, is
not counted (docs/library.md, "Usage").
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LibraryUsage:
    log: object = None
    opened_here: Counter = field(default_factory=Counter)  # every opening in this server's life
    server_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # a restarted server counts from 0 again

    def opened(self, entry_id: str) -> None:
        self.opened_here[entry_id] += 1
        if self.log is not None:
            self.log.info("library: %s opened (%d in this workspace)", entry_id, self.opened_here[entry_id])
