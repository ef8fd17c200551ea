"""Where imported students live: the quota database's ``roster_accounts``, the one source of truth.

- :func:`merged` folds them into the alliance the service works with (``book.alliance``): a
  roster student is in their school's ``students`` and their class's ``students`` as a file
  student is, so the role checks, the school lookup, the teacher's class page and class
  reservations treat both alike. Classes created on the classes page (``roster_classes``) join
  their school's ``classes`` and teacher accounts created there (``roster_accounts`` with role
  ``teacher``) its ``teachers`` (quota/roster_classes.py). A removed student
  (``deactivated_at``) is in none. The alliance file still seeds accounts and wins: an account
  it lists is never taken from the roster.
- :func:`install` does that at start-up and after every import (the allocator is rebuilt in
  the same change, :meth:`quota.leases.LeaseBook.change_policy`).
- :func:`apply` writes a checked plan (quota/roster.py) in one transaction: every row or
  none. Each change is also a row of the append-only audit log (``policy_changes``, subject
  ``account``). New accounts get one-time passwords: returned once, for the slips; only their
  bcrypt hash is stored.
- The hub asks for an account it does not know (quota/routes/roster.py, with the hub's
  token); it checks the one-time password itself and keeps the student's own password in its
  password file, then tells the service the one-time password is spent (:func:`spend`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import bcrypt
from sqlalchemy import select
from sqlalchemy.orm import Session

from quota.alliance import Alliance
from quota.roster import Existing, Plan
from quota.tables import PolicyChange, RosterAccount, RosterClass

# No look-alike characters (0/O, 1/l/I): students type these from a printed slip.
READABLE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
# 12 characters of 31: about 59 bits, random: the cost protects nothing a guess could find,
# and 2,000 new accounts hash in a few seconds (cost 10 would take 100 s).
ONE_TIME_ROUNDS = 5


def one_time_password() -> str:
    return "-".join("".join(secrets.choice(READABLE_ALPHABET) for _ in range(4)) for _ in range(3))


def hash_one_time(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=ONE_TIME_ROUNDS)).decode()


def rows(session: Session) -> list[RosterAccount]:
    return list(session.scalars(select(RosterAccount).order_by(RosterAccount.account)))


def class_rows(session: Session) -> list[RosterClass]:
    return list(session.scalars(select(RosterClass).order_by(RosterClass.school, RosterClass.class_id)))


def existing(entries: list[RosterAccount]) -> dict[str, Existing]:
    return {r.account: Existing(r.school, r.class_id, r.first_name, r.last_name, r.email, role=r.role,
                                active=r.deactivated_at is None) for r in entries}


def file_accounts(alliance: Alliance) -> dict[str, str]:
    """Every account of the alliance file -> its school ("" for staff and operators)."""
    found = {name: "" for name in [*alliance.staff, *alliance.operators]}
    for school in alliance.schools:
        found.update({name: school.id for name in [*school.students, *school.teachers, *school.admins]})
    return found


def merged(alliance: Alliance, entries: list[RosterAccount], classes=()) -> Alliance:
    """The alliance file's alliance with the roster's students in their schools and classes,
    and the classes and teachers created on the classes page in their schools (``classes``:
    rows with school, class_id, name, teacher). Rows may be any objects with those attributes
    (the hub passes the API's answers); a row without ``role`` is a student's."""
    from quota.alliance import SchoolClass

    taken = set(file_accounts(alliance))
    by_school: dict[str, list] = {}
    for entry in entries:
        if entry.account not in taken and getattr(entry, "deactivated_at", None) is None:
            by_school.setdefault(entry.school, []).append(entry)
    new_classes: dict[str, list] = {}
    for row in classes:
        new_classes.setdefault(row.school, []).append(row)
    schools = []
    for school in alliance.schools:
        added = by_school.get(school.id, [])
        created = [c for c in new_classes.get(school.id, ()) if c.class_id not in {g.id for g in school.classes}]
        if not added and not created:
            schools.append(school)
            continue
        students_in = [e for e in added if getattr(e, "role", "student") == "student"]
        teachers = [*school.teachers, *(e.account for e in added if getattr(e, "role", "student") == "teacher")]
        groups = [*school.classes, *(SchoolClass.model_construct(id=c.class_id, name=c.name, teachers=[c.teacher],
                                                                 students=[], library=[]) for c in created)]
        known = {group.id for group in groups}
        groups = [group.model_copy(update={"students": [*group.students, *(e.account for e in students_in
                                                                          if e.class_id == group.id)]})
                  for group in groups]
        students = [*school.students, *(e.account for e in students_in if e.class_id in known)]
        schools.append(school.model_copy(update={"students": students, "teachers": teachers, "classes": groups}))
    return alliance.model_copy(update={"schools": schools})


def merged_from_database(alliance: Alliance, engine) -> Alliance:
    """At start-up, before the service's book exists: the file's alliance with the roster."""
    with Session(engine) as session:
        return merged(alliance, rows(session), class_rows(session))


def classes_from_database(engine) -> list:
    """At start-up: the classes created on the classes page (:func:`install` keeps them in the book)."""
    with Session(engine) as session:
        return [_ClassRow(c.school, c.class_id, c.name, c.teacher) for c in class_rows(session)]


def install(book, file_alliance: Alliance, entries: list[RosterAccount], classes=None) -> Alliance:
    """Make ``book`` (and its policy store) work with the file's alliance plus ``entries`` (and
    ``classes``; None: those the service works with now)."""
    if classes is None:
        classes = getattr(book, "roster_classes", [])
    book.roster_classes = [_ClassRow(c.school, c.class_id, c.name, c.teacher) for c in classes]
    alliance = merged(file_alliance, entries, book.roster_classes)
    book.file_alliance = file_alliance
    book.alliance = alliance
    book.policy.alliance = alliance
    return alliance


def reinstall(book) -> Alliance:
    """The roster as stored now (a standby that takes over: the leader imported meanwhile)."""
    base = file_alliance_of(book)
    def read(session, now):
        book.roster_classes = [_ClassRow(c.school, c.class_id, c.name, c.teacher) for c in class_rows(session)]
        return merged(base, rows(session), book.roster_classes)

    alliance = book.read_policy(read)
    book.alliance = book.policy.alliance = alliance
    return alliance


@dataclass(frozen=True)
class _ClassRow:
    """A roster class as the service keeps it between transactions (not bound to a session)."""

    school: str
    class_id: str
    name: str
    teacher: str


def file_alliance_of(book) -> Alliance:
    return getattr(book, "file_alliance", book.alliance)


class RosterChanged(Exception):
    """Another import created one of the plan's new accounts meanwhile: nothing was written."""


