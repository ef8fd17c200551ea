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
import re
from pathlib import Path

import pytest

from hub.demo_library import write_sources
from quota import library as lib
from quota.alliance import load_alliance
from tests.browser import LAB_READY, log_in
from tests.hub_client import wait_for
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
WORDS = {
    "en": {"card": "Library", "title": "Library", "name": "Iris flowers", "licence": "Licence"},
    "zh-CN": {"card": "资料库", "title": "资料库", "name": "鸢尾花数据集", "licence": "许可协议"},
}


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
    stack, words, student = library_stack, WORDS[locale], STUDENT[locale]
    opened_before = opens_of_the_class(stack)
    shots = Path(os.environ.get("GPU_COMMONS_SCREENSHOTS") or tmp_path)
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    try:
        page = log_in(context, stack, student, next_url="/hub/spawn")
        page.check("#profile-cpu")
        page.click("button[type=submit]")
        page.wait_for_selector(LAB_READY, state="visible", timeout=120_000)
        card = page.locator(".jp-LauncherCard", has_text=words["card"])
        card.wait_for(timeout=30_000)
        page.screenshot(path=shots / f"library-{locale}-1-launcher.png")

        with context.expect_page() as opened:
            card.click()
        catalogue = opened.value
        catalogue.wait_for_load_state()
        assert catalogue.locator("h1").inner_text() == words["title"]
        entry = catalogue.locator("#entry-iris")
        assert catalogue.locator("html").get_attribute("lang") == locale
        assert words["name"] in entry.locator("h2").inner_text()
        assert entry.locator("dt").first.inner_text() == words["licence"]
        assert entry.locator(".licence").inner_text().startswith("CC-BY-4.0")
        assert entry.locator(".size").inner_text() == "2.6 KB"
        assert 'pd.read_csv("/srv/library/datasets/iris.csv")' in entry.locator(".snippet").inner_text()
        catalogue.screenshot(path=shots / f"library-{locale}-2-catalogue.png")

        entry.locator("button.open").click()
        catalogue.wait_for_url(re.compile(r".*/lab/tree/library-notebooks/iris\.ipynb"), timeout=30_000)
        cell = catalogue.locator(".jp-Notebook .jp-CodeCell").first
        cell.wait_for(timeout=60_000)
        catalogue.screenshot(path=shots / f"library-{locale}-3-notebook.png")
        cell.locator(".cm-content").click()
        catalogue.keyboard.press("Shift+Enter")
        output = catalogue.locator(".jp-OutputArea-output").first
        try:
            output.wait_for(timeout=120_000)
            wait_for(lambda: "sepal length (cm)" in output.inner_text(), 30, "the data frame in the output")
        finally:
            catalogue.screenshot(path=shots / f"library-{locale}-4-loaded.png")
        assert output.locator("table").count() == 1  # pandas' HTML table of df.head()
    finally:
        context.close()

    home = stack.data_dir / "homes" / student
    assert os.readlink(home / "datasets" / "iris.csv") == "/srv/library/datasets/iris.csv"
    assert (home / "library-examples.ipynb").is_file()
    assert (home / "library-notebooks" / "iris.ipynb").is_file()
    wait_for(lambda: opens_of_the_class(stack) == opened_before + 1, 30, "the opening to be counted for the class")
