"""Classes and teachers beyond the alliance file, and the care of imported accounts.

- :func:`class_problems` checks a new class (school, id, name, teacher; a new teacher's names)
  against the alliance as the service has it (the file's classes and accounts plus the
  database's): a pure function; each problem names the field and the fix.
- :func:`create_class` writes the class, and the new teacher's account when there is one (in
  ``roster_accounts``, role ``teacher``, with the bcrypt hash of a one-time password for their
  slip), and their audit rows (``policy_changes``, subjects ``class`` and ``account``) in one
  transaction, then makes the service work with them (quota/roster_store.py ``install``).
- :func:`reset_one_time` gives an imported account a new one-time password (its slip); the old
  one-time password and the password the account chose at the hub stop working (the hub ignores
  its own copy while the service holds an unspent one-time password: hub/roster.py).
- :func:`deactivate` removes an imported student from their class: the account stops logging in
  and holding a role, its queued or granted leases are released, its usage records are kept (the
  row stays, marked, so the id stays the school's; importing it again brings it back).

Who may do what is the pages' job (quota/pages/classes.py, quota/pages/accounts.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from gpu_commons_i18n import Message, _
from quota.alliance import ID_PATTERN, Alliance
from quota.roster import MAX_EMAIL, MAX_NAME
from quota.roster_store import file_alliance_of, install, rows, class_rows
from quota.tables import PolicyChange, RosterAccount, RosterClass

MAX_CLASS_NAME = 100


@dataclass(frozen=True)
class Problem:
    field: str
    message: Message


@dataclass(frozen=True)
class NewClass:
    """A class as the form sends it; ``teacher_first_name``/``teacher_last_name``/``teacher_email``
    only for a new teacher."""

    school: str
    class_id: str
    name: str
    teacher: str
    teacher_first_name: str = ""
    teacher_last_name: str = ""
    teacher_email: str = ""

    @property
    def new_teacher_named(self) -> bool:
        return bool(self.teacher_first_name or self.teacher_last_name or self.teacher_email)


def teachers_of(alliance: Alliance, school_id: str) -> list[str]:
    try:
        return list(alliance.school(school_id).teachers)
    except KeyError:
        return []


def class_problems(new: NewClass, alliance: Alliance, schools: list[str]) -> tuple[list[Problem], bool]:
    """What is wrong with ``new`` (empty: nothing) and whether its teacher is a new account.

    ``alliance``: as the service works with it (file plus database); ``schools``: the school
    ids the caller may create classes in."""
    problems: list[Problem] = []
    if new.school not in schools:
        return [Problem("school", _("Choose one of the schools listed."))], False
    school = alliance.school(new.school)
    if not new.class_id:
        problems.append(Problem("class_id", _("The class id is empty; write one, e.g. grade9-ai.")))
    elif not re.match(ID_PATTERN, new.class_id):
        problems.append(Problem("class_id", _("The class id {id} has characters an id cannot have; use lower-case "
                                              "letters, digits and '-' (at most 63, starting with a letter or digit), "
                                              "e.g. grade9-ai.", id=new.class_id[:70])))
    elif new.class_id in {group.id for group in school.classes}:
        problems.append(Problem("class_id", _("The school already has a class {id}; choose another id, or add the "
                                              "students to that class.", id=new.class_id)))
    if not new.name:
        problems.append(Problem("name", _("The class name is empty; write the name students and teachers know it by.")))
    elif len(new.name) > MAX_CLASS_NAME:
        problems.append(Problem("name", _("The name has more than {n} characters; shorten it.", n=MAX_CLASS_NAME)))
    teachers = teachers_of(alliance, new.school)
    roles = alliance.accounts()
    creating = False
    if not new.teacher:
        problems.append(Problem("teacher", _("The teacher is empty; write the account of one of the school's teachers, "
                                             "or a new account with the new teacher's name.")))
    elif new.teacher in teachers:
        if new.new_teacher_named:
            problems.append(Problem("teacher_first_name", _("{account} is a teacher of the school already; leave the new "
                                                            "teacher's name and e-mail empty.", account=new.teacher)))
    elif new.teacher in roles:
        problems.append(Problem("teacher", _("{account} is not a teacher of this school; choose one of: {teachers}, or "
                                             "write a new account.", account=new.teacher,
                                             teachers=", ".join(teachers) or "-")))
    elif not re.match(ID_PATTERN, new.teacher):
        problems.append(Problem("teacher", _("The id {id} has characters an account cannot have; use lower-case letters, "
                                             "digits and '-' (at most 63, starting with a letter or digit), e.g. s2024-01.",
                                             id=new.teacher[:70])))
    elif not new.new_teacher_named:
        problems.append(Problem("teacher", _("{account} is not a teacher of this school; choose one of: {teachers}, or "
                                             "write the new teacher's name to create the account.",
                                             account=new.teacher, teachers=", ".join(teachers) or "-")))
    else:
        creating = True
        if not new.teacher_first_name and not new.teacher_last_name:
            problems.append(Problem("teacher_first_name", _("The name is empty; write the new teacher's first or last name.")))
        for name, value in (("teacher_first_name", new.teacher_first_name), ("teacher_last_name", new.teacher_last_name)):
            if len(value) > MAX_NAME:
                problems.append(Problem(name, _("The name has more than {n} characters; shorten it.", n=MAX_NAME)))
        if new.teacher_email and (len(new.teacher_email) > MAX_EMAIL
                                  or not re.match(r"^[^@\s]+@[^@\s]+$", new.teacher_email)):
            problems.append(Problem("teacher_email", _("The e-mail address {email} is not valid; correct it or leave "
                                                       "the cell empty.", email=new.teacher_email[:MAX_EMAIL])))
    return problems, creating


class AccountTaken(Exception):
    """The new teacher's account or the class id was taken meanwhile: nothing was written."""


