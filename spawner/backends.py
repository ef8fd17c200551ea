"""The spawners an operator can choose: the quota step in front of each backend.

The container backends live beside it, so their clients are needed only where they are used
(``pip install gpu-commons[docker]`` / ``[kubernetes]``); docs/backends.md compares them:

- ``spawner.docker.DockerQuotaSpawner``: containers on the pools' Docker hosts;
- ``spawner.kubernetes.KubeQuotaSpawner``: pods on the pools' nodes of a Kubernetes cluster.
"""

from spawner.local import SandboxedLocalSpawner
from spawner.quota import QuotaSpawnerMixin
from spawner.specs import Resources


class LocalQuotaSpawner(QuotaSpawnerMixin, SandboxedLocalSpawner):
    """Sandboxed local JupyterLab processes on this GPU server, each behind a lease (the embedded default)."""

    def workspace_resources(self) -> Resources:
        # The limits of the granted profile (after a hub restart, when the lease is not at hand: the hub's).
        lease = self._lease
        return self.resources_for(self.alliance.profile(lease.profile) if lease else None)
