"""A share of a shared GPU on the spawner side (issue 12, point 4): what the student is told, on
the profile form and at the grant, in both languages; the local backend's cap (CUDA MPS where
its control daemon runs, else the soft cap), with the sandbox reaching the daemon's pipes.

The container backends' objects are tested as whole dicts in tests/test_builders.py. No GPU
here: a FIFO stands for the MPS daemon's control pipe; that MPS then really caps a workspace's
memory needs a GPU server (docs/backends.md, "Shared GPUs").
"""

from __future__ import annotations

import os
from dataclasses import replace
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from gpu_commons_i18n import render
from quota.alliance import parse_alliance
from spawner.backends import LocalQuotaSpawner
from spawner.form import render_profile_form
from spawner.quota_client import Lease
from spawner.sharing import form_sentences, granted_sentence
from spawner.specs import SharedCap
from tests.spawner_fakes import FakeQuotaService, leased_spawner, lease, messages

LEASES = "/api/leases"

ALLIANCE = """
tiers: {county: {weight: 2}}
pools:
  - {id: uni-t, gpus: 2, simulated: true,
     shared: {students_per_gpu: 4, memory_per_student: 3584M, gpu_memory: 15360M}}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none}
  - {id: gpu-shared, display_name: A shared GPU, gpu: shared, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
"""

INVENTORY = {"simulated": True, "pools": [{"id": "uni-t", "units": [
    {"kind": "shared", "lease_id": "l-9" if i < 3 else None} for i in range(8)]}]}


def test_the_form_says_the_gpu_is_shared_and_whose_memory_in_both_languages():
    alliance = parse_alliance(yaml.safe_load(ALLIANCE))
    shared = form_sentences(alliance)
    assert set(shared) == {"gpu-shared"}
    english = render_profile_form(alliance.profiles, INVENTORY, None, "en", shared)
    chinese = render_profile_form(alliance.profiles, INVENTORY, None, "zh-CN", shared)
    assert ('<small class="gc-shared">A shared GPU: up to 4 students use it at the same time, and 3.5 GB of its '
            'memory is yours.</small>') in english
    assert "5 of 8 GPU shares free" in english
    assert '<small class="gc-shared">共享 GPU：最多 4 名学生同时使用一块 GPU，其中 3.5 GB 显存归你。</small>' in chinese
    assert "8 个 GPU 共享份额中有 5 个空闲" in chinese
    full = {**INVENTORY, "pools": [{"id": "uni-t", "units": [{"kind": "shared", "lease_id": "x"}] * 8}]}
    assert "all 8 GPU shares in use: you will join the queue" in render_profile_form(
        alliance.profiles, full, None, "en", shared)
    assert english.count("gc-shared") == 1  # only the shared profile's row


@pytest.mark.parametrize("enforcement, english, chinese", [
    ("mps", "held by CUDA MPS (an allocation past it fails with an out-of-memory error).", "由 CUDA MPS 保证"),
    ("hami", "held by the cluster (HAMi; an allocation past it fails", "由集群（HAMi）保证"),
    ("soft", "This server cannot enforce it: PyTorch, TensorFlow, JAX and CuPy are set to stay within it, but code "
             "that takes more slows down or stops the other students on this GPU.", "本服务器无法强制这一上限"),
])
def test_the_student_is_told_whether_the_cap_is_enforced(enforcement, english, chinese):
    sentence = granted_sentence(SharedCap(3584, 15360, 4, enforcement))
    assert str(sentence).startswith("This GPU is shared: 3.5 GB of its memory is yours")
    assert english in str(sentence)
    assert render(sentence, "zh-CN").startswith("这块 GPU 是共享的：其中 3.5 GB 显存归你使用") and chinese in render(
        sentence, "zh-CN")


async def test_the_spawn_page_says_so_at_the_grant(tmp_path):
    (tmp_path / "alliance.yaml").write_text(ALLIANCE)
    service = FakeQuotaService()
    service.answer("POST", LEASES, lease("granted", profile="gpu-shared", pool="uni-t", device="1", unit_kind="shared"))
    spawner = leased_spawner(service, tmp_path / "alliance.yaml", profile="gpu-shared")
    try:
        await spawner.start()
    finally:
        await service.close()
    assert messages(spawner)[1:] == [
        "GPU granted on uni-t (simulated GPU: this server has no real GPU). Starting your workspace…",
        "This GPU is shared: 3.5 GB of its memory is yours. This server cannot enforce it: PyTorch, TensorFlow, JAX "
        "and CuPy are set to stay within it, but code that takes more slows down or stops the other students on "
        "this GPU.",
    ]


