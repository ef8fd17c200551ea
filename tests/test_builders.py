"""The pure builders: a WorkspaceSpec in, the whole Kubernetes or Docker object out; and the
spec's GPU share from a lease and a pool's settings."""

from __future__ import annotations

import os
from dataclasses import replace

import kubernetes_validate
import pytest

from quota.alliance import parse_alliance
from spawner.builders.docker import build_container
from spawner.builders.kubernetes import PodProblem, build_home_claim, build_pod, diagnose_pod
from spawner.failures import docker_failure_kind
from spawner.pools import DockerPool, KubePool, PoolConfigError, gpu_share, library_volume, parse_pools
from spawner.quota_client import Lease
from spawner.specs import (
    GpuShare,
    HomeVolume,
    LibraryVolume,
    NodeRequirement,
    Placement,
    Resources,
    SharedCap,
    Toleration,
    WorkspaceSpec,
    cpu_quantity,
    parse_bytes,
    quantity,
)

SLICE = GpuShare(device="MIG-4f7c-1-0", kind="slice", resource="nvidia.com/mig-1g.10gb", product="NVIDIA-A100-80GB")

BASE = WorkspaceSpec(
    name="jupyter-c01-s1",
    user="c01-s1",
    lease_id="l-42",
    image="gpu-commons/workspace-gpu:1.0",
    command=("jupyterhub-singleuser",),
    env={"JUPYTERHUB_API_TOKEN": "t0k", "CUDA_VISIBLE_DEVICES": "MIG-4f7c-1-0", "NVIDIA_VISIBLE_DEVICES": "MIG-4f7c-1-0"},
    placement=Placement(
        pool="uni-a",
        namespace="gpu-uni-a",
        node_selector={"gpu-commons/pool": "uni-a"},
        node_requirements=(NodeRequirement("topology.kubernetes.io/zone", "In", ("zone-1", "zone-2")),),
        tolerations=(Toleration("nvidia.com/gpu", effect="NoSchedule"),),
    ),
    home=HomeVolume(name="claim-c01-s1", size="5Gi", storage_class="nfs", labels={"app": "jupyterhub"}),
    resources=Resources(cpu_limit=2, mem_limit=4 * 1024**3, cpu_guarantee=0.5, mem_guarantee=1024**3,
                        pids_limit=512, tmp_size=1024**3, home_quota=5 * 1024**3),
    gpu=SLICE,
    labels={"app": "jupyterhub", "component": "singleuser-server"},
    annotations={"hub.jupyter.org/username": "c01-s1"},
)


