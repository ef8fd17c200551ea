"""Request and response bodies of the quota API; their descriptions become the OpenAPI docs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from quota.messages import as_data
from quota.prestarts import known_message
from quota.tables import LeaseRow, UsageRecord

if TYPE_CHECKING:
    from quota.fair_snapshot import QueuePlace

NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)


def _in_service_years(value: datetime) -> datetime:
    """A time the service can store and compare (naive times are checked as UTC; the
    routes ask for a zone): year 9999 with a negative offset is past the calendar's end."""
    try:
        utc = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError("give a time between 1970-01-01 and 2099-12-31 (UTC), e.g. 2026-09-01T08:00:00+08:00")
    return value


Moment = Annotated[datetime, AfterValidator(_in_service_years)]


class LeaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=100, pattern=NAME, description="JupyterHub user name of the student.")
    school: str = Field(min_length=1, max_length=100, description="School id from the alliance file.")
    profile: str = Field(min_length=1, max_length=100, description="Profile id from the alliance file (cpu, gpu-slice, …).")
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=200,
        description="Retries with the same key return the same lease instead of asking twice.",
    )


LeaseState = Literal["granted", "queued", "refused", "released", "expired", "abandoned"]


class Lease(BaseModel):
    id: str = Field(description="Lease id.")
    user: str = Field(description='JupyterHub account of the student.')
    school: str = Field(description='School id from the alliance file.')
    tier: str = Field(description='Tier of the school (county, urban, …).')
    profile: str = Field(description='Profile id (cpu, gpu-slice, gpu-whole, …).')
    state: LeaseState = Field(description="Where the lease is in its life.")
    pool: str | None = Field(description="Pool of the assigned unit; null for CPU or not granted.")
    device: str | None = Field(description="Value for CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES.")
    unit_kind: Literal["whole", "slice", "shared"] | None = Field(
        description="Kind of the assigned unit: a whole GPU, a MIG slice, or a share of a GPU several students use at once.")
    simulated: bool = Field(description="True when the inventory is simulated (no real GPU).")
    requested_at: datetime = Field(description='When the request arrived (UTC).')
    granted_at: datetime | None = Field(description='When a unit was assigned (UTC); null while queued.')
    expires_at: datetime | None = Field(description="When the lease ends unless released before.")
    released_at: datetime | None = Field(description='When the lease ended (UTC); null while active.')
    queue_position: int | None = Field(description="1 = next to be granted; only while queued.")
    wait_estimate_s: float | None = Field(
        None,
        description="Only while queued: seconds until enough running leases end to reach this request "
        "(an upper bound: sessions often end early); null when no running lease's end would make room.",
    )
    reclaim_at: datetime | None = Field(
        None,
        description="Only while granted: the GPU share is being given back to a school below its guaranteed "
        "share, and the lease ends at this time (UTC). Save your work before.",
    )
    within_share: bool | None = Field(
        None,
        description="Only while granted, on the answers read from the running service: true when the lease is "
        "within its school's guaranteed share (it is never reclaimed or lent with an end), false when it borrows "
        "beyond it; for a CPU lease, whether its school holds less than its share. The hub starts workspaces "
        "within their school's share first when many start at once.",
    )
    reason: str | None = Field(
        description="Why it was refused, or why it will be reclaimed, in words a student can read."
    )
    reason_message: dict | None = Field(
        None,
        description="The reason as the message catalogue's id and parameters ({msgid, params[, plural, n]}), "
        "for a reader that shows it in the student's language (gpu_commons_i18n); null when the reason is "
        "only known as text (e.g. read back after a restart).",
    )
    queue_reason_message: dict | None = Field(
        None,
        description="Only while queued, and only on a single lease's answer: why a request that arrived "
        "after this one stands ahead of it (catalogue id and parameters, e.g. a county school below its "
        "guaranteed share asked); null when nobody who came later is ahead.",
    )
    idempotency_key: str | None = Field(description='The key the request was made with, if any.')

    @classmethod
    def of(cls, row: LeaseRow, place: "QueuePlace | None" = None, queue_reason=None) -> "Lease":
        queued = row.state == "queued" and place is not None
        return cls(
            id=row.id, user=row.user, school=row.school, tier=row.tier, profile=row.profile, state=row.state,
            pool=row.pool, device=row.device, unit_kind=row.unit_kind, simulated=row.simulated,
            requested_at=row.requested_at, granted_at=row.granted_at, expires_at=row.expires_at,
            released_at=row.released_at, queue_position=place.position if queued else None,
            wait_estimate_s=place.wait_estimate_s if queued else None,
            reclaim_at=row.reclaim_at if row.state == "granted" else None,
            within_share=getattr(row, "within_share", None) if row.state == "granted" else None, reason=row.reason, reason_message=as_data(row.reason), idempotency_key=row.idempotency_key,
            queue_reason_message=queue_reason.as_json() if queued and queue_reason is not None else None,
        )


