"""A share of a shared GPU on a real Docker engine (tests/docker_engine.py: Debian's dockerd and
the stand-in NVIDIA hook): the container-create body of ``build_container`` is accepted, the
workspace gets its device, the MPS daemon's pipes (a FIFO stands for the control pipe) and the
host's IPC namespace with MPS, its own without. That MPS then holds the memory needs a GPU host.
"""

from __future__ import annotations

import os
import uuid

import pytest

from spawner.builders.docker import build_container
from spawner.specs import GpuShare, HomeVolume, Placement, SharedCap, WorkspaceSpec
from tests.docker_engine import FAKE_GPU_DEVICES, base_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CHECK = ('test -p "$CUDA_MPS_PIPE_DIRECTORY/control" && echo pipe=yes; readlink /proc/self/ns/ipc; '
         'echo "$NVIDIA_VISIBLE_DEVICES $CUDA_MPS_PINNED_DEVICE_MEM_LIMIT $GPU_COMMONS_GPU_CAP"')


def run(engine, cap: SharedCap) -> list[str]:
    client = engine.client()
    user = f"shared-{uuid.uuid4().hex[:8]}"
    spec = WorkspaceSpec(name=f"gpu-commons-{user}", user=user, lease_id="l-1", image=base_image(client),
                         command=("/bin/sh", "-c", CHECK), env={}, placement=Placement(pool="docker-pool"),
                         home=HomeVolume(name=f"gpu-commons-home-{user}"),
                         gpu=GpuShare(device=FAKE_GPU_DEVICES[0], kind="shared", cap=cap))
    container = client.create_container_from_config(build_container(spec), spec.name)
    try:
        client.start(container["Id"])
        assert client.wait(container["Id"], timeout=60)["StatusCode"] == 0
        return client.logs(container["Id"]).decode().split()
    finally:
        client.remove_container(container["Id"], force=True, v=True)
        client.remove_volume(spec.home.name, force=True)


def test_a_shared_gpu_workspace_reaches_the_mps_daemon_through_the_hosts_ipc(docker_engine, tmp_path):
    pipes = tmp_path / "nvidia-mps"
    pipes.mkdir()
    os.mkfifo(pipes / "control")
    os.chmod(pipes / "control", 0o666)
    pipes.chmod(0o755)
    cap = SharedCap(3584, 15360, 4, "mps", mps_pipe_directory=str(pipes))
    host_ipc = os.readlink("/proc/self/ns/ipc")
    assert run(docker_engine, cap) == ["pipe=yes", host_ipc, FAKE_GPU_DEVICES[0], "0=3584M", "mps"]
    assert docker_engine.granted_devices()[-1] == FAKE_GPU_DEVICES[0]  # the hook handed over the device

    soft = run(docker_engine, SharedCap(3584, 15360, 4, "soft"))  # no MPS: no pipes, the container's own IPC
    assert soft[0] != host_ipc and soft[0].startswith("ipc:[") and soft[1:] == [FAKE_GPU_DEVICES[0], "soft"]
