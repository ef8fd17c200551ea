"""The classes page: a school admin (their school) or alliance staff (any school) creates a
class with its teacher, an existing teacher of the school or a new teacher account, whose
one-time password is printed once as a slip (quota/roster_classes.py stores them).

1. ``GET /pages/classes``: every class of the caller's schools (from the alliance file or
   created here) with its teachers, and the form.
2. ``POST /pages/classes``: checked (each wrong field named with its fix, nothing saved), then
   the class and the new teacher written in one transaction with their audit rows. The answer
   is the new teacher's slip (``Cache-Control: no-store``), or back to the page.
3. ``GET /pages/classes/edit?school=&class_id=``: a created class's page: ``POST
   /pages/classes/change`` renames it or gives it another of the school's teachers; ``POST
   /pages/classes/remove`` asks to confirm, then removes it, refused (422, naming what depends
   on it: its students, its lessons booked) while anything does. A class of the alliance file
   is shown with the sentence that it changes in the file.
4. ``POST /pages/classes/teachers/reset``: a new slip for a teacher created here (the old slip
   and the password they chose stop working), as the teacher's page prints one for a student.

Teachers cannot create classes: a class is the school's decision (its timetable, its teacher),
and a roster import only fills classes that exist (docs/pages.md, "Classes and teachers").
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from gpu_commons_i18n import _
from quota.auth import Principal, Role
from quota.deps import Caller
from quota.pages.accounts import new_slip, slips_page
from quota.pages.booking import FieldError
from quota.pages.web import back_to, field_errors, form_caller, page, page_locale
from quota.roster_classes import (AccountTaken, ClassChange, ClassGone, ClassInUse, NewClass, change_class,
                                  change_problems, class_problems, create_class, created_class, created_teacher,
                                  file_class_problem, removal_problems, remove_class)
from quota.roster_store import file_alliance_of, hash_one_time, one_time_password, rows

router = APIRouter(prefix="/pages/classes", include_in_schema=False)
CREATES = (Role.school_admin, Role.staff, Role.hub)
FIELDS = ("school", "class_id", "name", "teacher", "teacher_first_name", "teacher_last_name", "teacher_email")
LABELS = {
    "school": _("School"), "class_id": _("Class id"), "name": _("Class name"), "teacher": _("Teacher's account"),
    "teacher_first_name": _("New teacher's first name"), "teacher_last_name": _("New teacher's last name"),
    "teacher_email": _("New teacher's e-mail"),
    "students": _("Students"), "bookings": _("Booked lessons"),
}
NOT_YOURS = "You may only change the classes and teachers created on this page in your schools."


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
    ids = {s.id for s in schools}
    created = [row for row in book.read_policy(lambda session, now: rows(session))
               if row.role == "teacher" and row.deactivated_at is None and row.school in ids]
    teachers = {school.id: [(row, [g.name or g.id for g in school.classes if row.account in g.teachers])
                            for row in created if row.school == school.id] for school in schools}
    return page(request, caller, "classes.html", status_code, schools=schools, file_classes=file_classes,
                values=values, notice=notice, errors=field_errors(errors, LABELS, page_locale(request)),
                error_fields={e.field for e in errors}, created_teachers=teachers)


@router.get("")
def classes_page(request: Request, caller: Caller, created: str = "", removed: str = ""):
    _require_creator(caller)
    notice = _("The class {id} is created; its teacher finds it on their page.", id=created) if created else ""
    if removed:
        notice = _("The class {id} is removed.", id=removed)
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
    return slips_page(request, caller, slips, _("The class {id} is created with its new teacher", id=new.class_id),
                      ("/pages/classes", _("Back to the classes")))


# -- a created class changed or removed; a created teacher's new slip -----------------------

def _class_of(caller: Principal, book, school_id: str, class_id: str):
    """(school, class) of one of the caller's schools, else 403 (another school) or 404."""
    school = next((s for s in schools_of(caller, book.alliance) if s.id == school_id), None)
    if school is None:
        raise HTTPException(403, NOT_YOURS)
    group = next((g for g in school.classes if g.id == class_id), None)
    if group is None:
        raise HTTPException(404, f"School {school_id} has no class '{class_id}'; open the classes page again.")
    return school, group