class Usage(BaseModel):
    lease_id: str = Field(description='The lease this record accounts for.')
    user: str = Field(description='JupyterHub account of the student.')
    school: str = Field(description='School id from the alliance file.')
    tier: str = Field(description='Tier of the school (county, urban, …).')
    profile: str = Field(description='Profile id (cpu, gpu-slice, gpu-whole, …).')
    pool: str | None = Field(description='Pool id.')
    device: str | None = Field(description='Device string the workspace got.')
    unit_kind: str | None = Field(description='whole, slice or shared; null for CPU.')
    started_at: datetime = Field(description='When the lease was granted (UTC).')
    ended_at: datetime = Field(description='When the lease ended (UTC).')
    held_seconds: float = Field(description="Seconds the lease was held.")
    gpu_seconds: float = Field(description="held_seconds times the fraction of a GPU held (1/n for a slice).")
    end_reason: Literal["released", "expired", "reclaimed", "budget_exhausted", "idle", "reconciled"] = Field(
        description="Why the lease ended: released, expired, reclaimed (given back to a school below its guaranteed share), budget_exhausted (the school's or student's GPU-hour budget ran out), idle (released after it was not used while others waited), or reconciled (the hub ran no server for it)."
    )

    @classmethod
    def of(cls, row: UsageRecord) -> "Usage":
        return cls.model_validate(row, from_attributes=True)


class InventoryUnit(BaseModel):
    device: str = Field(description='Device string the workspace got.')
    kind: Literal["whole", "slice", "shared"] = Field(
        description='whole (a GPU), slice (a MIG slice of one) or shared (one student\'s share of a GPU used by several at once).')
    gpu_index: int = Field(description='Index of the physical GPU in its pool.')
    model: str = Field(description='GPU model.')
    simulated: bool = Field(description='True when declared, not read from hardware.')
    held: bool = Field(description="True when a lease holds the unit.")
    lease_id: str | None = Field(
        description="Lease holding the unit, shown only to those who may act on it (its student, their teacher "
        "and school admin, staff, operators, the hub); null when free or not yours to see."
    )


class InventoryPool(BaseModel):
    id: str = Field(description='Identifier.')
    name: str = Field(description='Display name.')
    units: list[InventoryUnit] = Field(description='Units (whole GPUs or slices).')
    free: dict[str, int] = Field(description="Free units per kind.")
    state: Literal["open", "draining"] = Field(
        "open", description="open, or draining for maintenance (no new leases; running ones go on).")
    note: str = Field("", description="The operator's note on the pool's state (why it drains, until when).")


class InventoryProfile(BaseModel):
    id: str = Field(description='Identifier.')
    display_name: str = Field(description='Name shown on the spawn form.')
    gpu: str = Field(description='none, slice, shared or whole.')
    free_units: int | None = Field(description="Units free for this profile now; null for CPU (always available).")


class Inventory(BaseModel):
    simulated: bool = Field(description="True when any pool is simulated: no real GPU behind it.")
    pools: list[InventoryPool] = Field(description='Every pool with its units.')
    profiles: list[InventoryProfile] = Field(description='Every profile with what is free for it.')


class Health(BaseModel):
    status: Literal["ok", "standby"] = Field(description="ok while the service runs; standby: another process writes.")


# -- tiers, schools, quotas, pools, reservations -------------------------------------------

Hours = Field(None, ge=0, le=100_000, description="GPU-hours per budget period (rolling); null = unlimited.")


class TierView(BaseModel):
    id: str = Field(description='Identifier.')
    description: str = Field(description='What it is, in a sentence.')
    weight: float = Field(description="Fair-share weight of the tier's schools.")
    budget_gpu_hours: float | None = Field(description="Default GPU-hour budget per school and period.")
    student_budget_gpu_hours: float | None = Field(description="Default GPU-hour budget per student and period.")
    max_sessions_per_student: int | None = Field(description="Default cap of GPU workspaces per student.")


class TierChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float | None = Field(None, gt=0, le=1000, description="New weight (> 0, at most 1000).")
    budget_gpu_hours: float | None = Hours
    student_budget_gpu_hours: float | None = Hours
    max_sessions_per_student: int | None = Field(None, ge=1, le=20, description="1 to 20 workspaces.")


class SchoolView(BaseModel):
    id: str = Field(description='Identifier.')
    name: str = Field(description='Display name.')
    tier: str = Field(description='Tier of the school (county, urban, …).')
    classes: list[str] = Field(description='Class ids of the school.')
    weight: float | None = Field(description="Own weight; null = the tier's.")
    guaranteed_share: float | None = Field(description="Fraction of the alliance's GPUs guaranteed; null = from weights.")
    borrowing_limit_gpus: float | None = Field(description="GPUs it may borrow beyond its share; null = no cap.")
    budget_gpu_hours: float | None = Field(description='GPU-hours per school and budget period; null = unlimited.')
    student_budget_gpu_hours: float | None = Field(description='GPU-hours per student and budget period; null = unlimited.')
    max_sessions_per_student: int | None = Field(description="GPU workspaces one student may have running or waiting (the school's, its tier's or the alliance's default); null = no cap.")


