"""A student finds a dataset in the library and loads it in a notebook (issue 16), on the local
backend for real: hub, proxy, quota service, the sandboxed JupyterLab with the library bound
read-only at /srv/library, and headless Chromium.

JupyterLab's launcher has the library's card; it opens the catalogue page (in the student's
language) with the entry's licence, size and snippet; "open in a notebook" writes the notebook
into the home and opens it in JupyterLab, where running it loads the CSV with pandas. The
class's entry is linked in ~/datasets and the example notebook is in the home; the opening is
counted for the class in the quota service's usage.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.demo_library import write_sources
from quota import library as lib
from quota.alliance import load_alliance
from tests.browser import log_in
from tests.hub_client import wait_for
from tests.library_flow import find_and_load_iris
from tests.stack import running_stack

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DEMO = Path(__file__).resolve().parents[1] / "alliances" / "demo.yaml"
STUDENT = {"en": "c01-s1", "zh-CN": "c01-s2"}  # each starts their workspace in their browser's language
ALLIANCE = """
name: Library test alliance
language: zh-CN
tiers: {county: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - id: c01
    tier: county
    students: [c01-s1, c01-s2]
    teachers: [c01-teacher]
    classes: [{id: grade8-ai, teachers: [c01-teacher], students: [c01-s1, c01-s2], library: [iris]}]
"""


def alliance_text() -> str:
    """The test alliance with the demo's real iris entry (its size and checksum)."""
    import yaml

    iris = next(e for e in yaml.safe_load(DEMO.read_text(encoding="utf-8"))["library"] if e["id"] == "iris")
    return ALLIANCE + yaml.safe_dump({"library": [iris]}, allow_unicode=True)


@pytest.fixture(scope="module")
def library_stack(tmp_path_factory):
    here = tmp_path_factory.mktemp("library")
    text = alliance_text()
    (here / "a.yaml").write_text(text, encoding="utf-8")
    sources, root = write_sources(here / "sources"), here / "library"
    lib.add_entry(load_alliance(here / "a.yaml").library_entry("iris"), sources["iris"], root)
    config = {"LocalQuotaSpawner": {"library_root": str(root)}, "QuotaSpawnerMixin": {"library_usage_interval": 1},
              "Spawner": {"poll_interval": 3}}  # the openings collected within seconds
    with running_stack(here, text, config) as stack:
        stack.library_root = root
        yield stack


def opens_of_the_class(stack) -> int:
    with stack.quota() as quota:
        rows = quota.get("/api/library/usage").json()["opens"]
    assert all((row["entry"], row["school"], row["class"]) == ("iris", "c01", "grade8-ai") for row in rows), rows
    return sum(row["opens"] for row in rows)


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_student_finds_a_dataset_in_the_catalogue_and_loads_it_in_a_notebook(library_stack, browser, locale,
                                                                              tmp_path):
    stack, student = library_stack, STUDENT[locale]
    opened_before = opens_of_the_class(stack)
    shots = Path(os.environ.get("GPU_COMMONS_SCREENSHOTS") or tmp_path)
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    try:
        page = log_in(context, stack, student, next_url="/hub/spawn")
        page.check("#profile-cpu")
        page.click("button[type=submit]")
        find_and_load_iris(context, page, locale, shots, f"library-{locale}")
    finally:
        context.close()

    home = stack.data_dir / "homes" / student
    assert os.readlink(home / "datasets" / "iris.csv") == "/srv/library/datasets/iris.csv"
    assert (home / "library-examples.ipynb").is_file()
    assert (home / "library-notebooks" / "iris.ipynb").is_file()
    wait_for(lambda: opens_of_the_class(stack) == opened_before + 1, 30, "the opening to be counted for the class")
