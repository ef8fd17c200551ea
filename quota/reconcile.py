"""Reconcile leases with the servers the hub really runs.

The quota service is the system of record for leases, but the hub knows which workspaces
run. They drift apart when the hub (or its host) dies between stopping a workspace and
releasing its lease: the lease would hold its GPU until it expires. So, at start-up and
every ``reconcile_interval_s``, the service lists the hub's users with an active server
(running, or pending: still starting or waiting in the queue) through the hub's REST API,
with its own token (role ``quota-service``: ``list:users``, ``read:users``, ``read:servers``),
and then

- releases every granted lease that no active server of its student holds (usage end reason
  ``reconciled``): a lease is held by a server of its student that runs the lease's profile
  (the ``profile`` of the server's ``user_options``, which the spawner asked the lease for);
  a student with more leases of one profile than servers running it keeps the newest. So a
  lease is released when its student has no server, and when the server runs another
  profile (a GPU lease beside a CPU workspace). A lease granted less than
  ``reconcile_grace_s`` before the listing stays: its server may be too new to be listed;
- tells the allocator when each held lease's server was last used (the server's
  ``last_activity``, which the hub learns from the proxy's traffic and the server's own
  activity reports, every few minutes): the reclaim takes the longest idle first, and
  idle GPUs are found (:meth:`quota.leases.LeaseBook.touch`);
- reports ready GPU servers whose user holds no granted GPU lease here (a warning in the
  log and the gauge ``gpu_commons_gpu_servers_unleased``): a workspace using a GPU nobody
  booked, for an operator to look at. Nothing is stopped from here; the spawner itself
  stops a running workspace whose lease is no longer granted (``lease_check_interval``).

When the hub cannot be asked (down, restarting, token refused), nothing is released.
It runs only when the service runs under a hub (``JUPYTERHUB_API_URL`` is set).

``plan()`` decides over plain data; ``Reconciler`` does the I/O around it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import collections
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from quota.leases import Clock, LeaseBook

log = logging.getLogger(__name__)

END_REASON = "reconciled"
PAGE = 200


@dataclass(frozen=True)
class HubServer:
    """An active server as the hub reports it."""

    user: str
    name: str
    ready: bool
    profile: str | None  # the profile the student chose (user_options), if any
    last_activity: datetime | None = None  # when the hub last saw the server used
    started: datetime | None = None  # when the hub started it
    pending: str | None = None  # "spawn" or "stop" while starting or stopping, else None


@dataclass(frozen=True)
class HeldLease:
    id: str
    user: str
    gpu: bool
    granted_at: datetime
    profile: str


@dataclass(frozen=True)
class HubListing:
    active_users: frozenset[str]  # users with at least one running or pending server
    servers: tuple[HubServer, ...]


@dataclass(frozen=True)
class Plan:
    release: tuple[str, ...]  # lease ids
    unleased_gpu_servers: tuple[HubServer, ...]
    activity: tuple[tuple[str, datetime], ...] = ()  # (lease id, its server's last activity)


def plan(leases: list[HeldLease], listing: HubListing, listed_at: datetime, grace: timedelta,
         gpu_profiles: set[str]) -> Plan:
    """Which granted leases to release (those no server holds, past the grace), and which
    GPU servers hold no lease. A server holds one lease of its student and profile; of a
    student's leases of one profile the newest are held, one per such server."""
    cutoff = listed_at - grace
    servers_running = collections.defaultdict(list)
    for server in sorted(listing.servers, key=_last_used):  # the most recently used hold the newest leases
        servers_running[(server.user, server.profile)].append(server)
    unheld = set()
    activity = []
    for lease in sorted(leases, key=lambda lease: lease.granted_at, reverse=True):  # the newest are held first
        holders = servers_running[(lease.user, lease.profile)]
        if holders:
            server = holders.pop()
            if server.last_activity is not None:
                activity.append((lease.id, server.last_activity))
        elif lease.granted_at <= cutoff:
            unheld.add(lease.id)
    release_ids = tuple(lease.id for lease in leases if lease.id in unheld)  # in the book's order
    gpu_holders = {lease.user for lease in leases if lease.gpu}
    unleased = tuple(
        server for server in listing.servers
        if server.ready and server.profile in gpu_profiles and server.user not in gpu_holders
    )
    return Plan(release_ids, unleased, tuple(activity))


def _last_used(server: HubServer) -> datetime:
    return server.last_activity or datetime.min.replace(tzinfo=timezone.utc)


