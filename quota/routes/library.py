"""The library's usage: how often each entry was opened, per class, for staff's and teachers' reports.

The hub reports the openings its workspaces counted (the catalogue page's "open in a notebook",
gpu_commons_workspace/library_usage.py, collected by the spawner: spawner/library.py). The
service attributes them to the student's classes from the alliance file and keeps only the
class, never the student (quota.tables.LibraryOpen).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi import Path as FastPath
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from quota import library_classes
from quota.auth import Role
from quota.deps import Authorized, Book, Caller, require
from quota.tables import LibraryOpen

router = APIRouter(prefix="/api/library", tags=["library"], dependencies=Authorized)


class OpensReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(description="The student whose workspace counted the openings.")
    opens: dict[str, int] = Field(description="Library entry id -> openings since the last report (1 to 1000 each).")


class OpensRow(BaseModel):
    entry: str = Field(description="The library entry's id.")
    school: str = Field(description="The class's school.")
    class_: str = Field(alias="class", description="The class's id; empty for students in no class.")
    opens: int = Field(description="Openings counted.")

    model_config = ConfigDict(populate_by_name=True)


class LibraryUsage(BaseModel):
    opens: list[OpensRow] = Field(description="One row per entry and class, by entry, school and class.")


def attribution(alliance, user: str) -> list[tuple[str, str]]:
    """(school, class) pairs an opening by ``user`` counts for: each of their classes, or the school alone."""
    school = alliance.school_of(user)
    if school is None:
        return []
    classes = [group.id for group in school.classes if user in group.students or user in group.teachers]
    return [(school.id, class_id) for class_id in classes] or [(school.id, "")]


@router.post("/opens", dependencies=[require(Role.hub)])
def report_opens(report: OpensReport, book: Book) -> dict:
    """Openings of library entries in one student's workspace (the hub only)."""
    known = {entry.id for entry in book.alliance.library}
    for entry, count in report.opens.items():
        if entry not in known:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No library entry '{entry}' in the alliance file.")
        if not 1 <= count <= 1000:
            raise HTTPException(422, f"opens of '{entry}' must be 1 to 1000.")
    places = attribution(book.alliance, report.user)
    if not places:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"The account '{report.user}' is in no school.")

    def record(session, now):
        for entry, count in sorted(report.opens.items()):
            for school, class_id in places:
                session.add(LibraryOpen(at=now, entry=entry, school=school, class_id=class_id, opens=count))

    book.write_records(record)
    return {"recorded": sum(report.opens.values()), "classes": [f"{s}/{c}" if c else s for s, c in places]}


class Attached(BaseModel):
    user: str = Field(description="The account asked about.")
    entries: dict[str, str] = Field(description="Library entry id -> its path below the library root: the alliance "
                                    "file's classes[].library and those teachers attached on their page.")
    classes: list[str] = Field(description="<school>/<class> of every class the account studies or teaches in.")


@router.get("/attached/{user}", response_model=Attached, dependencies=[require(Role.hub)])
def attached(user: Annotated[str, FastPath(description="The account whose workspace starts.", max_length=100)],
             book: Book) -> Attached:
    """The entries the hub links as ``~/datasets/<id>`` in the account's workspace (the hub only)."""
    rows = book.read_policy(lambda session, now: library_classes.stored(session))
    entries = {entry.id: entry.path for entry in book.alliance.attached_library(user, rows)}
    return Attached(user=user, entries=entries, classes=book.alliance.classes_of(user))


@router.get("/usage", response_model=LibraryUsage, response_model_by_alias=True)
def library_usage(book: Book, caller: Caller,
                  school: Annotated[str | None, Query(description="Only this school's classes.")] = None) -> LibraryUsage:
    """Openings per entry and class. Staff and operators see every school's, school admins
    their school's, teachers their own classes'; students see none."""
    if caller.role == Role.student:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Students may not read the library's usage.")

    def read(session, now):
        query = select(LibraryOpen.entry, LibraryOpen.school, LibraryOpen.class_id, func.sum(LibraryOpen.opens))
        if school:
            query = query.where(LibraryOpen.school == school)
        query = query.group_by(LibraryOpen.entry, LibraryOpen.school, LibraryOpen.class_id)
        return list(session.execute(query))

    rows = sorted(book.read_policy(read))
    return LibraryUsage(opens=[OpensRow(entry=e, school=s, class_=c, opens=n) for e, s, c, n in rows
                               if _may_see(book.alliance, caller, s, c)])


def _may_see(alliance, caller, school: str, class_id: str) -> bool:
    if caller.role in (Role.hub, Role.staff, Role.operator):
        return True
    if caller.role == Role.school_admin:
        return school == caller.school
    if caller.role == Role.teacher and school == caller.school:
        return any(group.id == class_id and caller.name in group.teachers for group in alliance.school(school).classes)
    return False
