"""A workspace started ahead of a lesson (hub/prestart.py starts them), charged only once opened.

The hub's pre-start service starts the servers of a class a few minutes before its
reservation's window opens, with ``user_options = {"profile": ..., "prestart":
{"reservation": <id>, "bell": <ISO start>}}``. The lease is asked for as at any start (from
its lead on the reservation holds its units for the class, quota/reservations.py); what
differs is what happens until the student comes:

- the workspace counts as *opened* once the hub sees activity on it (the proxy's traffic,
  ``c.JupyterHub.last_activity_interval``) more than ``prestart_opened_after_seconds`` after it
  was ready: the pre-start service's own start is no activity;
- one nobody opened by ``prestart_grace_minutes`` after the bell (or after it got ready, if it
  got its GPU late) is stopped, and its lease released;
- the quota service charges a pre-started lease from the first activity the hub saw, and one
  never opened not at all (``DELETE /api/leases/{id}?charge_from=``, docs/class-start.md).

Each pre-start's outcome goes to the quota service for the teacher's booking page
(``PUT /api/reservations/{id}/prestarts/{account}``): ``ready`` once the workspace is up, or
``failed`` with the start's own sentence (a catalogue message, else a general one) when it
raised; the exception goes on to the hub as before (the quota step has released the lease). The
report is best effort: a quota service that does not answer is logged, the start is not changed.

A ``prestart`` option whose bell is not within the alliance's lead of now is ignored (the start
is an ordinary one): a student cannot book an uncharged workspace for later by sending it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from traitlets import Dict, Float, Unicode
from traitlets.config import LoggingConfigurable

from gpu_commons_i18n import Message, _, from_json
from quota.prestarts import START_FAILED
from spawner.quota_client import QuotaRejected

SLACK = timedelta(minutes=1)  # a bell a little past the lead still counts (the service's tick, clocks)


def _utc(value) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def prestart_bell(option, now: datetime, lead: timedelta) -> datetime | None:
    """The bell of a valid ``prestart`` option (within ``lead`` of ``now``), else None."""
    if not isinstance(option, dict) or not option.get("reservation"):
        return None
    try:
        bell = _utc(option.get("bell"))
    except (TypeError, ValueError):
        return None
    if bell is None or not now - SLACK <= bell <= now + lead + SLACK:
        return None
    return bell


def opened_at(last_activity: datetime | None, ready_at: datetime, after: timedelta) -> datetime | None:
    """When the student opened a pre-started workspace, as far as the hub saw; None: not yet."""
    if last_activity is None or last_activity <= ready_at + after:
        return None
    return last_activity


def prestart_failure(exc: BaseException) -> Message:
    """What the teacher reads of a pre-start that raised ``exc``: the student's own sentence where
    the start gave one (a catalogue message), else a general one."""
    for text in (getattr(exc, "jupyterhub_message", None), *getattr(exc, "args", ())[:1]):
        if isinstance(text, Message):
            return text
    return START_FAILED


def cull_due(now: datetime, bell: datetime, ready_at: datetime, grace: timedelta) -> bool:
    return now >= max(bell, ready_at) + grace


class PrestartedWorkspace(LoggingConfigurable):
    """Mixed in front of the quota step (spawner/backends.py)."""

    prestart_grace_minutes = Float(
        10.0,
        help="""Minutes after the bell (or after the workspace got ready, if later) that a workspace
        started ahead of a lesson waits for its student. Not opened by then, it is stopped and its
        lease released; the student was charged nothing.

        Example::

            c.LocalQuotaSpawner.prestart_grace_minutes = 10
        """,
    ).tag(config=True)

    prestart_opened_after_seconds = Float(
        10.0,
        help="""Activity on a pre-started workspace counts as its student opening it only this long
        after it got ready (the route's own creation and the server's first report are no visit).""",
    ).tag(config=True)

    # Kept in the state (a hub restart keeps them).
    prestart_reservation = Unicode("")
    prestart_bell = Unicode("")
    prestart_ready_at = Unicode("")
    prestart_opened_at = Unicode("")
    # Why the last pre-start failed (a catalogue message as data), told to the student at their own start.
    prestart_failed = Dict()
    _culling = False

    def _prestart_option(self) -> datetime | None:
        lead = timedelta(minutes=self.alliance.fairshare.reservation_lead_minutes)
        option = (self.user_options or {}).get("prestart")
        bell = prestart_bell(option, datetime.now(timezone.utc), lead) if lead else None
        if option and bell is None:
            self.log.warning("%s: ignoring a pre-start option outside the lead of a lesson: %r", self.user.name, option)
        return bell

    async def start(self):
        bell = self._prestart_option()
        self.prestart_reservation = self.user_options["prestart"]["reservation"] if bell else ""
        self.prestart_bell = bell.isoformat() if bell else ""
        self.prestart_ready_at = self.prestart_opened_at = ""
        if not bell:
            if self.prestart_failed:  # the student comes at the bell to a workspace that could not be readied
                self.start_notes = [*self.start_notes, _(
                    "Your workspace could not be started ahead of the lesson: {reason} Starting it now.",
                    reason=from_json(self.prestart_failed))]
                self.prestart_failed = {}
            return await super().start()
        reservation = self.prestart_reservation
        self.prestart_failed = {}
        try:
            started = await super().start()
        except (Exception, asyncio.CancelledError) as exc:  # cancelled: the hub's start timeout (a GPU never came)
            failure = prestart_failure(exc)
            self.prestart_failed = failure.as_json()
            await self._report_prestart(reservation, "failed", failure)
            raise
        self.prestart_ready_at = datetime.now(timezone.utc).isoformat()
        self.log.info("%s: workspace ready ahead of the lesson %s at %s", self.user.name,
                      self.prestart_reservation, self.prestart_bell)
        await self._report_prestart(reservation, "ready")
        return started

    async def _report_prestart(self, reservation: str, outcome: str, message: Message | None = None) -> None:
        """Tell the quota service for the teacher's page; best effort: the start goes on without it."""
        try:
            try:
                await self.quota.report_prestart(reservation, self.user.name, outcome, message)
            except QuotaRejected:
                if message is None or message.msgid == START_FAILED.msgid:
                    raise
                # a sentence the service does not know (or cannot store): the general one rather than nothing
                await self.quota.report_prestart(reservation, self.user.name, outcome, START_FAILED)
        except Exception as exc:  # noqa: BLE001 - a report must never break or hide the start
            self.log.warning("%s: the pre-start's outcome (%s, reservation %s) not reported to the quota service: %s",
                             self.user.name, outcome, reservation, exc)

    def _unopened(self) -> bool:
        return bool(self.prestart_ready_at) and not self.prestart_opened_at

    def _see_activity(self) -> None:
        orm = getattr(self, "orm_spawner", None)
        seen = opened_at(_utc(getattr(orm, "last_activity", None)), _utc(self.prestart_ready_at),
                         timedelta(seconds=self.prestart_opened_after_seconds))
        if seen is not None:
            self.prestart_opened_at = seen.isoformat()
            self.log.info("%s: pre-started workspace opened at %s", self.user.name, self.prestart_opened_at)

    async def poll(self):
        status = await super().poll()
        if status is not None or self._culling or not self._unopened():
            return status
        self._see_activity()
        if self._unopened() and cull_due(datetime.now(timezone.utc), _utc(self.prestart_bell),
                                         _utc(self.prestart_ready_at), timedelta(minutes=self.prestart_grace_minutes)):
            self.log.info("%s: pre-started workspace not opened by %g minutes after the lesson's start; stopping it "
                          "(nothing charged)", self.user.name, self.prestart_grace_minutes)
            self._culling = True
            try:
                await super().stop()  # the quota step releases the lease, charged from its end: nothing
            finally:
                self._culling = False
            self._forget_prestart()
            return 0  # the hub sees the server gone
        return status

    async def stop(self, now=False):
        if self._unopened():
            self._see_activity()  # a student who opened it just before the stop is charged
        await super().stop(now=now)
        self._forget_prestart()

    def lease_charge_from(self):
        if not self.prestart_reservation:
            return super().lease_charge_from()
        if self.prestart_opened_at:
            return _utc(self.prestart_opened_at)
        # never opened: nothing to charge (a time past the release charges nothing; SLACK covers the
        # quota service's clock being a little behind the hub's)
        return datetime.now(timezone.utc) + SLACK

    def get_state(self):
        state = super().get_state()
        if self.prestart_reservation:
            state["prestart"] = {"reservation": self.prestart_reservation, "bell": self.prestart_bell,
                                 "ready_at": self.prestart_ready_at, "opened_at": self.prestart_opened_at}
        if self.prestart_failed:
            state["prestart_failed"] = self.prestart_failed
        return state

    def load_state(self, state):
        super().load_state(state)
        saved = state.get("prestart") or {}
        self.prestart_reservation = saved.get("reservation", "")
        self.prestart_bell = saved.get("bell", "")
        self.prestart_ready_at = saved.get("ready_at", "")
        self.prestart_opened_at = saved.get("opened_at", "")
        self.prestart_failed = state.get("prestart_failed") or {}

    # Not in clear_state(): the backend's stop() clears the state before the quota step releases
    # the lease, which still needs lease_charge_from(); stop() forgets them once the lease is released.
    def _forget_prestart(self) -> None:
        self.prestart_reservation = self.prestart_bell = self.prestart_ready_at = self.prestart_opened_at = ""
