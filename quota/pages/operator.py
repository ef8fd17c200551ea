"""The operators' page: pools (open, or drain with a note the students see), the inventory
and who holds each unit, the queue in the allocator's order, and the service's health.

Operators change pools (as in the API); staff and the hub read the page.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from gpu_commons_i18n import _
from quota.auth import Principal, Role
from quota.deps import Caller
from quota.errors import NotFound
from quota.pages.booking import FieldError
from quota.pages.web import back_to, field_errors, form_caller, page, page_locale

router = APIRouter(prefix="/pages/operator", include_in_schema=False)
READERS = (Role.operator, Role.staff, Role.hub)
LABELS = {"state": _("State"), "note": _("Note for students")}
MAX_NOTE = 500


def _require(caller: Principal, roles) -> None:
    if caller.role not in roles:
        raise HTTPException(403, "This page is for operators (and alliance staff, who only read it).")


def _view(request, caller, book, status_code=200, errors=(), failed=None, notice=""):
    locale = page_locale(request)
    holders = book.holders()
    pools = []
    states = book.read_policy(lambda session, now: {p.id: book.policy.pool_state(session, p.id) for p in book.alliance.pools})
    for pool in book.alliance.pools:
        units = [unit for unit in book.units if unit.pool == pool.id]
        kinds: dict[str, list[int]] = {}
        for unit in units:
            counts = kinds.setdefault(unit.kind, [0, 0])
            counts[1] += 1
            if unit.id not in holders:
                counts[0] += 1
        state, note = states[pool.id]
        pools.append({"pool": pool, "state": state, "note": note, "kinds": kinds,
                      "units": [(unit, holders.get(unit.id)) for unit in units]})
    places = book.queue_positions()
    queue = sorted(book.queue(), key=lambda row: (row.kind or "", places[row.id].position if row.id in places else 1 << 30, row.seq))
    settings = request.app.state.settings
    health = {
        "writer": request.app.state.leadership.is_writer(),
        "simulated": book.simulated,
        "database": (settings.database_url or "sqlite").split(":", 1)[0],
        "granted": len(book.leases("granted")),
        "queued": len(queue),
    }
    return page(request, caller, "operator.html", status_code, pools=pools, queue=queue, places=places, health=health,
                now=book.clock(), may_change=caller.role == Role.operator, failed=failed or {}, notice=notice,
                errors=field_errors(errors, LABELS, locale))


@router.get("")
def operator_page(request: Request, caller: Caller, saved: str = ""):
    _require(caller, READERS)
    notice = _("Pool {pool} saved.", pool=saved) if saved else ""
    return _view(request, caller, request.app.state.book, notice=notice)


@router.post("/pool")
async def change_pool(request: Request):
    caller, form = await form_caller(request)
    _require(caller, (Role.operator,))
    book = request.app.state.book
    pool_id, state, note = form.get("id"), form.get("state"), form.get("note")
    errors = []
    if state not in ("open", "draining"):
        errors.append(FieldError("state", _("Choose open or draining.")))
    if len(note) > MAX_NOTE:
        errors.append(FieldError("note", _("Write at most {n} characters.", n=MAX_NOTE)))
    if state == "draining" and not note:
        errors.append(FieldError("note", _("Say why and until when, e.g. 'maintenance until 14:00': students read it.")))
    if errors:
        failed = {"id": pool_id, "state": state, "note": note, "fields": {e.field for e in errors}}
        return _view(request, caller, book, 422, errors, failed)
    try:
        book.change_policy(lambda session, now: book.policy.set_pool_state(session, pool_id, state, note, caller.name, now))
    except NotFound:
        raise HTTPException(404, f"No pool '{pool_id}'.") from None
    return back_to(request, "/pages/operator", saved=pool_id)
