"""The library inside a workspace (issue 16, points 2 and 4): the catalogue page in both
languages, the snippets, the class's links and the example notebook that never replace a
student's file, the launcher plugin's hashed name; and the demo's real entries, made from the
installed scikit-learn and jieba, matching the demo alliance file and loading as the snippets say."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tomllib
from pathlib import Path

import pytest

from gpu_commons_workspace import library
from hub.demo_library import write_sources
from quota import library as lib
from quota.alliance import load_alliance

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "alliances" / "demo.yaml"
LABEXTENSION = REPO / "workspace" / "gpu_commons_workspace" / "library_labextension"
LOG = logging.getLogger("test")


@pytest.fixture(scope="module")
def demo_library(tmp_path_factory):
    """The demo's library as make install makes it: sources from the packages, then `library add`."""
    here = tmp_path_factory.mktemp("demo-library")
    sources = write_sources(here / "sources")
    root = here / "library"
    alliance = load_alliance(DEMO)
    for entry in alliance.library:
        lib.add_entry(entry, sources[entry.id], root, now=0.0)
    return root


def test_the_demo_entries_come_from_the_installed_packages_with_the_files_checksums(demo_library):
    entries = library.read_catalogue(demo_library)
    assert [e["id"] for e in entries] == ["breast-cancer", "diabetes", "digits", "iris", "wine", "jieba-dict"]
    for entry in entries:
        data = (demo_library / entry["path"]).read_bytes()
        assert len(data) == entry["size_bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("entry_id, rows, columns", [
    ("iris", 150, 5), ("wine", 178, 14), ("digits", 1797, 65), ("diabetes", 442, 11), ("breast-cancer", 569, 31),
])
def test_each_dataset_loads_with_its_snippet(demo_library, entry_id, rows, columns):
    entry = next(e for e in library.read_catalogue(demo_library) if e["id"] == entry_id)
    code = library.snippet(entry, str(demo_library))
    scope: dict = {}
    exec(code.rsplit("\n", 1)[0], scope)  # all but the last line (df.head(), for the notebook to show)
    assert scope["df"].shape == (rows, columns) and scope["df"].columns[-1] == "target"


def test_the_jieba_model_segments_chinese_with_its_snippet(demo_library, capsys):
    entry = next(e for e in library.read_catalogue(demo_library) if e["id"] == "jieba-dict")
    exec(library.snippet(entry, str(demo_library)), {})
    words = eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert "".join(words) == "我们在大学的图形处理器上学习机器学习" and "大学" in words and len(words) >= 5


@pytest.mark.parametrize("locale, title, open_button, licence", [
    ("zh-CN", "资料库", "在笔记本中打开", "许可协议"),
    ("en", "Library", "Open in a notebook", "Licence"),
])
def test_the_catalogue_page_speaks_the_students_language(demo_library, locale, title, open_button, licence):
    page = library.render_page(library.read_catalogue(demo_library), locale, '<input name="_xsrf">', "/user/c01-s1/",
                               str(demo_library))
    assert f'<html lang="{locale}">' in page and f"<h1>{title}</h1>" in page and page.count(f">{open_button}</button>") == 6
    assert f"<dt>{licence}</dt>" in page
    assert 'action="/user/c01-s1/gpu-commons/library/open/iris"' in page
    name = "鸢尾花数据集" if locale == "zh-CN" else "Iris flowers"
    assert f"<h2>{name} " in page
    assert '<dd class="size">4.8 MB</dd>' in page  # jieba's dictionary
    assert "&lt;" not in page.split("<pre")[0]  # nothing escaped twice before the snippets


def test_an_empty_library_says_so():
    page = library.render_page([], "en", "", "/user/x/")
    assert "The library is empty" in page


def test_the_page_escapes_what_the_catalogue_holds():
    entry = {"id": "x", "name": {"en": "<script>alert(1)</script>"}, "licence": "<b>", "path": "a.csv",
             "size_bytes": 1, "load_with": "pandas"}
    page = library.render_page([entry], "en", "", "/user/x/")
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>" not in page


def test_the_home_gets_the_class_links_and_the_examples_once_never_over_a_students_file(demo_library, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "datasets").mkdir()
    (home / "datasets" / "wine.csv").write_text("my own wine")
    attached = {"iris": "datasets/iris.csv", "wine": "datasets/wine.csv", "jieba-dict": "models/jieba/dict.txt"}
    library.prepare_home(home, str(demo_library), attached, "en", LOG)
    assert os.readlink(home / "datasets" / "iris.csv") == f"{demo_library}/datasets/iris.csv"
    assert os.readlink(home / "datasets" / "jieba-dict.txt") == f"{demo_library}/models/jieba/dict.txt"
    assert (home / "datasets" / "wine.csv").read_text() == "my own wine"
    examples = json.loads((home / "library-examples.ipynb").read_text())
    assert sum(cell["cell_type"] == "code" for cell in examples["cells"]) == 6
    (home / "library-examples.ipynb").write_text("{}")  # the student's own version now
    library.prepare_home(home, str(demo_library), attached, "en", LOG)
    assert (home / "library-examples.ipynb").read_text() == "{}"


def test_the_launcher_plugin_file_is_named_by_its_content_hash_everywhere():
    """After editing it: git mv it to remoteEntry.<first 20 hex digits of its sha256>.js and change
    the name in library_labextension/package.json and workspace/pyproject.toml."""
    (entry,) = (LABEXTENSION / "static").glob("remoteEntry*.js")
    digest = hashlib.sha256(entry.read_bytes()).hexdigest()[:20]
    assert entry.name == f"remoteEntry.{digest}.js", f"rename {entry.name} to remoteEntry.{digest}.js"
    assert json.loads((LABEXTENSION / "package.json").read_text())["jupyterlab"]["_build"]["load"] == f"static/{entry.name}"
    data_files = tomllib.loads((REPO / "workspace" / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["share/jupyter/labextensions/gpu-commons-library/static"] == [
        f"gpu_commons_workspace/library_labextension/static/{entry.name}"]