def test_pod_for_a_gpu_slice_lease():
    assert build_pod(BASE) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "jupyter-c01-s1",
            "namespace": "gpu-uni-a",
            "labels": {
                "app": "jupyterhub",
                "component": "singleuser-server",
                "gpu-commons/gpu": "slice",
                "gpu-commons/pool": "uni-a",
            },
            "annotations": {
                "gpu-commons/device": "MIG-4f7c-1-0",
                "gpu-commons/lease": "l-42",
                "hub.jupyter.org/username": "c01-s1",
            },
        },
        "spec": {
            "containers": [
                {
                    "name": "notebook",
                    "image": "gpu-commons/workspace-gpu:1.0",
                    "args": ["jupyterhub-singleuser"],
                    # The device plugin sets NVIDIA_VISIBLE_DEVICES; the host's ids must not hide its unit.
                    "env": [
                        {"name": "GPU_COMMONS_DEVICE", "value": "MIG-4f7c-1-0"},
                        {"name": "JUPYTERHUB_API_TOKEN", "value": "t0k"},
                    ],
                    "ports": [{"name": "notebook-port", "containerPort": 8888}],
                    "resources": {
                        "limits": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "1Gi", "nvidia.com/mig-1g.10gb": "1"},
                        "requests": {"cpu": "500m", "memory": "1Gi"},
                    },
                    "securityContext": {
                        "runAsUser": 1000,
                        "runAsGroup": 100,
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}, {"name": "tmp", "mountPath": "/tmp"}],
                    "workingDir": "/home/jovyan",
                }
            ],
            "volumes": [
                {"name": "home", "persistentVolumeClaim": {"claimName": "claim-c01-s1"}},
                # A tmpfs of that size (ENOSPC past it), counted in the memory limit.
                {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            ],
            "securityContext": {"fsGroup": 100, "fsGroupChangePolicy": "OnRootMismatch"},
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 30,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "nodeSelector": {"gpu-commons/pool": "uni-a", "nvidia.com/gpu.product": "NVIDIA-A100-80GB"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [
                                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-1", "zone-2"]}
                            ]}
                        ]
                    }
                }
            },
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def test_pod_for_a_cpu_lease_has_no_gpu_and_hides_every_gpu():
    spec = replace(
        BASE,
        gpu=None,
        env={"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"},
        placement=Placement(pool="uni-a"),
        resources=Resources(),
        image_pull_policy="IfNotPresent",
        annotations={},
        labels={},
    )
    assert build_pod(spec) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "jupyter-c01-s1",
            "namespace": "",
            "labels": {"gpu-commons/gpu": "none", "gpu-commons/pool": "uni-a"},
            "annotations": {"gpu-commons/lease": "l-42"},
        },
        "spec": {
            "containers": [
                {
                    "name": "notebook",
                    "image": "gpu-commons/workspace-gpu:1.0",
                    "args": ["jupyterhub-singleuser"],
                    "env": [
                        {"name": "CUDA_VISIBLE_DEVICES", "value": ""},
                        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
                    ],
                    "ports": [{"name": "notebook-port", "containerPort": 8888}],
                    "resources": {},
                    "securityContext": {
                        "runAsUser": 1000,
                        "runAsGroup": 100,
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}],
                    "workingDir": "/home/jovyan",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-c01-s1"}}],
            "securityContext": {"fsGroup": 100, "fsGroupChangePolicy": "OnRootMismatch"},
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 30,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
        },
    }


def test_whole_gpu_uses_the_gpu_resource():
    spec = replace(BASE, gpu=GpuShare(device="0", kind="whole"), placement=Placement(pool="uni-a"))
    pod = build_pod(spec)
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "2", "memory": "4Gi", "ephemeral-storage": "1Gi", "nvidia.com/gpu": "1"}
    assert "nodeSelector" not in pod["spec"]  # no product asked for: any GPU node of the cluster


def test_home_claim():
    assert build_home_claim(BASE.home, "gpu-uni-a", "c01-s1") == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "claim-c01-s1",
            "namespace": "gpu-uni-a",
            "labels": {"app": "jupyterhub", "gpu-commons/component": "home"},
            "annotations": {"gpu-commons/user": "c01-s1"},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "5Gi"}},
            "storageClassName": "nfs",
        },
    }


