"""The limits of one workspace: the hub's defaults, overridden by the profile's.

Shared by every backend. The hub's settings are JupyterHub's own ``cpu_limit``,
``mem_limit``, ``cpu_guarantee`` and ``mem_guarantee`` and the three below; a profile of the
alliance file may set any of ``cpu_limit``, ``mem_limit``, ``pids_limit``, ``tmp_size`` and
``home_quota`` for its workspaces. Each backend enforces them its own way (docs/security.md):
cgroups and bubblewrap locally, the engine's limits on Docker, resources on Kubernetes.
"""

from __future__ import annotations

from jupyterhub.traitlets import ByteSpecification
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from quota.alliance import Profile
from spawner.specs import Resources, parse_bytes


class WorkspaceLimits(LoggingConfigurable):
    pids_limit = Integer(
        1024,
        min=0,
        help="""Processes and threads one workspace may run at once, unless its profile sets
        ``pids_limit``; a fork bomb stops there. 0 = no limit.

        Example::

            c.LocalQuotaSpawner.pids_limit = 1024
        """,
    ).tag(config=True)

    tmp_size = ByteSpecification(
        1024**3,
        help="""Size of a workspace's private /tmp (K, M, G, T suffixes), unless its profile sets
        ``tmp_size``. It lives in memory, so it counts toward the memory limit; a write beyond
        it fails with "No space left on device". None = no limit of its own.

        Example::

            c.LocalQuotaSpawner.tmp_size = "1G"
        """,
    ).tag(config=True)

    home_quota = ByteSpecification(
        None,
        help="""Disk space of a student's home (K, M, G, T suffixes), unless the profile sets
        ``home_quota``. The local backend keeps such a home in an ext4 image of that size,
        mounted on the home directory while the workspace runs; Kubernetes asks it as the
        home claim's size; Docker cannot enforce it. None = no quota.

        Example::

            c.LocalQuotaSpawner.home_quota = "5G"
        """,
    ).tag(config=True)

    def default_resources(self) -> Resources:
        """The hub's own settings (JupyterHub's Spawner traits and the ones above)."""
        return Resources(
            cpu_limit=self.cpu_limit,
            mem_limit=parse_bytes(self.mem_limit),
            cpu_guarantee=self.cpu_guarantee,
            mem_guarantee=parse_bytes(self.mem_guarantee),
            pids_limit=self.pids_limit or None,
            tmp_size=self.tmp_size or None,
            home_quota=self.home_quota or None,
        )

    def resources_for(self, profile: Profile | None) -> Resources:
        """The limits of a workspace of ``profile`` (None: the hub's defaults)."""
        defaults = self.default_resources()
        if profile is None:
            return defaults
        return profile_resources(profile, defaults)


def profile_resources(profile: Profile, defaults: Resources) -> Resources:
    """The profile's limits, each falling back to the hub's own."""

    def size(value: str | None, default: int | None) -> int | None:
        return parse_bytes(value) if value else default

    return Resources(
        cpu_limit=profile.cpu_limit if profile.cpu_limit is not None else defaults.cpu_limit,
        mem_limit=size(profile.mem_limit, defaults.mem_limit),
        cpu_guarantee=defaults.cpu_guarantee,
        mem_guarantee=defaults.mem_guarantee,
        pids_limit=profile.pids_limit if profile.pids_limit is not None else defaults.pids_limit,
        tmp_size=size(profile.tmp_size, defaults.tmp_size),
        home_quota=size(profile.home_quota, defaults.home_quota),
    )
