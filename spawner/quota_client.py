"""Talk to the quota service: request, poll, renew and release leases.

Every failure is turned into :class:`QuotaUnavailable` with a sentence a student can
read (also the service's own 503 while it restarts or fails over to a standby); the
technical cause goes to the hub log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import httpx

from gpu_commons_i18n import _, from_json

STUDENT_RETRY_MESSAGE = _(
    "The GPU booking service is not answering right now, so no workspace was started. "
    "Please try again in a minute; if it keeps happening, tell your teacher."
)


class QuotaUnavailable(RuntimeError):
    """The quota service could not be reached, answered with an error, or cannot decide
    right now (503 while it restarts or fails over); asking again later may succeed."""


class QuotaRejected(ValueError):
    """The quota service rejected the request as invalid (4xx); ``str()`` is its message."""


@dataclass(frozen=True)
class Lease:
    id: str
    state: str
    profile: str
    pool: str | None
    device: str | None
    unit_kind: str | None
    simulated: bool
    expires_at: datetime | None
    queue_position: int | None
    reason: str | None
    wait_estimate_s: float | None = None
    queue_reason: object = None  # why someone who asked later is ahead (a catalogue message), while queued
    within_share: bool | None = None  # granted within its school's guaranteed share (the start line's order)

    @classmethod
    def from_api(cls, body: dict) -> "Lease":
        expires = body.get("expires_at")
        return cls(
            id=body["id"],
            state=body["state"],
            profile=body.get("profile", ""),
            pool=body.get("pool"),
            device=body.get("device"),
            unit_kind=body.get("unit_kind"),
            simulated=bool(body.get("simulated")),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            queue_position=body.get("queue_position"),
            # The service's sentence as a catalogue message when it sends one (shown in the
            # student's language), else its text.
            reason=from_json(body["reason_message"]) if body.get("reason_message") else body.get("reason"),
            wait_estimate_s=body.get("wait_estimate_s"),
            queue_reason=from_json(body["queue_reason_message"]) if body.get("queue_reason_message") else None,
            within_share=body.get("within_share"),
        )


class QuotaClient:
    def __init__(self, base_url: str, token: str, timeout: float, log, http: httpx.AsyncClient | None = None):
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"token {token}"}
        self._timeout = timeout
        self._log = log
        self._http = http  # None: the hub's shared pool (tests give a client over a fake transport)

    async def _call(self, method: str, path: str, **kwargs) -> dict | list | None:
        try:
            response = await (self._http or _shared_client()).request(
                method, f"{self._base_url}{path}", headers=self._headers, timeout=self._timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            self._log.error("quota service %s %s failed: %r", method, path, exc)
            raise QuotaUnavailable(STUDENT_RETRY_MESSAGE) from exc
        if response.status_code == 404:
            return None
        if response.status_code == 503:
            # Restarting or failing over to a standby: expected for a while, not a fault of ours.
            self._log.warning("quota service %s %s: %s (retry after %s s)", method, path, _detail(response),
                              response.headers.get("Retry-After", "?"))
            raise QuotaUnavailable(STUDENT_RETRY_MESSAGE)
        if 400 <= response.status_code < 500:
            detail = _detail(response)
            self._log.warning("quota service rejected %s %s: %s", method, path, detail)
            raise QuotaRejected(detail)
        if response.status_code >= 500:
            self._log.error("quota service %s %s answered %s: %s", method, path, response.status_code, response.text[:500])
            raise QuotaUnavailable(STUDENT_RETRY_MESSAGE)
        return response.json()

    async def request_lease(self, user: str, school: str, profile: str, idempotency_key: str) -> Lease:
        body = {"user": user, "school": school, "profile": profile, "idempotency_key": idempotency_key}
        return Lease.from_api(await self._call("POST", "/api/leases", json=body))

    async def get_lease(self, lease_id: str) -> Lease | None:
        body = await self._call("GET", f"/api/leases/{lease_id}")
        return Lease.from_api(body) if body else None

    async def renew_lease(self, lease_id: str) -> Lease | None:
        """The lease renewed (a new ``expires_at``); :class:`QuotaRejected` (409) with the
        service's reason when it cannot be renewed now; None when there is no such lease."""
        body = await self._call("POST", f"/api/leases/{lease_id}/renew")
        return Lease.from_api(body) if body else None

    async def release_lease(self, lease_id: str, charge_from: datetime | None = None) -> None:
        """``charge_from``: the usage counts from then (a workspace started ahead of a lesson)."""
        query = f"?charge_from={quote(charge_from.isoformat())}" if charge_from is not None else ""
        await self._call("DELETE", f"/api/leases/{lease_id}{query}")

    async def release_by_key(self, idempotency_key: str) -> None:
        await self._call("DELETE", f"/api/leases/by-key/{idempotency_key}")

    async def report_library_opens(self, user: str, opens: dict[str, int]) -> None:
        await self._call("POST", "/api/library/opens", json={"user": user, "opens": opens})

    async def report_prestart(self, reservation: str, account: str, outcome: str, message=None) -> None:
        """How ``account``'s workspace started ahead of the reservation's lesson went: ``ready``, or
        ``failed`` with ``message`` (a catalogue :class:`~gpu_commons_i18n.Message`), shown on the
        teacher's page in the teacher's language."""
        body = {"outcome": outcome}
        if message is not None:
            body["message"] = message.as_json()
        await self._call("PUT", f"/api/reservations/{quote(reservation, safe='')}/prestarts/{quote(account, safe='')}",
                         json=body)

    async def attached_library(self, user: str) -> dict | None:
        """The library entries linked as ~/datasets/<id> in the user's workspace and their classes
        (the alliance file's and those teachers attached); None from a service without the route."""
        return await self._call("GET", f"/api/library/attached/{quote(user, safe='')}")

    async def inventory(self) -> dict:
        return await self._call("GET", "/api/inventory") or {}


_client: httpx.AsyncClient | None = None


def _shared_client() -> httpx.AsyncClient:
    """One connection pool for the whole hub: building a client loads the CA bundle
    (tens of milliseconds on the hub's event loop), so it is done once, not per call."""
    global _client
    if _client is None or _client.is_closed:
        _client = httpx.AsyncClient()
    return _client


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300]
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return str(detail)