def apply(book, plan: Plan, hashes: dict[str, str], by: str) -> None:
    """Write the plan's created and updated rows in one transaction (``hashes``: account ->
    bcrypt hash of its one-time password, for every created row), with their audit rows, and
    make the service work with the new roster. Refuses a plan with a refused row."""
    if plan.refused:
        raise ValueError("a plan with refused rows is not imported")
    base = file_alliance_of(book)
    before = book.alliance

    def write(session: Session, now: datetime):
        accounts = [v.row.account for v in plan.writes]
        found = {r.account: r for start in range(0, len(accounts), 500) for r in session.scalars(
            select(RosterAccount).where(RosterAccount.account.in_(accounts[start:start + 500])))}
        for verdict in plan.writes:
            row = verdict.row
            stored = found.get(row.account)
            if (stored is None) != (verdict.outcome == "created"):
                raise RosterChanged(row.account)  # the slip would show a password that is not stored
            values = {"school": verdict.school, "class_id": verdict.class_id, "first_name": row.first_name,
                      "last_name": row.last_name, "email": row.email}
            if stored is None:
                session.add(RosterAccount(account=row.account, one_time_hash=hashes[row.account], created_by=by,
                                          created_at=now, updated_by=by, updated_at=now, **values))
                session.add(PolicyChange(at=now, by=by, subject="account", target=row.account, field="created",
                                         old=None, new=f"{verdict.school}/{verdict.class_id}"))
                continue
            for name, value in values.items():
                old = getattr(stored, name)
                if old != value:
                    session.add(PolicyChange(at=now, by=by, subject="account", target=row.account, field=name,
                                             old=old, new=value))
                    setattr(stored, name, value)
            if stored.deactivated_at is not None:  # removed from a class, imported again: back
                stored.deactivated_at = None
                session.add(PolicyChange(at=now, by=by, subject="account", target=row.account, field="active",
                                         old="removed", new=f"{verdict.school}/{verdict.class_id}"))
            stored.updated_by, stored.updated_at = by, now
        session.flush()
        install(book, base, rows(session))  # before the allocator is rebuilt from it

    try:
        book.change_policy(write)
    except BaseException:
        book.alliance = book.policy.alliance = before
        raise


def spend(book, account: str) -> bool:
    """The student has set their own password at the hub: their one-time password stops
    working. False when the account has none (not imported, or already spent)."""

    def write(session: Session, now: datetime) -> bool:
        stored = session.get(RosterAccount, account)
        if stored is None or stored.one_time_hash is None:
            return False
        stored.one_time_hash = None
        session.add(PolicyChange(at=now, by="hub", subject="account", target=account, field="one-time password",
                                 old="set", new="used"))
        return True

    return book.change_policy(write)