async def list_active_servers(client: httpx.AsyncClient) -> HubListing:
    """Users with an active server, page by page (``GET /users?state=active``)."""
    users: set[str] = set()
    servers: list[HubServer] = []
    offset = 0
    while True:
        response = await client.get(
            "/users", params={"state": "active", "offset": offset, "limit": PAGE},
            headers={"Accept": "application/jupyterhub-pagination+json"},
        )
        if response.status_code in (401, 403):
            raise PermissionError(
                f"the hub refused the quota service's token ({response.status_code}); its role 'quota-service' "
                "needs the scopes list:users, read:users and read:servers (hub/config.py)"
            )
        response.raise_for_status()
        body = response.json()
        items = body["items"] if isinstance(body, dict) else body
        for user in items:
            users.add(user["name"])  # listed with state=active: running or pending, whatever the detail says
            if "servers" not in user:  # without them no lease could be matched: release nothing
                raise PermissionError(
                    "the hub listed users without their servers; the quota service's role 'quota-service' needs "
                    "the scope read:servers (hub/config.py)"
                )
            for name, server in (user.get("servers") or {}).items():
                options = server.get("user_options") or {}
                servers.append(HubServer(user["name"], name, bool(server.get("ready")), options.get("profile"),
                                         _moment(server.get("last_activity")), _moment(server.get("started")),
                                         server.get("pending")))
        following = body.get("_pagination", {}).get("next") if isinstance(body, dict) else None
        if not following:
            return HubListing(frozenset(users), tuple(servers))
        offset = following["offset"]


def _moment(text: str | None) -> datetime | None:
    """A time as the hub's REST API writes it (ISO 8601, ``Z`` for UTC); None if absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Reconciler:
    def __init__(self, book: LeaseBook, api_url: str, token: str, grace_s: float, registry: CollectorRegistry,
                 clock: Clock, timeout_s: float = 30.0, transport: httpx.AsyncBaseTransport | None = None):
        self._book = book
        self._transport = transport  # None: the network (tests give a fake hub here)
        self._api_url = api_url.rstrip("/")
        self._token = token
        self._grace = timedelta(seconds=grace_s)
        self._clock = clock
        self._timeout = timeout_s
        self._gpu_profiles = {profile.id for profile in book.alliance.profiles if profile.gpu != "none"}
        self.released = Counter(
            "gpu_commons_leases_reconciled_total",
            "Granted leases released because no server of their student runs their profile.",
            registry=registry,
        )
        self.unleased = Gauge(
            "gpu_commons_gpu_servers_unleased",
            "Ready GPU servers whose student holds no granted GPU lease, at the last reconciliation.",
            registry=registry,
        )
        self.passes = Counter(
            "gpu_commons_reconciliations_total",
            "Reconciliations with the hub's servers, by outcome (ok, or failed: the hub could not be asked).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("ok", "failed"):
            self.passes.labels(outcome)

    async def run_once(self) -> Plan | None:
        """One pass; None when the hub could not be asked (then nothing changes)."""
        listed_at = self._clock()
        try:
            async with httpx.AsyncClient(base_url=self._api_url, timeout=self._timeout, transport=self._transport,
                                         headers={"Authorization": f"token {self._token}"}) as client:
                listing = await list_active_servers(client)
        except (httpx.HTTPError, PermissionError, ValueError, KeyError) as exc:
            self.passes.labels("failed").inc()
            log.warning("reconciliation skipped: could not list the hub's servers at %s: %s", self._api_url, exc)
            return None
        leases = await asyncio.to_thread(self._granted)
        decided = plan(leases, listing, listed_at, self._grace, self._gpu_profiles)
        for lease_id in decided.release:
            lease = await asyncio.to_thread(self._book.release, lease_id, END_REASON)
            if lease is not None:
                self.released.inc()
                log.warning("released lease %s (%s) of %s: no server of theirs runs that profile (reconciled)",
                            lease_id, lease.profile, lease.user)
        if decided.activity:
            await asyncio.to_thread(self._touch, decided.activity)
        for server in decided.unleased_gpu_servers:
            log.warning("GPU server of %s (profile %s) holds no GPU lease; check how it was started",
                        server.user, server.profile)
        self.unleased.set(len(decided.unleased_gpu_servers))
        self.passes.labels("ok").inc()
        return decided

    async def run_forever(self, every_s: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # keep reconciling: one bad pass must not stop it for good
                log.exception("the reconciliation with the hub failed")
            await asyncio.sleep(every_s)

    def _touch(self, activity) -> None:
        for lease_id, at in activity:
            self._book.touch(lease_id, at)

    def _granted(self) -> list[HeldLease]:
        return [
            HeldLease(row.id, row.user, row.kind is not None, row.granted_at, row.profile)
            for row in self._book.leases(state="granted")
        ]


def reconciler_for(book: LeaseBook, settings, registry: CollectorRegistry, clock: Clock) -> Reconciler | None:
    """The reconciler when the service runs under a hub (JUPYTERHUB_API_URL is set); None otherwise.
    Start it with ``asyncio.create_task(reconciler.run_forever(settings.reconcile_interval_s))``."""
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    if not api_url:
        return None
    log.info("reconciling leases with the hub's servers at %s every %.0f s", api_url, settings.reconcile_interval_s)
    return Reconciler(book, api_url, settings.api_token, settings.reconcile_grace_s, registry, clock)
