"""How the workspace's server sends its static files over a county school's 2 Mbit/s link.

JupyterLab's 13 MB of scripts are what a student waits for (docs/slow-links.md). The
extension sets the server up (:func:`configure`, :func:`cache_hashed_extensions`, :func:`preload_core`):

- responses compressed with gzip as they are sent (Tornado's ``compress_response``);
- JupyterLab's static files sent precompressed with brotli where that was done: brotli at
  its highest quality makes the largest scripts a quarter smaller than gzip does, but takes
  seconds per file, so it is done once, when the environment is built::

      python -m gpu_commons_workspace.static_files            # JupyterLab's and Jupyter Server's
      python -m gpu_commons_workspace.static_files DIR ...    # other folders

  writes ``<file>.br`` beside each compressible file (images/workspace-cpu/Dockerfile and
  ``make install`` run it). :class:`PrecompressedFileHandler`, the server's static file
  handler, sends that file with ``Content-Encoding: br`` to a browser that accepts brotli,
  and the file itself (gzipped on the fly) otherwise, or when no ``.br`` as new as the
  file is there;
- the files of prebuilt JupyterLab extensions whose names carry a content hash
  (``remoteEntry.<hash>.js``) cached for a year like JupyterLab's own. jupyterlab_server
  marks them so without the server's base URL, which misses them under JupyterHub
  (``/user/<name>/``): the browser asked again for each at every start, one round trip
  before JupyterLab's core could load;
- JupyterLab's page tells the browser to fetch the core script (``jlab_core``, half of what a
  first start carries) at once, not three round trips later.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import re
import sys
from pathlib import Path

from jupyter_core.paths import jupyter_path
from jupyter_server.base.handlers import FileFindHandler
from jupyter_server.utils import url_path_join
from tornado import httputil, web

COMPRESSIBLE = (".js", ".mjs", ".css", ".json", ".svg", ".html", ".ttf", ".eot", ".ico")
MIN_SIZE = 1024  # smaller files are not worth a second copy
SUFFIX = ".br"
HASHED_ENTRY = re.compile(r"(^|/)remoteEntry\.[0-9a-f]{16,}\.js$")  # as JupyterLab's builder names it
LABEXTENSIONS_URL = "lab/extensions"  # JupyterLab's (LabServerApp.labextensions_url), below the base URL


def configure(serverapp) -> None:
    """Compressed responses and precompressed static files, set in the server's settings at
    the link step, before the server builds its web application (which reads them once).
    ``--ServerApp.tornado_settings={"compress_response": False}`` switches both off."""
    settings = serverapp.tornado_settings
    if settings.setdefault("compress_response", True):
        settings.setdefault("static_handler_class", PrecompressedFileHandler)


def cache_hashed_extensions(web_app) -> None:
    """At the load step, once the base URL is final (jupyterhub-singleuser sets it at its own
    link step): the hashed extension files join the files cached for a year (read at each
    request; JupyterLab's own load step, before or after, keeps them)."""
    hashed = hashed_labextension_urls(web_app.settings["base_url"], jupyter_path("labextensions"))
    cached = web_app.settings.setdefault("static_immutable_cache", [])
    cached.extend(url for url in hashed if url not in cached)


def preload_core(web_app, static_dir: Path | None = None) -> None:
    """At the load step: JupyterLab's page says in its headers (``Link: rel=preload``) to fetch
    JupyterLab's core script at once. JupyterLab asks for it only once its first script and the
    extensions' entry files are in, three round trips after the page, during which a slow link
    carries little."""
    static_dir = static_dir or default_folders()[0]
    cores = sorted(static_dir.glob("jlab_core.*.js"))
    if len(cores) != 1:
        return
    digest = cores[0].name.split(".")[1]
    base_url = web_app.settings["base_url"]
    link = f"<{url_path_join(base_url, 'static/lab', cores[0].name)}?v={digest}>; rel=preload; as=script"
    page = re.compile(re.escape(url_path_join(base_url, "lab")) + r"(/(tree|workspaces)(/.*)?)?/?$")

    class PreloadCore(web.OutputTransform):
        def __init__(self, request: httputil.HTTPServerRequest) -> None:
            self._page = request.method == "GET" and bool(page.match(request.path))

        def transform_first_chunk(self, status_code, headers, chunk, finishing):
            if self._page and status_code == 200 and headers.get("Content-Type", "").startswith("text/html"):
                headers.add("Link", link)
            return status_code, headers, chunk

    web_app.transforms.append(PreloadCore)


def hashed_labextension_urls(base_url: str, labextension_dirs: list[str]) -> list[str]:
    """The URL of the static folder of each prebuilt extension whose entry file's name carries
    a content hash (JupyterLab's builder names every file it writes so); an extension whose
    entry has a plain name is asked again each time, so that a new version is seen."""
    urls = set()
    for folder in labextension_dirs:
        for package in Path(folder).glob("**/package.json"):
            try:
                load = json.loads(package.read_text(encoding="utf-8"))["jupyterlab"]["_build"]["load"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(load, str) and HASHED_ENTRY.search(load) and (package.parent / "static").is_dir():
                name = package.parent.relative_to(folder).as_posix()
                urls.add(url_path_join(base_url, LABEXTENSIONS_URL, name, "static/"))
    return sorted(urls)


def accepts_brotli(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header lists ``br`` without refusing it (``br;q=0``)."""
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() != "br":
            continue
        params = params.strip()
        try:
            return float(params.removeprefix("q=")) > 0 if params.startswith("q=") else True
        except ValueError:
            return False
    return False


def has_fresh_brotli(path: str) -> bool:
    """Whether ``<path>.br`` is there and at least as new as ``path``."""
    try:
        return os.stat(path + SUFFIX).st_mtime >= os.stat(path).st_mtime
    except OSError:
        return False


class PrecompressedFileHandler(FileFindHandler):
    """Jupyter Server's static file handler, sending ``<file>.br`` where the browser accepts
    brotli and that file is at least as new as the file asked for."""

    _original_path: str | None = None

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        path = super().validate_absolute_path(root, absolute_path)
        self._original_path = path
        if path and accepts_brotli(self.request.headers.get("Accept-Encoding", "")) and has_fresh_brotli(path):
            try:
                return super().validate_absolute_path(root, path + SUFFIX)
            except web.HTTPError:  # e.g. a link out of the static folder: send the file itself
                return path
        return path

    @property
    def _sends_brotli(self) -> bool:
        return bool(self.absolute_path and self._original_path and self.absolute_path != self._original_path)

    def get_content_type(self) -> str:
        if not self._sends_brotli:
            return super().get_content_type()
        mime_type, _ = mimetypes.guess_type(self._original_path)
        return mime_type or "application/octet-stream"

    def set_extra_headers(self, path: str) -> None:
        super().set_extra_headers(path)
        if self._sends_brotli:
            self.set_header("Content-Encoding", "br")  # Tornado's gzip then leaves the response alone
        gzipping = self.settings.get("compress_response") or self.settings.get("gzip")
        if not gzipping and self._original_path and has_fresh_brotli(self._original_path):
            self.add_header("Vary", "Accept-Encoding")  # with gzip on, Tornado adds it to every response


def precompress(folder: Path, quality: int = 11) -> tuple[int, int, int]:
    """Write ``<file>.br`` beside each compressible file of ``folder`` (and below) that has
    none as new as itself, where it comes out smaller. Returns (files written, their bytes,
    the bytes of their ``.br``)."""
    import brotli

    written = before = after = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or not path.name.endswith(COMPRESSIBLE):
            continue
        size = path.stat().st_size
        if size < MIN_SIZE or has_fresh_brotli(str(path)):
            continue
        data = brotli.compress(path.read_bytes(), quality=quality)
        if len(data) >= size:
            continue
        encoded = path.with_name(path.name + SUFFIX)
        partial = encoded.with_name(encoded.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, encoded)  # never a half-written .br, which the handler would send
        written, before, after = written + 1, before + size, after + len(data)
    return written, before, after


def default_folders() -> list[Path]:
    """JupyterLab's static folder and Jupyter Server's (its 32 kB favicon comes with every start)."""
    import jupyter_server
    from jupyterlab.commands import get_app_dir

    return [Path(get_app_dir()) / "static", Path(jupyter_server.__file__).parent / "static"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write <file>.br beside JupyterLab's compressible static files.")
    parser.add_argument("folders", nargs="*", type=Path, help="default: JupyterLab's and Jupyter Server's static folders")
    parser.add_argument("--quality", type=int, default=11, help="brotli quality, 0-11 (default 11)")
    args = parser.parse_args(argv)
    for folder in args.folders or default_folders():
        if not folder.is_dir():
            print(f"{folder}: no such folder", file=sys.stderr)
            return 1
        written, before, after = precompress(folder, args.quality)
        print(f"{folder}: {written} files precompressed, {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
