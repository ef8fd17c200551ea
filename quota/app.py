"""The quota service as a FastAPI app: ``create_app(settings)``.

Builds the database (migrated by Alembic), the inventory, the LeaseBook with its one
allocator, the writer lock (:mod:`quota.writer`), the metrics, and the ticker that
advances the allocator on time (:mod:`quota.ticker`).
"""

from __future__ import annotations

import contextlib
import logging
import os

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from quota.alliance import load_alliance
from quota.auth import TokenResolver, hub_oauth_client, hub_token_resolver
from quota.db import make_engine, session_factory, upgrade
from quota.inventory import Unit, alliance_units
from quota.leases import Clock, JournalUnavailable, LeaseBook, utc_now
from quota.metrics import QuotaMetrics, TimedRequests
from quota.gpu_activity import gpu_activity_for
from quota.hub_servers import hub_servers_for
from quota.reconcile import reconciler_for
from quota.request_limits import RequestRate
from quota.roster_store import classes_from_database, merged_from_database, reinstall
from quota import pages
from quota.routes import health, inventory, leases, library, oauth, pools, queue, reference, reservations, schools, tiers, usage
from quota.routes import roster
from quota.settings import QuotaSettings
from quota.ticker import Ticker
from quota.web_guard import RequestGuard, SecurityHeaders, validation_error
from quota.writer import Leadership, writer_lock

log = logging.getLogger("quota")


def create_app(
    settings: QuotaSettings,
    clock: Clock = utc_now,
    units: list[Unit] | None = None,
    token_resolver: TokenResolver | None = None,
    run_timers: bool = True,
) -> FastAPI:
    """``token_resolver`` maps a JupyterHub token to a user name; by default the hub is asked.
    ``run_timers=False``: no ticker; the caller advances the allocator (tests with a settable clock).
    Raises :class:`quota.writer.AnotherWriter` when another process writes the SQLite database."""
    alliance = load_alliance(settings.alliance)
    if units is None:
        units = alliance_units(alliance, use_nvml=settings.use_nvml, source=str(settings.alliance))
    if any(unit.simulated for unit in units):
        log.warning("SIMULATED GPU inventory: these GPU units are declared in %s, not read from hardware", settings.alliance)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    file_alliance, alliance = alliance, merged_from_database(alliance, engine)  # with the imported students (quota/roster_store.py)
    metrics = QuotaMetrics(alliance)
    book = LeaseBook(
        alliance, units, session_factory(engine), clock=clock,
        heartbeat_timeout_s=settings.queue_heartbeat_timeout_s, listener=metrics.listener(),
    )
    metrics.watch(book)
    leadership = Leadership(writer_lock(engine), book, settings.standby_poll_s)
    book.file_alliance = file_alliance
    book.roster_classes = classes_from_database(engine)  # the classes created on the classes page
    book.before_promote = [lambda: reinstall(book)]  # a standby taking over reads the roster imported meanwhile
    book.is_writer = leadership.is_writer
    leadership.start()
    if leadership.leader:
        book.change_policy(lambda session, now: book.policy.book_alliance_reservations(session, now))
        book.promote()
    reconciler = reconciler_for(book, settings, metrics.registry, clock)  # None unless run under a hub
    gpu_activity = gpu_activity_for(book, units, settings) if run_timers else None  # None without real GPUs
    if gpu_activity:
        metrics.watch_gpus(gpu_activity.readings)
    ticker = Ticker(book, settings.timer_max_sleep_s, leadership.is_writer) if run_timers else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        import asyncio

        leadership.watch()
        if ticker:
            ticker.start()
        reconciling = reconciler and asyncio.create_task(reconciler.run_forever(settings.reconcile_interval_s))
        sampling = gpu_activity and asyncio.create_task(gpu_activity.run_forever(settings.gpu_activity_interval_s))
        try:
            yield
        finally:
            for task in (reconciling, sampling):
                if task:
                    task.cancel()
            if ticker:
                ticker.stop()
            book.close()  # what is decided is stored before the database goes
            leadership.stop()
            engine.dispose()

    app = FastAPI(
        title="GPU Commons quota service",
        description="Leases of GPU units for school students' workspaces, the queue, the inventory and the usage ledger.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI comes from a CDN: quota/routes/reference.py serves /docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.book = book
    app.state.leadership = leadership
    app.state.metrics = metrics
    app.state.hub_oauth = hub_oauth_client(settings.api_token, settings.token_cache_s)
    app.state.resolve_token = token_resolver or hub_token_resolver(app.state.hub_oauth)
    app.state.lease_rate = RequestRate(settings.lease_requests_per_minute)
    app.state.hub_servers = hub_servers_for(settings)  # the workspaces page's hub (None unless run under one)
    for module in (leases, queue, reservations, usage, library, schools, tiers, pools, inventory, oauth, reference, health):
        app.include_router(module.router)
    app.include_router(roster.router)  # imported students, for the hub
    for router in pages.routers():  # server-rendered pages (quota/pages), the front page too
        app.include_router(router)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, uploads=pages.UPLOAD_LIMITS)
    app.add_middleware(TimedRequests, histogram=metrics.http)  # outside the guard: its refusals are timed too
    app.add_middleware(SecurityHeaders)  # added last: the outermost, so every answer carries the headers
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.exception_handler(JournalUnavailable)
    async def _unavailable(request: Request, exc: JournalUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"The quota service cannot decide right now: {exc}"}, status_code=503,
                            headers={"Retry-After": "2"})

    return ServicePrefix(app, os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "")) if os.environ.get("JUPYTERHUB_SERVICE_PREFIX") else app


class ServicePrefix:
    """Serve the app both at / (the hub's spawner calls it directly) and under the hub's
    service prefix (/services/quota/, where the proxy sends browsers)."""

    def __init__(self, app: FastAPI, prefix: str):
        self.app = app
        self.prefix = prefix.rstrip("/")

    def __getattr__(self, name):
        return getattr(self.app, name)  # app.state, app.openapi(), … keep working

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            path = scope.get("path", "")
            if path == self.prefix or path.startswith(self.prefix + "/"):
                scope = dict(scope, root_path=self.prefix)  # Starlette routes on path minus root_path
        await self.app(scope, receive, send)