def test_container_for_a_gpu_slice_lease_requests_exactly_that_device():
    spec = replace(
        BASE,
        placement=Placement(pool="uni-b", network="bridge", host_ip="10.1.2.3"),
        home=HomeVolume(name="gpu-commons-home-c01-s1", driver="local",
                        driver_options={"type": "nfs", "o": "addr=10.1.2.9,rw", "device": ":/homes/c01-s1"}),
        labels={"jupyterhub": "yes"},
    )
    assert build_container(spec) == {
        "Image": "gpu-commons/workspace-gpu:1.0",
        "Cmd": ["jupyterhub-singleuser"],
        "Env": ["GPU_COMMONS_DEVICE=MIG-4f7c-1-0", "JUPYTERHUB_API_TOKEN=t0k"],
        "User": "1000:100",
        "WorkingDir": "/home/jovyan",
        "ExposedPorts": {"8888/tcp": {}},
        "StopTimeout": 30,
        "Labels": {
            "gpu-commons.device": "MIG-4f7c-1-0",
            "gpu-commons.gpu": "slice",
            "gpu-commons.lease": "l-42",
            "gpu-commons.pool": "uni-b",
            "gpu-commons.user": "c01-s1",
            "jupyterhub": "yes",
        },
        "HostConfig": {
            "NetworkMode": "bridge",
            "Mounts": [
                {
                    "Type": "volume",
                    "Source": "gpu-commons-home-c01-s1",
                    "Target": "/home/jovyan",
                    "VolumeOptions": {
                        "Labels": {"gpu-commons.user": "c01-s1"},
                        "DriverConfig": {
                            "Name": "local",
                            "Options": {"type": "nfs", "o": "addr=10.1.2.9,rw", "device": ":/homes/c01-s1"},
                        },
                    },
                }
            ],
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "PortBindings": {"8888/tcp": [{"HostIp": "10.1.2.3", "HostPort": ""}]},
            "NanoCpus": 2_000_000_000,
            "Memory": 4 * 1024**3,
            "MemorySwap": 4 * 1024**3,  # no swapping past the memory limit
            "MemoryReservation": 1024**3,
            "PidsLimit": 512,
            "Tmpfs": {"/tmp": "rw,nosuid,nodev,size=1073741824"},
            "DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": ["MIG-4f7c-1-0"], "Capabilities": [["gpu"]]}],
        },
    }


def test_cpu_container_on_the_host_network():
    spec = replace(
        BASE,
        gpu=None,
        env={"NVIDIA_VISIBLE_DEVICES": "void"},
        port=20001,
        placement=Placement(pool="uni-b"),
        home=HomeVolume(name="gpu-commons-home-c01-s1"),
        resources=Resources(),
        labels={},
    )
    assert build_container(spec) == {
        "Image": "gpu-commons/workspace-gpu:1.0",
        "Cmd": ["jupyterhub-singleuser"],
        "Env": ["NVIDIA_VISIBLE_DEVICES=void"],
        "User": "1000:100",
        "WorkingDir": "/home/jovyan",
        "ExposedPorts": {"20001/tcp": {}},
        "StopTimeout": 30,
        "Labels": {"gpu-commons.gpu": "none", "gpu-commons.lease": "l-42", "gpu-commons.pool": "uni-b",
                   "gpu-commons.user": "c01-s1"},
        "HostConfig": {
            "NetworkMode": "host",
            "Mounts": [{"Type": "volume", "Source": "gpu-commons-home-c01-s1", "Target": "/home/jovyan",
                        "VolumeOptions": {"Labels": {"gpu-commons.user": "c01-s1"}}}],
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
        },
    }


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4G", 4 * 1024**3), ("4Gi", 4 * 1024**3), ("512M", 512 * 1024**2), ("1.5G", int(1.5 * 1024**3)),
        ("1024", 1024), (2048, 2048), (None, None),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_parse_bytes_says_what_to_write():
    with pytest.raises(ValueError, match="write e.g. 512M, 4G or 4Gi"):
        parse_bytes("four gigs")


def test_quantities():
    assert [quantity(4 * 1024**3), quantity(1536 * 1024**2), quantity(1000)] == ["4Gi", "1536Mi", "1000"]
    assert [cpu_quantity(2), cpu_quantity(0.5), cpu_quantity(1.25)] == ["2", "500m", "1250m"]


POD = {"metadata": {"name": "jupyter-c01-s1"}, "status": {"phase": "Pending"}}


