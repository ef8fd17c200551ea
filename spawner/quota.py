"""QuotaSpawnerMixin: no workspace without a lease from the quota service.

Mixed in front of any JupyterHub spawner (the sandboxed local one here; DockerSpawner
and KubeSpawner later)::

    class LocalQuotaSpawner(QuotaSpawnerMixin, SandboxedLocalSpawner): ...

The life of a spawn:
1. the profile form (or ``user_options['profile']``) names a profile of the alliance;
2. the student's school comes from their JupyterHub group's properties;
3. a lease is requested; while it is queued the spawn page shows the queue position,
   and the workspace starts by itself once the lease is granted;
4. the assigned device goes into ``CUDA_VISIBLE_DEVICES`` / ``NVIDIA_VISIBLE_DEVICES``;
5. shortly before a GPU lease ends the spawner asks the service to renew it; the lease is
   released when the server stops, and the server is stopped when the service says the
   lease ended (not when the end the spawner saw passes: the service may have renewed it).
Any failure before the workspace is up releases the lease, so none leaks; a quota service
that restarts while the student waits in the queue does not cost the place.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

from markupsafe import escape
from tornado import web
from traitlets import Any, Bool, Dict, Float, List, Unicode, default

from gpu_commons_i18n import Message, _, _n, from_json, render
from hub.i18n import HubLanguage, request_locale
from quota.alliance import Alliance, AllianceError, load_alliance
from spawner.form import count_units, draining_notes, profile_form
from spawner.library import LibraryUsageCollector, library_env
from spawner.sharing import cap_for, form_sentences, granted_sentence, shared_pool
from spawner.specs import SharedCap
from spawner.quota_client import Lease, QuotaClient, QuotaRejected, QuotaUnavailable

RESTARTING_MESSAGE = _("The quota service is restarting; you keep your place in the queue.")


class SpawnRefused(web.HTTPError):
    """A spawn that cannot go ahead; ``str()`` is the message the student sees (in English).

    An HTTPError carrying ``jupyterhub_message``, so JupyterHub shows the message itself on
    the spawn page (instead of "Unhandled error") when the spawn fails within its first second.
    The message is a catalogue :class:`~gpu_commons_i18n.Message`: the hub's templates show it
    in the page's language (``tr()``); :meth:`in_language` also gives JupyterHub's progress
    stream the student's language (``jupyterhub_html_message``).
    """

    def __init__(self, message: str | Message, status_code: int = 400):
        super().__init__(status_code, "%s", message)
        self.jupyterhub_message = message

    def in_language(self, locale: str) -> "SpawnRefused":
        self.jupyterhub_html_message = str(escape(render(self.jupyterhub_message, locale)))
        return self

    def __str__(self) -> str:
        return self.jupyterhub_message


class WorkspaceStillRunning(RuntimeError):
    """Raised by a backend's stop() when some processes of the workspace could not be ended
    (stuck in the kernel): the lease is then kept until its end, so its GPU is not granted
    to another student while they may still use it."""


class QuotaSpawnerMixin(LibraryUsageCollector):
    # A Configurable, so its traits get names and config (c.QuotaSpawnerMixin.…) reaches them.

    quota_url = Unicode(
        "http://127.0.0.1:8181",
        help="""Base URL of the quota service.

        Example::

            c.QuotaSpawnerMixin.quota_url = "http://127.0.0.1:8181"
        """,
    ).tag(config=True)

    quota_api_token = Unicode(
        help="API token the hub sends to the quota service (the service's own JupyterHub API token).",
    ).tag(config=True)

    alliance_file = Unicode(
        help="""Path of the alliance YAML file; its profiles fill the spawn form.

        Example::

            c.QuotaSpawnerMixin.alliance_file = "/srv/gpu-commons/alliance.yaml"
        """,
    ).tag(config=True)

    quota_request_timeout = Float(
        10.0,
        help="Seconds to wait for one answer of the quota service before telling the student it is not answering.",
    ).tag(config=True)

    queue_poll_interval = Float(
        2.0,
        help="Seconds between two checks of a queued lease (each check is also the lease's heartbeat).",
    ).tag(config=True)

    lease_warning_minutes = List(
        Float(),
        [10, 2],
        help="""Minutes before the lease ends at which JupyterLab warns the student (the
        gpu-commons-workspace extension, installed in every workspace); open documents are saved
        just before the end.

        Example::

            c.QuotaSpawnerMixin.lease_warning_minutes = [10, 2]
        """,
    ).tag(config=True)

    workspace_quota_url = Unicode(
        help="""The quota service's URL as the workspace reaches it; the workspace extension asks
        there, with the server's own token, whether its lease now ends early (a borrowed GPU
        share reclaimed for a school below its guaranteed share) and warns the student at
        once. Empty: the same as ``quota_url`` (right for the embedded backend, which shares
        the host's network); "none": do not ask (warnings then follow the booked end only).

        Example::

            c.QuotaSpawnerMixin.workspace_quota_url = "https://hub.example.edu/services/quota"
        """,
    ).tag(config=True)

    lease_refresh_seconds = Float(
        30.0,
        help="How often the workspace extension asks the quota service about its lease (seconds).",
    ).tag(config=True)

    lease_renew_minutes_before = Float(
        15.0,
        help="""Minutes before a GPU lease ends at which the spawner asks the quota service to
        renew it (a full profile length from then; refused while someone with a better claim
        waits, a budget is used up or a reservation needs the unit). Keep it above the first
        of ``lease_warning_minutes``: a renewed lease never warns, a refused one warns with the
        service's reason. 0 asks for no renewal (the service may still renew at the end).

        Example::

            c.QuotaSpawnerMixin.lease_renew_minutes_before = 15
        """,
    ).tag(config=True)

    # Kept across hub restarts through get_state() / load_state().
    lease_id = Unicode("")
    lease_expires_at = Unicode("")
    # The student's language (hub/i18n.py) at the last start: messages, JupyterLab's language.
    locale = Unicode("")
    # Why the workspace last stopped by itself (a catalogue message as data), for the hub's pages.
    stop_reason = Dict()
    # Said first on the waiting page at the next start, then forgotten (e.g. why the workspace
    # started ahead of the lesson did not come up: spawner/prestart.py).
    start_notes = List()
    # Only for the lifetime of one start.
    _events = List()
    _start_done = Bool(False)
    _lease = Any(None)
    _library_answer = Any(None)  # the service's GET /api/library/attached/<user> at this start
    _withdrawal = Any(None)  # keeps the background withdrawal task referenced

    @default("start_timeout")
    def _queue_aware_start_timeout(self):
        # Waiting in the queue happens inside start(): give it the student's patience.
        return 15 * 60

    @default("poll_interval")
    def _lease_aware_poll_interval(self):
        # poll() also enforces the lease's end, so look more often than the hub's 30 s.
        return 10

    @default("options_form")
    def _profile_options_form(self):
        return self._render_options_form

    # -- collaborators -------------------------------------------------------------

    _alliance = Any(None)

    @property
    def alliance(self) -> Alliance:
        if self._alliance is None:
            self._alliance = load_alliance(self.alliance_file)
        return self._alliance

    # A client to use instead of one built from quota_url (tests put one over a fake transport here).
    _quota_client = Any(None)

    @property
    def quota(self) -> QuotaClient:
        if self._quota_client is not None:
            return self._quota_client
        return QuotaClient(self.quota_url, self.quota_api_token, self.quota_request_timeout, self.log)

    # -- the form ------------------------------------------------------------------

    async def _render_options_form(self, spawner) -> str:
        try:
            inventory = await self.quota.inventory()
        except (QuotaUnavailable, QuotaRejected):
            inventory = None  # the form still works; start() reports the outage
        # The backend's limits (spawner/limits.py), where it has them.
        resources_for = getattr(self, "resources_for", None)
        limits = {p.id: resources_for(p) for p in self.alliance.profiles} if resources_for else None
        return profile_form(self.alliance.profiles, inventory, limits, form_sentences(self.alliance))

    def options_from_form(self, formdata):
        profile = (formdata.get("profile") or [""])[0]
        self._check_profile(profile)
        self._school()  # a student in no school learns it on the form, before anything starts
        return {"profile": profile}

    def _check_profile(self, profile_id: str):
        try:
            return self.alliance.profile(profile_id)
        except KeyError:
            choices = ", ".join(p.id for p in self.alliance.profiles)
            raise SpawnRefused(_("Unknown profile '{profile}'. Choose one of: {choices}.",
                                 profile=profile_id, choices=choices)) from None

    def _school(self) -> tuple[str, str]:
        for group in self.user.groups:
            properties = group.properties or {}
            if properties.get("school_id"):
                return properties["school_id"], properties.get("tier", "")
        raise SpawnRefused(_(
            "Your account '{account}' is not registered with any school, so no GPU time can be booked "
            "for it. Please ask your teacher to add you to your school's class list.", account=self.user.name,
        ))

    # -- progress shown on the spawn page -------------------------------------------

    def start_priority(self) -> tuple:
        # The start line's order (spawner/light_start.py), the allocator's rule: leases within their
        # school's guaranteed share first (a county school below its share before a school that
        # borrows), then the heavier tier, then the order they came in.
        _school, tier = self._school()
        lease = self._lease
        borrowing = 0 if lease is not None and lease.within_share else 1
        return (borrowing, -self.alliance.tiers[tier].weight)

    def _report(self, progress: int, message: str | Message) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._events.append({"progress": progress, "message": message})

    async def progress(self):
        sent = 0
        while True:
            while sent < len(self._events):
                event = self._events[sent]
                yield {**event, "message": render(event["message"], self.locale or None)}
                sent += 1
            if self._start_done:
                break
            await asyncio.sleep(0.5)

    # -- start / stop / poll ----------------------------------------------------------

    # -- the student's language ---------------------------------------------------------

    def _request_locale(self) -> str:
        """The language of the request that started this spawn (the switch's cookie, else
        Accept-Language, else the alliance's); the last one known when there is none."""
        default = HubLanguage(parent=self).default_locale
        handler = getattr(self, "handler", None)
        if handler is not None and getattr(handler, "request", None) is not None:
            return request_locale(handler, default)
        return self.locale or default

    async def start(self):
        self._events = []
        self._start_done = False
        self._lease = None
        self.locale = self._request_locale()
        self.stop_reason = {}
        for note in self.start_notes:
            self._report(1, note)
        self.start_notes = []
        try:
            lease = await self._obtain_lease()
            self._report(60, self._granted_message(lease))
            try:
                cap = self.shared_gpu_cap(lease)
                if cap is not None:  # a shared GPU: how much memory is the student's, and whether it is enforced
                    self._report(60, granted_sentence(cap))
                self._library_answer = await self._attached_library()
                return await super().start()
            except Exception:
                self.log.exception("%s: the workspace did not start; releasing lease %s", self._log_name, lease.id)
                try:
                    await super().stop(now=True)
                finally:  # a clean-up that fails must not keep the GPU booked
                    await self._release_lease()
                raise
        except SpawnRefused as exc:
            raise exc.in_language(self.locale)
        finally:
            self._start_done = True

    async def _attached_library(self) -> dict | None:
        """The library entries the student's classes attach, as the quota service answers
        (the alliance file's and the teacher's page's); None = the hub's alliance file alone
        (a service without the route, or one not answering: the start goes on)."""
        try:
            return await self.quota.attached_library(self.user.name)
        except (QuotaUnavailable, QuotaRejected) as exc:
            self.log.warning("%s: the classes' library entries not asked (%s); linking the alliance file's only",
                             self._log_name, exc)
            return None

    async def _obtain_lease(self) -> Lease:
        profile = self._check_profile(self.user_options.get("profile", ""))
        school, _tier = self._school()
        key = f"{self.user.name}-{self.name or 'default'}-{uuid.uuid4().hex}"
        self._report(5, _("Asking for {profile}…", profile=profile.display_name))
        try:
            lease = await self.quota.request_lease(self.user.name, school, profile.id, key)
        except QuotaUnavailable as exc:
            await self._forget_request(key)
            raise SpawnRefused(exc.args[0] if exc.args else str(exc), 503) from exc  # the catalogue's message
        except QuotaRejected as exc:
            raise SpawnRefused(_("The request was not accepted: {reason}", reason=str(exc))) from None
        self.lease_id = lease.id
        try:
            restarting = False
            line = QueueLine()
            while lease.state == "queued":
                if not restarting:
                    drain = await self._drain_notes(profile.gpu) if lease.queue_position is None else None
                    message = line.message(lease, drain)
                    if message is not None:  # the page's one line changes only when its words do
                        self._report(10, message)
                await asyncio.sleep(self.queue_poll_interval)
                try:
                    lease = await self.quota.get_lease(lease.id) or lease
                    restarting = False
                except QuotaUnavailable:
                    # A restart or a fail-over keeps the queue in the service: wait on (the hub's
                    # start_timeout still bounds the wait) instead of giving the place back.
                    if not restarting:
                        self._report(10, RESTARTING_MESSAGE)
                        line.forget_shown()
                    restarting = True
            if lease.state != "granted":
                raise SpawnRefused(lease.reason or _("Your request for {profile} was not granted.",
                                                     profile=profile.display_name))
        except BaseException:
            # Refused, timed out or cancelled while queued: give the place back.
            await self._release_lease()
            raise
        self.lease_expires_at = lease.expires_at.isoformat() if lease.expires_at else ""
        self._lease = lease
        return lease

    _drain_checked: Any = None  # (monotonic time, kind, notes): the inventory is asked at most every 30 s

    async def _drain_notes(self, kind: str) -> list[str] | None:
        """The operators' notes when every pool with ``kind`` drains for maintenance, else None."""
        checked = self._drain_checked
        if checked is not None and checked[1] == kind and time.monotonic() - checked[0] < 30:
            return checked[2]
        try:
            inventory = await self.quota.inventory()
        except (QuotaUnavailable, QuotaRejected):
            return checked[2] if checked is not None and checked[1] == kind else None
        free, total = count_units(inventory)
        notes = draining_notes(inventory).get(kind) if total.get(kind, 0) == 0 else None
        self._drain_checked = (time.monotonic(), kind, notes)
        return notes

    cleanup_retry_seconds = Float(
        600.0,
        help="How long to keep trying to withdraw a lease request whose answer never came back.",
    ).tag(config=True)

    async def _forget_request(self, key: str) -> None:
        """The request may have reached the service before the error: withdraw it by key,
        in the background and until the service answers, so a late grant cannot leak."""

        async def withdraw():
            deadline = asyncio.get_running_loop().time() + self.cleanup_retry_seconds
            while True:
                try:
                    await self.quota.release_by_key(key)
                    self.log.info("%s: withdrew lease request %s", self._log_name, key)
                    return
                except QuotaRejected:
                    return
                except QuotaUnavailable:
                    if asyncio.get_running_loop().time() > deadline:
                        self.log.error("%s: gave up withdrawing lease request %s", self._log_name, key)
                        return
                    await asyncio.sleep(5)

        self._withdrawal = asyncio.ensure_future(withdraw())

    def lease_charge_from(self) -> datetime | None:
        """From when the quota service charges the lease being released; None: from its grant
        (a workspace started ahead of a lesson says otherwise: spawner/prestart.py)."""
        return None

    async def _release_lease(self) -> None:
        lease_id, self.lease_id, self.lease_expires_at = self.lease_id, "", ""
        if not lease_id:
            return
        try:
            await self.quota.release_lease(lease_id, self.lease_charge_from())
            self.log.info("%s: released lease %s", self._log_name, lease_id)
        except (QuotaUnavailable, QuotaRejected):
            self.log.error("%s: could not release lease %s; it ends at its expiry", self._log_name, lease_id)

    async def stop(self, now=False):
        if not now:
            await self.collect_library_opens(force=True)  # the openings since the last poll, while it answers
        # The backend's stop() returns once every process of the workspace ended: only then
        # is the lease (its GPU) free for someone else.
        try:
            await super().stop(now=now)
        except WorkspaceStillRunning:
            self.log.error("%s: keeping lease %s until its end: the workspace's processes are not all gone",
                           self._log_name, self.lease_id)
            raise
        except BaseException:
            await self._release_lease()  # a backend that failed otherwise must not keep the GPU booked
            raise
        await self._release_lease()

    lease_check_interval = Float(
        30.0,
        help="""Seconds between two checks, while a workspace runs, that the quota service still
        holds its lease as granted. A lease the service ended (its end, an operator,
        reconciliation after a restart) stops the workspace: no GPU workspace runs without a lease.""",
    ).tag(config=True)

    _ending_lease = Bool(False)
    _ended_lease = Any(None)  # the service's answer that the lease ended (None: it no longer knows it)
    _lease_checked_at = Float(0.0)
    # The lease end the service already answered a renewal for: asked once per end, not each poll.
    _renewal_answered_for = Unicode("")

    async def poll(self):
        status = await super().poll()
        # Backends' stop() poll too: the flag keeps that inner poll from stopping again.
        if status is not None or self._ending_lease or not self.lease_id:
            return status
        await self.collect_library_opens()
        await self._renew_if_due()
        if await self._lease_ended():
            self.log.info("%s: lease %s has ended; stopping the workspace", self._log_name, self.lease_id)
            self.stop_reason = stop_reason_data(stop_reason(self._ended_lease))
            self._ending_lease = True
            try:
                await super().stop()
            finally:
                self._ending_lease = False
            return 0  # the hub sees the server gone and calls stop(), which releases the lease
        return status

    async def _renew_if_due(self) -> None:
        if not self._renewal_due():
            return
        asked_for = self.lease_expires_at
        try:
            lease = await self.quota.renew_lease(self.lease_id)
        except QuotaUnavailable:
            return  # restarting: ask again at the next poll
        except QuotaRejected as exc:
            # The service wrote why on the lease; the workspace extension shows it with its warnings.
            self.log.warning("%s: lease %s not renewed: %s", self._log_name, self.lease_id, exc)
            self._renewal_answered_for = asked_for
            self._lease_checked_at = 0.0  # it may have ended: check at once
            return
        if lease is None:
            self._lease_checked_at = 0.0  # gone: let the check below see it
            return
        self._remember_expiry(lease)
        self.log.info("%s: lease %s renewed until %s", self._log_name, lease.id, self.lease_expires_at or "no end")
        if self._renewal_due():
            # Not extended beyond the renewal window (a CPU lease, a short profile, a reservation
            # ahead): once for this end is enough.
            self._renewal_answered_for = self.lease_expires_at

    def _renewal_due(self) -> bool:
        if not self.lease_renew_minutes_before or not self.lease_expires_at:
            return False
        if self._lease is not None and not self._lease.device:
            return False  # a CPU lease has nothing to renew
        if self.lease_expires_at == self._renewal_answered_for:
            return False
        left = datetime.fromisoformat(self.lease_expires_at) - datetime.now(timezone.utc)
        return left.total_seconds() <= self.lease_renew_minutes_before * 60

    async def _lease_ended(self) -> bool:
        """Whether the service ended the lease. Asked every ``lease_check_interval``, and at
        every poll once the remembered end passed: the service may have renewed the lease."""
        due = self._lease_end_passed() or time.monotonic() - self._lease_checked_at >= self.lease_check_interval
        if not due:
            return False
        self._lease_checked_at = time.monotonic()
        try:
            lease = await self.quota.get_lease(self.lease_id)
        except (QuotaUnavailable, QuotaRejected):
            return False  # the service cannot tell now: keep the workspace, ask again later
        if lease is None or lease.state != "granted":
            self._ended_lease = lease
            return True
        self._remember_expiry(lease)
        return False

    def _remember_expiry(self, lease: Lease) -> None:
        self.lease_expires_at = lease.expires_at.isoformat() if lease.expires_at else ""
        if self._lease is not None and self._lease.id == lease.id:
            self._lease = lease

    def _lease_end_passed(self) -> bool:
        if not self.lease_expires_at:
            return False
        return datetime.now(timezone.utc) >= datetime.fromisoformat(self.lease_expires_at)

    # -- what the workspace gets --------------------------------------------------------

    def shared_gpu_cap(self, lease: Lease) -> SharedCap | None:
        """The student's cap on a shared GPU (spawner/sharing.py), None for other leases: the
        backend's (mixed in after this class: the container backends say what they enforce),
        else a soft cap."""
        backend = getattr(super(), "shared_gpu_cap", None)
        if backend is not None:
            return backend(lease)
        pool = shared_pool(self.alliance, lease.pool) if lease.unit_kind == "shared" else None
        return cap_for(pool, "soft") if pool else None

    def get_env(self):
        env = super().get_env()
        lease = self._lease
        if lease is None:
            return env
        if lease.device:
            env["CUDA_VISIBLE_DEVICES"] = lease.device
            env["NVIDIA_VISIBLE_DEVICES"] = lease.device
        else:  # a CPU lease: hide every GPU rather than expose all of them
            env["CUDA_VISIBLE_DEVICES"] = ""
            env["NVIDIA_VISIBLE_DEVICES"] = "void"
        env["GPU_COMMONS_LEASE_ID"] = lease.id
        env["GPU_COMMONS_PROFILE"] = lease.profile
        env["GPU_COMMONS_LEASE_EXPIRES_AT"] = self.lease_expires_at
        env["GPU_COMMONS_LEASE_WARNINGS"] = ",".join(f"{m * 60:g}" for m in self.lease_warning_minutes)
        quota_url = self.workspace_quota_url or self.quota_url
        if lease.device and quota_url != "none":  # only GPU leases can be reclaimed
            env["GPU_COMMONS_QUOTA_URL"] = quota_url
            env["GPU_COMMONS_LEASE_REFRESH_S"] = f"{self.lease_refresh_seconds:g}"
        env["GPU_COMMONS_GPU_SIMULATED"] = "1" if lease.simulated else "0"
        # The student's language: JupyterLab's and the lease warnings' (gpu_commons_workspace).
        env["GPU_COMMONS_LOCALE"] = self.locale or HubLanguage(parent=self).default_locale
        # the library's mount, the classes' entries (the file's and the teacher's page's)
        env.update(library_env(self.alliance, self.user.name, self._library_answer))
        return env

    def get_state(self):
        state = super().get_state()
        if self.lease_id:
            state["lease_id"] = self.lease_id
            state["lease_expires_at"] = self.lease_expires_at
        if self.locale:
            state["locale"] = self.locale
        if self.stop_reason:
            state["stop_reason"] = self.stop_reason
        return state

    def load_state(self, state):
        super().load_state(state)
        self.lease_id = state.get("lease_id", "")
        self.lease_expires_at = state.get("lease_expires_at", "")
        self.locale = state.get("locale", self.locale)
        self.stop_reason = state.get("stop_reason", self.stop_reason) or {}

    def clear_state(self):
        super().clear_state()
        # lease_id is kept on purpose: stop() still has to release it after the process is gone.

    # -- messages -------------------------------------------------------------------------

    @property
    def _log_name(self) -> str:
        return f"{self.user.name}/{self.name or 'default'}"

    def _granted_message(self, lease: Lease) -> Message:
        # No device ids for students: the pool's name says where the GPU is.
        if not lease.device:
            return _("Starting a CPU workspace…")
        pool = next((p for p in self.alliance.pools if p.id == lease.pool), None)
        where = (pool.name or pool.id) if pool is not None else (lease.pool or "")
        if lease.simulated:
            return _("GPU granted on {pool} (simulated GPU: this server has no real GPU). "
                     "Starting your workspace…", pool=where)
        return _("GPU granted on {pool}. Starting your workspace…", pool=where)


class QueueLine:
    """The waiting page's one line for a queued lease: the place, the estimate, why the place
    got worse (the quota service's reason) or that the pool drains for maintenance. ``message``
    answers None when the line would read as it already does."""

    def __init__(self):
        self._last: int | None = None  # the place shown last
        self._why = None  # why the place got worse, kept until it gets better
        self._shown: Message | None = None

    def forget_shown(self) -> None:
        self._shown = None

    def message(self, lease: Lease, drain_notes: list[str] | None = None) -> Message | None:
        position = lease.queue_position
        if position is not None:
            if self._last is not None and position > self._last:
                self._why = lease.queue_reason or _("Requests with a better claim to a GPU arrived.")
            elif self._last is not None and position < self._last:
                self._why = None
            self._last = position
        message = queued_message(lease, self._why, drain_notes)
        if self._shown is not None and message.as_json() == self._shown.as_json():
            return None
        self._shown = message
        return message


def queued_message(lease: Lease, why=None, drain_notes: list[str] | None = None) -> Message:
    """The queue's sentence: the place and estimate, with why it got worse; a pool drained for
    maintenance says so (the service gives no place then: only that pool has this kind)."""
    keep_open = _("Keep this page open and your workspace will start by itself.")
    if lease.queue_position is None and drain_notes is not None:
        closed = (_("The GPUs for this workspace are closed for maintenance ({note}).", note="; ".join(drain_notes))
                  if drain_notes else _("The GPUs for this workspace are closed for maintenance."))
        return _("{closed} You keep your place; the workspace starts when they open again. {keep_open}",
                 closed=closed, keep_open=keep_open)
    if lease.queue_position is None:
        place = _("All GPUs of this kind are in use. You are in the queue.")
    else:
        place = _("All GPUs of this kind are in use. You are number {position} in the queue.",
                  position=lease.queue_position)
    if why is not None:
        place = _("{place} {why}", place=place, why=why)
    if lease.wait_estimate_s is None:
        return _("{place} {keep_open}", place=place, keep_open=keep_open)
    minutes = max(1, round(lease.wait_estimate_s / 60))
    wait = _n("A GPU should be free within about {n} minute.", "A GPU should be free within about {n} minutes.",
              minutes)
    return _("{place} {wait} {keep_open}", place=place, wait=wait, keep_open=keep_open)


# The idle release's sentences (quota/messages.py): its warning and its stop.
IDLE_RELEASE_MSGIDS = frozenset({
    "The GPU was not used for a while and others are waiting for it.",
    "Released: the GPU was not used and others were waiting for it. Your saved files are kept; start again when "
    "you need the GPU.",
})


def _mentions(message: Message, msgids: frozenset) -> bool:
    """Whether ``message`` is one of ``msgids`` or holds one among its parameters."""
    return message.msgid in msgids or any(isinstance(v, Message) and _mentions(v, msgids) for v in message.params.values())


def stop_reason(lease: Lease | None) -> Message | str:
    """Why a running workspace was stopped, from the service's last answer about its lease."""
    if lease is None:
        return _("The GPU booking service no longer knows its booking.")
    if isinstance(lease.reason, Message) and _mentions(lease.reason, IDLE_RELEASE_MSGIDS):
        return _("Its GPU was not used for a while and others were waiting for it, so it was released for them.")
    if lease.reason:
        return lease.reason  # the service's sentence: a reclaim, a renewal refused, a budget spent, a drain
    if lease.state == "expired":
        return _("Its booked time ended.")
    return _("The GPU booking service ended its booking.")


def stop_reason_data(reason: Message | str) -> dict:
    """A stop reason as plain data for the spawner's state; :func:`stop_reason_text` reads it."""
    return {"message": reason.as_json()} if isinstance(reason, Message) else {"text": str(reason)}


def stop_reason_text(data: dict | None, locale: str | None) -> str:
    if not data:
        return ""
    if "message" in data:
        return from_json(data["message"]).render(locale)
    return data.get("text", "")


__all__ = ["QuotaSpawnerMixin", "SpawnRefused", "WorkspaceStillRunning", "AllianceError"]