def create_class(book, new: NewClass, teacher_hash: str | None, by: str) -> None:
    """Write the class (and the new teacher, when ``teacher_hash`` is given) in one transaction
    with its audit rows, and make the service work with them. Checked again inside the
    transaction: a class or account another form created meanwhile raises :class:`AccountTaken`."""
    base = file_alliance_of(book)
    before = book.alliance

    def write(session: Session, now: datetime):
        if session.get(RosterClass, (new.school, new.class_id)) is not None or \
                new.class_id in {g.id for g in base.school(new.school).classes}:
            raise AccountTaken(new.class_id)
        if teacher_hash is not None:
            if session.get(RosterAccount, new.teacher) is not None:
                raise AccountTaken(new.teacher)
            session.add(RosterAccount(account=new.teacher, school=new.school, class_id="", role="teacher",
                                      first_name=new.teacher_first_name, last_name=new.teacher_last_name,
                                      email=new.teacher_email, one_time_hash=teacher_hash, created_by=by,
                                      created_at=now, updated_by=by, updated_at=now))
            session.add(PolicyChange(at=now, by=by, subject="account", target=new.teacher, field="created",
                                     old=None, new=f"{new.school} (teacher)"))
        session.add(RosterClass(school=new.school, class_id=new.class_id, name=new.name, teacher=new.teacher,
                                created_by=by, created_at=now))
        session.add(PolicyChange(at=now, by=by, subject="class", target=f"{new.school}/{new.class_id}",
                                 field="created", old=None, new=f"{new.name} (teacher {new.teacher})"))
        session.flush()
        install(book, base, rows(session), class_rows(session))

    try:
        book.change_policy(write)
    except BaseException:
        book.alliance = book.policy.alliance = before
        raise


def imported(book, account: str) -> RosterAccount | None:
    """The account's roster row while it is active (None for the file's and removed accounts)."""
    if account in _file_accounts(book):
        return None
    row = book.read_policy(lambda session, now: session.get(RosterAccount, account))
    return row if row is not None and row.deactivated_at is None else None


def _file_accounts(book) -> set[str]:
    return set(file_alliance_of(book).accounts())


def reset_one_time(book, account: str, new_hash: str, by: str) -> bool:
    """A new one-time password for an active imported account (False when there is none)."""

    def write(session: Session, now: datetime) -> bool:
        stored = session.get(RosterAccount, account)
        if stored is None or stored.deactivated_at is not None or account in _file_accounts(book):
            return False
        stored.one_time_hash = new_hash
        stored.updated_by, stored.updated_at = by, now
        session.add(PolicyChange(at=now, by=by, subject="account", target=account, field="one-time password",
                                 old=None, new="new slip"))
        return True

    return book.write_records(write)  # nothing the allocator reads changes


def deactivate(book, account: str, by: str) -> bool:
    """Remove an active imported student from their class (False when there is none); their
    queued and granted leases are released, their usage records kept."""
    base = file_alliance_of(book)
    before = book.alliance

    def write(session: Session, now: datetime) -> bool:
        stored = session.get(RosterAccount, account)
        if stored is None or stored.deactivated_at is not None or stored.role != "student" \
                or account in set(base.accounts()):
            return False
        stored.deactivated_at = now
        stored.one_time_hash = None
        stored.updated_by, stored.updated_at = by, now
        session.add(PolicyChange(at=now, by=by, subject="account", target=account, field="active",
                                 old=f"{stored.school}/{stored.class_id}", new="removed"))
        session.flush()
        install(book, base, rows(session), class_rows(session))
        return True

    try:
        done = book.change_policy(write)
    except BaseException:
        book.alliance = book.policy.alliance = before
        raise
    if done:
        for state in ("granted", "queued"):
            for lease in book.leases(state, user=account):
                book.release(lease.id)
    return done
