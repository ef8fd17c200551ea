"""A class roster from a CSV file, checked row by row before anything is saved (pure functions).

- :func:`decode`: UTF-8 (with or without the BOM Excel's "CSV UTF-8" writes), else GB18030 (a
  superset of GBK, what Excel writes for "CSV" on a Chinese Windows); says which it used.
- :func:`read_rows`: nbgrader's ``id,first_name,last_name,email`` or ngshare's
  ``student_id,first_name,last_name,email`` columns, plus ``class``; a missing column, a file
  too long or not a table is refused for the whole file (:class:`RosterFileError`).
- :func:`plan`: a verdict per row against what exists (the alliance file's accounts, the
  roster's, the classes the importing teacher may fill): created, updated, unchanged or
  refused with the field and the fix. An import goes ahead only when no row is refused, so
  nothing is half-imported (quota/roster_store.py writes it in one transaction).

Account ids follow the alliance file's :data:`quota.alliance.ID_PATTERN`; an id written in
capitals is taken in lower case (JupyterHub's names are lower case).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field

from gpu_commons_i18n import Message, _
from quota.alliance import ID_PATTERN

MAX_ROWS = 5000
MAX_BYTES = 2 * 1024 * 1024
MAX_NAME = 100
MAX_EMAIL = 200
ID_COLUMNS = ("id", "student_id")  # nbgrader, ngshare
CLASS_COLUMNS = ("class", "class_id")
NAME_COLUMNS = ("first_name", "last_name", "email")

UTF8_BOM = "UTF-8 (BOM)"
UTF8 = "UTF-8"
GB18030 = "GB18030/GBK"


class RosterFileError(ValueError):
    """The whole file is refused: a message for the teacher, naming the fix."""

    def __init__(self, message: Message):
        super().__init__(str(message))
        self.message = message


@dataclass(frozen=True)
class RosterRow:
    line: int  # in the file, the header being line 1
    account: str
    first_name: str
    last_name: str
    email: str
    class_ref: str  # as written: a class id, or school/class


@dataclass(frozen=True)
class Existing:
    """What the roster already holds for an account."""

    school: str
    class_id: str
    first_name: str
    last_name: str
    email: str
    role: str = "student"  # or teacher: created on the classes page, never by an import
    active: bool = True  # False: removed from their class (an import brings them back)


@dataclass(frozen=True)
class Verdict:
    row: RosterRow
    outcome: str  # created | updated | unchanged | refused
    school: str = ""
    class_id: str = ""
    field: str = ""  # the refused cell's column
    message: Message | None = None  # why it is refused, with the fix
    changed: tuple[str, ...] = ()  # the fields an update changes


@dataclass
class Plan:
    encoding: str
    verdicts: list[Verdict] = field(default_factory=list)
    ignored_columns: tuple[str, ...] = ()

    def count(self, outcome: str) -> int:
        return sum(1 for v in self.verdicts if v.outcome == outcome)

    @property
    def refused(self) -> bool:
        return any(v.outcome == "refused" for v in self.verdicts)

    @property
    def writes(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.outcome in ("created", "updated")]


def decode(data: bytes) -> tuple[str, str]:
    """The file's text and the encoding it was read with."""
    if len(data) > MAX_BYTES:
        raise RosterFileError(_("The file has {size} KB; a roster may have at most {most} KB. Split it into "
                                "several files, one class each.", size=len(data) // 1024, most=MAX_BYTES // 1024))
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), UTF8_BOM
        except UnicodeDecodeError:
            pass
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise RosterFileError(_("The file is in UTF-16 (Excel's \"Unicode text\"); save it as \"CSV UTF-8\" or "
                                "\"CSV\" and upload it again."))
    try:
        return data.decode("utf-8"), UTF8
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), GB18030
    except UnicodeDecodeError:
        raise RosterFileError(_("The file is neither UTF-8 nor GBK/GB18030 text; save it from Excel as "
                                "\"CSV UTF-8\" and upload it again.")) from None


