"""Staff and operator settings stored by the quota service, on top of the alliance file.

The alliance file seeds tiers, schools and pools; what staff change through the API
(weights, shares, budgets, session caps) and what operators change (pool states) is kept
in the database and wins over the file. Reservations live here too. All functions take
the caller's session, so they run inside the LeaseBook's transactions.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpu_commons_i18n import _
from quota.alliance import Alliance, reservable_kind, reservable_units
from quota.errors import InvalidField, NotFound
from quota.reservations import peak_units
from quota.tables import PolicyChange, PoolSetting, Reservation, SchoolSetting, TierSetting

log = logging.getLogger(__name__)

TIER_FIELDS = ("weight", "budget_gpu_hours", "student_budget_gpu_hours", "max_sessions_per_student")
SCHOOL_FIELDS = (
    "weight", "guaranteed_share", "borrowing_limit_gpus",
    "budget_gpu_hours", "student_budget_gpu_hours", "max_sessions_per_student",
)
LIMIT_FIELDS = ("borrowing_limit_gpus", "budget_gpu_hours", "student_budget_gpu_hours", "max_sessions_per_student")


class PolicyStore:
    def __init__(self, alliance: Alliance):
        self.alliance = alliance

    # -- tiers and schools ---------------------------------------------------------------

    def tier(self, session: Session, tier_id: str) -> dict[str, Any]:
        if tier_id not in self.alliance.tiers:
            raise NotFound(f"No tier '{tier_id}'. Tiers: {', '.join(self.alliance.tiers)}.")
        base = self.alliance.tiers[tier_id]
        stored = session.get(TierSetting, tier_id)
        view = {"id": tier_id, "description": base.description}
        for name in TIER_FIELDS:
            value = getattr(stored, name, None) if stored else None
            view[name] = value if value is not None else getattr(base, name)
        return view

    def school(self, session: Session, school_id: str) -> dict[str, Any]:
        try:
            base = self.alliance.school(school_id)
        except KeyError:
            raise NotFound(f"No school '{school_id}'. Schools: {', '.join(s.id for s in self.alliance.schools)}.") from None
        tier = self.tier(session, base.tier)
        stored = session.get(SchoolSetting, school_id)
        view = {"id": base.id, "name": base.name or base.id, "tier": base.tier,
                "classes": [group.id for group in base.classes]}
        for name in SCHOOL_FIELDS:
            value = getattr(stored, name, None) if stored else None
            if value is None:
                value = getattr(base, name)
            if value is None and name in tier:
                value = tier[name]  # the tier's default
            if value is None:
                value = self.alliance.default_limit(name)
            view[name] = value
        return view

    def limit(self, session: Session, school_id: str, name: str):
        return self.school(session, school_id)[name]

    def set_tier(self, session: Session, tier_id: str, changes: dict[str, Any], by: str, now: datetime) -> dict:
        before = self.tier(session, tier_id)  # 404 for unknown tiers
        _audit(session, "tier", tier_id, before, changes, by, now)
        row = session.get(TierSetting, tier_id) or TierSetting(tier=tier_id)
        for name, value in changes.items():
            setattr(row, name, value)
        row.updated_by, row.updated_at = by, now
        session.add(row)
        session.flush()
        return self.tier(session, tier_id)

    def set_school(self, session: Session, school_id: str, changes: dict[str, Any], by: str, now: datetime) -> dict:
        before = self.school(session, school_id)
        if changes.get("guaranteed_share") is not None:
            others = sum(
                self.school(session, s.id)["guaranteed_share"] or 0 for s in self.alliance.schools if s.id != school_id
            )
            if others + changes["guaranteed_share"] > 1 + 1e-9:
                raise InvalidField(
                    "guaranteed_share",
                    _("the other schools already have {others} of the GPUs guaranteed; "
                      "this school can get at most {most}.", others=f"{others:.3f}", most=f"{max(0.0, 1 - others):.3f}"),
                )
        _audit(session, "school", school_id, before, changes, by, now)
        row = session.get(SchoolSetting, school_id) or SchoolSetting(school=school_id)
        for name, value in changes.items():
            setattr(row, name, value)
        row.updated_by, row.updated_at = by, now
        session.add(row)
        session.flush()
        return self.school(session, school_id)

    # -- pools ------------------------------------------------------------------------------

    def pool_state(self, session: Session, pool_id: str) -> tuple[str, str]:
        stored = session.get(PoolSetting, pool_id)
        return (stored.state, stored.note) if stored else ("open", "")

    def open_pools(self, session: Session) -> set[str]:
        closed = set(session.scalars(select(PoolSetting.pool).where(PoolSetting.state != "open")))
        return {pool.id for pool in self.alliance.pools} - closed

    def set_pool_state(self, session: Session, pool_id: str, state: str, note: str, by: str, now: datetime) -> None:
        if pool_id not in {pool.id for pool in self.alliance.pools}:
            raise NotFound(f"No pool '{pool_id}'. Pools: {', '.join(pool.id for pool in self.alliance.pools)}.")
        old_state, old_note = self.pool_state(session, pool_id)
        _audit(session, "pool", pool_id, {"state": old_state, "note": old_note}, {"state": state, "note": note}, by, now)
        row = session.get(PoolSetting, pool_id) or PoolSetting(pool=pool_id)
        row.state, row.note, row.updated_by, row.updated_at = state, note, by, now
        session.add(row)

    def audit_log(self, session: Session, limit: int = 500, accounts: bool | None = None) -> list[PolicyChange]:
        """The newest policy changes first (quota.tables.PolicyChange, append-only).
        ``accounts``: True = only the roster's (subjects ``account`` and ``class``), False = all but those."""
        query = select(PolicyChange)
        if accounts is not None:
            roster = PolicyChange.subject.in_(("account", "class"))
            query = query.where(roster if accounts else ~roster)
        return list(session.scalars(query.order_by(PolicyChange.id.desc()).limit(limit)))

    # -- reservations -----------------------------------------------------------------------

    def reservations(self, session: Session, school: str | None = None, include_past_of: datetime | None = None):
        query = select(Reservation).where(Reservation.cancelled_at.is_(None)).order_by(Reservation.starts_at)
        if school:
            query = query.where(Reservation.school == school)
        if include_past_of is not None:
            query = query.where(Reservation.ends_at > include_past_of)
        return list(session.scalars(query))

    def reserve(
        self, session: Session, *, pool: str, school: str, class_id: str | None, units: int,
        starts_at: datetime, ends_at: datetime, note: str, by: str, now: datetime, reservation_id: str | None = None,
    ) -> Reservation:
        pools = {p.id: p for p in self.alliance.pools}
        if pool not in pools:
            raise InvalidField("pool", _("unknown pool '{pool}'. Pools: {pools}.", pool=pool, pools=", ".join(pools)))
        try:
            home = self.alliance.school(school)
        except KeyError:
            raise InvalidField("school", _("unknown school '{school}'.", school=school)) from None
        if class_id is not None and class_id not in {group.id for group in home.classes}:
            known = ", ".join(group.id for group in home.classes) or _("none")
            raise InvalidField("class_id", _("school {school} has no class '{class_id}'. Its classes: {known}.",
                                             school=school, class_id=class_id, known=known))
        if ends_at <= starts_at:
            raise InvalidField("ends_at", _("the reservation must end after it starts; swap or fix the times."))
        if ends_at <= now:
            raise InvalidField("ends_at", _("the reservation ends in the past; book a time still to come."))
        capacity = reservable_units(pools[pool])
        if units > capacity:
            raise InvalidField("units", _("pool {pool} has {capacity} reservable units; book at most {capacity}.",
                                          pool=pool, capacity=capacity))
        booked = peak_units(
            ((r.starts_at, r.ends_at, r.units) for r in self.reservations(session) if r.pool == pool), starts_at, ends_at
        )
        if booked + units > capacity:
            raise InvalidField(
                "units",
                _("other reservations already hold {booked} of the {capacity} units of pool {pool} during this time; "
                  "book at most {free}, or choose another time.", booked=booked, capacity=capacity, pool=pool,
                  free=capacity - booked),
            )
        row = Reservation(
            id=reservation_id or f"r-{uuid.uuid4().hex[:12]}", pool=pool, school=school, class_id=class_id, units=units,
            starts_at=starts_at, ends_at=ends_at, note=note, created_by=by, created_at=now,
        )
        session.add(row)
        session.flush()
        return row

    def book_alliance_reservations(self, session: Session, now: datetime) -> int:
        """Book the alliance file's reservations that are not stored yet (by id) and have
        not ended; one that does not fit any more is skipped with a warning. Returns how
        many were booked."""
        booked = 0
        for res in self.alliance.reservations:
            if session.get(Reservation, res.id) is not None or res.end <= now.timestamp():
                continue
            try:
                with session.begin_nested():
                    self.reserve(
                        session, pool=res.pool, school=res.school, class_id=res.group, units=res.slices,
                        starts_at=datetime.fromtimestamp(res.start, timezone.utc),
                        ends_at=datetime.fromtimestamp(res.end, timezone.utc),
                        note="from the alliance file", by="alliance file", now=now, reservation_id=res.id,
                    )
            except InvalidField as exc:
                log.warning("reservation %s of the alliance file not booked: %s", res.id, exc)
                continue
            booked += 1
        return booked

    def cancel(self, session: Session, reservation_id: str, now: datetime) -> Reservation:
        row = session.get(Reservation, reservation_id)
        if row is None:
            raise NotFound(f"No reservation '{reservation_id}'; GET /api/reservations lists the ones not yet over.")
        if row.cancelled_at is None:
            row.cancelled_at = now
        return row

    def reservable_kind(self, pool_id: str) -> str:
        return reservable_kind(next(p for p in self.alliance.pools if p.id == pool_id))


def _text(value) -> str | None:
    return None if value is None else str(value)


def _audit(session: Session, subject: str, target: str, before: dict, changes: dict, by: str, now: datetime) -> None:
    """One audit row per field whose value in effect changes (a change to the same value is
    not a change)."""
    for name, value in changes.items():
        old = before.get(name)
        if _text(old) != _text(value):
            session.add(PolicyChange(at=now, by=by, subject=subject, target=target, field=name,
                                     old=_text(old), new=_text(value)))
