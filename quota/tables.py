"""The quota service's tables (SQLAlchemy 2). Changed only through Alembic migrations
(quota/migrations); a test checks the models and the migrations agree."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware datetimes")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)  # PostgreSQL answers in the session's time zone


class Base(DeclarativeBase):
    pass


class LeaseRow(Base):
    """One request for a workspace, from asking to its end. States: queued → granted →
    released | expired; queued → abandoned | released; refused at once."""

    __tablename__ = "leases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user: Mapped[str] = mapped_column(String(100), index=True)
    school: Mapped[str] = mapped_column(String(100), index=True)
    tier: Mapped[str] = mapped_column(String(50))
    profile: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), index=True)
    kind: Mapped[str | None] = mapped_column(String(20), nullable=True)  # kind asked for: whole, slice or None
    pool: Mapped[str | None] = mapped_column(String(100), nullable=True)
    device: Mapped[str | None] = mapped_column(String(200), nullable=True)
    unit_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    unit_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)
    gpu_fraction: Mapped[float] = mapped_column(Float, default=0.0)  # of one GPU held: 1, 1/slices or 0
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    granted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # set when the fair-share allocator reclaims a borrowed share: the lease ends then
    reclaim_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    seq: Mapped[int] = mapped_column(Integer, index=True)  # arrival order: first come, first served within a school

    __table_args__ = (Index("ix_leases_unit_granted", "unit_id", "state"),)


class UsageRecord(Base):
    """Append-only: one row per lease that held resources, written when it ends."""

    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lease_id: Mapped[str] = mapped_column(String(40), unique=True)
    user: Mapped[str] = mapped_column(String(100), index=True)
    school: Mapped[str] = mapped_column(String(100), index=True)
    tier: Mapped[str] = mapped_column(String(50))
    profile: Mapped[str] = mapped_column(String(100))
    pool: Mapped[str | None] = mapped_column(String(100), nullable=True)
    device: Mapped[str | None] = mapped_column(String(200), nullable=True)
    unit_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    held_seconds: Mapped[float] = mapped_column(Float)
    gpu_seconds: Mapped[float] = mapped_column(Float)
    end_reason: Mapped[str] = mapped_column(String(20))


class WithdrawnKey(Base):
    """An idempotency key the hub withdrew before its request was seen (the request was
    still on its way): a request arriving later with it is refused, so it cannot leak."""

    __tablename__ = "withdrawn_keys"

    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    withdrawn_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TierSetting(Base):
    """Staff's changes to a tier of the alliance file (null = as in the file)."""

    __tablename__ = "tier_settings"

    tier: Mapped[str] = mapped_column(String(50), primary_key=True)
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)
    budget_gpu_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    student_budget_gpu_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_sessions_per_student: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SchoolSetting(Base):
    """Staff's changes to a school's weight, share and quotas (null = as in the file / its tier)."""

    __tablename__ = "school_settings"

    school: Mapped[str] = mapped_column(String(100), primary_key=True)
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)
    guaranteed_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    borrowing_limit_gpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    budget_gpu_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    student_budget_gpu_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_sessions_per_student: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PoolSetting(Base):
    """An operator's state for a pool: open, or draining (no new grants; running leases go on)."""

    __tablename__ = "pool_settings"

    pool: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Reservation(Base):
    """A class-period booking: units of one pool held for a school (or a class) in a window."""

    __tablename__ = "reservations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pool: Mapped[str] = mapped_column(String(100), index=True)
    school: Mapped[str] = mapped_column(String(100), index=True)
    class_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    units: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PolicyChange(Base):
    """Append-only (migration 0005): one row per setting staff or an operator changed: a
    tier's or school's field, or a pool's state and note; old and new as text (null = as in
    the alliance file / not set)."""

    __tablename__ = "policy_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    by: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(20))  # tier, school or pool
    target: Mapped[str] = mapped_column(String(100))
    field: Mapped[str] = mapped_column(String(50))
    old: Mapped[str | None] = mapped_column(Text, nullable=True)
    new: Mapped[str | None] = mapped_column(Text, nullable=True)


class LibraryOpen(Base):
    """How often students of a class opened a library entry (the catalogue page's "open in a
    notebook"), as the hub collected it from their workspaces; one row per report. No user
    names: a class's count is what staff's reports need (quota/routes/library.py)."""

    __tablename__ = "library_opens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    entry: Mapped[str] = mapped_column(String(63))
    school: Mapped[str] = mapped_column(String(63))
    class_id: Mapped[str] = mapped_column(String(63))  # empty: the student is in no class
    opens: Mapped[int] = mapped_column(Integer)


class RosterAccount(Base):
    """A student account a teacher imported from a CSV roster (quota/roster_store.py, migration
    0007): their school and class, as the alliance file's students are. ``one_time_hash``: the
    bcrypt hash of the password printed on their slip, null once they set their own at the hub
    (which keeps that one). Every change is also in the append-only ``policy_changes``
    (subject ``account``)."""

    __tablename__ = "roster_accounts"

    account: Mapped[str] = mapped_column(String(63), primary_key=True)
    school: Mapped[str] = mapped_column(String(63), index=True)
    class_id: Mapped[str] = mapped_column(String(63))  # "" for a teacher (their classes: RosterClass.teacher)
    role: Mapped[str] = mapped_column(String(20), default="student", server_default="student")  # or teacher (0009)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    one_time_hash: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # set when a teacher removed the student from their class (0009): no login, no role; the row
    # and the usage records stay, and an import of the same id by the school brings it back
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RosterClass(Base):
    """A class a school admin or alliance staff created on the classes page (quota/roster_classes.py,
    migration 0009), beside the alliance file's ``schools[].classes``: its id, name and teacher (an
    account of the file or of ``roster_accounts``, role teacher). Every change is also in the
    append-only ``policy_changes`` (subject ``class``)."""

    __tablename__ = "roster_classes"

    school: Mapped[str] = mapped_column(String(63), primary_key=True)
    class_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    teacher: Mapped[str] = mapped_column(String(63))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LibraryAttachment(Base):
    """A library entry a teacher (or staff) attached to a class on the teacher's page, on top
    of the alliance file's ``classes[].library`` (migration 0008; each change also in the
    append-only policy_changes). Its students get ``~/datasets/<entry>`` at their next start."""

    __tablename__ = "library_attachments"

    school: Mapped[str] = mapped_column(String(63), primary_key=True)
    class_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    entry: Mapped[str] = mapped_column(String(63), primary_key=True)
    attached_by: Mapped[str] = mapped_column(String(100))
    attached_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PrestartOutcome(Base):
    """How a workspace started ahead of a lesson went (hub/prestart.py, spawner/prestart.py report
    it; migration 0010): one row per reservation and student, the latest report wins. ``outcome``
    is ``ready`` or ``failed``; ``message`` the reason of a failure as a catalogue message
    (gpu_commons_i18n ``Message.as_json()``, JSON text), so the teacher's page shows it in the
    teacher's language. The allocator never reads it."""

    __tablename__ = "prestart_outcomes"

    reservation_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account: Mapped[str] = mapped_column(String(63), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())
