"""KubeSpawner through a real hub and quota service, against an emulated Kubernetes API
(kmock plus a fake kubelet, tests/k8s_emulator.py).

The fake kubelet runs each pod's command as a local process and keeps each claim as a
directory, so a spawn, a stop and the files in the home behave as on a cluster; what a
scheduler and a device plugin would do with the pod is checked on its spec.
"""

from __future__ import annotations

import os

import pytest

from tests.hub_client import log_in, wait_for
from tests.k8s_emulator import Cluster
from tests.stack import running_stack

pytestmark = [pytest.mark.slow]

ALLIANCE = """
name: Kubernetes backend test alliance
tiers: {county: {weight: 2}}
pools:
  - {id: k8s-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 2, simulated: true}
  - {id: uncharted-pool, gpus: 1, sliced_gpus: 0, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30, cpu_limit: 2, mem_limit: 4G,
     tmp_size: 512M, home_quota: 2G}
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 30}
  - {id: broken-image, display_name: Software that is not there, gpu: none, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2, c01-s3]}
"""

MISSING_IMAGE = "gpu-commons-test/no-such-image:1"

POOL = {
    "namespace": "uni-k8s",
    "node_selector": {"gpu-commons/pool": "k8s-pool"},
    "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}],
    "slice_resource": "nvidia.com/mig-1g.10gb",
    "gpu_product": "NVIDIA-A100-SXM4-80GB",
    "storage_class": "standard",
    "home_size": "1Gi",
}


@pytest.fixture(scope="module")
def kube_stack(tmp_path_factory):
    here = tmp_path_factory.mktemp("kube-hub")
    # Namespaces need not exist: kmock keeps objects in any.
    cluster = Cluster(here / "cluster", missing_images=frozenset({MISSING_IMAGE}))
    cluster.start()
    config = {
        "KubeQuotaSpawner": {
            "namespace": "gpu-commons",
            "pools": {"k8s-pool": POOL},  # uncharted-pool is left out on purpose
            "cpu_image": "gpu-commons/workspace-cpu:1.0",
            "gpu_image": "gpu-commons/workspace-gpu:1.0",
            "profile_images": {"broken-image": MISSING_IMAGE},
            "unschedulable_timeout": 10,
        },
    }
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig(here / "kubeconfig.yaml"))
    try:
        with running_stack(here, ALLIANCE, config, ["--backend", "kubernetes"], tail=150) as stack:
            yield stack, cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


def leases(stack, user: str) -> list[dict]:
    with stack.quota() as quota:
        return quota.get("/api/leases", params={"user": user}).json()


def test_gpu_slice_pod_carries_exactly_the_leased_unit_and_the_home_survives(kube_stack):
    stack, cluster = kube_stack
    student = log_in(stack, "c01-s1")
    started = student.start("gpu-slice")
    assert started.get("ready"), (started, stack.log_tail(60))
    [lease] = [item for item in leases(stack, "c01-s1") if item["state"] == "granted"]
    assert lease["pool"] == "k8s-pool" and lease["unit_kind"] == "slice"

    [pod] = cluster.objects("pods")
    assert pod["metadata"]["namespace"] == "uni-k8s"
    assert pod["metadata"]["annotations"]["gpu-commons/device"] == lease["device"]
    assert pod["metadata"]["annotations"]["gpu-commons/lease"] == lease["id"]
    assert pod["metadata"]["labels"]["gpu-commons/pool"] == "k8s-pool"
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["image"] == "gpu-commons/workspace-gpu:1.0"
    assert container["resources"] == {
        "limits": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "512Mi", "nvidia.com/mig-1g.10gb": "1"}}
    assert spec["nodeSelector"] == {"gpu-commons/pool": "k8s-pool", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["securityContext"]["runAsUser"] == 1000 and container["securityContext"]["runAsNonRoot"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["GPU_COMMONS_DEVICE"] == lease["device"]
    assert "CUDA_VISIBLE_DEVICES" not in env and "NVIDIA_VISIBLE_DEVICES" not in env  # the device plugin's job
    assert spec["volumes"] == [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-c01-s1"}},
                               {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}]
    [claim] = cluster.objects("persistentvolumeclaims")
    assert claim["metadata"]["name"] == "claim-c01-s1" and claim["metadata"]["namespace"] == "uni-k8s"
    # The profile's home quota, over the pool's home_size (1Gi).
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}},
                             "storageClassName": "standard"}

    with student.contents() as contents:
        saved = contents.put("/notes.txt", json={"type": "file", "format": "text", "content": "学习笔记"})
        assert saved.status_code in (200, 201), saved.text

    student.stop()
    assert cluster.objects("pods") == []
    wait_for(lambda: leases(stack, "c01-s1")[0]["state"] == "released", 30, "the lease to be released")

    again = student.start("gpu-slice")
    assert again.get("ready"), again
    with student.contents() as contents:
        assert contents.get("/notes.txt").json()["content"] == "学习笔记"
    student.stop()


def test_lease_for_a_pool_this_hub_cannot_reach_is_explained_and_released(kube_stack):
    stack, cluster = kube_stack
    student = log_in(stack, "c01-s2")
    result = student.start("gpu-whole")  # only uncharted-pool has whole GPUs
    assert result.get("failed") and "pool 'uncharted-pool' cannot be reached" in result["message"], result
    wait_for(lambda: student.server() is None, 60, "the failed server to be cleaned up")
    assert [pod for pod in cluster.objects("pods") if "c01-s2" in pod["metadata"]["name"]] == []
    assert {item["state"] for item in leases(stack, "c01-s2")} == {"released"}


def test_image_that_cannot_be_pulled_ends_the_start_at_once(kube_stack):
    stack, cluster = kube_stack
    student = log_in(stack, "c01-s3")
    result = student.start("broken-image", timeout=60)  # the pod's status says so: no waiting for a timeout
    assert result.get("failed") and f"('{MISSING_IMAGE}') is not available on pool 'k8s-pool'" in result["message"], result
    wait_for(lambda: student.server() is None, 60, "the failed server to be cleaned up")
    assert [pod for pod in cluster.objects("pods") if "c01-s3" in pod["metadata"]["name"]] == []
    assert {item["state"] for item in leases(stack, "c01-s3")} == {"released"}
