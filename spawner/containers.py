"""What the container backends share: the image of a profile and the lease being started.

Mixed in after :class:`spawner.quota.QuotaSpawnerMixin` and before KubeSpawner or
DockerSpawner, so the lease is known when the backend builds its pod or container.
"""

from __future__ import annotations

from traitlets import Dict, Unicode

from quota.alliance import Profile
from spawner.limits import WorkspaceLimits
from spawner.pools import gpu_share
from spawner.quota_client import Lease
from spawner.sharing import shared_pool


class ContainerWorkspaceMixin(WorkspaceLimits):
    cpu_image = Unicode(
        "gpu-commons/workspace-cpu:latest",
        help="""Image of profiles without a GPU (built from images/workspace-cpu).

        Example::

            c.DockerQuotaSpawner.cpu_image = "registry.example.edu.cn/gpu-commons/workspace-cpu:1.0"
        """,
    ).tag(config=True)

    gpu_image = Unicode(
        "gpu-commons/workspace-gpu:latest",
        help="""Image of GPU profiles (built from images/workspace-gpu: PyTorch with CUDA).

        Example::

            c.KubeQuotaSpawner.gpu_image = "registry.example.edu.cn/gpu-commons/workspace-gpu:1.0"
        """,
    ).tag(config=True)

    profile_images = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="""Image per profile id, for profiles that need other software than cpu_image / gpu_image.

        Example::

            c.KubeQuotaSpawner.profile_images = {"gpu-whole": "registry.example.edu.cn/gpu-commons/llm:1.0"}
        """,
    ).tag(config=True)

    cpu_pool = Unicode(
        "",
        help="""Pool (a key of ``pools``) of workspaces whose lease names none: the CPU profiles.
        Empty = the first pool in ``pools``.

        Example::

            c.DockerQuotaSpawner.cpu_pool = "uni-b"
        """,
    ).tag(config=True)

    # The pool of the running workspace, kept in the hub's state: after a hub restart, poll()
    # and stop() must still reach the host or namespace it runs on.
    pool_id = Unicode("")

    def granted(self) -> tuple[Lease, Profile]:
        """The lease this start runs under (granted by the quota step) and its profile."""
        lease = self._lease
        if lease is None:
            raise RuntimeError(f"{type(self).__name__} must be mixed in after QuotaSpawnerMixin")
        return lease, self.alliance.profile(lease.profile)

    def pool_of(self, lease: Lease) -> str:
        return lease.pool or self.cpu_pool or next(iter(self.pools), "")

    def gpu_share_of(self, lease: Lease):
        """The lease's GPU unit in its pool's terms (a shared GPU's with the student's cap)."""
        setting = f"c.{type(self).__name__}.pools"
        return gpu_share(lease, self.pool_settings(self.pool_of(lease)), setting, shared_pool(self.alliance, lease.pool))

    def shared_gpu_cap(self, lease: Lease):
        share = self.gpu_share_of(lease) if lease.unit_kind == "shared" else None
        return share.cap if share else None

    def image_for(self, profile: Profile, lease: Lease) -> str:
        if profile.id in self.profile_images:
            return self.profile_images[profile.id]
        return self.gpu_image if lease.device else self.cpu_image

    def get_state(self):
        state = super().get_state()
        if self.pool_id:
            state["pool"] = self.pool_id
        return state

    def load_state(self, state):
        super().load_state(state)
        self.pool_id = state.get("pool", "")