@pytest.mark.parametrize(
    "status, events, expected",
    [
        ({"phase": "Pending"}, [], None),
        (
            {"containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]},
            [],
            PodProblem("image", "not found"),
        ),
        (
            {"containerStatuses": [{"state": {"waiting": {"reason": "CreateContainerConfigError"}}}]},
            [],
            PodProblem("config", "CreateContainerConfigError"),
        ),
        (
            {"phase": "Pending"},
            [{"involvedObject": {"name": "jupyter-c01-s1"}, "reason": "FailedMount", "message": "nfs: timed out"},
             {"involvedObject": {"name": "someone-else"}, "reason": "FailedMount", "message": "not ours"}],
            PodProblem("volume", "nfs: timed out"),
        ),
        (
            {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                             "message": "0/3 nodes are available: 3 Insufficient nvidia.com/mig-1g.10gb."}]},
            [],
            PodProblem("unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/mig-1g.10gb."),
        ),
        (
            {"phase": "Failed", "reason": "UnexpectedAdmissionError",
             "message": "Allocate failed due to requested number of devices unavailable for nvidia.com/mig-1g.10gb"},
            [],
            PodProblem("device", "Allocate failed due to requested number of devices unavailable for nvidia.com/mig-1g.10gb"),
        ),
        (
            {"conditions": [{"type": "PodScheduled", "status": "False",
                             "message": "pod has unbound immediate PersistentVolumeClaims"}]},
            [],
            PodProblem("volume", "pod has unbound immediate PersistentVolumeClaims"),
        ),
    ],
)
def test_diagnose_pod(status, events, expected):
    assert diagnose_pod({**POD, "status": status}, events) == expected


@pytest.mark.parametrize(
    "message, kind",
    [
        ("Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2, 'No such file'))", "pool"),
        ("404 Client Error: Not Found (\"pull access denied for nosuch/image, repository does not exist\")", "image"),
        ("500 Server Error: (\"could not select device driver \"nvidia\" with capabilities: [[gpu]]\")", "device"),
        ("500 Server Error: (\"failed to create shim: OCI runtime create failed: ... nvidia-container-cli: device "
         "error: MIG-gone: unknown device: unknown\")", "device"),
        ("500 Server Error: (\"error while mounting volume '/var/lib/docker/volumes/h/_data': failed to mount "
         "local volume: mount :/homes:/var/lib/docker/volumes/h/_data: connection refused\")", "volume"),
        ("409 Client Error: Conflict (\"name already in use\")", None),
    ],
)
def test_docker_failure_kind(message, kind):
    assert docker_failure_kind(message) == kind


def test_built_objects_are_valid_kubernetes():
    for obj in (build_pod(BASE), build_home_claim(BASE.home, "gpu-uni-a", "c01-s1")):
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


# -- from a lease and a pool's settings to the spec --------------------------------------


def lease(device: str | None, kind: str | None) -> Lease:
    return Lease(id="l-1", state="granted", profile="p", pool="uni-a", device=device, unit_kind=kind,
                 simulated=True, expires_at=None, queue_position=None, reason=None)


def test_gpu_share_in_each_backends_terms():
    kube = KubePool(slice_resource="nvidia.com/mig-2g.20gb", gpu_product="NVIDIA-A100-SXM4-80GB")
    assert gpu_share(lease("MIG-1", "slice"), kube, "c.K.pools") == GpuShare(
        device="MIG-1", kind="slice", resource="nvidia.com/mig-2g.20gb", product="NVIDIA-A100-SXM4-80GB")
    assert gpu_share(lease("0", "whole"), kube, "c.K.pools").resource == "nvidia.com/gpu"
    assert gpu_share(lease("GPU-9", "whole"), DockerPool(gpu_driver="nvidia"), "c.D.pools") == GpuShare(
        device="GPU-9", kind="whole")
    assert gpu_share(lease(None, None), kube, "c.K.pools") is None


def test_pool_settings_mistakes_name_the_setting():
    with pytest.raises(PoolConfigError, match=r"c.KubeQuotaSpawner.pools\['uni-a'\].slice_resource is not set"):
        gpu_share(lease("MIG-1", "slice"), KubePool(), "c.KubeQuotaSpawner.pools")
    with pytest.raises(PoolConfigError, match=r"c.DockerQuotaSpawner.pools\['uni-b'\] is not valid: dockr_url"):
        parse_pools({"uni-b": {"dockr_url": "tcp://x"}}, DockerPool, "c.DockerQuotaSpawner.pools")


