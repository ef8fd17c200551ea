"""DockerSpawner through a real hub, quota service and Docker engine, on the workspace image
built for real from images/workspace-cpu.

The pool's engine has no GPU; a stand-in NVIDIA hook (tests/fake_nvidia_hook.py) lets it
honour device requests as a GPU host does, and knows one slice: slice0. The hub's settings
give the bad cases their own pools: one whose engine is gone, and a CPU pool whose home
volumes cannot be mounted.
"""

from __future__ import annotations

import pytest

from tests.docker_engine import FAKE_GPU_DEVICES
from tests.hub_client import log_in, wait_for
from tests.stack import free_port, running_stack

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ALLIANCE = """
name: Docker backend test alliance
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: docker-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 2, simulated: true}
  - {id: gone-pool, gpus: 1, sliced_gpus: 0, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30, cpu_limit: 1, mem_limit: 1G}
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 30}
  - {id: broken-image, display_name: Software that is not there, gpu: none, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2]}
  - {id: u01, tier: urban, students: [u01-s1, u01-s2, u01-s3]}
"""

HOME_LABEL = "gpu-commons.user"


@pytest.fixture(scope="module")
def docker_stack(tmp_path_factory, docker_engine, workspace_cpu_image):
    here = tmp_path_factory.mktemp("docker-hub")
    host = {"docker_url": docker_engine.url, "network": "host", "allow_host_network": True, "host_ip": "127.0.0.1"}
    config = {
        "DockerQuotaSpawner": {
            "pools": {
                "docker-pool": host,
                "gone-pool": {**host, "docker_url": f"unix://{here}/no-engine.sock", "timeout": 5},
                "cpu-pool": {**host, "volume_options": {"type": "none", "o": "bind", "device": f"{here}/no-such-dir"}},
            },
            "cpu_pool": "cpu-pool",
            "cpu_image": workspace_cpu_image,
            "gpu_image": workspace_cpu_image,  # the spawn needs JupyterLab, not CUDA (test_images builds the GPU one)
            "profile_images": {"broken-image": "gpu-commons-test/no-such-image:1"},
            "pull_policy": "never",  # no registry here: a missing image is missing
            "host_port_base": free_port(),
        },
        "Spawner": {"http_timeout": 120},
    }
    with running_stack(here, ALLIANCE, config, ["--backend", "docker"], tail=150) as stack:
        yield stack


def leases(stack, user: str) -> list[dict]:
    with stack.quota() as quota:
        return quota.get("/api/leases", params={"user": user}).json()


def containers_of(engine, user: str) -> list[dict]:
    return engine.client().containers(all=True, filters={"label": f"{HOME_LABEL}={user}"})


def test_gpu_slice_workspace_gets_exactly_the_leased_device_and_keeps_saved_files(docker_stack, docker_engine):
    student = log_in(docker_stack, "c01-s1")
    started = student.start("gpu-slice")
    assert started.get("ready"), started

    [lease] = [item for item in leases(docker_stack, "c01-s1") if item["state"] == "granted"]
    assert lease["pool"] == "docker-pool" and lease["device"] == FAKE_GPU_DEVICES[0]

    # The container asks the engine for exactly that device, and the engine's hook handed it over.
    client = docker_engine.client()
    [container] = containers_of(docker_engine, "c01-s1")
    inspected = client.inspect_container(container["Id"])
    assert inspected["HostConfig"]["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": 0, "DeviceIDs": [lease["device"]], "Capabilities": [["gpu"]], "Options": None}
    ]
    assert inspected["HostConfig"]["NanoCpus"] == 1_000_000_000 and inspected["HostConfig"]["Memory"] == 1024**3
    # The hub's defaults for processes and /tmp, as the engine took them (docs/security.md).
    assert inspected["HostConfig"]["PidsLimit"] == 1024 and inspected["HostConfig"]["MemorySwap"] == 1024**3
    assert inspected["HostConfig"]["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=1073741824"}
    assert docker_engine.granted_devices()[-1] == lease["device"]
    # The engine put the device into the server's own environment (PID 1), for the NVIDIA runtime.
    run = client.exec_create(container["Id"], ["sh", "-c", "tr '\\0' '\\n' < /proc/1/environ | grep ^NVIDIA_; id -u"])
    assert client.exec_start(run).decode().split() == [f"NVIDIA_VISIBLE_DEVICES={lease['device']}", "1000"]

    # A file saved in the home folder ...
    with student.contents() as contents:
        saved = contents.put("/homework.txt", json={"type": "file", "format": "text", "content": "你好, GPU"})
        assert saved.status_code in (200, 201), saved.text

    # ... and a second student whose slice has gone from the host since the inventory was made.
    other = log_in(docker_stack, "c01-s2")
    refused = other.start("gpu-slice")
    assert refused.get("failed") and "is not available any more" in refused["message"], refused
    # the student reads the pool, not a device id (issue 13, point 3); the hub's log names the device
    assert "pool 'docker-pool'" in refused["message"] and "MIG-sim" not in refused["message"]
    wait_for(lambda: other.server() is None, 60, "the failed server to be cleaned up")
    assert containers_of(docker_engine, "c01-s2") == []
    assert [item["state"] for item in leases(docker_stack, "c01-s2")] == ["released"]

    # Stopping releases the lease and removes the container, not the home volume.
    student.stop()
    wait_for(lambda: leases(docker_stack, "c01-s1")[0]["state"] == "released", 30, "the lease to be released")
    assert containers_of(docker_engine, "c01-s1") == []

    # The next start finds the file again.
    again = student.start("gpu-slice")
    assert again.get("ready"), again
    with student.contents() as contents:
        assert contents.get("/homework.txt").json()["content"] == "你好, GPU"
    student.stop()


@pytest.mark.parametrize(
    "student, profile, says",
    [
        ("u01-s1", "gpu-whole", "cannot be reached right now"),  # gone-pool's engine is not there
        ("u01-s2", "broken-image", "gpu-commons-test/no-such-image:1"),  # the image does not exist
        ("u01-s3", "cpu", "Your home folder could not be attached"),  # cpu-pool's volume cannot be mounted
    ],
)
def test_bad_input_is_explained_released_and_leaves_nothing(docker_stack, docker_engine, student, profile, says):
    user = log_in(docker_stack, student)
    result = user.start(profile)
    assert result.get("failed") and says in result["message"], result
    assert "booking was released" in result["message"]
    wait_for(lambda: user.server() is None, 60, "the failed server to be cleaned up")
    assert containers_of(docker_engine, student) == []
    assert {item["state"] for item in leases(docker_stack, student)} == {"released"}
