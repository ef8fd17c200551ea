"""A share of a shared GPU through the real hub, quota service and KubeSpawner, against the
emulated Kubernetes API (tests/k8s_emulator.py): the pool shares its GPUs through HAMi, so the
pod asks for one GPU with the student's memory and compute, and carries the cap for the frameworks.
What HAMi then does with the pod needs a GPU node (docs/backends.md, "Shared GPUs").
"""

from __future__ import annotations

import os

import pytest

from tests.hub_client import log_in, wait_for
from tests.k8s_emulator import Cluster
from tests.stack import running_stack

pytestmark = [pytest.mark.slow]

ALLIANCE = """
name: Shared GPU test alliance
tiers: {county: {weight: 2}}
pools:
  - {id: uni-t, gpus: 1, gpu_model: Tesla T4, simulated: true,
     shared: {students_per_gpu: 2, memory_per_student: 7G, gpu_memory: 15360M, compute_percent_per_student: 50}}
profiles:
  - {id: gpu-shared, display_name: A shared GPU, gpu: shared, max_minutes: 30, cpu_limit: 1, mem_limit: 2G}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2, c01-s3]}
"""


@pytest.fixture(scope="module")
def kube_stack(tmp_path_factory):
    here = tmp_path_factory.mktemp("shared-kube-hub")
    cluster = Cluster(here / "cluster")
    cluster.start()
    config = {"KubeQuotaSpawner": {
        "namespace": "gpu-commons",
        "pools": {"uni-t": {"namespace": "uni-t", "gpu_sharing": "hami", "gpu_product": "Tesla-T4"}},
        "gpu_image": "gpu-commons/workspace-gpu:1.0",
    }}
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


def test_two_students_share_one_gpu_each_with_their_hami_memory(kube_stack):
    stack, cluster = kube_stack
    first, second = (log_in(stack, name) for name in ("c01-s1", "c01-s2"))
    for student in (first, second):
        started = student.start("gpu-shared")
        assert started.get("ready"), (started, stack.log_tail(60))
    with stack.quota() as quota:
        granted = quota.get("/api/leases", params={"state": "granted"}).json()
    assert sorted((lease["user"], lease["unit_kind"], lease["device"]) for lease in granted) == [
        ("c01-s1", "shared", "0"), ("c01-s2", "shared", "0")]  # two shares of GPU 0

    pods = sorted(cluster.objects("pods"), key=lambda pod: pod["metadata"]["name"])
    assert len(pods) == 2
    for pod in pods:
        [container] = pod["spec"]["containers"]
        assert container["resources"] == {"limits": {
            "cpu": "1", "memory": "2Gi", "ephemeral-storage": "1Gi",  # /tmp: the hub's 1G
            "nvidia.com/gpu": "1", "nvidia.com/gpumem": "7168", "nvidia.com/gpucores": "50"}}
        assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
        assert pod["metadata"]["labels"]["gpu-commons/gpu"] == "shared"
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert {k: env[k] for k in ("GPU_COMMONS_GPU_CAP", "GPU_COMMONS_GPU_MEMORY_MIB", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                                    "CUPY_GPU_MEMORY_LIMIT")} == {
            "GPU_COMMONS_GPU_CAP": "hami", "GPU_COMMONS_GPU_MEMORY_MIB": "7168",
            "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.4667", "CUPY_GPU_MEMORY_LIMIT": str(7168 * 1024**2)}
        assert "CUDA_MPS_PIPE_DIRECTORY" not in env

    # the GPU's two shares are taken: a third student waits in the queue (the spawn page polls)
    with stack.quota() as quota:
        asked = quota.post("/api/leases", json={"user": "c01-s3", "school": "c01", "profile": "gpu-shared"}).json()
        assert asked["state"] == "queued", asked
        quota.delete(f"/api/leases/{asked['id']}")
    for student in (first, second):
        student.stop()
    wait_for(lambda: cluster.objects("pods") == [], 30, "the pods to be deleted")