class SchoolQuotaChange(BaseModel):
    """Staff's change to a school's share and quotas; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    weight: float | None = Field(None, gt=0, le=1000, description="Own fair-share weight (> 0, at most 1000).")
    guaranteed_share: float | None = Field(None, gt=0, le=1, description="Fraction of all GPUs, in (0, 1].")
    borrowing_limit_gpus: float | None = Field(None, ge=0, le=10_000, description="GPUs, 0 to 10000.")
    budget_gpu_hours: float | None = Hours
    student_budget_gpu_hours: float | None = Hours
    max_sessions_per_student: int | None = Field(None, ge=1, le=20, description="1 to 20 workspaces.")


class PoolView(BaseModel):
    id: str = Field(description='Identifier.')
    name: str = Field(description='Display name.')
    gpus: int = Field(description='Physical GPUs in the pool.')
    simulated: bool = Field(description='True when declared, not read from hardware.')
    state: Literal["open", "draining"] = Field(description="draining: no new leases; running ones go on.")
    note: str = Field(description='Free text for people.')
    units: dict[str, int] = Field(description="Units per kind.")


class PoolChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["open", "draining"] = Field(description="open, or draining (no new leases; running ones go on).")
    note: str = Field("", max_length=500, description="Why, for the other operators.")


class ReservationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool: str = Field(min_length=1, max_length=100, description="Pool id.")
    school: str = Field(min_length=1, max_length=100, description="School id (a teacher books for their own).")
    class_id: str | None = Field(None, max_length=100, description="One class of the school; null = the school.")
    units: int = Field(ge=1, le=10_000, description="Whole GPUs, or slices on a fully sliced pool.")
    starts_at: Moment = Field(description="Start (ISO-8601 with a time zone, between 1970 and 2099).")
    ends_at: Moment = Field(description="End (ISO-8601 with a time zone), after the start, at most 12 hours later.")
    note: str = Field("", max_length=500, description="What the lesson is.")


class ReservationView(BaseModel):
    id: str = Field(description='Identifier.')
    pool: str = Field(description='Pool id.')
    school: str = Field(description='School id from the alliance file.')
    class_id: str | None = Field(description='Class of the school; null = the whole school.')
    units: int = Field(description='Units (whole GPUs or slices).')
    starts_at: datetime = Field(description='Start (UTC).')
    ends_at: datetime = Field(description='End (UTC).')
    note: str = Field(description='Free text for people.')
    created_by: str = Field(description='Account that booked it.')
    cancelled_at: datetime | None = Field(description='When it was cancelled (UTC); null while valid.')


class PrestartReport(BaseModel):
    """How one student's workspace started ahead of a lesson went (the hub reports it)."""

    model_config = ConfigDict(extra="forbid")
    outcome: Literal["ready", "failed"] = Field(description="ready: the workspace is up for the bell; failed: it "
                                                           "could not be started ahead (the student starts at the bell).")
    message: dict | None = Field(None, validate_default=True, description="Why it failed, as a catalogue message (gpu_commons_i18n "
                                 "Message.as_json(): msgid, params, and plural and n for a plural sentence) of a "
                                 "sentence the catalogue has; required with failed, none with ready.")

    @field_validator("message")
    @classmethod
    def _message_fits(cls, message: dict | None, info: ValidationInfo) -> dict | None:
        outcome = info.data.get("outcome")
        if outcome == "ready" and message is not None:
            raise ValueError("a ready pre-start has no message; leave it out")
        if outcome == "failed" and (message is None or not known_message(message)):
            raise ValueError("give the reason of a failed pre-start as a catalogue message (Message.as_json()) "
                             "of a sentence the catalogue has")
        return message


class PrestartView(BaseModel):
    reservation_id: str = Field(description="The reservation (r-…).")
    account: str = Field(description="The student.")
    outcome: str = Field(description="ready or failed.")
    message: dict | None = Field(description="The reason of a failure (Message.as_json()); null when ready.")
    reported_at: datetime = Field(description="When the hub reported it (UTC).")


class UsageReportRow(BaseModel):
    period_start: datetime = Field(description="Start of the period (UTC).")
    group: str = Field(description="The user, class, school or tier.")
    leases: int = Field(description='Leases counted.')
    held_seconds: float = Field(description='Seconds the leases were held.')
    gpu_seconds: float = Field(description='GPU-seconds used (held seconds times the GPU fraction).')
