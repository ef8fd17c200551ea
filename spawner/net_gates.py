"""What a workspace in its own network namespace may reach: two gates on its loopback.

The workspace's packet filter (spawner/netns.py) lets it open connections only on its own
loopback. There the hub listens, with sockets it made inside the namespace, and passes on:

- **the hub API gate** (``JUPYTERHUB_API_URL``'s port): one request per connection, and only
  under the API's path (``/hub/api/…``, what JupyterLab's hub authentication and activity
  reports use), passed to the hub's API address as it came, less any ``X-Forwarded-For``,
  ``Forwarded`` or ``X-Real-Ip`` (so a workspace cannot pose as another address to the login
  limits) and with ``Connection: close``; the answer comes back byte for byte. The hub checks
  each request's token and its scopes as for anyone else; its login page and other pages are
  not reachable from a workspace.
- **the lease gate** (``GPU_COMMONS_QUOTA_URL``'s port; GPU workspaces only): one request per
  connection, and only ``GET /api/leases/<this workspace's lease id>`` (what the workspace
  extension asks every ``lease_refresh_seconds``). The gate makes that request to the quota
  service itself, with the workspace's ``Authorization`` header and nothing else, and answers
  with the service's status, type and body; anything else is refused with 403 and a
  sentence, without reaching the service.

The URLs in the workspace's environment are rewritten to the gates (:func:`inside_env`): the
same port on 127.0.0.1, so the embedded setup's URLs do not change at all.

Both gates run on the hub's event loop (a few small requests a minute per workspace). When
the hub restarts they are opened again from its next poll of the running server; meanwhile
the workspace sees connection errors, as it would with the hub down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

from gpu_commons_i18n import _, render
from spawner.netns import WorkspaceNetwork

INSIDE_HOST = "127.0.0.1"
HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT_S = 10.0
UPSTREAM_TIMEOUT_S = 10.0
LEASE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

# What a student reads when the gate refuses: the gate does not know the reader's language, so both.
REFUSED = _("This workspace may only read its own GPU lease here (GET /api/leases/<lease id>); open the quota "
            "service's other pages in your browser.")
UNREACHABLE = _("The quota service cannot be reached just now; try again later.")
HUB_ONLY = _("This workspace may only use the hub's API here; open the hub's pages in your browser.")


def both_languages(message) -> str:
    return f"{render(message, 'zh-CN')} {render(message, 'en')}"


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class GatePlan:
    """Which gates a workspace gets, from the URLs its environment would hold on the host."""

    hub_api: tuple[str, int] | None = None  # (host, port) of the hub's API
    hub_port: int = 0  # the gate's port inside
    quota_url: str = ""  # where the lease gate asks (the service's base URL)
    quota_port: int = 0
    hub_prefix: str = "/hub/api"  # the API's path: the hub gate passes only what lies under it

    @classmethod
    def from_env(cls, env: dict) -> "GatePlan":
        hub_api, hub_port, quota_url, quota_port, prefix = None, 0, "", 0, "/hub/api"
        if env.get("JUPYTERHUB_API_URL"):
            parts = urlsplit(env["JUPYTERHUB_API_URL"])
            hub_port = _port(env["JUPYTERHUB_API_URL"])
            hub_api = (parts.hostname or INSIDE_HOST, hub_port)
            prefix = parts.path.rstrip("/") or "/"
        if env.get("GPU_COMMONS_QUOTA_URL"):
            quota_url = env["GPU_COMMONS_QUOTA_URL"].rstrip("/")
            quota_port = _port(quota_url)
            if quota_port == hub_port:
                quota_port = hub_port + 1
        return cls(hub_api, hub_port, quota_url, quota_port, prefix)


    def as_state(self) -> dict:
        return {"hub_api": list(self.hub_api) if self.hub_api else None, "hub_port": self.hub_port,
                "quota_url": self.quota_url, "quota_port": self.quota_port, "hub_prefix": self.hub_prefix}

    @classmethod
    def from_state(cls, state: dict) -> "GatePlan":
        hub_api = state.get("hub_api")
        return cls(tuple(hub_api) if hub_api else None, state.get("hub_port", 0), state.get("quota_url", ""),
                   state.get("quota_port", 0), state.get("hub_prefix", "/hub/api"))


def _inside(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(("http", f"{INSIDE_HOST}:{port}", parts.path, parts.query, parts.fragment))


def inside_env(env: dict, plan: GatePlan) -> dict:
    """The environment with the hub's and the quota service's URLs pointing at the gates."""
    env = dict(env)
    if plan.hub_api:
        for key in ("JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL"):
            if env.get(key):
                env[key] = _inside(env[key], plan.hub_port)
    if plan.quota_url and env.get("GPU_COMMONS_QUOTA_URL"):
        env["GPU_COMMONS_QUOTA_URL"] = _inside(plan.quota_url, plan.quota_port)
    return env


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    headers: dict  # lower-case names; the last value of a repeated header


def parse_head(raw: bytes) -> RequestHead | None:
    """An HTTP/1.x request head, or None when it is not one."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover (latin-1 decodes every byte)
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return RequestHead(parts[0], parts[1], headers)


