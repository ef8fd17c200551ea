"""The pages' one style sheet, served by the service itself (nothing from another host).
No login: it holds no data, and a style sheet's request carries no navigation metadata."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(prefix="/pages/static", include_in_schema=False)
CSS = (Path(__file__).resolve().parent / "static" / "pages.css").read_bytes()


@router.get("/pages.css")
def style_sheet() -> Response:
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})
