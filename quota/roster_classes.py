"""Classes and teachers beyond the alliance file, and the care of imported accounts.

- :func:`class_problems` checks a new class (school, id, name, teacher; a new teacher's names)
  against the alliance as the service has it (the file's classes and accounts plus the
  database's): a pure function; each problem names the field and the fix.
- :func:`create_class` writes the class, and the new teacher's account when there is one (in
  ``roster_accounts``, role ``teacher``, with the bcrypt hash of a one-time password for their
  slip), and their audit rows (``policy_changes``, subjects ``class`` and ``account``) in one
  transaction, then makes the service work with them (quota/roster_store.py ``install``).
- :func:`change_problems` checks a created class's new name and teacher (pure, as
  :func:`class_problems`); :func:`change_class` writes them with one audit row per changed field.
- :func:`removal_problems` says what still depends on a created class (its active students, its
  lessons booked that have not ended); :func:`remove_class` removes a class on which nothing
  depends, checked again inside its transaction, with its page-attached library entries.
  A class of the alliance file is changed in the file: both refuse it.
- :func:`reset_one_time` gives an imported account (a student, or a teacher created on the
  classes page) a new one-time password (its slip); the old
  one-time password and the password the account chose at the hub stop working (the hub ignores
  its own copy while the service holds an unspent one-time password: hub/roster.py).
- :func:`deactivate` removes an imported student from their class: the account stops logging in
  and holding a role, its queued or granted leases are released, its usage records are kept (the
  row stays, marked, so the id stays the school's; importing it again brings it back).

Every change that the service's alliance sees runs in :meth:`quota.leases.LeaseBook.change_policy`
and installs the new roster inside it (quota/roster_store.py ``install``), so the running
allocator is fed the change (who is in a booked class: quota/policy_feed.py) in the same
transaction as the rows and their audit rows.

Who may do what is the pages' job (quota/pages/classes.py, quota/pages/accounts.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from gpu_commons_i18n import Message, _, _n
from quota import library_classes
from quota.alliance import ID_PATTERN, Alliance
from quota.roster import MAX_EMAIL, MAX_NAME
from quota.roster_store import file_alliance_of, install, rows, class_rows
from quota.tables import LibraryAttachment, PolicyChange, Reservation, RosterAccount, RosterClass

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
    problems += _name_problems(new.name)
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


def _name_problems(name: str) -> list[Problem]:
    if not name:
        return [Problem("name", _("The class name is empty; write the name students and teachers know it by."))]
    if len(name) > MAX_CLASS_NAME:
        return [Problem("name", _("The name has more than {n} characters; shorten it.", n=MAX_CLASS_NAME))]
    return []


class AccountTaken(Exception):
    """The new teacher's account or the class id was taken meanwhile: nothing was written."""


def create_class(book, new: NewClass, teacher_hash: str | None, by: str) -> None:
    """Write the class (and the new teacher, when ``teacher_hash`` is given) in one transaction
    with its audit rows, and make the service work with them. Checked again inside the
    transaction: a class or account another form created meanwhile raises :class:`AccountTaken`."""
    base = file_alliance_of(book)

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

    _change(book, write)


def _change(book, write):
    """``book.change_policy(write)``; when it fails, the service goes on with the alliance and
    the created classes it had (``write`` installs the new ones before the commit)."""
    before = book.alliance, list(getattr(book, "roster_classes", []))
    try:
        return book.change_policy(write)
    except BaseException:
        book.alliance = book.policy.alliance = before[0]
        book.roster_classes = before[1]
        raise


def imported(book, account: str) -> RosterAccount | None:
    """The account's roster row while it is active (None for the file's and removed accounts)."""
    if account in _file_accounts(book):
        return None
    row = book.read_policy(lambda session, now: session.get(RosterAccount, account))
    return row if row is not None and row.deactivated_at is None else None


def _file_accounts(book) -> set[str]:
    return set(file_alliance_of(book).accounts())


def created_teacher(book, account: str) -> RosterAccount | None:
    """The roster row of a teacher account created on the classes page while it is active."""
    row = imported(book, account)
    return row if row is not None and row.role == "teacher" else None


def reset_one_time(book, account: str, new_hash: str, by: str) -> bool:
    """A new one-time password for an active imported account, a student or a created teacher
    (False when there is none)."""

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

    done = _change(book, write)
    if done:
        for state in ("granted", "queued"):
            for lease in book.leases(state, user=account):
                book.release(lease.id)
    return done


# -- a created class renamed, given another teacher, removed ------------------------------

@dataclass(frozen=True)
class ClassChange:
    """A created class's name and teacher as the classes page's change form sends them."""

    school: str
    class_id: str
    name: str
    teacher: str


class ClassGone(Exception):
    """The created class was removed meanwhile (or never was): nothing was written."""


