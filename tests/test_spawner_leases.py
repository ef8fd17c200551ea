"""The spawner's side of a lease, step by step: asked for, waited for in the queue (also
while the quota service restarts), refused, released, followed while the workspace runs,
renewed before its end. The quota service is a scripted fake transport
(tests/spawner_fakes.py), the backend a fake spawner: no hub, no processes."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from gpu_commons_workspace import LeaseEnd

from spawner.quota import RESTARTING_MESSAGE, SpawnRefused
from spawner.quota_client import STUDENT_RETRY_MESSAGE, QuotaRejected, QuotaUnavailable
from tests.spawner_fakes import (
    CONNECTION_REFUSED,
    DEVICE,
    lease,
    leased_spawner,
    messages,
    renewal_refused,
    unavailable,
    write_alliance,
)
from tests.spawner_fakes import service  # noqa: F401  (fixture)

LEASES = "/api/leases"
L1 = "/api/leases/l-1"
RENEW = "/api/leases/l-1/renew"


@pytest.fixture
def make_spawner(service, tmp_path):
    alliance = write_alliance(tmp_path)
    return lambda **config: leased_spawner(service, alliance, **config)


async def running(make_spawner, service, ends_in: float = 120, **config):
    """A spawner whose workspace runs under granted lease l-1 ending in ``ends_in`` minutes;
    the calls of the start are forgotten."""
    service.answer("POST", LEASES, lease("granted", ends_in=ends_in))
    spawner = make_spawner(**config)
    assert await spawner.start() == ("127.0.0.1", 8888)
    service.calls.clear()
    return spawner


# -- start ------------------------------------------------------------------------------


async def test_a_granted_lease_starts_the_workspace(service, make_spawner):
    granted = lease("granted", ends_in=30)
    service.answer("POST", LEASES, granted)
    spawner = make_spawner()

    assert await spawner.start() == ("127.0.0.1", 8888)

    [request] = service.calls
    assert (request.method, request.path) == ("POST", LEASES)
    assert {k: request.body[k] for k in ("user", "school", "profile")} == {
        "user": "c01-s1", "school": "c01", "profile": "gpu-slice"}
    assert request.body["idempotency_key"].startswith("c01-s1-default-")
    assert spawner.starts == 1
    assert (spawner.lease_id, spawner.lease_expires_at) == ("l-1", granted["expires_at"])
    assert spawner._lease.device == DEVICE
    assert messages(spawner) == [
        "Asking for One GPU slice…",
        "GPU granted on test-pool (simulated GPU: this server has no real GPU). Starting your workspace…",
    ]
    assert spawner.get_state()["lease_id"] == "l-1"


async def test_a_queued_request_waits_for_its_grant(service, make_spawner):
    service.answer("POST", LEASES, lease("queued", queue_position=2, wait_estimate_s=240))
    service.answer("GET", L1, lease("queued", queue_position=1, wait_estimate_s=60), lease("granted"))
    spawner = make_spawner()

    await spawner.start()

    assert service.paths("GET") == [L1, L1]
    assert service.paths("DELETE") == []
    assert spawner.starts == 1
    queue = [m for m in messages(spawner) if "in the queue" in m]
    assert len(queue) == 2
    assert "You are number 2 in the queue. A GPU should be free within about 4 minutes." in queue[0]
    assert "You are number 1 in the queue. A GPU should be free within about 1 minute." in queue[1]
    assert messages(spawner)[-1].startswith("GPU granted on test-pool")
    assert not any(DEVICE in m for m in messages(spawner))  # no device ids for students


@pytest.mark.parametrize("outage", [
    [unavailable(), unavailable()],
    [unavailable(), CONNECTION_REFUSED, httpx.ReadTimeout("timed out")],
], ids=["503-twice", "503-refused-timeout"])
async def test_a_restarting_service_keeps_the_queue_place(service, make_spawner, outage):
    service.answer("POST", LEASES, lease("queued", queue_position=1))
    service.answer("GET", L1, *outage, lease("granted"))
    spawner = make_spawner()

    await spawner.start()

    assert service.paths("GET") == [L1] * (len(outage) + 1)
    assert service.paths("DELETE") == []  # neither released nor withdrawn by key
    assert spawner.starts == 1 and spawner.lease_id == "l-1"
    # One sentence for the whole outage, between the queue place and the grant.
    shown = messages(spawner)
    assert shown.count(RESTARTING_MESSAGE) == 1
    assert "in the queue" in shown[shown.index(RESTARTING_MESSAGE) - 1]
    assert shown[-1].startswith("GPU granted on")


async def test_a_start_that_times_out_while_the_service_is_down_gives_the_place_back(service, make_spawner):
    service.answer("POST", LEASES, lease("queued", queue_position=1))
    service.answer("GET", L1, unavailable())
    spawner = make_spawner()

    # The hub cancels start() at start_timeout (asyncio.wait_for in User.spawn).
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(spawner.start(), timeout=0.2)

    assert len(service.paths("GET")) > 2  # it kept asking through the outage
    assert service.paths("DELETE") == [L1]
    assert spawner.starts == 0 and spawner.lease_id == ""


@pytest.mark.parametrize("queued_first", [False, True], ids=["refused", "queued-then-refused"])
async def test_a_refusal_is_shown_with_its_reason_and_the_lease_released(service, make_spawner, queued_first):
    reason = "The GPU-hour budget of your school is used up until Monday 00:00 UTC."
    refused = lease("refused", ends_in=None, reason=reason)
    service.answer("POST", LEASES, lease("queued", queue_position=3) if queued_first else refused)
    service.answer("GET", L1, refused)
    spawner = make_spawner()

    with pytest.raises(SpawnRefused) as refusal:
        await spawner.start()

    assert str(refusal.value) == reason
    assert service.paths("DELETE") == [L1]
    assert spawner.starts == 0 and spawner.lease_id == ""


async def test_a_backend_that_cannot_start_releases_the_lease(service, make_spawner):
    service.answer("POST", LEASES, lease("granted"))
    spawner = make_spawner(start_error=RuntimeError("the image is missing"))

    with pytest.raises(RuntimeError, match="the image is missing"):
        await spawner.start()

    assert spawner.stops == [True]  # the half-started backend is cleaned up at once
    assert service.paths("DELETE") == [L1]
    assert (spawner.lease_id, spawner.lease_expires_at) == ("", "")


@pytest.mark.parametrize("no_answer", [CONNECTION_REFUSED, httpx.ReadTimeout("timed out"), unavailable()],
                         ids=["refused", "timeout", "503"])
async def test_a_request_without_an_answer_is_withdrawn_by_its_key(service, make_spawner, no_answer):
    service.answer("POST", LEASES, no_answer)
    spawner = make_spawner()

    with pytest.raises(SpawnRefused) as refusal:
        await spawner.start()
    await asyncio.wait_for(spawner._withdrawal, 5)

    assert (str(refusal.value), refusal.value.status_code) == (STUDENT_RETRY_MESSAGE, 503)
    [request] = [call for call in service.calls if call.method == "POST"]
    assert service.paths("DELETE") == [f"/api/leases/by-key/{request.body['idempotency_key']}"]
    assert spawner.starts == 0 and spawner.lease_id == ""


# -- while the workspace runs -------------------------------------------------------------


async def test_poll_keeps_a_granted_lease_running(service, make_spawner):
    spawner = await running(make_spawner, service, ends_in=120)
    service.answer("GET", L1, lease("granted", ends_in=120))

    assert await spawner.poll() is None
    assert await spawner.poll() is None  # within lease_check_interval: not asked again

    assert service.paths("GET") == [L1]
    assert service.paths("POST") == []  # two hours left: no renewal yet
    assert spawner.stops == []


@pytest.mark.parametrize("ended", [lease("expired", ends_in=None), lease("released", ends_in=None), None],
                         ids=["expired", "released", "gone"])
async def test_poll_stops_the_workspace_when_the_service_ended_the_lease(service, make_spawner, ended):
    spawner = await running(make_spawner, service, ends_in=120)
    service.answer("GET", L1, ended if ended else httpx.Response(404, json={"detail": "No lease with id 'l-1'."}))

    assert await spawner.poll() == 0

    assert spawner.stops == [False]
    await spawner.stop()  # what the hub does next
    assert service.paths("DELETE") == [L1]
    assert spawner.lease_id == ""


async def test_poll_asks_the_service_once_the_remembered_end_passed(service, make_spawner):
    # The service renewed the lease by itself at its end: the workspace goes on.
    spawner = await running(make_spawner, service, ends_in=-1, lease_renew_minutes_before=0,
                            lease_check_interval=3600)
    later = lease("granted", ends_in=30)
    service.answer("GET", L1, unavailable(), later)

    assert await spawner.poll() is None  # the service cannot tell: keep the workspace
    assert spawner.lease_expires_at != later["expires_at"]
    assert await spawner.poll() is None  # asked again at once, despite lease_check_interval

    assert service.paths("GET") == [L1, L1]
    assert spawner.lease_expires_at == later["expires_at"]
    assert spawner.stops == []
    assert await spawner.poll() is None
    assert service.paths("GET") == [L1, L1]  # the new end is ahead: back to lease_check_interval


async def test_poll_renews_the_lease_before_its_end(service, make_spawner):
    spawner = await running(make_spawner, service, ends_in=12)  # within lease_renew_minutes_before (15)
    renewed = lease("granted", ends_in=30)
    service.answer("POST", RENEW, renewed)
    service.answer("GET", L1, renewed)

    assert await spawner.poll() is None
    assert await spawner.poll() is None

    assert service.paths("POST") == [RENEW]  # once: the new end is 30 minutes away
    assert spawner.lease_expires_at == renewed["expires_at"]
    assert spawner.get_state()["lease_expires_at"] == renewed["expires_at"]
    assert spawner.stops == []


async def test_no_renewal_far_from_the_end_nor_when_switched_off(service, make_spawner):
    spawner = await running(make_spawner, service, ends_in=20)  # 20 minutes left > 15
    service.answer("GET", L1, lease("granted", ends_in=20))
    assert await spawner.poll() is None
    assert service.paths("POST") == []

    off = await running(make_spawner, service, ends_in=5, lease_renew_minutes_before=0)
    assert await off.poll() is None
    assert service.paths("POST") == []


async def test_a_refused_renewal_is_not_asked_again_for_the_same_end(service, make_spawner, caplog):
    spawner = await running(make_spawner, service, ends_in=12)
    ends = spawner.lease_expires_at
    why = "Someone with a better claim is waiting."
    service.answer("POST", RENEW, renewal_refused(why))
    service.answer("GET", L1, lease("granted", expires_at=ends, reason=f"Your GPU lease cannot be renewed now: {why}"))

    with caplog.at_level(logging.WARNING, logger="tests.spawner_leases"):
        assert await spawner.poll() is None
        assert await spawner.poll() is None
        assert await spawner.poll() is None

    assert service.paths("POST") == [RENEW]
    assert spawner.lease_expires_at == ends
    assert spawner.stops == []  # the lease still runs to its end
    assert any("not renewed" in r.getMessage() and why in r.getMessage() for r in caplog.records)


async def test_a_renewal_the_service_could_not_answer_is_asked_again(service, make_spawner):
    spawner = await running(make_spawner, service, ends_in=12)
    renewed = lease("granted", ends_in=30)
    service.answer("POST", RENEW, unavailable(), renewed)
    service.answer("GET", L1, lease("granted", expires_at=spawner.lease_expires_at), renewed)

    assert await spawner.poll() is None
    assert await spawner.poll() is None

    assert service.paths("POST") == [RENEW, RENEW]
    assert spawner.lease_expires_at == renewed["expires_at"]


async def test_a_renewal_that_does_not_move_the_end_past_the_window_is_asked_once(service, make_spawner):
    # A reservation ahead (or a profile shorter than the window) keeps the end close.
    spawner = await running(make_spawner, service, ends_in=10)
    same = lease("granted", expires_at=spawner.lease_expires_at)
    service.answer("POST", RENEW, same)
    service.answer("GET", L1, same)

    for _ in range(3):
        assert await spawner.poll() is None

    assert service.paths("POST") == [RENEW]


async def test_a_cpu_lease_is_not_renewed(service, make_spawner):
    service.answer("POST", LEASES, lease("granted", pool=None, device=None, unit_kind=None, ends_in=5, profile="cpu"))
    spawner = make_spawner(profile="cpu")
    await spawner.start()
    service.answer("GET", L1, lease("granted", device=None, ends_in=5))

    assert await spawner.poll() is None
    assert [call.method for call in service.calls] == ["POST", "GET"]  # the start and the check


# -- the client and the workspace ---------------------------------------------------------


async def test_the_client_tells_unavailable_from_refused(service):
    client = service.client()
    service.answer("GET", L1, unavailable())
    service.answer("POST", RENEW, renewal_refused("The GPU-hour budget is used up.", "09:15"))

    with pytest.raises(QuotaUnavailable):
        await client.get_lease("l-1")
    with pytest.raises(QuotaRejected) as refused:
        await client.renew_lease("l-1")
    assert str(refused.value) == ("lease: It cannot be renewed now: The GPU-hour budget is used up. "
                                  "Save your work: it ends at 09:15 UTC.")


def test_the_workspace_follows_a_renewal_and_shows_a_refusal():
    end = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
    workspace = LeaseEnd.from_environment({"GPU_COMMONS_LEASE_EXPIRES_AT": end.isoformat(), "GPU_COMMONS_LEASE_ID": "l-1"})

    later = end + timedelta(minutes=30)
    renewed = workspace.updated({"state": "granted", "expires_at": later.isoformat(), "reason": None})
    assert (renewed.expires_at, renewed.reason, renewed.ends_early) == (later, "", False)

    why = "Your GPU lease cannot be renewed now: someone with a better claim is waiting. Save your work: it ends at 09:00 UTC."
    refused = workspace.updated({"state": "granted", "expires_at": end.isoformat(), "reason": why})
    assert (refused.expires_at, refused.reason, refused.ends_early) == (end, why, False)
    assert refused.as_json(end)["reason"] == why
    assert refused.updated({"state": "granted", "expires_at": end.isoformat(), "reason": why}) is refused

    reclaim = end - timedelta(minutes=20)
    early = workspace.updated({"state": "granted", "expires_at": end.isoformat(), "reclaim_at": reclaim.isoformat(),
                               "reason": "goes back"})
    assert (early.expires_at, early.ends_early) == (reclaim, True)
