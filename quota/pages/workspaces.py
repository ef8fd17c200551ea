"""The operators' workspaces page: every hub user with a running or pending server (account,
school, started, last activity, the GPU lease it holds and until when), a filter by school,
and *Stop workspace*. It replaces JupyterHub's own admin page (English only, JupyterHub has no
translations) for what university IT does there daily; /hub/admin stays reachable by URL.

The hub is asked with the quota service's token (:mod:`quota.hub_servers`). Operators stop;
alliance staff and the hub read. Each stop is one row of the audit log (``policy_changes``,
subject ``workspace``), written before the hub is asked, so nothing is stopped unrecorded.
"""

from __future__ import annotations

import logging
import os

from fastapi import APIRouter, HTTPException, Request

from gpu_commons_i18n import _
from quota.auth import Principal, Role
from quota.deps import Caller
from quota.hub_servers import HubUnavailable
from quota.pages.booking import FieldError
from quota.pages.web import back_to, field_errors, form_caller, page, page_locale
from quota.tables import PolicyChange

log = logging.getLogger("quota.pages")
router = APIRouter(prefix="/pages/workspaces", include_in_schema=False)
READERS = (Role.operator, Role.staff, Role.hub)
STOPPERS = (Role.operator,)
LABELS = {"user": _("Account"), "school": _("School")}


def _require(caller: Principal, roles) -> None:
    if caller.role not in roles:
        raise HTTPException(403, "This page is for operators (and alliance staff, who only read it).")


def workspace_rows(listing, leases, alliance, school: str = "") -> list[dict]:
    """One row per active server (newest start first), with its account's school and the
    granted lease of that account and profile, if any; only ``school``'s when given."""
    held = {}
    for lease in leases:
        held.setdefault((lease.user, lease.profile), lease)
    rows = []
    for server in listing.servers:
        home = alliance.school_of(server.user)
        school_id = home.id if home else ""
        if school and school_id != school:
            continue
        lease = held.get((server.user, server.profile)) or next(
            (lease for (user, _profile), lease in held.items() if user == server.user), None)
        state = "stopping" if server.pending == "stop" else "starting" if server.pending or not server.ready else "running"
        rows.append({"server": server, "school": school_id, "lease": lease, "state": state})
    return sorted(rows, key=lambda row: (row["school"], row["server"].user, row["server"].name))


async def _view(request, caller, status_code=200, errors=(), notice="", school=""):
    book = request.app.state.book
    locale = page_locale(request)
    hub = getattr(request.app.state, "hub_servers", None)
    rows, unreachable = [], ""
    if hub is None:
        unreachable = _("This quota service does not run under a hub, so it cannot list workspaces.")
    else:
        try:
            listing = await hub.active()
        except HubUnavailable as exc:
            log.warning("workspaces page: %s", exc)
            unreachable = _("The hub could not be asked for its workspaces just now; reload the page in a minute. "
                            "The service's log says why.")
        else:
            rows = workspace_rows(listing, book.leases("granted"), book.alliance, school)
    schools = [(s.id, s.name or s.id) for s in book.alliance.schools]
    return page(request, caller, "workspaces.html", status_code, rows=rows, unreachable=unreachable, schools=schools,
                school=school if school in {s for s, _name in schools} else "", may_stop=caller.role in STOPPERS,
                hub_admin=os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/admin",
                notice=notice, errors=field_errors(errors, LABELS, locale))


@router.get("")
async def workspaces_page(request: Request, caller: Caller, school: str = "", stopped: str = "", gone: str = ""):
    _require(caller, READERS)
    notice = ""
    if stopped:
        notice = _("The workspace of {account} is stopping; its GPU goes back when it has stopped.", account=stopped)
    elif gone:
        notice = _("The workspace of {account} was not running any more.", account=gone)
    return await _view(request, caller, notice=notice, school=school)


@router.post("/stop")
async def stop_workspace(request: Request):
    caller, form = await form_caller(request)
    _require(caller, STOPPERS)
    book = request.app.state.book
    user, server, school = form.get("user"), form.get("server"), form.get("school")
    hub = getattr(request.app.state, "hub_servers", None)
    if not user or hub is None:
        problem = _("Press Stop workspace next to a workspace of the list.") if not user else \
            _("This quota service does not run under a hub, so it cannot list workspaces.")
        return await _view(request, caller, 422, [FieldError("user", problem)], school=school)
    target = f"{user}/{server}" if server else user

    def record(session, now):  # the audit row first: nothing is stopped without it
        session.add(PolicyChange(at=now, by=caller.name, subject="workspace", target=target, field="server",
                                 old="running", new="stopped"))

    book.write_records(record)
    try:
        taken = await hub.stop(user, server)
    except HubUnavailable as exc:
        log.warning("workspaces page: %s", exc)
        problem = _("The hub could not be asked to stop it just now; try again in a minute. The service's log says why.")
        return await _view(request, caller, 503, [FieldError("user", problem)], school=school)
    log.info("%s stopped the workspace %s from the workspaces page", caller.name, target)
    query = {"stopped" if taken else "gone": user}
    if school:
        query["school"] = school
    return back_to(request, "/pages/workspaces", **query)
