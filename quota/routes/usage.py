"""The usage ledger (one record per ended lease) and reports over it, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Query, Response

from quota.deps import Authorized, Book, Caller, forbid
from quota.schemas import Moment, Usage, UsageReportRow
from quota.usage_report import GroupBy, Period, running_records, summarise

UserFilter = Annotated[str | None, Query(description="Only this student's records.")]
SchoolFilter = Annotated[str | None, Query(description="Only this school's records.")]

router = APIRouter(prefix="/api/usage", tags=["usage"], dependencies=Authorized)


def _visible_records(book, caller, user, school, since=None, until=None, running=False):
    """The ledger's records the caller may see; with ``running``, also the leases held now,
    counted up to now (quota.usage_report.running_records)."""
    if user:
        home = book.alliance.school_of(user)
        if not caller.may_see_user(user, home.id if home else None):
            raise forbid(f"You may not read the usage of '{user}'.")
    records = list(book.usage(user, school))
    if running:
        records += running_records(book.leases("granted", user=user, school=school), book.clock())
    records = [row for row in records if caller.may_see_user(row.user, row.school)]
    return [r for r in records if (since is None or r.ended_at >= since) and (until is None or r.ended_at < until)]


@router.get("", response_model=list[Usage])
def read_usage(book: Book, caller: Caller, user: UserFilter = None, school: SchoolFilter = None) -> list[Usage]:
    """Usage records, oldest first, optionally for one user or school. Students see their
    own, teachers their classes', school admins their school's, staff all."""
    return [Usage.of(row) for row in _visible_records(book, caller, user, school)]


@router.get("/report", response_model=list[UsageReportRow])
def usage_report(
    book: Book,
    caller: Caller,
    group_by: Annotated[GroupBy, Query(description="Sum per user, class, school or tier.")] = "school",
    period: Annotated[Period, Query(description="Sum per day, week (from Monday), month, school term (from 1 February "
                                                "and 1 September) or over all time.")] = "week",
    since: Annotated[Moment | None, Query(description="Only leases that ended at or after this time.")] = None,
    until: Annotated[Moment | None, Query(description="Only leases that ended before this time.")] = None,
    user: UserFilter = None,
    school: SchoolFilter = None,
    format: Annotated[str, Query(description="json or csv.")] = "json",
    running: Annotated[bool, Query(description="Count the leases held now too, up to now (false: ended leases only, "
                                               "the ledger).")] = True,
):
    """GPU-seconds and leases per period (day, week, month, term, all; by the time each lease
    ended, a running one as if it ended now) and per user, class, school or tier, over the
    records the caller may see.
    ``format=csv`` returns the same rows as CSV for a spreadsheet."""
    from fastapi import HTTPException

    if format not in ("json", "csv"):
        raise HTTPException(422, "format: use json or csv.")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:  # naive times cannot be compared with the ledger's UTC
            raise HTTPException(422, f"{name}: give a time zone, e.g. 2026-09-01T00:00:00Z or 2026-09-01T08:00:00+08:00.")
    rows = summarise(_visible_records(book, caller, user, school, since, until, running), group_by, period, book.alliance)
    if format == "json":
        return [UsageReportRow(**row) for row in rows]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["period_start", group_by, "leases", "held_seconds", "gpu_seconds"])
    for row in rows:
        writer.writerow([row["period_start"].isoformat(), row["group"], row["leases"], f"{row['held_seconds']:.3f}", f"{row['gpu_seconds']:.3f}"])
    return Response(
        out.getvalue(), media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="gpu-usage-by-{group_by}-per-{period}.csv"'},
    )
