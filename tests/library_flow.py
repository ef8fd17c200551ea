"""What a student does with the library in their browser, the same on every backend: from
JupyterLab's launcher to the catalogue page, then "open in a notebook" and running it
(tests/test_library_browser.py, tests/test_library_docker_browser.py).

- ``WORDS``: what the student reads, by language;
- :func:`find_and_load_iris`: launcher card -> catalogue (iris, its licence, size, snippet) ->
  the notebook -> ``df.head()`` of /srv/library/datasets/iris.csv; screenshots into ``shots``.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.browser import LAB_READY
from tests.hub_client import wait_for

WORDS = {
    "en": {"card": "Library", "title": "Library", "name": "Iris flowers", "licence": "Licence"},
    "zh-CN": {"card": "资料库", "title": "资料库", "name": "鸢尾花数据集", "licence": "许可协议"},
}


def find_and_load_iris(context, page, locale: str, shots: Path, label: str) -> None:
    """``page``: the student's JupyterLab, loading. Raises AssertionError where the student would be stuck."""
    words = WORDS[locale]
    page.wait_for_selector(LAB_READY, state="visible", timeout=120_000)
    card = page.locator(".jp-LauncherCard", has_text=words["card"])
    card.wait_for(timeout=30_000)
    page.screenshot(path=shots / f"{label}-1-launcher.png")

    with context.expect_page() as opened:
        card.click()
    catalogue = opened.value
    catalogue.wait_for_load_state()
    assert catalogue.locator("html").get_attribute("lang") == locale
    assert catalogue.locator("h1").inner_text() == words["title"]
    entry = catalogue.locator("#entry-iris")
    assert words["name"] in entry.locator("h2").inner_text()
    assert entry.locator("dt").first.inner_text() == words["licence"]
    assert entry.locator(".licence").inner_text().startswith("CC-BY-4.0")
    assert entry.locator(".size").inner_text() == "2.6 KB"
    assert 'pd.read_csv("/srv/library/datasets/iris.csv")' in entry.locator(".snippet").inner_text()
    catalogue.screenshot(path=shots / f"{label}-2-catalogue.png")

    entry.locator("button.open").click()
    catalogue.wait_for_url(re.compile(r".*/lab/tree/library-notebooks/iris\.ipynb"), timeout=30_000)
    cell = catalogue.locator(".jp-Notebook .jp-CodeCell").first
    cell.wait_for(timeout=60_000)
    catalogue.screenshot(path=shots / f"{label}-3-notebook.png")
    # Run it once its kernel is up (a cell run while JupyterLab still says "No Kernel" is dropped).
    kernels = catalogue.url.split("/lab/")[0] + "/api/kernels"
    wait_for(lambda: any(k["execution_state"] == "idle" for k in context.request.get(kernels).json()), 120,
             "the notebook's kernel to be ready")
    catalogue.wait_for_timeout(1000)  # for JupyterLab to connect to it
    cell.locator(".cm-content").click()
    catalogue.keyboard.press("Shift+Enter")
    output = catalogue.locator(".jp-OutputArea-output").first
    try:
        output.wait_for(timeout=120_000)
        wait_for(lambda: "sepal length (cm)" in output.inner_text(), 30, "the data frame in the output")
    finally:
        catalogue.screenshot(path=shots / f"{label}-4-loaded.png")
    assert output.locator("table").count() == 1  # pandas' HTML table of df.head()