# -- a share of a shared GPU (alliance: a pool's shared): the cap on each backend ---------------

T4_SHARE = SharedCap(memory_mib=3584, gpu_memory_mib=15360, students_per_gpu=4, enforcement="soft")
CAP_ENV = {  # every backend: the cap for the workspace and the frameworks' own memory settings
    "GPU_COMMONS_GPU_CAP": "soft", "GPU_COMMONS_GPU_MEMORY_MIB": "3584", "GPU_COMMONS_GPU_SHARED": "4",
    "GPU_COMMONS_GPU_TOTAL_MIB": "15360", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.2333", "CUPY_GPU_MEMORY_LIMIT": str(3584 * 1024**2),
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
}


def env_list(env: dict) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(env.items())]


def test_container_on_a_gpu_shared_through_mps():
    cap = replace(T4_SHARE, enforcement="mps", mps_pipe_directory="/tmp/nvidia-mps", compute_percent=25)
    spec = replace(BASE, gpu=GpuShare(device="0", kind="shared", cap=cap), placement=Placement(pool="uni-t"),
                   home=HomeVolume(name="gpu-commons-home-c01-s1"), resources=Resources(mem_limit=4 * 1024**3),
                   labels={})
    assert build_container(spec) == {
        "Image": "gpu-commons/workspace-gpu:1.0",
        "Cmd": ["jupyterhub-singleuser"],
        "Env": env_list({**CAP_ENV, "GPU_COMMONS_GPU_CAP": "mps", "GPU_COMMONS_DEVICE": "0",
                         "JUPYTERHUB_API_TOKEN": "t0k", "CUDA_MPS_PIPE_DIRECTORY": "/tmp/nvidia-mps",
                         "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=3584M", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25"}),
        "User": "1000:100",
        "WorkingDir": "/home/jovyan",
        "ExposedPorts": {"8888/tcp": {}},
        "StopTimeout": 30,
        "Labels": {"gpu-commons.device": "0", "gpu-commons.gpu": "shared", "gpu-commons.lease": "l-42",
                   "gpu-commons.pool": "uni-t", "gpu-commons.user": "c01-s1"},
        "HostConfig": {
            "NetworkMode": "host",
            "Mounts": [
                {"Type": "volume", "Source": "gpu-commons-home-c01-s1", "Target": "/home/jovyan",
                 "VolumeOptions": {"Labels": {"gpu-commons.user": "c01-s1"}}},
                # the host's MPS control daemon, and its shared memory through the host's IPC namespace
                {"Type": "bind", "Source": "/tmp/nvidia-mps", "Target": "/tmp/nvidia-mps"},
            ],
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Memory": 4 * 1024**3,
            "MemorySwap": 4 * 1024**3,
            "DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": ["0"], "Capabilities": [["gpu"]]}],
            "IpcMode": "host",
        },
    }


def test_container_on_a_shared_gpu_without_mps_has_the_soft_cap_only():
    spec = replace(BASE, gpu=GpuShare(device="0", kind="shared", cap=T4_SHARE), placement=Placement(pool="uni-t"),
                   home=HomeVolume(name="gpu-commons-home-c01-s1"), resources=Resources(), labels={})
    body = build_container(spec)
    assert body["Env"] == env_list({**CAP_ENV, "GPU_COMMONS_DEVICE": "0", "JUPYTERHUB_API_TOKEN": "t0k"})
    assert body["HostConfig"] == {
        "NetworkMode": "host",
        "Mounts": [{"Type": "volume", "Source": "gpu-commons-home-c01-s1", "Target": "/home/jovyan",
                    "VolumeOptions": {"Labels": {"gpu-commons.user": "c01-s1"}}}],
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": ["0"], "Capabilities": [["gpu"]]}],
    }


