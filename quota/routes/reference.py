"""The API reference for people, at /docs: every route with its description, parameters and
body, rendered from the service's own OpenAPI as plain HTML.

FastAPI's Swagger UI loads its script and styles from a CDN, which the service's
Content-Security-Policy (no outside hosts, no scripts: quota/web_guard.py) forbids and a
school's network may not reach. Tools read /openapi.json.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["reference"])


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def reference(request: Request) -> str:
    spec = request.app.openapi()
    base = request.scope.get("root_path", "").rstrip("/")
    sections = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            parameters = "".join(
                f"<li><code>{escape(p['name'])}</code> ({escape(p['in'])}{', required' if p.get('required') else ''}): "
                f"{escape(p.get('description') or p.get('schema', {}).get('description', ''))}</li>"
                for p in operation.get("parameters", [])
            )
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            body_name = body.get("$ref", "").rsplit("/", 1)[-1]
            sections.append(
                f"<h2 id='{escape(method + path)}'>{method.upper()} {escape(path)}</h2>"
                f"<p>{escape(operation.get('description', '')).replace(chr(10) * 2, '</p><p>')}</p>"
                + (f"<ul>{parameters}</ul>" if parameters else "")
                + (f"<p>Body: <code>{escape(body_name)}</code> (fields in <a href='{base}/openapi.json'>openapi.json</a>)</p>"
                   if body_name else "")
            )
    return (f"<!doctype html><meta charset=utf-8><title>{escape(spec['info']['title'])}: API reference</title>"
            f"<h1>{escape(spec['info']['title'])}</h1><p>{escape(spec['info'].get('description', ''))}</p>"
            f"<p>Send <code>Authorization: token &lt;JupyterHub API token&gt;</code>; the machine-readable reference is "
            f"<a href='{base}/openapi.json'>openapi.json</a>.</p>" + "".join(sections))
