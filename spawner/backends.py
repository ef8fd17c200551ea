"""The spawners an operator can choose: the quota step in front of each backend."""

from spawner.local import SandboxedLocalSpawner
from spawner.quota import QuotaSpawnerMixin


class LocalQuotaSpawner(QuotaSpawnerMixin, SandboxedLocalSpawner):
    """Sandboxed local JupyterLab processes on this GPU server, each behind a lease (the embedded default)."""