def read_rows(text: str) -> tuple[list[RosterRow], tuple[str, ...]]:
    """The rows of the roster and the columns that were ignored."""
    if "\x00" in text:
        raise RosterFileError(_("The file is not a CSV table; save it from Excel as \"CSV UTF-8\" and upload it again."))
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        raise RosterFileError(_("The file is not a CSV table; save it from Excel as \"CSV UTF-8\" and upload it again.")) from None
    table = [cells for cells in table if any(cell.strip() for cell in cells)]
    if not table:
        raise RosterFileError(_("The file is empty; its first line names the columns: "
                                "id,first_name,last_name,email,class."))
    header = [cell.strip().lower().replace(" ", "_") for cell in table[0]]
    if len(table) - 1 > MAX_ROWS:
        raise RosterFileError(_("The file has {n} rows; one import takes at most {most}. Split it into several "
                                "files.", n=len(table) - 1, most=MAX_ROWS))
    found = {name: header.index(name) for name in header if header.count(name) == 1}
    id_column = next((name for name in ID_COLUMNS if name in found), None)
    class_column = next((name for name in CLASS_COLUMNS if name in found), None)
    missing = ([] if id_column else ["id"]) + [n for n in NAME_COLUMNS if n not in found] + ([] if class_column else ["class"])
    if missing:
        raise RosterFileError(_("The first line lacks the column(s) {missing}; it must name id (or student_id), "
                                "first_name, last_name, email and class. It names: {found}.",
                                missing=", ".join(missing), found=", ".join(h for h in header if h) or "-"))
    wanted = {id_column, class_column, *NAME_COLUMNS}
    ignored = tuple(h for h in header if h and h not in wanted)
    rows = []
    for number, cells in enumerate(table[1:], start=2):
        def cell(name):
            index = found[name]
            return cells[index].strip() if index < len(cells) else ""

        rows.append(RosterRow(number, cell(id_column).lower(), cell("first_name"), cell("last_name"),
                              cell("email"), cell(class_column)))
    return rows, ignored


def plan(rows: list[RosterRow], encoding: str, *, classes: dict[str, tuple[str, str]],
         file_accounts: dict[str, str], existing: dict[str, Existing], ignored=()) -> Plan:
    """A verdict for each row.

    ``classes``: what the importer may write in the class column -> (school, class id);
    ``file_accounts``: every account of the alliance file -> its school ("" for staff and
    operators); ``existing``: the roster's accounts."""
    result = Plan(encoding, ignored_columns=tuple(ignored))
    first_line: dict[str, int] = {}
    for row in rows:
        refused = _refusal(row, classes, file_accounts, existing, first_line)
        if refused:
            result.verdicts.append(Verdict(row, "refused", field=refused[0], message=refused[1]))
            continue
        first_line[row.account] = row.line
        school, class_id = classes[row.class_ref]
        before = existing.get(row.account)
        if before is None:
            result.verdicts.append(Verdict(row, "created", school, class_id))
            continue
        changed = tuple(name for name, old, new in (
            ("class", before.class_id, class_id), ("first_name", before.first_name, row.first_name),
            ("last_name", before.last_name, row.last_name), ("email", before.email, row.email),
            ("active", before.active, True)) if old != new)
        result.verdicts.append(Verdict(row, "updated" if changed else "unchanged", school, class_id, changed=changed))
    return result


def _refusal(row, classes, file_accounts, existing, first_line) -> tuple[str, Message] | None:
    if not row.account:
        return "id", _("The id is empty; write the student's account name.")
    if not re.match(ID_PATTERN, row.account):
        return "id", _("The id {id} has characters an account cannot have; use lower-case letters, digits and "
                       "'-' (at most 63, starting with a letter or digit), e.g. s2024-01.", id=row.account[:70])
    if row.account in first_line:
        return "id", _("The id {id} is on line {line} already; keep one line per student.",
                       id=row.account, line=first_line[row.account])
    if not row.first_name and not row.last_name:
        return "first_name", _("The name is empty; write the student's first or last name.")
    for name, value in (("first_name", row.first_name), ("last_name", row.last_name)):
        if len(value) > MAX_NAME:
            return name, _("The name has more than {n} characters; shorten it.", n=MAX_NAME)
    if row.email and (len(row.email) > MAX_EMAIL or not re.match(r"^[^@\s]+@[^@\s]+$", row.email)):
        return "email", _("The e-mail address {email} is not valid; correct it or leave the cell empty.",
                          email=row.email[:MAX_EMAIL])
    if row.class_ref not in classes:
        return "class", _("The class {cls} is not one of your classes; write one of: {classes}. A new class is "
                          "created first, by the school admin or alliance staff on their classes page.",
                          cls=row.class_ref[:70] or "-", classes=", ".join(sorted(classes)) or "-")
    school, _class_id = classes[row.class_ref]
    if row.account in file_accounts:
        elsewhere = file_accounts[row.account]
        if elsewhere and elsewhere != school:
            return "id", _("The id {id} is an account of another school; check the id, or ask alliance staff.",
                           id=row.account)
        return "id", _("The id {id} is an account of the alliance file; staff change it there, not by import.",
                       id=row.account)
    before = existing.get(row.account)
    if before is not None and before.role != "student":
        return "id", _("The id {id} is a teacher's account; check the id.", id=row.account)
    if before is not None and before.school != school:
        return "id", _("The id {id} is an account of another school; check the id, or ask alliance staff.",
                       id=row.account)
    return None
