"""How each workspace started ahead of a lesson went (issue 18, "Bad input"), kept for the teacher's page.

The spawner reports ``ready`` when a pre-started workspace is up, ``failed`` with its reason
when the start raised (spawner/prestart.py); the pre-start service reports ``failed`` when the
hub refused to start it (hub/prestart.py). One row per (reservation, student), the latest report
wins (quota.tables.PrestartOutcome). The reason is a catalogue message kept as its JSON
(``Message.as_json()``), so the teacher's page renders it in the teacher's language. These rows
are no input of the allocator: they are written with ``LeaseBook.write_records``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpu_commons_i18n import Message, _, from_json, translations
from quota.tables import PrestartOutcome

OUTCOMES = ("ready", "failed")
# The general reason of a failed pre-start, written once: the spawner's report when the start gave
# no sentence of its own (spawner/prestart.py imports it), and what the teacher's page shows of a
# report whose stored message cannot be read back (written by a later version, say).
START_FAILED = _("The workspace could not be started ahead of the lesson.")


def known_message(data: dict) -> bool:
    """Whether ``data`` (``Message.as_json()``) names a sentence of the catalogue, with each of its
    message parameters one too: a sentence the catalogue lacks would show in English only."""
    msgid = data.get("msgid")
    if not isinstance(msgid, str) or not msgid:
        return False
    plural = data.get("plural")
    catalogue = translations("zh-CN")
    translated = catalogue.gettext(msgid) if plural is None else catalogue.ngettext(msgid, plural, 2)
    if translated in (msgid, plural):
        return False
    return all(known_message(value) for value in (data.get("params") or {}).values() if isinstance(value, dict))


def record(session: Session, *, reservation_id: str, account: str, outcome: str, message: dict | None,
           now: datetime) -> PrestartOutcome:
    """Store the latest outcome of ``account``'s pre-start for the reservation (one row per pair)."""
    row = session.get(PrestartOutcome, (reservation_id, account))
    if row is None:
        row = PrestartOutcome(reservation_id=reservation_id, account=account)
        session.add(row)
    row.outcome = outcome
    row.message = json.dumps(message, ensure_ascii=False, sort_keys=True) if message is not None else None
    row.reported_at = now
    return row


@dataclass(frozen=True)
class Outcomes:
    """A reservation's pre-starts as its row on the teacher's page shows them."""

    ready: int
    failed: list[tuple[str, Message]]  # (account, reason), by account


def reason_of(row: PrestartOutcome) -> Message:
    try:
        return from_json(json.loads(row.message)) if row.message else START_FAILED
    except (ValueError, TypeError, KeyError):
        return START_FAILED


def by_reservation(session: Session, reservation_ids) -> dict[str, Outcomes]:
    """The pre-starts of the given reservations that have any, by reservation id."""
    ids = list(reservation_ids)
    if not ids:
        return {}
    rows = session.scalars(select(PrestartOutcome).where(PrestartOutcome.reservation_id.in_(ids))
                           .order_by(PrestartOutcome.reservation_id, PrestartOutcome.account))
    found: dict[str, tuple[int, list]] = {}
    for row in rows:
        ready, failed = found.setdefault(row.reservation_id, (0, []))
        if row.outcome == "ready":
            found[row.reservation_id] = (ready + 1, failed)
        else:
            failed.append((row.account, reason_of(row)))
    return {rid: Outcomes(ready, failed) for rid, (ready, failed) in found.items()}
