"""The workspace server's static files on a slow link (workspace/gpu_commons_workspace/static_files.py),
without a server: which browsers get brotli, what is precompressed, which extension files may
be cached for good, and the files the workspace package ships for that. The browser test
(tests/test_slow_links.py) sees the same through a real hub and JupyterLab."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from pathlib import Path

import brotli
import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from gpu_commons_workspace.static_files import (
    accepts_brotli,
    has_fresh_brotli,
    hashed_labextension_urls,
    precompress,
    preload_core,
)

WORKSPACE = Path(__file__).resolve().parent.parent / "workspace"
LABEXTENSION = WORKSPACE / "gpu_commons_workspace" / "labextension"


@pytest.mark.parametrize("header, accepted", [
    ("gzip, deflate, br, zstd", True),
    ("br;q=0.8, gzip", True),
    ("gzip, br;q=0", False),
    ("gzip, deflate", False),
    ("", False),
    ("brotli", False),
])
def test_brotli_is_sent_only_where_the_browser_accepts_it(header, accepted):
    assert accepts_brotli(header) is accepted


def test_precompress_writes_a_smaller_br_beside_each_compressible_file_once(tmp_path):
    script = tmp_path / "app.0123456789abcdef.js"
    script.write_text("function hello() { return 'hello'; }\n" * 200)
    small = tmp_path / "tiny.js"
    small.write_text("x=1")
    font = tmp_path / "font.woff2"
    font.write_bytes(os.urandom(4096))  # already compressed: left alone

    written, before, after = precompress(tmp_path, quality=5)
    assert (written, before) == (1, script.stat().st_size) and after < before / 10
    assert brotli.decompress((tmp_path / f"{script.name}.br").read_bytes()) == script.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([script.name, f"{script.name}.br", small.name, font.name])
    assert has_fresh_brotli(str(script)) and precompress(tmp_path, quality=5)[0] == 0  # done once


def test_a_br_older_than_its_file_is_not_sent_and_is_written_again(tmp_path):
    script = tmp_path / "main.js"
    script.write_text("var a = 'first version';\n" * 100)
    precompress(tmp_path, quality=5)
    script.write_text("var b = 'second version';\n" * 100)
    old = script.stat().st_mtime - 60
    os.utime(tmp_path / "main.js.br", (old, old))
    assert not has_fresh_brotli(str(script))
    assert precompress(tmp_path, quality=5)[0] == 1
    assert brotli.decompress((tmp_path / "main.js.br").read_bytes()) == script.read_bytes()


def test_only_extensions_whose_entry_file_carries_a_hash_are_cached_for_good(tmp_path):
    def extension(name: str, load: str) -> None:
        folder = tmp_path / name
        (folder / "static").mkdir(parents=True)
        (folder / "package.json").write_text(json.dumps({"name": name, "jupyterlab": {"_build": {"load": load}}}))

    extension("built", "static/remoteEntry.5cbb9d2323598fbda535.js")
    extension("@scope/built", "static/remoteEntry.0123456789abcdef0123.js")
    extension("by-hand", "static/remoteEntry.js")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "package.json").write_text("{not json")

    assert hashed_labextension_urls("/user/c01-s1/", [str(tmp_path), str(tmp_path / "missing")]) == [
        "/user/c01-s1/lab/extensions/@scope/built/static/",
        "/user/c01-s1/lab/extensions/built/static/",
    ]


def test_jupyterlab_pages_and_only_they_say_to_preload_the_core_script(tmp_path):
    (tmp_path / "jlab_core.8811dd2733d03721.js").write_text("core")
    (tmp_path / "main.efd36b46f3b45eb8.js").write_text("main")

    class WebApp:
        settings = {"base_url": "/user/c01-s1/"}
        transforms: list = []

    web_app = WebApp()
    preload_core(web_app, tmp_path)
    (transform,) = web_app.transforms

    def link(path: str, status: int = 200, content_type: str = "text/html; charset=UTF-8", method: str = "GET"):
        headers = HTTPHeaders({"Content-Type": content_type})
        request = HTTPServerRequest(start_line=RequestStartLine(method, path, "HTTP/1.1"),
                                    headers=HTTPHeaders({"Host": "127.0.0.1"}))
        transform(request).transform_first_chunk(status, headers, b"", True)
        return headers.get("Link")

    expected = "</user/c01-s1/static/lab/jlab_core.8811dd2733d03721.js?v=8811dd2733d03721>; rel=preload; as=script"
    for page in ("/user/c01-s1/lab", "/user/c01-s1/lab/", "/user/c01-s1/lab/tree/notes/a.ipynb",
                 "/user/c01-s1/lab/workspaces/auto-x?reset"):
        assert link(page) == expected, page
    assert link("/user/c01-s1/lab/api/settings", content_type="application/json") is None
    assert link("/user/c01-s1/lab/api/settings") is None
    assert link("/user/c01-s1/lab", status=302) is None
    assert link("/user/c01-s1/lab", method="HEAD") is None
    assert link("/user/c01-s2/lab") is None


def test_the_lease_plugin_file_is_named_by_its_content_hash_everywhere():
    """Browsers keep it for a year, so a changed plugin must get a new name. After editing it:
    git mv it to remoteEntry.<first 20 hex digits of its sha256>.js, and change the name in
    labextension/package.json and workspace/pyproject.toml."""
    (entry,) = (LABEXTENSION / "static").glob("remoteEntry*.js")
    digest = hashlib.sha256(entry.read_bytes()).hexdigest()[:20]
    assert entry.name == f"remoteEntry.{digest}.js", f"rename {entry.name} to remoteEntry.{digest}.js"
    package = json.loads((LABEXTENSION / "package.json").read_text())
    assert package["jupyterlab"]["_build"]["load"] == f"static/{entry.name}"
    data_files = tomllib.loads((WORKSPACE / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["share/jupyter/labextensions/gpu-commons-lease/static"] == [
        f"gpu_commons_workspace/labextension/static/{entry.name}"]


def test_the_shipped_lab_settings_turn_the_news_off_with_values_jupyterlab_knows():
    data_files = tomllib.loads((WORKSPACE / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    (shipped,) = data_files["share/jupyter/lab/settings/overrides.d"]
    overrides = json.loads((WORKSPACE / shipped).read_text())
    from jupyterlab.commands import get_app_dir

    schema = json.loads((Path(get_app_dir()) / "schemas" / "@jupyterlab" / "apputils-extension" / "notification.json")
                        .read_text())["properties"]
    notification = overrides["@jupyterlab/apputils-extension:notification"]
    assert notification["fetchNews"] == "false"
    assert notification["fetchNews"] in [choice["const"] for choice in schema["fetchNews"]["oneOf"]]
    assert set(notification) <= set(schema) and isinstance(notification["checkForUpdates"], bool)
    assert all(re.fullmatch(r"@[\w-]+/[\w-]+:[\w-]+", plugin) for plugin in overrides)
