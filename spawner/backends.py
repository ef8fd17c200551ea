"""The spawners an operator can choose: the quota step in front of each backend.

The container backends live beside it, so their clients are needed only where they are used
(``pip install gpu-commons[docker]`` / ``[kubernetes]``); docs/backends.md compares them:

- ``spawner.docker.DockerQuotaSpawner``: containers on the pools' Docker hosts;
- ``spawner.kubernetes.KubeQuotaSpawner``: pods on the pools' nodes of a Kubernetes cluster.
"""

from pathlib import Path

from traitlets import Unicode

from spawner.library import LocalLibrary
from spawner.light_start import LightStart
from spawner.local import SandboxedLocalSpawner
from spawner.prestart import PrestartedWorkspace
from spawner.quota import QuotaSpawnerMixin
from spawner.sharing import cap_env, cap_for, mps_daemon_runs, shared_pool
from spawner.specs import Resources, SharedCap


class LocalQuotaSpawner(PrestartedWorkspace, QuotaSpawnerMixin, LightStart, LocalLibrary, SandboxedLocalSpawner):
    """Sandboxed local JupyterLab processes on this GPU server, each behind a lease (the embedded default)."""

    mps_pipe_directory = Unicode(
        "",
        help="""Pipe directory of this server's CUDA MPS control daemon (its ``CUDA_MPS_PIPE_DIRECTORY``),
        for pools whose GPUs are shared (the alliance file's ``shared``). Where the daemon runs (its
        ``control`` pipe is there), a workspace on a shared GPU reaches it (the directory and
        /dev/shm are bound into the sandbox, which then keeps the host's IPC namespace) and MPS caps
        its GPU memory (``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``); elsewhere, and when empty, the cap is
        soft: only the frameworks' own settings. MPS runs one server per Unix user at a time and every
        local workspace has its own uid, so two students' CUDA programs do not run on the GPU at the
        same moment: one waits until the other's have ended (docs/backends.md, "Shared GPUs").

        Example::

            c.LocalQuotaSpawner.mps_pipe_directory = "/tmp/nvidia-mps"
        """,
    ).tag(config=True)

    def shared_gpu_cap(self, lease) -> SharedCap | None:
        pool = shared_pool(self.alliance, lease.pool) if lease.unit_kind == "shared" else None
        if pool is None:
            return None
        directory = self.mps_pipe_directory if mps_daemon_runs(self.mps_pipe_directory) else ""
        return cap_for(pool, "mps" if directory else "soft", directory)

    def sandbox_command(self, resources: Resources | None = None) -> list[str]:
        command = super().sandbox_command(resources)
        end = command.index("--")  # the alliance's library, read-only (spawner/library.py)
        command = command[:end] + self.library_sandbox_binds() + command[end:]
        cap = self.shared_gpu_cap(self._lease) if self._lease is not None else None
        if cap is None or cap.enforcement != "mps":
            return command
        # MPS clients talk to the daemon through its pipes and shared memory, as containers do with --ipc=host
        command = [part for part in command if part != "--unshare-ipc"]
        end = command.index("--")
        binds = []
        for parent in reversed(Path(cap.mps_pipe_directory).parents[:-1]):  # let the student's uid pass through
            if str(parent) != "/tmp":  # the sandbox's own /tmp keeps its 1777
                binds += ["--perms", "0755", "--dir", str(parent)]
        binds += ["--bind", cap.mps_pipe_directory, cap.mps_pipe_directory, "--bind", "/dev/shm", "/dev/shm"]
        return command[:end] + binds + command[end:]

    def workspace_lease_id(self) -> str:
        return self.lease_id  # kept in the state, so also after a hub restart

    def get_env(self):
        env = super().get_env()
        cap = self.shared_gpu_cap(self._lease) if self._lease is not None else None
        if cap is not None:  # a shared GPU: the student's memory cap (MPS's settings, or the frameworks')
            env.update(cap_env(cap))
        # Last, after the quota step added its URL: the URLs the workspace reaches through its gates.
        return self.env_inside(env)

    def workspace_resources(self) -> Resources:
        # The limits of the granted profile (after a hub restart, when the lease is not at hand: the hub's).
        lease = self._lease
        return self.resources_for(self.alliance.profile(lease.profile) if lease else None)
