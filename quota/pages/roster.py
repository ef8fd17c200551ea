"""The roster import on the teacher's page: upload a CSV, see a verdict per row, import, print
the new students' one-time passwords as slips.

1. ``GET /pages/teacher/roster``: the upload form (a file and the page's CSRF token, multipart).
2. ``POST /pages/teacher/roster/preview``: the file decoded (which encoding is said), each row's
   verdict (quota/roster.py); nothing is saved. With no refused row the page carries the file
   (base64, in a hidden field) to the *Import* button.
3. ``POST /pages/teacher/roster/import``: the file checked again against what exists now, then
   every row written in one transaction (quota/roster_store.py), or none when a row is refused.
   The answer is the report and one slip per new student: the only time their one-time
   passwords are shown (only bcrypt hashes are stored).

A teacher imports into the classes they teach, a school admin into their school's classes,
staff into any class (written ``school/class``). See docs/pages.md ("Roster import").
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import os

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from gpu_commons_i18n import _
from quota.deps import Caller
from quota.pages.teacher import classes_of, _require_teacher
from quota.pages.web import back_to, checked_caller, form_caller, page
from quota.roster import MAX_BYTES, RosterFileError, decode, plan, read_rows
from quota.roster_store import RosterChanged, apply, existing, file_accounts, file_alliance_of, hash_one_time, one_time_password, rows

router = APIRouter(prefix="/pages/teacher/roster", include_in_schema=False)


def importable_classes(caller, alliance) -> dict[str, tuple[str, str]]:
    """What the caller may write in the class column -> (school, class): ``school/class`` always,
    the bare class id too when only one of the caller's schools has a class of that id."""
    pairs = classes_of(caller, alliance)
    found = {f"{school.id}/{group.id}": (school.id, group.id) for school, group in pairs}
    ids = [group.id for _school, group in pairs]
    found.update({group.id: (school.id, group.id) for school, group in pairs if ids.count(group.id) == 1})
    return found


def _plan(book, caller, data: bytes):
    text, encoding = decode(data)
    found, ignored = read_rows(text)
    entries = book.read_policy(lambda session, now: existing(rows(session)))
    return plan(found, encoding, classes=importable_classes(caller, book.alliance),
                file_accounts=file_accounts(file_alliance_of(book)), existing=entries, ignored=ignored)


def _form(request, caller, status_code=200, **context):
    classes = classes_of(caller, request.app.state.book.alliance)
    return page(request, caller, "roster.html", status_code, classes=classes, max_kb=MAX_BYTES // 1024,
                **{"plan": None, "file_error": None, "carried": "", **context})


@router.get("")
def roster_form(request: Request, caller: Caller):
    _require_teacher(caller)
    return _form(request, caller)


@router.get("/preview")
@router.get("/import")
def back_to_form(request: Request, lang: str = ""):
    """The language switch of a preview or of the slips (a GET of a POST's address): the
    form again, in that language (the slips are not shown twice)."""
    return back_to(request, "/pages/teacher/roster", **({"lang": lang} if lang else {}))


def _uploaded(request: Request, body: bytes) -> tuple[str, bytes | None]:
    """The CSRF token and the file of a multipart form (None when no file was chosen)."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise HTTPException(400, "Send the roster with the page's upload form.")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + kind.encode("latin-1") + b"\r\n\r\n" + body)
    token, data = "", None
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if name == "csrf":
            token = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
        elif name == "file" and part.get_filename():
            data = part.get_payload(decode=True) or b""
    return token, data


@router.post("/preview")
async def preview(request: Request):
    body = await request.body()
    token, data = _uploaded(request, body)
    caller = await checked_caller(request, token)
    _require_teacher(caller)
    if data is None:
        return _form(request, caller, 422, file_error=_("Choose a CSV file first."))
    book = request.app.state.book
    try:
        found = _plan(book, caller, data)
    except RosterFileError as exc:
        return _form(request, caller, 422, file_error=exc.message)
    carried = "" if found.refused or not found.writes else base64.b64encode(data).decode()
    return _form(request, caller, 422 if found.refused else 200, plan=found, carried=carried)


@router.post("/import")
async def import_roster(request: Request):
    caller, form = await form_caller(request)
    _require_teacher(caller)
    book = request.app.state.book
    try:
        data = base64.b64decode(form.get("file"), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, "The form could not be read; upload the file again.") from None
    try:
        found = _plan(book, caller, data)  # again: the roster may have changed since the preview
    except RosterFileError as exc:
        return _form(request, caller, 422, file_error=exc.message)
    if found.refused:
        return _form(request, caller, 422, plan=found)
    created = [v for v in found.writes if v.outcome == "created"]
    passwords = {v.row.account: one_time_password() for v in created}
    hashes = await run_in_threadpool(lambda: {a: hash_one_time(p) for a, p in passwords.items()})
    try:
        await run_in_threadpool(apply, book, found, hashes, caller.name)
    except RosterChanged:
        return _form(request, caller, 409, file_error=_("Another import changed some of these students meanwhile; "
                                                        "nothing was saved. Preview the file again."))
    schools = {school.id: school for school in book.alliance.schools}
    slips = [{"school": schools[v.school].name or v.school,
              "class": next((g.name or g.id for g in schools[v.school].classes if g.id == v.class_id), v.class_id),
              "account": v.row.account, "name": " ".join(p for p in (v.row.last_name, v.row.first_name) if p),
              "password": passwords[v.row.account]} for v in created]
    response = page(request, caller, "roster_slips.html", plan=found, slips=slips, login_url=hub_login_url(request))
    response.headers["cache-control"] = "no-store"  # the passwords are shown once
    return response


def hub_login_url(request: Request) -> str:
    """The hub's login page as the teacher's browser reaches it (through the hub's proxy)."""
    proto = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "localhost")
    base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
    return f"{proto}://{host}{base.rstrip('/')}/hub/login"

