"""Jupyter Server extension: tells JupyterLab when the workspace's GPU lease ends.

The spawner puts the lease's end and the warning times in the environment; this extension
serves them at ``<server>/gpu-commons/lease`` for the JupyterLab plugin (labextension/),
which warns the student and saves open documents before the hub stops the server. The
same times are written to the server log.

A lease can also end early: the fair-share allocator reclaims a borrowed GPU share for a
school below its guaranteed share, with a warning lead time. It can end later too: the
spawner asks for a renewal before the end, and the service renews at the end when nobody
with a better claim waits; a renewal it refuses leaves its reason on the lease. When the
spawner also gives the quota service's URL (``GPU_COMMONS_QUOTA_URL``), the extension asks
the service about the lease every ``GPU_COMMONS_LEASE_REFRESH_S`` seconds (default 30) with
the server's own JupyterHub token, and serves the new end and the service's reason as soon
as it learns them.

The extension also makes the server light on a slow link: compressed responses, JupyterLab's
static files precompressed with brotli, hashed files cached for good (static_files.py).

It speaks the student's language (``GPU_COMMONS_LOCALE``, set by the spawner from the hub's
choice): the warnings' sentences come from the one catalogue (gpu_commons_i18n) with the lease,
and JupyterLab opens in that language (its translation setting's default for this server; a
language the student picks in Settings > Language still wins).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from gpu_commons_i18n import DEFAULT_LOCALE, from_json, locale_folder, negotiate, plural_templates, render, text_template

DEFAULT_WARNINGS = (600, 120)  # ten and two minutes before the end
SAVE_BEFORE_SECONDS = 30  # open documents are saved this long before the end


@dataclass(frozen=True)
class LeaseEnd:
    expires_at: datetime | None
    warnings_seconds: tuple[int, ...] = DEFAULT_WARNINGS
    lease_id: str = ""
    profile: str = ""
    reason: str = ""  # the service's sentence about the end (a reclaim, a renewal refused), for the student
    ends_early: bool = False  # reclaimed or ended by the service before the end booked for it
    early_end: str = ""  # which early end: "idle" (the GPU unused while others wait) or "reclaimed"
    quota_url: str = ""
    refresh_seconds: float = 30.0
    locale: str = DEFAULT_LOCALE  # the student's language (a tag: zh-CN, en)

    @classmethod
    def from_environment(cls, env=os.environ) -> "LeaseEnd":
        expires = env.get("GPU_COMMONS_LEASE_EXPIRES_AT", "")
        raw = env.get("GPU_COMMONS_LEASE_WARNINGS", "")
        warnings = tuple(sorted({int(float(w)) for w in raw.split(",") if w.strip()}, reverse=True)) if raw else DEFAULT_WARNINGS
        return cls(
            expires_at=datetime.fromisoformat(expires) if expires else None,
            warnings_seconds=warnings,
            lease_id=env.get("GPU_COMMONS_LEASE_ID", ""),
            profile=env.get("GPU_COMMONS_PROFILE", ""),
            quota_url=env.get("GPU_COMMONS_QUOTA_URL", "").rstrip("/"),
            refresh_seconds=float(env.get("GPU_COMMONS_LEASE_REFRESH_S", "30") or 30),
            locale=negotiate(env.get("GPU_COMMONS_LOCALE", ""), default=DEFAULT_LOCALE),
        )

    def updated(self, answer: dict) -> "LeaseEnd":
        """This lease after the quota service's answer about it: a later end when the
        service renewed it (``expires_at``), an earlier one when it reclaims it
        (``reclaim_at``) or ended it already; with the service's ``reason``."""
        running = answer.get("state") in (None, "granted")
        booked = answer.get("expires_at")
        end = datetime.fromisoformat(booked) if running and booked else self.expires_at
        ends_early = False
        reclaim = answer.get("reclaim_at")
        if reclaim and (end is None or datetime.fromisoformat(reclaim) < end):
            end, ends_early = datetime.fromisoformat(reclaim), True
        if not running:
            end = min(end, datetime.now(timezone.utc)) if end else datetime.now(timezone.utc)
            ends_early = True
        # The service's sentence in the student's language when it sends the catalogue's message.
        message = answer.get("reason_message")
        reason = render(from_json(message), self.locale) if message else (answer.get("reason") or "")
        early_end = early_end_kind(message) if ends_early else ""
        if (end, reason, ends_early, early_end) == (self.expires_at, self.reason, self.ends_early, self.early_end):
            return self
        return replace(self, expires_at=end, reason=reason, ends_early=ends_early, early_end=early_end)

    def warning_times(self) -> list[tuple[datetime, int]]:
        """When each warning is due, with the seconds left then, earliest first."""
        if self.expires_at is None:
            return []
        return [(self.expires_at - timedelta(seconds=s), s) for s in sorted(self.warnings_seconds, reverse=True)]

    def as_json(self, now: datetime) -> dict:
        return {
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "now": now.isoformat(),
            "warnings_seconds": list(self.warnings_seconds),
            "save_before_seconds": SAVE_BEFORE_SECONDS,
            "lease_id": self.lease_id,
            "profile": self.profile,
            "reason": self.reason,
            "ends_early": self.ends_early,
            "early_end": self.early_end,
            "refresh_seconds": self.refresh_seconds,
            "locale": self.locale,
            "messages": warning_sentences(self.locale),
        }


