"""The alliance's library inside a workspace: the catalogue page, the class's links, the example notebook.

The library is mounted read-only at ``GPU_COMMONS_LIBRARY`` (/srv/library) on every backend;
``catalogue.json`` there (written by ``gpu-commons library add``) says what it holds. This
module serves:

- ``GET <server>/gpu-commons/library``: the catalogue page in the student's language
  (``GPU_COMMONS_LOCALE``): each entry's name, description, licence, size, source and a snippet
  that loads it; ``?format=json`` gives the same for the JupyterLab plugin (its launcher item);
- ``POST <server>/gpu-commons/library/open/<id>``: the page's "open in a notebook" button. It
  writes ``~/library-notebooks/<id>.ipynb`` with the snippet (never over a file the student has
  there), counts the opening (:mod:`gpu_commons_workspace.library_usage`) and opens the notebook;
- ``GET <server>/gpu-commons/library/opens``: those counts, for the hub's spawner.

At the server's start the entries attached to the student's classes (``GPU_COMMONS_LIBRARY_ATTACHED``,
set by the spawner from the quota service's answer: the alliance file's and the teacher's page's)
are linked as ``~/datasets/<id>`` (links of detached entries removed), and
``~/library-examples.ipynb`` (one cell per entry) is written once; neither replaces a
student's own file.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from gpu_commons_i18n import DEFAULT_LOCALE, negotiate, translate

LIBRARY_PATH = "/srv/library"
CATALOGUE_FILE = "catalogue.json"
NOTEBOOKS_DIR = "library-notebooks"
EXAMPLES_NOTEBOOK = "library-examples.ipynb"
DATASETS_DIR = "datasets"


def read_catalogue(library: str | Path) -> list[dict]:
    """The entries in place, by kind and id; none when the library is not mounted."""
    try:
        data = json.loads((Path(library) / CATALOGUE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = [e for e in (data.get("entries") or {}).values() if isinstance(e, dict) and "id" in e]
    return sorted(entries, key=lambda e: (e.get("kind") != "dataset", e["id"]))


def snippet(entry: dict, library: str = LIBRARY_PATH) -> str:
    """Python that loads the entry, by its ``load_with``."""
    path = f"{library}/{entry['path']}"
    how = entry.get("load_with", "open")
    if how == "pandas":
        return f'import pandas as pd\n\ndf = pd.read_csv("{path}")\ndf.head()'
    if how == "torch":
        return f'import torch\n\nstate = torch.load("{path}", map_location="cpu")\nlist(state)[:5]'
    if how == "transformers":
        return (f'from transformers import AutoModel, AutoTokenizer\n\ntokenizer = AutoTokenizer.from_pretrained("{path}")'
                f'\nmodel = AutoModel.from_pretrained("{path}")')
    if how == "jieba":
        return (f'import jieba\n\ntokenizer = jieba.Tokenizer(dictionary="{path}")\n'
                f'print(tokenizer.lcut("我们在大学的图形处理器上学习机器学习"))')
    return f'with open("{path}", "rb") as f:\n    head = f.read(200)\nhead'


def human_size(num_bytes: int) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if num_bytes >= factor:
            return f"{num_bytes / factor:.1f} {unit}"
    return f"{num_bytes} B"


def page_sentences(locale: str) -> dict[str, str]:
    return {
        "title": translate("Library", locale),
        "intro": translate("Datasets and open models shared by the alliance. They are read-only: load them from "
                           "here, and save what you change in your home.", locale),
        "empty": translate("The library is empty: your teacher or the alliance's staff have not added anything yet.",
                           locale),
        "dataset": translate("Dataset", locale),
        "model": translate("Model", locale),
        "licence": translate("Licence", locale),
        "size": translate("Size", locale),
        "source": translate("Source", locale),
        "open": translate("Open in a notebook", locale),
        "launcher": translate("Library", locale),
        "launcher_caption": translate("Datasets and open models you can load", locale),
    }


def render_page(entries: list[dict], locale: str, xsrf_form: str, base_url: str, library: str = LIBRARY_PATH) -> str:
    """The catalogue page (plain HTML, no script: light on a slow link)."""
    words = page_sentences(locale)
    esc = html.escape
    items = []
    for entry in entries:
        name = (entry.get("name") or {}).get(locale) or (entry.get("name") or {}).get("en") or entry["id"]
        about = (entry.get("description") or {}).get(locale) or (entry.get("description") or {}).get("en") or ""
        action = url_path_join(base_url, "gpu-commons", "library", "open", entry["id"])
        items.append(
            f'<section class="entry" id="entry-{esc(entry["id"])}">'
            f'<h2>{esc(name)} <small>{esc(words.get(entry.get("kind", "dataset"), ""))} · {esc(entry["id"])}</small></h2>'
            f"<p>{esc(about)}</p>"
            f'<dl><dt>{esc(words["licence"])}</dt><dd class="licence">{esc(entry.get("licence", ""))}</dd>'
            f'<dt>{esc(words["size"])}</dt><dd class="size">{esc(human_size(int(entry.get("size_bytes", 0))))}</dd>'
            f'<dt>{esc(words["source"])}</dt><dd>{esc(entry.get("source", ""))}</dd></dl>'
            f'<pre class="snippet"><code>{esc(snippet(entry, library))}</code></pre>'
            f'<form method="post" action="{esc(action)}">{xsrf_form}'
            f'<button type="submit" class="open">{esc(words["open"])}</button></form></section>'
        )
    body = "".join(items) or f'<p class="empty">{esc(words["empty"])}</p>'
    return (
        f'<!DOCTYPE html><html lang="{esc(locale)}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(words["title"])}</title>'
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}"
        ".entry{border-top:1px solid #ccc;padding:.5em 0}dl{display:grid;grid-template-columns:max-content auto;"
        "gap:.2em 1em}dd{margin:0}pre{background:#f4f4f4;padding:.5em;overflow-x:auto}small{color:#555}</style>"
        f'</head><body><h1>{esc(words["title"])}</h1><p>{esc(words["intro"])}</p>{body}</body></html>'
    )


def notebook(cells: list[tuple[str, str]]) -> dict:
    """An nbformat 4 notebook of (markdown, code) pairs."""
    out = []
    for markdown, code in cells:
        if markdown:
            out.append({"cell_type": "markdown", "metadata": {}, "source": markdown})
        out.append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": code})
    return {"cells": out, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                      "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def entry_title(entry: dict, locale: str) -> str:
    name = (entry.get("name") or {}).get(locale) or (entry.get("name") or {}).get("en") or entry["id"]
    return f"## {name}\n\n{translate('Licence', locale)}: {entry.get('licence', '')}"


def write_new(path: Path, content: dict) -> bool:
    """Write ``path`` only when nothing is there (a student's own file wins); True when written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as out:
            json.dump(content, out, ensure_ascii=False, indent=1)
    except FileExistsError:
        return False
    return True


def prepare_home(home: str | Path, library: str, attached: dict[str, str], locale: str, log) -> None:
    """``~/datasets/<id>`` for the class's entries and the example notebook, once, never over a
    student's file; a link made for an entry no longer attached (a teacher detached it) is
    removed, only where it is still exactly the link made here."""
    home = Path(home)
    entries = read_catalogue(library)
    for entry in entries:
        link = home / DATASETS_DIR / (entry["id"] + "".join(Path(entry["path"]).suffixes))
        if entry["id"] not in attached and link.is_symlink() and os.readlink(link) == f"{library}/{entry['path']}":
            link.unlink()
    if attached:
        datasets = home / DATASETS_DIR
        datasets.mkdir(exist_ok=True)
        for entry_id, path in sorted(attached.items()):
            link = datasets / (entry_id + "".join(Path(path).suffixes))
            if not link.exists() and not link.is_symlink():
                link.symlink_to(f"{library}/{path}")
    if entries and write_new(home / EXAMPLES_NOTEBOOK,
                             notebook([(entry_title(e, locale), snippet(e, library)) for e in entries])):
        log.info("library: wrote %s (%d entries)", home / EXAMPLES_NOTEBOOK, len(entries))


class LibraryPage(JupyterHandler):
    @web.authenticated
    def get(self):
        settings = self.settings["gpu_commons_library"]
        entries = read_catalogue(settings["path"])
        locale = settings["locale"]
        self.set_header("Cache-Control", "no-store")
        if self.get_argument("format", "") == "json":
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"locale": locale, "sentences": page_sentences(locale),
                                    "entries": [e["id"] for e in entries]}))
            return
        self.finish(render_page(entries, locale, self.xsrf_form_html(), self.base_url, settings["path"]))