def lease_request_allowed(head: RequestHead | None, lease_id: str) -> bool:
    """Only ``GET /api/leases/<lease_id>``, without a body, for this workspace's lease."""
    if head is None or not LEASE_ID.fullmatch(lease_id or ""):
        return False
    if "transfer-encoding" in head.headers or head.headers.get("content-length", "0") != "0":
        return False
    return head.method == "GET" and head.target == f"/api/leases/{lease_id}"


STRIPPED = {"connection", "keep-alive", "proxy-connection", "upgrade", "x-forwarded-for", "x-forwarded-host",
            "x-forwarded-proto", "forwarded", "x-real-ip"}
MAX_BODY = 1024 * 1024  # the hub API's requests from a workspace are small JSON
_UNSAFE_PATH = re.compile(r"(^|/)\.\.?(/|$)|%2e|%2f|%5c|\\", re.IGNORECASE)


def hub_request_allowed(head: RequestHead | None, prefix: str) -> bool:
    """A request under the hub API's path, with a body of a declared length (not chunked)."""
    if head is None or "transfer-encoding" in head.headers:
        return False
    length = head.headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_BODY:
        return False
    path = head.target.split("?", 1)[0]
    if not path.startswith("/") or _UNSAFE_PATH.search(path):
        return False
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def hub_request_head(head: RequestHead) -> bytes:
    """The head passed to the hub: as it came, less the hop and address headers, one request only."""
    lines = [f"{head.method} {head.target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in head.headers.items() if name not in STRIPPED]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _answer(status: int, reason: str, body: bytes, content_type: str) -> bytes:
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


def _refusal(status: int, reason: str, message) -> bytes:
    return _answer(status, reason, json.dumps({"detail": both_languages(message)}, ensure_ascii=False).encode(),
                   "application/json; charset=utf-8")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


@dataclass
class WorkspaceGates:
    """The gates of one workspace, serving sockets inside its namespace."""

    plan: GatePlan
    lease_id: Callable[[], str]
    log: logging.Logger
    servers: list = field(default_factory=list)
    _client: httpx.AsyncClient | None = None

    @classmethod
    async def open(cls, network: WorkspaceNetwork, plan: GatePlan, lease_id: Callable[[], str],
                   log: logging.Logger) -> "WorkspaceGates":
        gates = cls(plan, lease_id, log)
        try:
            if plan.hub_api:
                sock = await asyncio.to_thread(network.listen, INSIDE_HOST, plan.hub_port)
                gates.servers.append(await asyncio.start_server(gates._forward_to_hub, sock=sock, limit=HEAD_LIMIT))
            if plan.quota_url:
                sock = await asyncio.to_thread(network.listen, INSIDE_HOST, plan.quota_port)
                gates.servers.append(await asyncio.start_server(gates._lease_gate, sock=sock, limit=HEAD_LIMIT))
        except BaseException:
            await gates.close()
            raise
        return gates

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        self.servers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _forward_to_hub(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.plan.hub_api
        up_writer = None
        try:
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
                return
            head = parse_head(raw[:-4])
            if not hub_request_allowed(head, self.plan.hub_prefix):
                what = f"{head.method} {head.target[:200]}" if head else "a request that is not HTTP"
                self.log.info("hub API gate refused %s", what)
                writer.write(_refusal(403, "Forbidden", HUB_ONLY))
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.drain()
                return
            try:
                body = await asyncio.wait_for(reader.readexactly(int(head.headers.get("content-length", "0"))),
                                              UPSTREAM_TIMEOUT_S)
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            except OSError as exc:
                self.log.debug("hub API gate: cannot reach %s:%d: %s", host, port, exc)
                return
            up_writer.write(hub_request_head(head) + body)
            await _pipe(up_reader, writer)
        finally:
            if up_writer is not None:
                await _close(up_writer)
            await _close(writer)

    async def _lease_gate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
                return
            head = parse_head(raw[:-4])
            lease_id = self.lease_id()
            if not lease_request_allowed(head, lease_id):
                what = f"{head.method} {head.target[:200]}" if head else "a request that is not HTTP"
                self.log.info("lease gate refused %s (lease %s)", what, lease_id or "none")
                writer.write(_refusal(403, "Forbidden", REFUSED))
            else:
                writer.write(await self._ask_quota(lease_id, head.headers.get("authorization", "")))
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
        finally:
            await _close(writer)

    async def _ask_quota(self, lease_id: str, authorization: str) -> bytes:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT_S)
        headers = {"Accept": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        try:
            answer = await self._client.get(f"{self.plan.quota_url}/api/leases/{lease_id}", headers=headers)
        except httpx.HTTPError as exc:
            self.log.warning("lease gate: the quota service at %s did not answer: %s", self.plan.quota_url, exc)
            return _refusal(502, "Bad Gateway", UNREACHABLE)
        return _answer(answer.status_code, answer.reason_phrase or "-", answer.content,
                       answer.headers.get("content-type", "application/octet-stream"))