def warning_sentences(locale: str) -> dict:
    """The plugin's sentences in ``locale``; ``{left}`` and ``{at}`` are filled in by the browser
    (the time in the student's clock), ``units`` chosen with ``Intl.PluralRules``."""
    return {
        "warning": text_template("Your GPU time ends in {left} (at {at}); the workspace stops then. "
                                 "Save your work now.", locale),
        "not_renewed": text_template("Your GPU time ends in {left} (at {at}) and cannot be renewed; the workspace "
                                     "stops then. Save your work now.", locale),
        "reclaimed": text_template("Your GPU goes back at {at} to a school below its guaranteed share; "
                                   "save your work now.", locale),
        "idle": text_template("Your GPU has not been used for a while and others are waiting: it is released at "
                              "{at}. Save your work now; your files are kept.", locale),
        "save_all": text_template("Save all", locale),
        "units": {
            "minute": plural_templates("{n} minute", "{n} minutes", locale),
            "second": plural_templates("{n} second", "{n} seconds", locale),
        },
    }


# The idle release's sentences (quota/messages.py): its warning and its stop.
IDLE_MSGIDS = frozenset({
    "The GPU was not used for a while and others are waiting for it.",
    "Released: the GPU was not used and others were waiting for it. Your saved files are kept; start again when "
    "you need the GPU.",
})


def early_end_kind(reason_message: dict | None) -> str:
    """Why a lease ends early, from the quota service's ``reason_message`` (the catalogue's id
    and parameters, reasons nested in a sentence's parameters): "idle" when its GPU sat unused
    while others wait (quota/fairshare/idle.py), else "reclaimed"."""

    def ids(message):
        if isinstance(message, dict) and "msgid" in message:
            yield message["msgid"]
            for value in (message.get("params") or {}).values():
                yield from ids(value)

    return "idle" if IDLE_MSGIDS & set(ids(reason_message)) else "reclaimed"


class LeaseHandler(APIHandler):
    @web.authenticated
    def get(self):
        lease: LeaseEnd = self.settings["gpu_commons_lease"]
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(lease.as_json(datetime.now(timezone.utc))))


async def _log_warnings(web_app, log) -> None:
    """Log each warning when it is due, following the lease if it ends earlier."""
    logged: set[tuple[datetime, int]] = set()
    while True:
        lease: LeaseEnd = web_app.settings["gpu_commons_lease"]
        due = [(when, seconds) for when, seconds in lease.warning_times() if (when, seconds) not in logged]
        if not due:
            await asyncio.sleep(lease.refresh_seconds)
            continue
        when, seconds = due[0]
        delay = (when - datetime.now(timezone.utc)).total_seconds()
        if delay > 0:
            await asyncio.sleep(min(delay, lease.refresh_seconds))
            continue
        logged.add((when, seconds))
        log.warning("GPU lease %s ends in %d s (at %s); the server will be stopped then%s", lease.lease_id, seconds,
                    lease.expires_at.isoformat(), f": {lease.reason}" if lease.reason else "")