class OpenEntry(JupyterHandler):
    @web.authenticated
    def post(self, entry_id: str):
        settings = self.settings["gpu_commons_library"]
        entry = next((e for e in read_catalogue(settings["path"]) if e["id"] == entry_id), None)
        if entry is None:
            raise web.HTTPError(404, f"no library entry {entry_id}")
        locale = settings["locale"]
        relative = f"{NOTEBOOKS_DIR}/{entry_id}.ipynb"
        write_new(Path(os.path.expanduser("~")) / relative,
                  notebook([(entry_title(entry, locale), snippet(entry, settings["path"]))]))
        settings["usage"].opened(entry_id)
        self.redirect(url_path_join(self.base_url, "lab", "tree", relative))


class OpensCount(APIHandler):
    """What the hub's spawner collects (spawner/library.py): this server's openings so far."""

    @web.authenticated
    def get(self):
        usage = self.settings["gpu_commons_library"]["usage"]
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"server": usage.server_id, "opens": dict(usage.opened_here)}))


def load(serverapp, env=os.environ) -> None:
    """Part of the server extension's start (gpu_commons_workspace._load_jupyter_server_extension)."""
    from gpu_commons_workspace.library_usage import LibraryUsage

    library = env.get("GPU_COMMONS_LIBRARY", LIBRARY_PATH)
    locale = negotiate(env.get("GPU_COMMONS_LOCALE", ""), default=DEFAULT_LOCALE)
    web_app = serverapp.web_app
    usage = LibraryUsage(log=serverapp.log)
    web_app.settings["gpu_commons_library"] = {"path": library, "locale": locale, "usage": usage}
    base = url_path_join(web_app.settings["base_url"], "gpu-commons", "library")
    web_app.add_handlers(".*$", [(base, LibraryPage), (url_path_join(base, "open", r"([a-z0-9][a-z0-9-]*)"), OpenEntry),
                                 (url_path_join(base, "opens"), OpensCount)])
    try:
        attached = json.loads(env.get("GPU_COMMONS_LIBRARY_ATTACHED", "") or "{}")
        prepare_home(os.path.expanduser("~"), library, attached, locale, serverapp.log)
    except (OSError, ValueError) as exc:  # the workspace starts anyway; the page still lists the library
        serverapp.log.warning("library: cannot prepare the home: %s", exc)
