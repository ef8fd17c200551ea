"""Workspaces ready at the bell: the hub-managed service that starts a booked class's servers ahead.

Every ``interval_seconds`` it reads the class reservations from the quota service. From the
moment a reservation holds its units (``fairshare.reservation_lead_minutes`` before its start,
quota/reservations.py ``holds_from``) until its start, it starts the server of every student
of the class who has none, through the hub's REST API, with the profile of the pool's
reserved unit and ``user_options.prestart = {reservation, bell}``. The spawner does the rest
(spawner/prestart.py): the lease from the reservation's units, the workspace opened or, past
its grace period, stopped with nothing charged.

A class larger than its reservation: as many students as it holds units are started ahead (in
the class list's order), the others start themselves at the bell like any start (a pre-start
beyond the units would hold a place in the queue for a student who may not come); nothing is
started twice (a student with a server, running or starting, is left alone).

Each start the hub refuses (an answer other than 201, 202 or 400; or a student it cannot read)
is reported to the quota service as a failed pre-start with the hub's status (``PUT
/api/reservations/{id}/prestarts/{account}``), so the teacher's booking page names the student;
the spawner reports the others (spawner/prestart.py).

Run by the hub (hub/config.py) as ``python -m hub.prestart --alliance FILE``; the hub gives it
``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``, the quota service's URL and token come in
``GPU_COMMONS_QUOTA_URL`` and ``GPU_COMMONS_QUOTA_TOKEN``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from urllib.parse import quote

import httpx
from traitlets import Float, Unicode
from traitlets.config import Application

from gpu_commons_i18n import Message, _
from hub.roster import with_imported
from quota.alliance import Alliance, load_alliance, reservable_kind
from quota.reservations import holds_from, started_ahead


@dataclass(frozen=True)
class Booking:
    id: str
    pool: str
    school: str
    class_id: str
    units: int
    starts_at: datetime
    ends_at: datetime


def bookings_from(rows: list[dict]) -> list[Booking]:
    return [Booking(r["id"], r["pool"], r["school"], r.get("class_id") or "", r["units"],
                    datetime.fromisoformat(r["starts_at"]), datetime.fromisoformat(r["ends_at"]))
            for r in rows if not r.get("cancelled_at")]


def due_now(bookings: list[Booking], now: datetime, lead: timedelta) -> list[Booking]:
    """Class reservations whose units are held now and whose lesson has not started yet."""
    due = []
    for booking in bookings:
        if not booking.class_id:
            continue  # a whole school's booking: too many workspaces to start on a guess
        others = (b.ends_at for b in bookings if b.pool == booking.pool and b.id != booking.id)
        if holds_from(booking.starts_at, lead, others) <= now < booking.starts_at:
            due.append(booking)
    return due


def profile_for(alliance: Alliance, pool_id: str) -> str | None:
    """The profile of the unit a reservation of the pool holds (whole GPUs or shares of them, else slices)."""
    pool = next((p for p in alliance.pools if p.id == pool_id), None)
    if pool is None:
        return None
    kind = reservable_kind(pool)
    return next((p.id for p in alliance.profiles if p.gpu == kind), None)


def students_of(alliance: Alliance, school_id: str, class_id: str, units: int) -> tuple[list[str], list[str]]:
    """The class's students started ahead and those left to start themselves at the bell
    (quota/reservations.py started_ahead)."""
    school = alliance.school(school_id)
    return started_ahead([s for group in school.classes if group.id == class_id for s in group.students], units)


class PrestartService(Application):
    name = "gpu-commons-prestart"
    description = "Start a booked class's workspaces before its lesson."

    alliance_file = Unicode(help="Path of the alliance YAML file (classes, pools, profiles, the lead).").tag(config=True)

    interval_seconds = Float(
        10.0,
        help="""Seconds between two looks at the reservations; a class's workspaces start within
        this long after its units are held.

        Example::

            c.PrestartService.interval_seconds = 10
        """,
    ).tag(config=True)

    aliases = {"alliance": "PrestartService.alliance_file", "interval": "PrestartService.interval_seconds"}

    def start(self) -> None:
        asyncio.run(self.run_forever())

    async def run_forever(self) -> None:
        alliance = load_alliance(self.alliance_file)
        lead = timedelta(minutes=alliance.fairshare.reservation_lead_minutes)
        hub = httpx.AsyncClient(base_url=os.environ["JUPYTERHUB_API_URL"].rstrip("/"), timeout=60,
                                headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"})
        quota = httpx.AsyncClient(base_url=os.environ["GPU_COMMONS_QUOTA_URL"].rstrip("/"), timeout=30,
                                  headers={"Authorization": f"token {os.environ['GPU_COMMONS_QUOTA_TOKEN']}"})
        started: set[tuple[str, str]] = set()  # (reservation, student) already started once
        while True:
            try:
                await self.tick(alliance, lead, hub, quota, started)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self.log.warning("pre-start: %s (trying again in %g s)", exc, self.interval_seconds)
            await asyncio.sleep(self.interval_seconds)

    async def tick(self, alliance: Alliance, lead: timedelta, hub: httpx.AsyncClient, quota: httpx.AsyncClient,
                   started: set[tuple[str, str]]) -> None:
        alliance = await with_imported(alliance, quota)  # the students teachers imported too (hub/roster.py)
        response = await quota.get("/api/reservations")
        response.raise_for_status()
        now = datetime.now(timezone.utc)
        starts = []
        for booking in due_now(bookings_from(response.json()), now, lead):
            profile = profile_for(alliance, booking.pool)
            if profile is None:
                self.log.error("pre-start: no profile for the units of pool %s (reservation %s)", booking.pool, booking.id)
                continue
            ahead, at_the_bell = students_of(alliance, booking.school, booking.class_id, booking.units)
            if at_the_bell and (booking.id, "") not in started:
                started.add((booking.id, ""))
                self.log.warning("pre-start: class %s has %d students, reservation %s holds %d units: %s start at "
                                 "the bell as usual", booking.class_id, len(ahead) + len(at_the_bell), booking.id,
                                 booking.units, ", ".join(at_the_bell))
            for student in ahead:
                if (booking.id, student) not in started:
                    starts.append(self.start_one(hub, booking, profile, student, started, quota))
        await asyncio.gather(*starts)

    async def start_one(self, hub: httpx.AsyncClient, booking: Booking, profile: str, student: str,
                        started: set[tuple[str, str]], quota: httpx.AsyncClient | None = None) -> None:
        user = await hub.get(f"/users/{student}")
        if user.status_code != 200:
            self.log.error("pre-start: cannot read %s at the hub: %s %s", student, user.status_code, user.text[:200])
            await self.report_refused(quota, booking, student, user.status_code)
            return
        if "" in (user.json().get("servers") or {}):
            started.add((booking.id, student))  # running or starting already: leave it
            return
        body = {"user_options": {"profile": profile,
                                 "prestart": {"reservation": booking.id, "bell": booking.starts_at.isoformat()}}}
        answer = await hub.post(f"/users/{student}/server", json=body)
        if answer.status_code in (201, 202, 400):  # 400: it started meanwhile
            started.add((booking.id, student))
            self.log.info("pre-start: %s's workspace for %s (lesson at %s): %s", student, booking.id,
                          booking.starts_at.isoformat(), answer.status_code)
        else:
            self.log.error("pre-start: %s's workspace for %s: %s %s", student, booking.id, answer.status_code,
                           answer.text[:200])
            await self.report_refused(quota, booking, student, answer.status_code)

    async def report_refused(self, quota: httpx.AsyncClient | None, booking: Booking, student: str, code: int) -> None:
        """The teacher's page shows the student's pre-start as failed (best effort: tried again next tick)."""
        if quota is None:
            return
        reason = refused_by_hub(code)
        try:
            answer = await quota.put(f"/api/reservations/{quote(booking.id, safe='')}/prestarts/{quote(student, safe='')}",
                                     json={"outcome": "failed", "message": reason.as_json()})
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            self.log.warning("pre-start: %s's failed pre-start for %s not reported to the quota service: %s",
                             student, booking.id, exc)


def refused_by_hub(code: int) -> Message:
    """The teacher's sentence for a workspace the hub would not start ahead (it answered ``code``)."""
    return _("The hub did not start the workspace ahead of the lesson (it answered HTTP {status}); the student "
             "starts it at the bell.", status=str(code))


def main() -> None:
    PrestartService.launch_instance()


if __name__ == "__main__":
    main()