async def _follow_quota_service(web_app, log) -> None:
    """Ask the quota service about the lease until it ends; keep the earliest end."""
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    client = AsyncHTTPClient()
    while True:
        lease: LeaseEnd = web_app.settings["gpu_commons_lease"]
        await asyncio.sleep(lease.refresh_seconds)
        request = HTTPRequest(
            f"{lease.quota_url}/api/leases/{lease.lease_id}", headers={"Authorization": f"token {token}"},
            request_timeout=10,
        )
        try:
            answer = json.loads((await client.fetch(request)).body)
        except (HTTPClientError, OSError, ValueError) as exc:  # the service may be restarting: ask again later
            log.debug("quota service not reachable for lease %s: %s", lease.lease_id, exc)
            continue
        newer = lease.updated(answer)
        if newer is not lease:
            ends = newer.expires_at.isoformat() if newer.expires_at else "no end"
            log.warning("GPU lease %s now ends at %s%s", lease.lease_id, ends, f": {newer.reason}" if newer.reason else "")
            web_app.settings["gpu_commons_lease"] = newer


def _jupyter_server_extension_points():
    return [{"module": "gpu_commons_workspace"}]


def _link_jupyter_server_extension(serverapp):
    """Runs before the server builds its web application, so it holds for every extension."""
    from gpu_commons_workspace.static_files import configure

    configure(serverapp)


def _load_jupyter_server_extension(serverapp):
    from gpu_commons_workspace.gpu_memory_cap import install_startup
    from gpu_commons_workspace.static_files import cache_hashed_extensions, preload_core

    lease = LeaseEnd.from_environment()
    web_app = serverapp.web_app
    install_startup(os.environ, os.path.expanduser("~"), serverapp.log)  # a shared GPU: frameworks told the cap
    # Once JupyterLab's settings handler is there (its extension may load after this one).
    serverapp.io_loop.add_callback(_set_lab_language_when_ready, serverapp.io_loop, web_app, lease.locale,
                                   serverapp.log)
    cache_hashed_extensions(web_app)
    preload_core(web_app)
    web_app.settings["gpu_commons_lease"] = lease
    route = url_path_join(web_app.settings["base_url"], "gpu-commons", "lease")
    web_app.add_handlers(".*$", [(route, LeaseHandler)])
    from gpu_commons_workspace import library  # the alliance's library: its page, the class's links (library.py)

    library.load(serverapp)
    if lease.expires_at:
        serverapp.log.info("GPU lease %s ends at %s; warnings %s s before", lease.lease_id,
                           lease.expires_at.isoformat(), list(lease.warnings_seconds))
        serverapp.io_loop.add_callback(_log_warnings, web_app, serverapp.log)
    if lease.quota_url and lease.lease_id:
        serverapp.io_loop.add_callback(_follow_quota_service, web_app, serverapp.log)


TRANSLATION_PLUGIN = "@jupyterlab/translation-extension:plugin"


def set_lab_language(web_app, locale: str, log) -> bool:
    """Make ``locale`` JupyterLab's language on this server: the default of its translation
    setting, in the overrides its settings handler serves (a language the student chose in
    Settings > Language is a user setting and still wins). True when the handler was found."""
    language_pack = locale_folder(locale) or "en"  # JupyterLab names its packs zh_CN, en
    found = False
    for overrides in _settings_overrides(web_app.default_router):
        overrides.setdefault(TRANSLATION_PLUGIN, {})["locale"] = language_pack
        found = True
    if found:
        log.info("JupyterLab's language here: %s", language_pack)
    else:
        log.warning("JupyterLab's settings handler was not found; its language stays as configured")
    return found


def _set_lab_language_when_ready(io_loop, web_app, locale: str, log, tries: int = 150) -> None:
    if _settings_found(web_app) or tries <= 1:
        set_lab_language(web_app, locale, log)
        return
    io_loop.call_later(0.2, _set_lab_language_when_ready, io_loop, web_app, locale, log, tries - 1)


def _settings_found(web_app) -> bool:
    return next(_settings_overrides(web_app.default_router), None) is not None


def _settings_overrides(router):
    """The ``overrides`` dicts handed to JupyterLab's settings handlers, through nested routers."""
    for rule in getattr(router, "rules", []):
        kwargs = getattr(rule, "target_kwargs", None) or {}
        if isinstance(kwargs.get("overrides"), dict):
            yield kwargs["overrides"]
        yield from _settings_overrides(rule.target)
