"""WorkspaceSpec: one student's workspace as plain typed data, for every container backend.

The spawners fill a spec from the lease (pool, device, kind), the profile (CPU and memory
limits), the pool's settings (placement, GPU resource names, home storage) and JupyterHub
(command, environment, labels). The pure builders in ``spawner.builders`` turn it into a
Kubernetes pod or a Docker container; nothing here talks to a cluster or an engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Mapping

HOME = "/home/jovyan"
LIBRARY_PATH = "/srv/library"  # the alliance's datasets and models, read-only, in every workspace (docs/library.md)
WORKSPACE_UID = 1000  # the non-root user of every workspace image (images/*/Dockerfile)
WORKSPACE_GID = 100  # the 'users' group, as in the Jupyter docker-stacks


@dataclass(frozen=True)
class SharedCap:
    """One student's share of a GPU that several use at once, and how the backend holds them to it.

    ``enforcement``: ``mps`` (CUDA MPS: ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` through the control
    daemon whose pipes are in ``mps_pipe_directory``), ``hami`` (Kubernetes: HAMi's
    ``memory_resource`` / ``cores_resource``, enforced in the container) or ``soft`` (nothing can
    enforce it: the frameworks are told the cap through their own settings).
    """

    memory_mib: int  # the student's GPU memory
    gpu_memory_mib: int  # the whole GPU's, for frameworks that take a fraction
    students_per_gpu: int
    enforcement: Literal["mps", "hami", "soft"]
    compute_percent: int | None = None  # MPS active-thread percentage, HAMi gpucores; None = no cap
    mps_pipe_directory: str = ""
    memory_resource: str = "nvidia.com/gpumem"  # HAMi: MiB of GPU memory
    cores_resource: str = "nvidia.com/gpucores"  # HAMi: percent of the GPU's compute


@dataclass(frozen=True)
class GpuShare:
    """The GPU unit a lease granted: one whole GPU, one slice (MIG) of one, or one student's
    share of a GPU several students use at once (``shared``, with its ``cap``).

    ``device`` is the lease's device id (a GPU index or UUID, or a MIG device UUID).
    ``resource`` is the Kubernetes extended resource that stands for one such unit
    (``nvidia.com/gpu``, ``nvidia.com/mig-1g.10gb``, a time-sliced ``nvidia.com/gpu.shared``);
    ``product`` the GPU model the node must carry (node label ``nvidia.com/gpu.product``, empty =
    any); ``driver`` the Docker device-request driver.
    """

    device: str
    kind: Literal["whole", "slice", "shared"]
    resource: str = "nvidia.com/gpu"
    product: str = ""
    driver: str = "nvidia"
    cap: SharedCap | None = None  # set for kind "shared"


@dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration, so the workspace may run on a pool's tainted GPU nodes."""

    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""


@dataclass(frozen=True)
class NodeRequirement:
    """One ``requiredDuringScheduling`` node-affinity expression (all of them must hold)."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where the pool is: a namespace and nodes of a cluster, or a Docker host."""

    pool: str
    namespace: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    node_requirements: tuple[NodeRequirement, ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    network: str = "host"  # Docker: "host", or a network whose port is published on host_ip
    host_ip: str = "127.0.0.1"  # Docker: where the hub reaches the workspace


@dataclass(frozen=True)
class HomeVolume:
    """The student's persistent home: a PersistentVolumeClaim or a named Docker volume."""

    name: str
    mount_path: str = HOME
    size: str = "10Gi"
    storage_class: str = ""  # Kubernetes; empty = the cluster's default class
    access_mode: str = "ReadWriteOnce"
    driver: str = "local"  # Docker volume driver
    driver_options: Mapping[str, str] = field(default_factory=dict)  # e.g. NFS: type, o, device
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LibraryVolume:
    """The alliance's library of datasets and models, mounted read-only at ``mount_path``.

    Exactly one source: ``host_path`` (a directory of the Docker host or Kubernetes node),
    ``claim`` (a Kubernetes ReadOnlyMany PersistentVolumeClaim) or ``volume`` (a named Docker volume).
    """

    host_path: str = ""
    claim: str = ""
    volume: str = ""
    mount_path: str = LIBRARY_PATH

    def __post_init__(self):
        if sum(bool(source) for source in (self.host_path, self.claim, self.volume)) != 1:
            raise ValueError("a library volume needs exactly one of host_path, claim or volume")


@dataclass(frozen=True)
class Resources:
    """What one workspace may use: CPU in cores, sizes in bytes; None = no limit (or no guarantee)."""

    cpu_limit: float | None = None
    mem_limit: int | None = None
    cpu_guarantee: float | None = None
    mem_guarantee: int | None = None
    pids_limit: int | None = None  # processes and threads at once
    tmp_size: int | None = None  # the private /tmp
    home_quota: int | None = None  # the student's home


@dataclass(frozen=True)
class WorkspaceSpec:
    name: str  # pod or container name
    user: str
    lease_id: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    placement: Placement
    home: HomeVolume
    resources: Resources = Resources()
    gpu: GpuShare | None = None
    library: LibraryVolume | None = None  # the alliance's datasets and models, read-only
    port: int = 8888
    uid: int = WORKSPACE_UID
    gid: int = WORKSPACE_GID
    image_pull_policy: Literal["", "IfNotPresent", "Always", "Never"] = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    stop_grace_seconds: int = 30  # time for the server to shut down its kernels after SIGTERM


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_bytes(value: str | int | None) -> int | None:
    """'4G', '4Gi', '512M' or a number of bytes -> bytes (K, M, G, T are powers of 1024,
    as in JupyterHub's ``mem_limit``)."""
    if value is None or isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size; write e.g. 512M, 4G or 4Gi")
    number, unit = match.groups()
    return int(float(number) * _FACTORS[(unit or "")[:1].upper()])


def quantity(num_bytes: int) -> str:
    """Bytes as a Kubernetes quantity, in the largest binary unit that divides them."""
    for suffix, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if num_bytes % factor == 0:
            return f"{num_bytes // factor}{suffix}"
    return str(num_bytes)


def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes quantity: whole cores as a number, the rest in millicores."""
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


# Set for local processes by the quota step; in a container the runtime exposes the device
# itself, and a host-side index or UUID there would hide it from CUDA.
HOST_DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
