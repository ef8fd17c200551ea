"""The service's front page: the caller's pages, then the API's JSON for scripts."""

from __future__ import annotations

from fastapi import APIRouter, Request

from quota.deps import Caller
from quota.pages.web import page

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request, caller: Caller):
    return page(request, caller, "home.html")
