"""Library entries attached to a class: the alliance file's ``classes[].library`` (the seed,
always attached, not detachable on the page) and those a teacher attached on their page
(quota.tables.LibraryAttachment). Each change is one row of the policy audit log (subject
``class``, field ``library``, old and new the class's page-attached ids). Which entries a
student's workspace links is :meth:`quota.alliance.Alliance.attached_library`, given the rows
read here. All functions take the caller's session (they run in the LeaseBook's transactions).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpu_commons_i18n import _
from quota.alliance import Alliance
from quota.errors import InvalidField
from quota.tables import LibraryAttachment, PolicyChange


def stored(session: Session) -> list[tuple[str, str, str]]:
    """Every (school, class, entry) attached on the teacher's page."""
    rows = session.execute(select(LibraryAttachment.school, LibraryAttachment.class_id, LibraryAttachment.entry))
    return sorted((school, class_id, entry) for school, class_id, entry in rows)


def set_attached(session: Session, alliance: Alliance, *, school: str, class_id: str, entry: str, attach: bool,
                 by: str, now: datetime) -> bool:
    """Attach or detach ``entry`` for the class; False when nothing changed (already so). The
    caller checks the class is theirs; unknown classes and entries are refused naming the field."""
    try:
        group = next(g for g in alliance.school(school).classes if g.id == class_id)
    except (KeyError, StopIteration):
        raise InvalidField("class_id", _("School {school} has no class {class_id}; choose one of your classes.",
                                         school=school, class_id=class_id)) from None
    known = [e.id for e in alliance.library]
    if entry not in known:
        raise InvalidField("entry", _("There is no library entry {entry}; choose one of the entries listed.",
                                      entry=entry))
    if entry in group.library:
        raise InvalidField("entry", _("{entry} is attached to this class by the alliance file and stays attached; "
                                      "alliance staff can detach it there.", entry=entry))
    before = [e for s, c, e in stored(session) if (s, c) == (school, class_id)]
    row = session.get(LibraryAttachment, (school, class_id, entry))
    if attach == (row is not None):
        return False
    if attach:
        session.add(LibraryAttachment(school=school, class_id=class_id, entry=entry, attached_by=by, attached_at=now))
        after = sorted({*before, entry})
    else:
        session.delete(row)
        after = [e for e in before if e != entry]
    session.add(PolicyChange(at=now, by=by, subject="class", target=f"{school}/{class_id}", field="library",
                             old=",".join(before) or None, new=",".join(after) or None))
    session.flush()
    return True
