"""Account care on the teacher's page, for the students teachers imported (quota/roster_classes.py):

- ``POST /pages/teacher/students/reset``: a new one-time password, shown once as a slip; the old
  slip and the password the student chose stop working (the student chooses a new one at their
  next sign-in).
- ``POST /pages/teacher/students/remove``: first a page that asks to confirm (no script on these
  pages, so no dialog), then, with ``confirm=yes``, the student leaves their class and can no longer sign
  in; a running or waiting GPU session is released; their usage records stay. Importing the same
  id again (same school) brings the account back.

A teacher cares for the students of the classes they teach, a school admin for their school's,
staff for all; the alliance file's students are changed in the file, not here.

:func:`new_slip` (one rule, ``reset_one_time``, one template, ``account_slips.html``) also prints
a created teacher's new slip on the classes page (quota/pages/classes.py).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from gpu_commons_i18n import _
from quota.pages.roster import hub_login_url
from quota.pages.teacher import _require_teacher, classes_of
from quota.pages.web import back_to, form_caller, page
from quota.roster_classes import deactivate, imported, reset_one_time
from quota.roster_store import hash_one_time, one_time_password

router = APIRouter(prefix="/pages/teacher/students", include_in_schema=False)
NOT_YOURS = "You may only change the accounts of imported students of your own classes."


async def _student(request: Request):
    caller, form = await form_caller(request)
    _require_teacher(caller)
    book = request.app.state.book
    account = form.get("account")
    groups = {(school.id, group.id): group for school, group in classes_of(caller, book.alliance)}
    row = imported(book, account)
    if row is None or row.role != "student" or (row.school, row.class_id) not in groups:
        raise HTTPException(403, NOT_YOURS)
    return caller, book, row, groups[(row.school, row.class_id)], form


def slips_page(request: Request, caller, slips: list[dict], heading, back: tuple):
    """The slips of new one-time passwords (account_slips.html), shown once: not stored by any cache."""
    response = page(request, caller, "account_slips.html", slips=slips, login_url=hub_login_url(request),
                    heading=heading, back=back)
    response.headers["cache-control"] = "no-store"
    return response


async def new_slip(request: Request, caller, book, row, class_name: str, back: tuple):
    """A new one-time password for the imported account ``row`` (a student, or a teacher created on
    the classes page: quota/roster_classes.py ``reset_one_time``), as its slip; 403 when the
    account was removed meanwhile."""
    password = one_time_password()
    hashed = await run_in_threadpool(hash_one_time, password)
    if not await run_in_threadpool(reset_one_time, book, row.account, hashed, caller.name):
        raise HTTPException(403, NOT_YOURS)  # removed meanwhile
    school = book.alliance.school(row.school)
    slips = [{"school": school.name or school.id, "class": class_name, "account": row.account,
              "name": " ".join(p for p in (row.last_name, row.first_name) if p), "password": password}]
    return slips_page(request, caller, slips, _("A new one-time password for {account}", account=row.account), back)


@router.post("/reset")
async def reset(request: Request):
    caller, book, row, group, _form = await _student(request)
    return await new_slip(request, caller, book, row, group.name or group.id,
                          ("/pages/teacher", _("Back to your classes")))


@router.post("/remove")
async def remove(request: Request):
    caller, book, row, group, form = await _student(request)
    if form.get("confirm") != "yes":
        return page(request, caller, "confirm_remove.html", account=row.account, class_name=group.name or group.id,
                    name=" ".join(p for p in (row.last_name, row.first_name) if p))
    await run_in_threadpool(deactivate, book, row.account, caller.name)
    return back_to(request, "/pages/teacher", removed=row.account)


@router.get("/reset")
@router.get("/remove")
def back_to_form(request: Request, lang: str = ""):
    """The language switch of a slip (a GET of the POST's address): the teacher's page again."""
    return back_to(request, "/pages/teacher", **({"lang": lang} if lang else {}))
