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
from pathlib import Path

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from quota.alliance import Alliance
from spawner.specs import LIBRARY_PATH


def library_env(alliance: Alliance, account: str) -> dict[str, str]:
    """What the workspace extension needs: the mount point, the entries attached to the
    student's classes (id -> path below the mount) and those classes (for the usage counts)."""
    attached = {entry.id: entry.path for entry in alliance.attached_library(account)}
    return {
        "GPU_COMMONS_LIBRARY": LIBRARY_PATH,
        "GPU_COMMONS_LIBRARY_ATTACHED": json.dumps(attached, sort_keys=True),
        "GPU_COMMONS_CLASSES": ",".join(alliance.classes_of(account)),
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