class ClassInUse(Exception):
    """Something still depends on the class (:func:`removal_problems`): nothing was written."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(str(p.message) for p in problems))
        self.problems = problems


def created_class(book, school: str, class_id: str):
    """The class as created on the classes page (school, class_id, name, teacher), else None."""
    return next((c for c in getattr(book, "roster_classes", []) if (c.school, c.class_id) == (school, class_id)), None)


def file_class_problem(book, school: str, class_id: str) -> Problem | None:
    """A class of the alliance file is not changed on the page: the problem that says so."""
    try:
        listed = {group.id for group in file_alliance_of(book).school(school).classes}
    except KeyError:
        return None
    if class_id not in listed:
        return None
    return Problem("class_id", _("The class {id} is from the alliance file: alliance staff change or remove it in "
                                 "that file, not on this page.", id=class_id))


def change_problems(change: ClassChange, alliance: Alliance) -> list[Problem]:
    """What is wrong with a created class's new name and teacher (empty: nothing). The teacher
    is one of the school's teachers (the file's or created here); a new teacher account is made
    with a new class, not here."""
    problems = _name_problems(change.name)
    teachers = teachers_of(alliance, change.school)
    if not change.teacher:
        problems.append(Problem("teacher", _("The teacher is empty; write the account of one of the school's "
                                             "teachers: {teachers}.", teachers=", ".join(teachers) or "-")))
    elif change.teacher not in teachers:
        problems.append(Problem("teacher", _("{account} is not a teacher of this school; choose one of: {teachers}.",
                                             account=change.teacher[:70], teachers=", ".join(teachers) or "-")))
    return problems


def change_class(book, change: ClassChange, by: str) -> bool:
    """Write a created class's new name and teacher with one audit row per changed field (old
    -> new), and make the service work with them; False when nothing changed. Raises
    :class:`ClassGone` when the class was removed meanwhile."""
    base = file_alliance_of(book)

    def write(session: Session, now: datetime) -> bool:
        stored = session.get(RosterClass, (change.school, change.class_id))
        if stored is None:
            raise ClassGone(change.class_id)
        changed = False
        for name in ("name", "teacher"):
            old, new = getattr(stored, name), getattr(change, name)
            if old != new:
                session.add(PolicyChange(at=now, by=by, subject="class", target=f"{change.school}/{change.class_id}",
                                         field=name, old=old, new=new))
                setattr(stored, name, new)
                changed = True
        if changed:
            session.flush()
            install(book, base, rows(session), class_rows(session))
        return changed

    return _change(book, write)


def removal_problems(session: Session, book, school: str, class_id: str, now: datetime) -> list[Problem]:
    """What still depends on the class: its active students (moved by an import into another
    class, or removed on the teacher's page) and its lessons booked that have not ended
    (cancelled on the teacher's page). Empty: it may be removed."""
    file_accounts = _file_accounts(book)
    students = [account for account in session.scalars(select(RosterAccount.account).where(
        RosterAccount.school == school, RosterAccount.class_id == class_id, RosterAccount.role == "student",
        RosterAccount.deactivated_at.is_(None))) if account not in file_accounts]
    lessons = session.scalar(select(func.count()).select_from(Reservation).where(
        Reservation.school == school, Reservation.class_id == class_id, Reservation.cancelled_at.is_(None),
        Reservation.ends_at > now))
    problems = []
    if students:
        problems.append(Problem("students", _n(
            "{n} student is in it: move them into another class with a roster import, or remove them on the "
            "teacher's page first.",
            "{n} students are in it: move them into another class with a roster import, or remove them on the "
            "teacher's page first.", len(students))))
    if lessons:
        problems.append(Problem("bookings", _n(
            "{n} lesson is booked for it and has not ended: cancel it on the teacher's page first.",
            "{n} lessons are booked for it and have not ended: cancel them on the teacher's page first.", lessons)))
    return problems


def remove_class(book, school: str, class_id: str, by: str) -> None:
    """Remove a created class on which nothing depends (checked inside the transaction: raises
    :class:`ClassInUse` with the problems, :class:`ClassGone` when it is not there), with the
    library entries attached to it on the teacher's page; audited (subject ``class``, field
    ``active``, and ``library`` when entries were attached). Its ended bookings and its usage
    stay in the records."""
    base = file_alliance_of(book)

    def write(session: Session, now: datetime) -> None:
        stored = session.get(RosterClass, (school, class_id))
        if stored is None:
            raise ClassGone(class_id)
        problems = removal_problems(session, book, school, class_id, now)
        if problems:
            raise ClassInUse(problems)
        target = f"{school}/{class_id}"
        attached = [entry for s, c, entry in library_classes.stored(session) if (s, c) == (school, class_id)]
        if attached:
            session.execute(delete(LibraryAttachment).where(LibraryAttachment.school == school,
                                                            LibraryAttachment.class_id == class_id))
            session.add(PolicyChange(at=now, by=by, subject="class", target=target, field="library",
                                     old=",".join(attached), new=None))
        session.add(PolicyChange(at=now, by=by, subject="class", target=target, field="active",
                                 old=f"{stored.name} (teacher {stored.teacher})", new="removed"))
        session.delete(stored)
        session.flush()
        install(book, base, rows(session), class_rows(session))

    _change(book, write)
