"""The alliance staff's page: tiers and weights; each school's guaranteed share, borrowing
limit, budgets and session cap (changed through the same models and policy store as the API,
so the same rules hold, with each refused field named and its fix); the equity view as SVG
charts with a CSV export; the audit log of every policy change.

Staff change settings (as in the API); operators and the hub read the page.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import ValidationError

from gpu_commons_i18n import _, render
from quota.auth import Principal, Role
from quota.deps import Caller
from quota.errors import InvalidField, NotFound
from quota.pages.booking import FieldError
from quota.pages.charts import grouped_bars
from quota.pages.equity import PERIODS, csv_cell, equity_rows
from quota.pages.web import back_to, field_errors, form_caller, page, page_locale
from quota.schemas import SchoolQuotaChange, TierChange
from quota.usage_report import running_records

router = APIRouter(prefix="/pages/staff", include_in_schema=False)
READERS = (Role.staff, Role.hub, Role.operator)
CHANGERS = (Role.staff,)  # as the API: only staff change tiers and schools

LABELS = {
    "weight": _("Weight"), "guaranteed_share": _("Guaranteed share"), "borrowing_limit_gpus": _("Borrowing limit (GPUs)"),
    "budget_gpu_hours": _("School budget (GPU-hours)"), "student_budget_gpu_hours": _("Student budget (GPU-hours)"),
    "max_sessions_per_student": _("Sessions per student"), "period": _("Period"),
}
TIER_FIELDS = ("weight", "budget_gpu_hours", "student_budget_gpu_hours", "max_sessions_per_student")
SCHOOL_FIELDS = ("weight", "guaranteed_share", "borrowing_limit_gpus", "budget_gpu_hours", "student_budget_gpu_hours",
                 "max_sessions_per_student")
PERIOD_NAMES = {"day": _("day"), "week": _("week"), "term": _("term")}


def _require(caller: Principal, roles) -> None:
    if caller.role not in roles:
        raise HTTPException(403, "This page is for alliance staff (and operators, who only read it).")


def validation_messages(error: ValidationError) -> list[FieldError]:
    """The API model's refusals as the page shows them: the field and its fix, translated."""
    found = []
    for item in error.errors():
        name = str(item["loc"][0]) if item.get("loc") else "weight"
        ctx = item.get("ctx") or {}
        kind = item.get("type", "")
        if kind == "greater_than":
            message = _("Enter a number greater than {limit}.", limit=ctx.get("gt"))
        elif kind == "greater_than_equal":
            message = _("Enter a number of at least {limit}.", limit=ctx.get("ge"))
        elif kind in ("less_than_equal", "less_than"):
            message = _("Enter a number of at most {limit}.", limit=ctx.get("le", ctx.get("lt")))
        elif kind.startswith("int"):
            message = _("Enter a whole number, e.g. 2.")
        else:
            message = _("Enter a number, e.g. 0.25 (a dot, not a comma).")
        found.append(FieldError(name, message))
    return found


def parse_change(model, form, names) -> tuple[dict, list[FieldError]]:
    """The fields filled in (an empty field stays as it is), validated by the API's model."""
    raw = {name: form.get(name) for name in names if form.get(name) != ""}
    try:
        return model(**raw).model_dump(exclude_unset=True), []
    except ValidationError as error:
        return {}, validation_messages(error)


def _equity(book, period: str):
    now = book.clock()
    records = list(book.usage()) + running_records(book.leases("granted"), now)
    return equity_rows(records, book.leases(), book.fair_share(), now, period)


