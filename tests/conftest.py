"""Shared fixtures.

- ``e2e_alliance``: path of a small alliance file with exactly one GPU slice, so a second
  student must queue.
- ``stack``: the real platform (hub + configurable-http-proxy + quota service) started
  from that file on free loopback ports, stopped after the module (see tests/stack.py).
- ``browser``: real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright; helpers
  for pages (log in, count what comes over the wire, a slow link) are in tests/browser.py.

Quota-service fixtures live in tests/quota_fixtures.py, fair-share fixtures in
tests/fairshare_fixtures.py; the Docker engine, the wheelhouse and the workspace image
(``docker_engine``, ``wheelhouse``, ``workspace_cpu_image``) in tests/docker_engine.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.stack import started_stack

pytest_plugins = ["tests.quota_fixtures", "tests.docker_engine"]

E2E_ALLIANCE = """
name: End-to-end test alliance
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30}
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2], teachers: [c01-teacher]}
  - {id: u01, tier: urban, students: [u01-s1]}
staff: [staff-admin]
"""


@pytest.fixture(scope="module")
def e2e_alliance(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("alliance") / "alliance.yaml"
    path.write_text(E2E_ALLIANCE)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory, e2e_alliance):
    with started_stack(tmp_path_factory.mktemp("data"), e2e_alliance, tail=200) as platform:
        yield platform


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing; run `make install-test` (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
