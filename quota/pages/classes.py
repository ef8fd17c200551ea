"""The classes page: a school admin (their school) or alliance staff (any school) creates a
class with its teacher, an existing teacher of the school or a new teacher account, whose
one-time password is printed once as a slip (quota/roster_classes.py stores them).

1. ``GET /pages/classes``: every class of the caller's schools (from the alliance file or
   created here) with its teachers, and the form.
2. ``POST /pages/classes``: checked (each wrong field named with its fix, nothing saved), then
   the class and the new teacher written in one transaction with their audit rows. The answer
   is the new teacher's slip (``Cache-Control: no-store``), or back to the page.

Teachers cannot create classes: a class is the school's decision (its timetable, its teacher),
and a roster import only fills classes that exist (docs/pages.md, "Classes and teachers").
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from gpu_commons_i18n import _
from quota.auth import Principal, Role
from quota.deps import Caller
from quota.pages.booking import FieldError
from quota.pages.roster import hub_login_url
from quota.pages.web import back_to, field_errors, form_caller, page, page_locale
from quota.roster_classes import AccountTaken, NewClass, class_problems, create_class
from quota.roster_store import file_alliance_of, hash_one_time, one_time_password

router = APIRouter(prefix="/pages/classes", include_in_schema=False)
CREATES = (Role.school_admin, Role.staff, Role.hub)
FIELDS = ("school", "class_id", "name", "teacher", "teacher_first_name", "teacher_last_name", "teacher_email")
LABELS = {
    "school": _("School"), "class_id": _("Class id"), "name": _("Class name"), "teacher": _("Teacher's account"),
    "teacher_first_name": _("New teacher's first name"), "teacher_last_name": _("New teacher's last name"),
    "teacher_email": _("New teacher's e-mail"),
}


def _require_creator(caller: Principal) -> None:
    if caller.role not in CREATES:
        raise HTTPException(403, "This page is for school admins and alliance staff.")


def schools_of(caller: Principal, alliance) -> list:
    return [s for s in alliance.schools if caller.role in (Role.staff, Role.hub) or s.id == caller.school]


def _view(request, caller, status_code=200, errors=(), values=None, notice=""):
    book = request.app.state.book
    schools = schools_of(caller, book.alliance)
    file_classes = {(s.id, g.id) for s in file_alliance_of(book).schools for g in s.classes}
    values = values or {"school": schools[0].id if schools else ""}
    return page(request, caller, "classes.html", status_code, schools=schools, file_classes=file_classes,
                values=values, notice=notice, errors=field_errors(errors, LABELS, page_locale(request)),
                error_fields={e.field for e in errors})


@router.get("")
def classes_page(request: Request, caller: Caller, created: str = ""):
    _require_creator(caller)
    notice = _("The class {id} is created; its teacher finds it on their page.", id=created) if created else ""
    return _view(request, caller, notice=notice)


@router.post("")
async def create(request: Request):
    caller, form = await form_caller(request)
    _require_creator(caller)
    book = request.app.state.book
    values = {name: form.get(name) for name in FIELDS}
    values["teacher"] = values["teacher"].lower()
    new = NewClass(**values)
    problems, creating = class_problems(new, book.alliance, [s.id for s in schools_of(caller, book.alliance)])
    if problems:
        return _view(request, caller, 422, [FieldError(p.field, p.message) for p in problems], values)
    password = one_time_password() if creating else None
    hashed = await run_in_threadpool(hash_one_time, password) if creating else None
    try:
        await run_in_threadpool(create_class, book, new, hashed, caller.name)
    except AccountTaken as exc:
        field = "class_id" if str(exc) == new.class_id else "teacher"
        return _view(request, caller, 409, [FieldError(field, _("{id} was created by someone else meanwhile; nothing was "
                                                                "saved. Choose another id.", id=str(exc)))], values)
    if not creating:
        return back_to(request, "/pages/classes", created=new.class_id)
    school = book.alliance.school(new.school)
    slips = [{"school": school.name or school.id, "class": new.name, "account": new.teacher,
              "name": " ".join(p for p in (new.teacher_last_name, new.teacher_first_name) if p), "password": password}]
    response = page(request, caller, "account_slips.html", slips=slips, login_url=hub_login_url(request),
                    heading=_("The class {id} is created with its new teacher", id=new.class_id),
                    back=("/pages/classes", _("Back to the classes")))
    response.headers["cache-control"] = "no-store"  # the password is shown once
    return response