def _view(request, caller, book, period="week", status_code=200, errors=(), failed=None, notice=""):
    locale = page_locale(request)
    tiers = book.read_policy(lambda session, now: [book.policy.tier(session, t) for t in book.alliance.tiers])
    schools = book.read_policy(lambda session, now: [book.policy.school(session, s.id) for s in book.alliance.schools])
    audit = book.read_policy(lambda session, now: book.policy.audit_log(session, accounts=False))
    roster_audit = book.read_policy(lambda session, now: book.policy.audit_log(session, limit=300, accounts=True))
    rows = _equity(book, period)
    latest = rows[-1].period_start if rows else None
    served, entitled = render(_("served"), locale), render(_("entitled"), locale)
    charts = {}
    titles = {"tier": _("GPU-hours served and entitled per tier, this {period}", period=PERIOD_NAMES[period]),
              "school": _("GPU-hours served and entitled per school, this {period}", period=PERIOD_NAMES[period])}
    for scope, title in titles.items():
        groups = [(row.name, [(served, row.served_gpu_hours, "bar-served"), (entitled, row.entitled_gpu_hours, "bar-entitled")])
                  for row in rows if row.scope == scope and row.period_start == latest]
        charts[scope] = grouped_bars(groups, render(title, locale), render(_("GPU-hours"), locale))
    newest_first = sorted(rows, key=lambda row: (-row.period_start.timestamp(), row.scope != "tier", row.name))
    return page(request, caller, "staff.html", status_code, tiers=tiers, schools=schools, audit=audit, roster_audit=roster_audit, rows=newest_first,
                latest=latest, period=period, periods=[(p, render(PERIOD_NAMES[p], locale)) for p in PERIODS],
                charts=charts, may_change=caller.role in CHANGERS, failed=failed or {}, notice=notice,
                errors=field_errors(errors, LABELS, locale), tier_fields=TIER_FIELDS, school_fields=SCHOOL_FIELDS,
                labels={name: render(label, locale) for name, label in LABELS.items()})


def _period(value: str) -> str:
    return value if value in PERIODS else "week"


@router.get("")
def staff_page(request: Request, caller: Caller, period: str = "week", saved: str = ""):
    _require(caller, READERS)
    notice = _("Saved the settings of {name}; the allocator uses them from now on.", name=saved) if saved else ""
    return _view(request, caller, request.app.state.book, _period(period), notice=notice)


@router.get("/equity.csv")
def equity_csv(request: Request, caller: Caller, period: str = "week") -> Response:
    _require(caller, READERS)
    import csv
    import io

    period = _period(period)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["period_start", "scope", "name", "served_gpu_hours", "running_gpu_hours", "entitled_gpu_hours",
                     "reclaims", "granted_leases", "median_wait_s", "longest_wait_s"])
    for row in _equity(request.app.state.book, period):
        writer.writerow([row.period_start.isoformat(), row.scope, csv_cell(row.name), csv_cell(row.served_gpu_hours),
                         csv_cell(row.running_gpu_hours), csv_cell(row.entitled_gpu_hours), row.reclaims,
                         len(row.waits_s) if row.scope == "tier" else "",
                         csv_cell(row.median_wait_s) if row.median_wait_s is not None else "",
                         csv_cell(row.longest_wait_s) if row.longest_wait_s is not None else ""])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="gpu-equity-per-{period}.csv"'})


async def _change(request: Request, subject: str):
    caller, form = await form_caller(request)
    _require(caller, CHANGERS)
    book = request.app.state.book
    target = form.get("id")
    model, names = (TierChange, TIER_FIELDS) if subject == "tier" else (SchoolQuotaChange, SCHOOL_FIELDS)
    changes, errors = parse_change(model, form, names)
    if not errors and changes:
        setter = book.policy.set_tier if subject == "tier" else book.policy.set_school
        try:
            book.change_policy(lambda session, now: setter(session, target, changes, caller.name, now))
        except InvalidField as exc:
            errors = [FieldError(exc.field, _("The service refused it: {reason}", reason=exc.message))]
        except NotFound:
            raise HTTPException(404, f"No {subject} '{target}'.") from None
    if errors:
        failed = {"subject": subject, "id": target, "values": {n: form.get(n) for n in names},
                  "fields": {e.field for e in errors}}
        return _view(request, caller, book, status_code=422, errors=errors, failed=failed)
    return back_to(request, "/pages/staff", saved=target)


@router.post("/tier")
async def change_tier(request: Request):
    return await _change(request, "tier")


@router.post("/school")
async def change_school(request: Request):
    return await _change(request, "school")
