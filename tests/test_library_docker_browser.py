"""A student finds a dataset in the library and loads it in a notebook on the Docker backend:
a real hub, quota service and Docker engine, the workspace image built for real from
images/workspace-cpu (pandas included), the pool's ``library_host_path`` bound read-only at
/srv/library, and headless Chromium (tests/library_flow.py: the same steps as on the local backend).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from hub.demo_library import write_sources
from quota import library as lib
from quota.alliance import parse_alliance
from tests.browser import log_in
from tests.library_flow import find_and_load_iris
from tests.stack import free_port, running_stack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.browser]

DEMO = Path(__file__).resolve().parents[1] / "alliances" / "demo.yaml"
ALLIANCE = """
name: Docker library test alliance
tiers: {county: {weight: 2}}
pools:
  - {id: docker-pool, gpus: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - id: c01
    tier: county
    students: [c01-s1]
    classes: [{id: grade8-ai, students: [c01-s1], library: [iris]}]
"""


@pytest.fixture(scope="module")
def docker_stack(tmp_path_factory, docker_engine, workspace_cpu_image):
    here = tmp_path_factory.mktemp("docker-library")
    iris = next(e for e in yaml.safe_load(DEMO.read_text(encoding="utf-8"))["library"] if e["id"] == "iris")
    text = ALLIANCE + yaml.safe_dump({"library": [iris]}, allow_unicode=True)
    root = here / "library"
    lib.add_entry(parse_alliance(yaml.safe_load(text)).library_entry("iris"), write_sources(here / "sources")["iris"], root)
    host = {"docker_url": docker_engine.url, "network": "host", "allow_host_network": True, "host_ip": "127.0.0.1",
            "library_host_path": str(root)}
    config = {
        "DockerQuotaSpawner": {"pools": {"docker-pool": host}, "cpu_pool": "docker-pool",
                               "cpu_image": workspace_cpu_image, "gpu_image": workspace_cpu_image,
                               "pull_policy": "never", "host_port_base": free_port()},
        "Spawner": {"http_timeout": 120},
    }
    with running_stack(here, text, config, ["--backend", "docker"], tail=150) as stack:
        yield stack


def test_a_docker_student_finds_a_dataset_in_the_catalogue_and_loads_it_in_a_notebook(docker_stack, browser, tmp_path):
    shots = Path(os.environ.get("GPU_COMMONS_SCREENSHOTS") or tmp_path)
    context = browser.new_context(locale="en", viewport={"width": 1280, "height": 800})
    try:
        page = log_in(context, docker_stack, "c01-s1", next_url="/hub/spawn")
        page.check("#profile-cpu")
        page.click("button[type=submit]")
        find_and_load_iris(context, page, "en", shots, "library-docker")
    finally:
        context.close()
