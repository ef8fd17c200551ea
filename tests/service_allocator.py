"""The real quota service, driven over HTTP, in the simulator's seat of the allocator.

:class:`ServiceAllocator` has the five calls the simulator's engine makes on an
allocator (``submit``, ``release``, ``cancel``, ``advance``, ``next_wake``) and makes each
one a call to the quota service as the hub's spawner would, at the engine's time on the
service's injected clock:

- ``submit`` -> ``POST /api/leases`` (the profile the request's shape comes from);
- ``release`` and ``cancel`` (a student who gave up) -> ``DELETE /api/leases/{id}``;
- ``advance`` -> the pass the service's ticker makes at its wake-up
  (:meth:`quota.leases.LeaseBook.advance`), ``next_wake`` -> the wake-up it sleeps until.

What else a call decided (grants from the queue, reclaim warnings, stops, renewals) is
read back from ``GET /api/leases?state=granted`` and the usage ledger and handed to the
engine as the allocator's actions, so one event loop drives both and their results can
be compared field by field.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from quota.allocator_inputs import RequestShape
from quota.fairshare.model import Admit, Queue, Refuse, Stop, Warn

INF = math.inf
_STOP_REASON = {"reclaimed": "reclaimed", "expired": "lease_expired", "budget_exhausted": "budget_exhausted"}


def instant(t: float) -> datetime:
    """The service clock's reading for engine time ``t``: the first microsecond at or after it."""
    at = datetime.fromtimestamp(t, timezone.utc)
    while at.timestamp() < t:
        at += timedelta(microseconds=1)
    return at


def _time(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


class ServiceAllocator:
    def __init__(self, client, clock, book, shapes: dict[str, RequestShape], pool_of: dict[tuple[str, str], str]):
        """``client``: a TestClient with the hub's token; ``clock``: the service's settable
        clock; ``book``: its lease book (for the ticker's pass); ``pool_of``: (service pool,
        unit kind) -> allocator pool id."""
        self._client, self._clock, self._book = client, clock, book
        self._profile_of = {(shape.kind, shape.lease_s): profile for profile, shape in shapes.items()}
        assert len(self._profile_of) == len(shapes), "two profiles ask alike: the service could not tell them apart"
        self._pool_of = pool_of
        self._request_of: dict[str, str] = {}  # lease id -> engine request id
        self._lease_of: dict[str, str] = {}
        self._user_of: dict[str, str] = {}
        self._running: dict[str, tuple[float | None, float | None]] = {}  # lease id -> (reclaim_at, expires_at)
        self._now = -INF
        self.calls = 0
        self.renewals = 0  # granted leases whose end moved later while running

    def make(self, pools, schools, config, reservations, start: float) -> "ServiceAllocator":
        """The engine's allocator factory: the service was built from the same alliance file."""
        assert instant(start) == self._clock.now, "start the service's clock at the trace's first arrival"
        return self

    # -- the allocator's calls --------------------------------------------------------------

    def submit(self, request, now: float, explain: bool = True):
        self._at(now)
        profile = self._profile_of[(request.kind, request.lease_s)]
        answer = self._call("post", "/api/leases", json={"user": request.user, "school": request.school,
                                                           "profile": profile})
        lease = answer.json()
        self._request_of[lease["id"]], self._lease_of[request.id] = request.id, lease["id"]
        self._user_of[lease["id"]] = request.user
        actions = self._changes(now, new=lease["id"])
        if lease["state"] == "granted":
            assert _time(lease["granted_at"]) == self._clock.now.timestamp()
            if lease["reclaim_at"] is not None:
                actions.append(Warn(request.id, _time(lease["reclaim_at"]), lease["reason"] or ""))
            return self._admitted(lease), actions
        if lease["state"] == "queued":
            estimate = lease["wait_estimate_s"]
            return Queue(request.id, lease["queue_position"], INF if estimate is None else estimate), actions
        assert lease["state"] == "refused", lease
        return Refuse(request.id, lease["reason"], None), actions

    def release(self, request_id: str, now: float) -> list:
        self._at(now)
        lease_id = self._lease_of[request_id]
        self._running.pop(lease_id, None)
        self._call("delete", f"/api/leases/{lease_id}")
        return self._changes(now)

    def cancel(self, request_id: str, now: float) -> list:
        return self.release(request_id, now)

    def advance(self, now: float) -> list:
        self._at(now)
        self._book.advance()
        return self._changes(now)

    def next_wake(self) -> float | None:
        wake = self._book.next_wake
        return None if wake == INF else wake

    # -- reading back what a call decided --------------------------------------------------

    def _changes(self, now: float, new: str | None = None) -> list:
        granted = {lease["id"]: lease for lease in self._call("get", "/api/leases", params={"state": "granted"}).json()
                   if lease["id"] in self._request_of and lease["id"] != new}
        actions = []
        for lease_id in [lease_id for lease_id in self._running if lease_id not in granted]:
            del self._running[lease_id]
            actions.append(Stop(self._request_of[lease_id], self._end_reason(lease_id), ""))
        for lease_id, lease in granted.items():
            reclaim_at, expires_at = _time(lease["reclaim_at"]), _time(lease["expires_at"])
            if lease_id not in self._running:
                assert _time(lease["granted_at"]) == self._clock.now.timestamp()
                actions.append(self._admitted(lease))
                if reclaim_at is not None:  # granted from the queue and warned in the same instant
                    actions.append(Warn(self._request_of[lease_id], reclaim_at, lease["reason"] or ""))
            else:
                warned, ends = self._running[lease_id]
                if reclaim_at is not None and reclaim_at != warned:
                    actions.append(Warn(self._request_of[lease_id], reclaim_at, lease["reason"] or ""))
                if ends is not None and expires_at is not None and expires_at > ends:
                    self.renewals += 1
            self._running[lease_id] = (reclaim_at, expires_at)
        return actions

    def _admitted(self, lease: dict) -> Admit:
        request_id = self._request_of[lease["id"]]
        self._running[lease["id"]] = (_time(lease["reclaim_at"]), _time(lease["expires_at"]))
        pool = self._pool_of[(lease["pool"], lease["unit_kind"])]
        return Admit(request_id, request_id, pool, 1, _time(lease["expires_at"]) or INF, False)

    def _end_reason(self, lease_id: str) -> str:
        records = self._call("get", "/api/usage", params={"user": self._user_of[lease_id]}).json()
        (record,) = [r for r in records if r["lease_id"] == lease_id]
        assert _time(record["ended_at"]) == self._clock.now.timestamp()
        return _STOP_REASON[record["end_reason"]]

    def _at(self, t: float) -> None:
        assert t >= self._now, f"the engine went back in time: {t} after {self._now}"
        self._now = t
        self._clock.now = instant(t)

    def _call(self, method: str, path: str, **kwargs):
        self.calls += 1
        answer = getattr(self._client, method)(path, **kwargs)
        assert answer.status_code < 300, f"{method.upper()} {path}: {answer.status_code} {answer.text}"
        return answer