def test_pod_on_a_gpu_shared_through_hami():
    cap = replace(T4_SHARE, enforcement="hami", compute_percent=25)
    spec = replace(BASE, gpu=GpuShare(device="0", kind="shared", cap=cap), placement=Placement(pool="uni-t"),
                   resources=Resources(cpu_limit=2, mem_limit=4 * 1024**3), annotations={}, labels={})
    pod = build_pod(spec)
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "jupyter-c01-s1",
            "namespace": "",
            "labels": {"gpu-commons/gpu": "shared", "gpu-commons/pool": "uni-t"},
            "annotations": {"gpu-commons/device": "0", "gpu-commons/lease": "l-42"},
        },
        "spec": {
            "containers": [
                {
                    "name": "notebook",
                    "image": "gpu-commons/workspace-gpu:1.0",
                    "args": ["jupyterhub-singleuser"],
                    "env": [{"name": k, "value": v} for k, v in sorted(
                        {**CAP_ENV, "GPU_COMMONS_GPU_CAP": "hami", "GPU_COMMONS_DEVICE": "0",
                         "JUPYTERHUB_API_TOKEN": "t0k"}.items())],
                    "ports": [{"name": "notebook-port", "containerPort": 8888}],
                    # HAMi: one GPU, 3584 MiB of its memory and a quarter of its compute, enforced in the container
                    "resources": {"limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1",
                                             "nvidia.com/gpumem": "3584", "nvidia.com/gpucores": "25"}},
                    "securityContext": {
                        "runAsUser": 1000,
                        "runAsGroup": 100,
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}],
                    "workingDir": "/home/jovyan",
                }
            ],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-c01-s1"}}],
            "securityContext": {"fsGroup": 100, "fsGroupChangePolicy": "OnRootMismatch"},
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 30,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
        },
    }
    kubernetes_validate.validate(pod, "1.30.0", strict=True)


