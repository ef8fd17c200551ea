"""Where each pool of the alliance lives, as the operator configures it for a backend.

The alliance file says what a pool *has* (GPUs, slices); the hub's configuration says how to
*reach* it: a namespace and nodes of the Kubernetes cluster, or a Docker host. A lease names
its pool, and the spawner looks the pool up here::

    c.KubeQuotaSpawner.pools = {"uni-a": {"node_selector": {"gpu-commons/pool": "uni-a"},
                                         "slice_resource": "nvidia.com/mig-1g.10gb"}}
    c.DockerQuotaSpawner.pools = {"uni-b": {"docker_url": "tcp://gpu1.uni-b.edu.cn:2376"}}

Mistakes are reported with the setting's full name, the pool and what to write instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quota.alliance import Pool
from spawner.quota_client import Lease
from spawner.sharing import cap_for, mps_daemon_runs
from spawner.specs import GpuShare, LibraryVolume, NodeRequirement, Toleration


class PoolConfigError(ValueError):
    """A mistake in the hub's pool settings, phrased for the operator."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TolerationModel(_Strict):
    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""


class _RequirementModel(_Strict):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = []


class KubePool(_Strict):
    """A pool as nodes of the Kubernetes cluster the hub talks to."""

    namespace: str = Field("", description="Namespace of this pool's workspaces; empty = the spawner's namespace.")
    node_selector: dict[str, str] = Field({}, description="Node labels that pick this pool's nodes.")
    node_affinity: list[_RequirementModel] = Field([], description="Further required node-affinity expressions.")
    tolerations: list[_TolerationModel] = Field([], description="Taints of this pool's GPU nodes to tolerate.")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource of one whole GPU.")
    slice_resource: str = Field(
        "", description="Extended resource of one GPU slice, e.g. nvidia.com/mig-1g.10gb (MIG 'mixed' strategy)."
    )
    gpu_product: str = Field("", description="Value of the node label nvidia.com/gpu.product; empty = any model.")
    gpu_sharing: Literal["time-slicing", "hami"] = Field(
        "time-slicing",
        description="How the cluster shares the GPUs of a pool with shared GPUs (alliance file: the pool's shared): "
        "time-slicing = the NVIDIA device plugin's time-slicing replicas (one shared_resource each; no memory "
        "isolation, so the cap is only the frameworks' settings); hami = HAMi (nvidia.com/gpu: 1 with "
        "hami_memory_resource MiB, enforced in the container).",
    )
    shared_resource: str = Field(
        "nvidia.com/gpu",
        description="Extended resource of one time-sliced share: nvidia.com/gpu, or nvidia.com/gpu.shared where the "
        "device plugin's time-slicing config sets renameByDefault: true.",
    )
    hami_memory_resource: str = Field("nvidia.com/gpumem", description="HAMi's resource of GPU memory, in MiB.")
    hami_cores_resource: str = Field("nvidia.com/gpucores", description="HAMi's resource of GPU compute, in percent.")
    storage_class: str = Field("", description="StorageClass of the students' home claims; empty = cluster default.")
    home_size: str = Field("10Gi", description="Size of each student's home claim.")
    library_claim: str = Field(
        "", description="ReadOnlyMany PersistentVolumeClaim in the pool's namespace holding the alliance's library "
        "(helm: library.existingClaim), mounted read-only at /srv/library; empty = library_host_path, or none.",
    )
    library_host_path: str = Field(
        "", description="Directory of every node of the pool holding the library (a node volume), mounted read-only "
        "at /srv/library when library_claim is empty; empty = no library.",
    )


WORKSPACE_NETWORK = "gpu-commons-workspaces"


class DockerPool(_Strict):
    """A pool as a Docker host."""

    docker_url: str = Field(
        "unix:///var/run/docker.sock", description="Docker API of the host: unix:///path or tcp://host:2376."
    )
    tls: dict[str, str | bool] = Field({}, description="docker.tls.TLSConfig arguments (client_cert, ca_cert, verify).")
    host_ip: str = Field("127.0.0.1", description="Address at which the hub reaches workspaces on this host.")
    network: str = Field(
        WORKSPACE_NETWORK,
        description=f"Docker network of the workspaces. The default, {WORKSPACE_NETWORK}, is a bridge the spawner makes "
        "on the host when it is missing, with container-to-container traffic off (docs/security.md, 'Workspace "
        "network'); another name must exist on the host. 'host' (each workspace on its own port of the host's "
        "network, sharing it) needs allow_host_network.",
    )
    allow_host_network: bool = Field(
        False,
        description="Let network be 'host': workspaces then share the host's network, reach every port of it and of "
        "each other and can listen on its addresses. Only for engines without a bridge (the tests' engine).",
    )
    gpu_driver: str = Field("nvidia", description="Device-request driver of the host's GPUs.")
    mps_pipe_directory: str = Field(
        "",
        description="Pipe directory of the host's CUDA MPS control daemon (its CUDA_MPS_PIPE_DIRECTORY, e.g. "
        "/tmp/nvidia-mps) for a pool with shared GPUs: workspaces then get their memory cap through MPS (the "
        "directory is mounted and the container shares the host's IPC namespace, as MPS needs). On a local Docker "
        "socket the daemon's control pipe must be there, else the cap is soft; empty = no MPS, a soft cap.",
    )
    volume_driver: str = Field("local", description="Driver of the students' home volumes.")
    volume_options: dict[str, str] = Field(
        {}, description="Driver options of the home volumes, e.g. NFS: {type: nfs, o: 'addr=…,rw', device: ':/homes'}."
    )
    timeout: float = Field(30, gt=0, description="Seconds to wait for one answer of the Docker API.")
    library_host_path: str = Field(
        "", description="Directory of the host holding the alliance's library (gpu-commons library add --root), "
        "bound read-only at /srv/library in every workspace; empty = library_volume, or none.",
    )
    library_volume: str = Field(
        "", description="Named Docker volume holding the library, mounted read-only at /srv/library when "
        "library_host_path is empty; empty = no library.",
    )

    @model_validator(mode="after")
    def _no_host_network_unless_allowed(self):
        if self.network == "host" and not self.allow_host_network:
            raise ValueError("network 'host' puts every workspace on the host's network (it reaches every port of the "
                             f"host and of the other workspaces); leave network at {WORKSPACE_NETWORK!r} or set "
                             "allow_host_network: true (engines without a bridge only)")
        return self