def _edit_view(request, caller, school, group, status_code=200, errors=(), values=None, notice="", confirm=False):
    book = request.app.state.book
    created = created_class(book, school.id, group.id)
    file_problem = file_class_problem(book, school.id, group.id)
    if created is not None and file_problem is None:
        in_use = book.read_policy(lambda session, now: removal_problems(session, book, school.id, group.id, now))
    else:
        in_use = []
    values = values or {"name": group.name, "teacher": created.teacher if created else ""}
    locale = page_locale(request)
    return page(request, caller, "class_edit.html", status_code, school=school, group=group,
                editable=created is not None and file_problem is None,
                file_notice=file_problem.message if file_problem else "", in_use=[p.message for p in in_use],
                values=values, teachers=school.teachers, confirm=confirm, notice=notice,
                errors=field_errors(errors, LABELS, locale), error_fields={e.field for e in errors})


@router.get("/edit")
def edit_page(request: Request, caller: Caller, school: str = "", class_id: str = "", changed: str = ""):
    _require_creator(caller)
    found_school, group = _class_of(caller, request.app.state.book, school, class_id)
    notice = _("The class {id} is changed; its teacher sees it on their page.", id=class_id) if changed else ""
    return _edit_view(request, caller, found_school, group, notice=notice)


async def _class_form(request: Request):
    caller, form = await form_caller(request)
    _require_creator(caller)
    book = request.app.state.book
    school, group = _class_of(caller, book, form.get("school"), form.get("class_id"))
    return caller, form, book, school, group


def _refused(request, caller, school, group, problems, values=None):
    return _edit_view(request, caller, school, group, 422, [FieldError(p.field, p.message) for p in problems], values)


@router.post("/change")
async def change(request: Request):
    caller, form, book, school, group = await _class_form(request)
    values = {"name": form.get("name"), "teacher": form.get("teacher").lower()}
    file_problem = file_class_problem(book, school.id, group.id)
    problems = [file_problem] if file_problem else change_problems(ClassChange(school.id, group.id, **values),
                                                                   book.alliance)
    if problems:
        return _refused(request, caller, school, group, problems, values)
    try:
        await run_in_threadpool(change_class, book, ClassChange(school.id, group.id, **values), caller.name)
    except ClassGone:
        raise HTTPException(404, f"The class '{group.id}' was removed meanwhile; open the classes page again.") from None
    return back_to(request, "/pages/classes/edit", school=school.id, class_id=group.id, changed="1")


@router.post("/remove")
async def remove(request: Request):
    caller, form, book, school, group = await _class_form(request)
    file_problem = file_class_problem(book, school.id, group.id)
    if file_problem:
        return _refused(request, caller, school, group, [file_problem])
    if form.get("confirm") != "yes":
        in_use = book.read_policy(lambda session, now: removal_problems(session, book, school.id, group.id, now))
        if in_use:
            return _refused(request, caller, school, group, in_use)
        return _edit_view(request, caller, school, group, confirm=True)
    try:
        await run_in_threadpool(remove_class, book, school.id, group.id, caller.name)
    except ClassInUse as exc:  # a student imported or a lesson booked meanwhile
        return _refused(request, caller, school, group, exc.problems)
    except ClassGone:
        raise HTTPException(404, f"The class '{group.id}' was removed meanwhile; open the classes page again.") from None
    return back_to(request, "/pages/classes", removed=group.id)


@router.post("/teachers/reset")
async def reset_teacher(request: Request):
    """A new one-time password for a teacher created on this page (quota/roster_classes.py
    ``reset_one_time``, the rule the teacher's page uses for a student)."""
    caller, form = await form_caller(request)
    _require_creator(caller)
    book = request.app.state.book
    row = created_teacher(book, form.get("account"))
    if row is None or row.school not in {s.id for s in schools_of(caller, book.alliance)}:
        raise HTTPException(403, NOT_YOURS)
    school = book.alliance.school(row.school)
    taught = ", ".join(g.name or g.id for g in school.classes if row.account in g.teachers) or "-"
    return await new_slip(request, caller, book, row, taught, ("/pages/classes", _("Back to the classes")))


@router.get("/change")
@router.get("/remove")
@router.get("/teachers/reset")
def back_to_classes(request: Request, lang: str = ""):
    """A form's address opened as a page (the language switch of its answer): the classes page."""
    return back_to(request, "/pages/classes", **({"lang": lang} if lang else {}))
