"""The student's page, "my GPU time": GPU-hours used and left in the budget period, the
session running now and when it ends (renewed while used, unless someone with a better claim
waits), the notes of pools under maintenance, and the history of past sessions."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request

from gpu_commons_i18n import _, render
from quota.auth import Role
from quota.deps import Caller
from quota.pages.web import page, page_locale
from quota.usage_report import running_records

router = APIRouter(prefix="/pages/me", include_in_schema=False)
END_REASONS = {
    "released": _("you stopped it"), "expired": _("its time was up"), "reclaimed": _("given back to a school below its share"),
    "budget_exhausted": _("the GPU budget was used up"), "idle": _("released while unused, others were waiting"),
    "reconciled": _("the workspace was no longer running"),
}


@router.get("")
def my_gpu_time(request: Request, caller: Caller):
    if caller.role != Role.student:
        raise HTTPException(403, "This page is for students: it shows the GPU time of the account that opens it.")
    book = request.app.state.book
    now = book.clock()
    period_days = book.alliance.fairshare.budget_period_days
    since = now - timedelta(days=period_days)
    history = [r for r in book.usage(user=caller.name)]
    current = [row for state in ("granted", "queued") for row in book.leases(state, user=caller.name)]
    running = running_records([row for row in current if row.state == "granted"], now)
    used = sum(r.gpu_seconds for r in history + running if r.ended_at >= since) / 3600
    budget = book.read_policy(lambda session, now: book.policy.school(session, caller.school)["student_budget_gpu_hours"])
    notes = book.read_policy(lambda session, now: [(p, *book.policy.pool_state(session, p.id)) for p in book.alliance.pools])
    places = book.queue_positions() if any(row.state == "queued" for row in current) else {}
    return page(request, caller, "student.html", history=list(reversed(history))[:50], current=current,
                used=used, budget=budget, left=None if budget is None else max(0.0, budget - used),
                period_days=period_days, places=places,
                end_reasons={k: render(v, page_locale(request)) for k, v in END_REASONS.items()},
                drains=[(pool, note) for pool, state, note in notes if state != "open"])
