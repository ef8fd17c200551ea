"""Imported students and teachers created on the classes page, for the hub only (its own token):
who an account it does not know is, that a one-time password is spent, and the classes created
on the pages. Teachers import on their page (quota/pages/roster.py), school admins and staff
create classes and teachers on theirs (quota/pages/classes.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from quota.auth import Role
from quota.deps import Book, Caller, require
from quota.roster_store import class_rows, file_accounts, file_alliance_of, rows, spend
from quota.tables import RosterAccount

router = APIRouter(prefix="/api/roster", tags=["roster"], dependencies=[require(Role.hub)])
AccountId = Annotated[str, Path(description="Account name (lower-case letters, digits and '-').", max_length=63)]


class RosterAccountView(BaseModel):
    account: str = Field(description="The imported student's (or created teacher's) account name.")
    school: str = Field(description="School id of the alliance file.")
    class_id: str = Field(description="The class the student was imported into; empty for a teacher.")
    role: str = Field("student", description="student (imported from a roster) or teacher (created on the classes "
                      "page); the hub gives a teacher their school's teacher role.")
    name: str = Field(description="First and last name as imported.")
    one_time_hash: str | None = Field(
        description="bcrypt hash of the one-time password printed on the student's slip; null once the student "
        "has set their own password at the hub (which keeps it).")


class RosterMember(BaseModel):
    account: str = Field(description="The imported student's account name.")
    school: str = Field(description="School id of the alliance file.")
    class_id: str = Field(description="The class the student was imported into.")


class RosterClassView(BaseModel):
    school: str = Field(description="School id of the alliance file.")
    class_id: str = Field(description="The class's id, unique in its school.")
    name: str = Field(description="The class's name as created.")
    teacher: str = Field(description="The teacher's account (the alliance file's or one created with the class).")


@router.get("/accounts", response_model=list[RosterMember])
def list_accounts(book: Book) -> list[RosterMember]:
    """Every imported student still in their class, with their school and class (no names, no
    hashes): the hub's pre-start service starts a booked class's imported students too."""
    taken = file_accounts(file_alliance_of(book))
    return book.read_policy(lambda session, now: [
        RosterMember(account=r.account, school=r.school, class_id=r.class_id) for r in rows(session)
        if r.account not in taken and r.role == "student" and r.deactivated_at is None])


@router.get("/classes", response_model=list[RosterClassView])
def list_classes(book: Book) -> list[RosterClassView]:
    """The classes school admins and staff created on the classes page (beside the alliance
    file's): the hub's pre-start service finds their booked lessons' students too."""
    return book.read_policy(lambda session, now: [
        RosterClassView(school=c.school, class_id=c.class_id, name=c.name, teacher=c.teacher) for c in class_rows(session)])


@router.get("/accounts/{account}", response_model=RosterAccountView)
def read_account(account: AccountId, book: Book) -> RosterAccountView:
    """An imported student or a teacher created with a class (404 for any other name, for a
    student removed from their class, and for a name the alliance file lists: the file wins)."""
    if account in file_accounts(file_alliance_of(book)):
        raise HTTPException(404, f"'{account}' is an account of the alliance file, not of the roster.")

    def read(session, now):
        row = session.get(RosterAccount, account)
        return None if row is None or row.deactivated_at is not None else RosterAccountView(
            account=row.account, school=row.school, class_id=row.class_id, role=row.role,
            name=" ".join(p for p in (row.last_name, row.first_name) if p), one_time_hash=row.one_time_hash)

    found = book.read_policy(read)
    if found is None:
        raise HTTPException(404, f"No imported account '{account}'.")
    return found


@router.post("/accounts/{account}/password-set", status_code=204)
def password_set(account: AccountId, book: Book, caller: Caller) -> None:
    """The student set their own password at the hub: their one-time password stops working
    (a second call answers 404)."""
    if not spend(book, account):
        raise HTTPException(404, f"'{account}' has no one-time password left.")