def test_pod_on_a_time_sliced_gpu_asks_one_replica_and_carries_the_soft_cap():
    spec = replace(BASE, gpu=GpuShare(device="0", kind="shared", resource="nvidia.com/gpu.shared",
                                      product="Tesla-T4", cap=T4_SHARE),
                   placement=Placement(pool="uni-t"), resources=Resources(), annotations={}, labels={})
    container = build_pod(spec)["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"nvidia.com/gpu.shared": "1"}}
    assert container["env"] == [{"name": k, "value": v} for k, v in sorted(
        {**CAP_ENV, "GPU_COMMONS_DEVICE": "0", "JUPYTERHUB_API_TOKEN": "t0k"}.items())]
    assert build_pod(spec)["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}


SHARED_POOL = parse_alliance({
    "tiers": {"county": {}}, "schools": [{"id": "c01", "tier": "county"}],
    "pools": [{"id": "uni-a", "gpus": 2, "shared": {"students_per_gpu": 4, "memory_per_student": "3584M",
                                                     "gpu_memory": "15360M", "compute_percent_per_student": 25}}],
}).pools[0]


def test_gpu_share_of_a_shared_gpu_in_each_backends_terms(tmp_path):
    share = lease("0", "shared")
    mps = str(tmp_path / "mps")
    # Kubernetes: the device plugin's time-slicing replica (soft cap), or HAMi's resources
    assert gpu_share(share, KubePool(shared_resource="nvidia.com/gpu.shared"), "c.K.pools", SHARED_POOL) == GpuShare(
        device="0", kind="shared", resource="nvidia.com/gpu.shared",
        cap=SharedCap(3584, 15360, 4, "soft", compute_percent=25))
    assert gpu_share(share, KubePool(gpu_sharing="hami", hami_memory_resource="example.com/vmem"), "c.K.pools",
                     SHARED_POOL) == GpuShare(device="0", kind="shared", resource="nvidia.com/gpu",
                                              cap=SharedCap(3584, 15360, 4, "hami", compute_percent=25,
                                                            memory_resource="example.com/vmem"))
    # Docker: MPS where its daemon runs (its control pipe), else the soft cap
    local = DockerPool(mps_pipe_directory=mps)
    assert gpu_share(share, local, "c.D.pools", SHARED_POOL).cap.enforcement == "soft"  # no daemon there
    (tmp_path / "mps").mkdir()
    os.mkfifo(tmp_path / "mps" / "control")
    assert gpu_share(share, local, "c.D.pools", SHARED_POOL).cap == SharedCap(
        3584, 15360, 4, "mps", compute_percent=25, mps_pipe_directory=mps)
    remote = DockerPool(docker_url="tcp://gpu1:2376", mps_pipe_directory="/tmp/nvidia-mps")  # cannot look: trusted
    assert gpu_share(share, remote, "c.D.pools", SHARED_POOL).cap.mps_pipe_directory == "/tmp/nvidia-mps"
    assert gpu_share(share, DockerPool(), "c.D.pools", SHARED_POOL).cap.enforcement == "soft"
    with pytest.raises(PoolConfigError, match="does not declare that pool with shared; give the hub and the quota "
                                              "service the same alliance file"):
        gpu_share(share, DockerPool(), "c.D.pools", None)


def test_container_mounts_the_library_read_only_at_one_path():
    spec = replace(BASE, gpu=None, env={}, placement=Placement(pool="uni-b"), home=HomeVolume(name="home-c01-s1"),
                   resources=Resources(), labels={}, library=LibraryVolume(host_path="/srv/gpu-commons/library"))
    assert build_container(spec)["HostConfig"]["Mounts"] == [
        {"Type": "volume", "Source": "home-c01-s1", "Target": "/home/jovyan",
         "VolumeOptions": {"Labels": {"gpu-commons.user": "c01-s1"}}},
        {"Type": "bind", "Source": "/srv/gpu-commons/library", "Target": "/srv/library", "ReadOnly": True},
    ]
    spec = replace(spec, library=LibraryVolume(volume="gpu-commons-library"))
    assert build_container(spec)["HostConfig"]["Mounts"][1] == {
        "Type": "volume", "Source": "gpu-commons-library", "Target": "/srv/library", "ReadOnly": True}


def test_pod_mounts_the_library_read_only_from_a_claim_or_a_node_directory():
    pod = build_pod(replace(BASE, library=LibraryVolume(claim="gpu-commons-library")))
    container = pod["spec"]["containers"][0]
    assert container["volumeMounts"] == [
        {"name": "home", "mountPath": "/home/jovyan"},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "library", "mountPath": "/srv/library", "readOnly": True},
    ]
    assert pod["spec"]["volumes"] == [
        {"name": "home", "persistentVolumeClaim": {"claimName": "claim-c01-s1"}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        {"name": "library", "persistentVolumeClaim": {"claimName": "gpu-commons-library", "readOnly": True}},
    ]
    pod = build_pod(replace(BASE, library=LibraryVolume(host_path="/data/library")))
    assert pod["spec"]["volumes"][-1] == {"name": "library", "hostPath": {"path": "/data/library", "type": "Directory"}}
    kubernetes_validate.validate(pod, "1.30.0", strict=True)


def test_each_pool_names_where_its_library_lies():
    assert library_volume(KubePool(library_claim="lib")) == LibraryVolume(claim="lib")
    assert library_volume(KubePool(library_host_path="/data/lib")) == LibraryVolume(host_path="/data/lib")
    assert library_volume(KubePool()) is None
    assert library_volume(DockerPool(library_host_path="/srv/lib")) == LibraryVolume(host_path="/srv/lib")
    assert library_volume(DockerPool(library_volume="lib")) == LibraryVolume(volume="lib")
    assert library_volume(DockerPool()) is None
    with pytest.raises(ValueError, match="exactly one"):
        LibraryVolume(host_path="/a", claim="b")
