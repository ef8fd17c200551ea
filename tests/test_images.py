"""The images of images/, built for real on the test Docker engine.

The workspace-cpu image is built once for the session (tests/docker_engine.py) and used by
the DockerSpawner tests; here the GPU workspace, the hub and the quota service are built
from it and from the same debootstrap base and wheelhouse, then started to see that they
work as the non-root user 1000.
"""

from __future__ import annotations

import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.docker_engine import REPO, base_image, build_image
from tests.stack import free_port

IMAGES = REPO / "images"


@pytest.mark.parametrize("name", ["workspace-cpu", "workspace-gpu", "hub", "quota"])
def test_each_image_has_its_folder_readme_and_pinned_requirements(name):
    folder = IMAGES / name
    assert (folder / "Dockerfile").exists() and (folder / "README.md").exists()
    dockerfile = (folder / "Dockerfile").read_text()
    assert "USER 1000:100" in dockerfile
    assert "ARG PIP_INDEX_URL" in dockerfile and ("ARG BASE_IMAGE" in dockerfile or "ARG WORKSPACE_IMAGE" in dockerfile)
    pinned = {
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in (folder / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    assert len(pinned) > 5 or name == "workspace-gpu"
    short_list = folder / "requirements.in"
    if short_list.exists():  # the hub and quota images pin the project's own dependencies (pyproject.toml)
        for line in short_list.read_text().splitlines():
            requirement = line.split("#")[0].strip()
            if requirement and not requirement.startswith("-"):
                assert re.sub(r"[-_.]+", "-", re.split(r"[=<>~!]", requirement)[0]).lower() in pinned, requirement


def run(client, image: str, command: list[str], **host_config) -> str:
    container = client.create_container(image, command, user="", host_config=client.create_host_config(**host_config))
    try:
        client.start(container)
        status = client.wait(container, timeout=120)
        output = client.logs(container).decode()
        assert status["StatusCode"] == 0, output
        return output
    finally:
        client.remove_container(container, force=True)


@pytest.mark.docker
@pytest.mark.slow
def test_gpu_hub_and_quota_images_build_and_run_as_user_1000(docker_engine, wheelhouse, workspace_cpu_image, tmp_path):
    client = docker_engine.client()
    base = base_image(client)
    pip = {"PIP_INDEX_URL": wheelhouse}
    builds = {
        "gpu-commons/workspace-gpu:test": ("images/workspace-gpu/Dockerfile",
                                           {**pip, "WORKSPACE_IMAGE": workspace_cpu_image, "TORCH_INDEX_URL": wheelhouse}),
        "gpu-commons/hub:test": ("images/hub/Dockerfile", {**pip, "BASE_IMAGE": base}),
        "gpu-commons/quota:test": ("images/quota/Dockerfile", {**pip, "BASE_IMAGE": base}),
    }
    with ThreadPoolExecutor(2) as pool:  # pip in each build is single-threaded: use both cores
        for future in [pool.submit(build_image, docker_engine.client(), dockerfile, tag, args)
                       for tag, (dockerfile, args) in builds.items()]:
            future.result()

    # PyTorch (here the CPU wheel from the test index) in the student's environment, not as root.
    printed = run(client, "gpu-commons/workspace-gpu:test",
                  ["python3", "-c", "import os, torch; print(torch.__version__, os.getuid(), os.environ['NVIDIA_DRIVER_CAPABILITIES'])"])
    assert printed.split() == ["2.13.0+cpu", "1000", "compute,utility"]
    assert run(client, workspace_cpu_image, ["jupyter", "labextension", "list"]).count("gpu-commons-lease") == 1

    # The hub image holds JupyterHub and both container backends.
    printed = run(client, "gpu-commons/hub:test",
                  ["python3", "-c", "import os, jupyterhub, spawner.kubernetes, spawner.docker; print(jupyterhub.__version__[0], os.getuid())"])
    assert printed.split() == ["6", "1000"]

    # The quota service image serves the API.
    alliance = tmp_path / "alliance.yaml"
    alliance.write_text((REPO / "alliances" / "demo.yaml").read_text())
    alliance.chmod(0o644)
    port, token = free_port(), secrets.token_hex(16)
    container = client.create_container(
        "gpu-commons/quota:test",
        environment={"GPU_COMMONS_ALLIANCE": "/etc/gpu-commons/alliance.yaml", "GPU_COMMONS_API_TOKEN": token,
                     "GPU_COMMONS_BIND_URL": f"http://127.0.0.1:{port}"},
        host_config=client.create_host_config(network_mode="host",
                                              binds={str(alliance): {"bind": "/etc/gpu-commons/alliance.yaml", "mode": "ro"}}),
    )
    try:
        client.start(container)
        deadline = time.monotonic() + 60
        while True:
            try:
                inventory = httpx.get(f"http://127.0.0.1:{port}/api/inventory", headers={"Authorization": f"token {token}"})
                if inventory.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, client.logs(container).decode()[-3000:]
            time.sleep(0.5)
        assert [pool["id"] for pool in inventory.json()["pools"]] == ["uni-a"]
    finally:
        client.remove_container(container, force=True)
