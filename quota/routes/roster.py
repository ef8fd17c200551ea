"""Imported students, for the hub only (its own token): who an account it does not know is, and
that a one-time password is spent. Teachers import on their page (quota/pages/roster.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from quota.auth import Role
from quota.deps import Book, Caller, require
from quota.roster_store import file_accounts, file_alliance_of, rows, spend
from quota.tables import RosterAccount

router = APIRouter(prefix="/api/roster", tags=["roster"], dependencies=[require(Role.hub)])
AccountId = Annotated[str, Path(description="Account name (lower-case letters, digits and '-').", max_length=63)]


class RosterAccountView(BaseModel):
    account: str = Field(description="The imported student's account name.")
    school: str = Field(description="School id of the alliance file.")
    class_id: str = Field(description="The class the student was imported into.")
    name: str = Field(description="First and last name as imported.")
    one_time_hash: str | None = Field(
        description="bcrypt hash of the one-time password printed on the student's slip; null once the student "
        "has set their own password at the hub (which keeps it).")


class RosterMember(BaseModel):
    account: str = Field(description="The imported student's account name.")
    school: str = Field(description="School id of the alliance file.")
    class_id: str = Field(description="The class the student was imported into.")


@router.get("/accounts", response_model=list[RosterMember])
def list_accounts(book: Book) -> list[RosterMember]:
    """Every imported student with their school and class (no names, no hashes): the hub's
    pre-start service starts a booked class's imported students too."""
    taken = file_accounts(file_alliance_of(book))
    return book.read_policy(lambda session, now: [
        RosterMember(account=r.account, school=r.school, class_id=r.class_id) for r in rows(session) if r.account not in taken])


@router.get("/accounts/{account}", response_model=RosterAccountView)
def read_account(account: AccountId, book: Book) -> RosterAccountView:
    """An imported student (404 for any other name, and for a name the alliance file lists: the
    file wins)."""
    if account in file_accounts(file_alliance_of(book)):
        raise HTTPException(404, f"'{account}' is an account of the alliance file, not of the roster.")

    def read(session, now):
        row = session.get(RosterAccount, account)
        return None if row is None else RosterAccountView(
            account=row.account, school=row.school, class_id=row.class_id,
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