def local_spawner(tmp_path, **config) -> LocalQuotaSpawner:
    spawner = LocalQuotaSpawner(homes_dir=str(tmp_path / "homes"), **config)
    spawner.user = SimpleNamespace(id=3, name="c01-s1", url="/user/c01-s1/", escaped_name="c01-s1", server=None)
    spawner.hub = SimpleNamespace(public_host="", api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/",
                                  url="/hub/")
    spawner._alliance = parse_alliance(yaml.safe_load(ALLIANCE))
    spawner._lease = Lease(id="l-1", state="granted", profile="gpu-shared", pool="uni-t", device="1",
                           unit_kind="shared", simulated=True, expires_at=None, queue_position=None, reason=None)
    return spawner


def test_local_workspace_without_an_mps_daemon_gets_the_soft_cap(tmp_path):
    spawner = local_spawner(tmp_path, mps_pipe_directory=str(tmp_path / "no-daemon"))
    env = spawner.get_env()
    assert {k: env[k] for k in env if k.startswith(("GPU_COMMONS_GPU_", "CUDA_", "XLA_", "CUPY_", "TF_"))} == {
        "CUDA_VISIBLE_DEVICES": "1", "GPU_COMMONS_GPU_SIMULATED": "1", "GPU_COMMONS_GPU_SHARED": "4",
        "GPU_COMMONS_GPU_MEMORY_MIB": "3584", "GPU_COMMONS_GPU_TOTAL_MIB": "15360", "GPU_COMMONS_GPU_CAP": "soft",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.2333",
        "CUPY_GPU_MEMORY_LIMIT": str(3584 * 1024**2), "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    command = spawner.sandbox_command()
    assert "--unshare-ipc" in command and "/dev/shm" not in command


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/bwrap"), reason="needs root and bubblewrap")
def test_local_workspace_reaches_a_running_mps_daemon_and_gets_the_mps_cap(tmp_path):
    pipes = tmp_path / "nvidia-mps"
    pipes.mkdir()
    os.mkfifo(pipes / "control")  # what nvidia-cuda-mps-control -d creates while it runs, for every user
    os.chmod(pipes / "control", 0o666)
    spawner = local_spawner(tmp_path, mps_pipe_directory=str(pipes))
    env = spawner.get_env()
    assert (env["GPU_COMMONS_GPU_CAP"], env["CUDA_MPS_PIPE_DIRECTORY"], env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"]) == (
        "mps", str(pipes), "0=3584M")
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env  # the pool sets no compute share
    spawner.ensure_home()
    command = spawner.sandbox_command()
    assert "--unshare-ipc" not in command
    marker = f"gpu-commons-test-{os.getpid()}"
    Path("/dev/shm", marker).write_text("")
    try:
        # inside the sandbox, as the student: the daemon's control pipe and the host's shared memory are there
        seen = subprocess.run(command + ["/bin/sh", "-c", f"test -p {pipes}/control && test -w {pipes}/control "
                                                          f"&& test -e /dev/shm/{marker} && id -u"],
                              capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(f"/dev/shm/{marker}")
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.strip() == str(spawner.student_uid)


SHARED_LEASE = Lease(id="l-1", state="granted", profile="gpu-shared", pool="uni-t", device="0", unit_kind="shared",
                     simulated=True, expires_at=None, queue_position=None, reason=None)


async def test_the_container_backends_tell_the_student_what_they_enforce(tmp_path, monkeypatch):
    """The spawn page's sentence follows the backend's cap (the quota step asks the backend)."""
    from spawner.docker import DockerQuotaSpawner
    from spawner.kubernetes import KubeQuotaSpawner

    alliance = parse_alliance(yaml.safe_load(ALLIANCE))
    docker = DockerQuotaSpawner(pools={"uni-t": {"docker_url": "tcp://gpu1:2376", "mps_pipe_directory": "/run/mps"}})
    docker._alliance = alliance
    assert (docker.shared_gpu_cap(SHARED_LEASE).enforcement, docker.shared_gpu_cap(SHARED_LEASE).mps_pipe_directory) == (
        "mps", "/run/mps")
    docker.pools = {"uni-t": {}}
    assert docker.shared_gpu_cap(SHARED_LEASE).enforcement == "soft"

    (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "default"}}]}))
    # KubeSpawner loads a kubeconfig when it is made (kubernetes_asyncio read $KUBECONFIG at its import)
    monkeypatch.setattr("kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    kube = KubeQuotaSpawner(pools={"uni-t": {"gpu_sharing": "hami"}}, user=SimpleNamespace(
        id=3, name="c01-s1", url="/user/c01-s1/", escaped_name="c01-s1", server=None))
    kube._alliance = alliance
    assert str(granted_sentence(kube.shared_gpu_cap(SHARED_LEASE))).endswith(
        "held by the cluster (HAMi; an allocation past it fails with an out-of-memory error).")
    kube.pools = {"uni-t": {"gpu_sharing": "time-slicing"}}
    assert kube.shared_gpu_cap(SHARED_LEASE).enforcement == "soft"
    assert kube.shared_gpu_cap(replace(SHARED_LEASE, unit_kind="whole")) is None