def library_volume(pool: KubePool | DockerPool) -> LibraryVolume | None:
    """Where the pool keeps the alliance's library, as the builders mount it (None: no library)."""
    if isinstance(pool, KubePool):
        if pool.library_claim:
            return LibraryVolume(claim=pool.library_claim)
        return LibraryVolume(host_path=pool.library_host_path) if pool.library_host_path else None
    if pool.library_host_path:
        return LibraryVolume(host_path=pool.library_host_path)
    return LibraryVolume(volume=pool.library_volume) if pool.library_volume else None


def parse_pools(raw: dict, model: type[_Strict], setting: str) -> dict[str, _Strict]:
    pools = {}
    for name, value in (raw or {}).items():
        try:
            pools[name] = model.model_validate(value or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}" for error in exc.errors()
            )
            raise PoolConfigError(f"{setting}[{name!r}] is not valid: {problems}") from None
    return pools


def gpu_share(lease: Lease, pool: KubePool | DockerPool, setting: str, alliance_pool: Pool | None = None) -> GpuShare | None:
    """The GPU unit of a granted lease, in the pool's terms; None for a CPU lease. A share of a
    shared GPU needs the pool as the alliance file declares it (``alliance_pool``: its cap)."""
    if not lease.device:
        return None
    if lease.unit_kind == "shared":
        return _shared_share(lease, pool, setting, alliance_pool)
    kind = "slice" if lease.unit_kind == "slice" else "whole"
    if isinstance(pool, DockerPool):
        return GpuShare(device=lease.device, kind=kind, driver=pool.gpu_driver)
    resource = pool.gpu_resource
    if kind == "slice":
        if not pool.slice_resource:
            raise PoolConfigError(
                f"{setting}[{lease.pool!r}].slice_resource is not set, but the quota service granted a GPU slice "
                "there; set it to the cluster's MIG resource, e.g. nvidia.com/mig-1g.10gb"
            )
        resource = pool.slice_resource
    return GpuShare(device=lease.device, kind=kind, resource=resource, product=pool.gpu_product)


def docker_mps_directory(pool: DockerPool) -> str:
    """The MPS pipe directory workspaces on this Docker host use, or "" (a soft cap): the
    setting, checked for a running daemon where the host is this machine (a unix socket)."""
    if not pool.mps_pipe_directory:
        return ""
    if pool.docker_url.startswith("unix://") and not mps_daemon_runs(pool.mps_pipe_directory):
        return ""
    return pool.mps_pipe_directory


def _shared_share(lease: Lease, pool: KubePool | DockerPool, setting: str, alliance_pool: Pool | None) -> GpuShare:
    if alliance_pool is None or alliance_pool.shared is None:
        raise PoolConfigError(
            f"the quota service granted a share of a shared GPU on pool {lease.pool!r}, but the alliance file the hub "
            "reads does not declare that pool with shared; give the hub and the quota service the same alliance file"
        )
    if isinstance(pool, DockerPool):
        directory = docker_mps_directory(pool)
        cap = cap_for(alliance_pool, "mps" if directory else "soft", directory)
        return GpuShare(device=lease.device, kind="shared", driver=pool.gpu_driver, cap=cap)
    if pool.gpu_sharing == "hami":
        cap = cap_for(alliance_pool, "hami", memory_resource=pool.hami_memory_resource,
                      cores_resource=pool.hami_cores_resource)
        return GpuShare(device=lease.device, kind="shared", resource=pool.gpu_resource, product=pool.gpu_product,
                        cap=cap)
    return GpuShare(device=lease.device, kind="shared", resource=pool.shared_resource, product=pool.gpu_product,
                    cap=cap_for(alliance_pool, "soft"))


def tolerations(pool: KubePool) -> tuple[Toleration, ...]:
    return tuple(Toleration(**t.model_dump()) for t in pool.tolerations)


def node_requirements(pool: KubePool) -> tuple[NodeRequirement, ...]:
    return tuple(NodeRequirement(r.key, r.operator, tuple(r.values)) for r in pool.node_affinity)
