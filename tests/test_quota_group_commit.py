"""Group commit: inputs are decided one after another in memory and share durable commits;
nobody is answered, or shown a lease, before the commit holding it is durable; a failed
commit fails the inputs queued behind it as well, and the allocator is rebuilt from the
database. The journal's commits are held back here as a slow disk would hold them.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from quota.journal import Batch
from tests.quota_fixtures import TOKEN

HEADERS = {"Authorization": f"token {TOKEN}"}
STUDENTS = [("c01-s1", "c01"), ("c01-s2", "c01"), ("c01-s3", "c01"), ("u01-s1", "u01"), ("u01-s2", "u01")]


class HeldCommits:
    """Every commit of the journal waits for ``gate``; ``fail_first``: the first one then fails."""

    def __init__(self, monkeypatch, fail_first: bool = False):
        self.gate = threading.Event()
        self.batches: list[int] = []  # inputs per commit, in order
        original = Batch.write

        def write(batch: Batch, session) -> None:
            if batch.entries:  # a rebuild writes its own decisions straight away
                self.batches.append(batch.entries)
                assert self.gate.wait(10), "the test never let the commit go"
                if fail_first and len(self.batches) == 1:
                    raise OperationalError("INSERT INTO leases", {}, Exception("disk is full"))
            original(batch, session)

        monkeypatch.setattr(Batch, "write", write)


def _ask(client: httpx.AsyncClient, user: str, school: str):
    return asyncio.ensure_future(client.post("/api/leases", json={"user": user, "school": school, "profile": "gpu-slice"}))


def _against(app, scenario):
    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://quota",
                                     headers=HEADERS) as client:
            return await scenario(client)

    return asyncio.run(run())


def test_concurrent_requests_share_one_commit_and_wait_for_it(quota_client, monkeypatch):
    held = HeldCommits(monkeypatch)

    async def crowd(client):
        first = _ask(client, *STUDENTS[0])
        await asyncio.sleep(0.2)  # its commit is being written (held)
        rest = [_ask(client, *student) for student in STUDENTS[1:]]
        await asyncio.sleep(0.3)
        assert not first.done() and not any(task.done() for task in rest), "answered before the commit was durable"
        health = await client.get("/api/health")  # the service goes on answering meanwhile
        assert health.status_code == 200
        held.gate.set()
        return [await first, *[await task for task in rest]]

    answers = _against(quota_client.app, crowd)
    assert [answer.status_code for answer in answers] == [201] * 5
    assert [answer.json()["state"] for answer in answers] == ["granted", "granted", "queued", "queued", "queued"]
    assert held.batches == [1, 4]  # the four that came during the first commit shared the next one
    stored = quota_client.get("/api/leases").json()
    assert sorted(lease["user"] for lease in stored) == sorted(user for user, _ in STUDENTS)


def test_a_read_waits_for_the_commit_of_what_it_shows(quota_client, monkeypatch):
    lease = quota_client.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "gpu-slice"}).json()
    held = HeldCommits(monkeypatch)

    async def release_and_read(client):
        release = asyncio.ensure_future(client.delete(f"/api/leases/{lease['id']}"))
        await asyncio.sleep(0.2)
        read = asyncio.ensure_future(client.get(f"/api/leases/{lease['id']}"))
        await asyncio.sleep(0.3)
        assert not release.done() and not read.done(), "a release not yet durable was shown"
        held.gate.set()
        return await release, await read

    released, read = _against(quota_client.app, release_and_read)
    assert released.json()["state"] == read.json()["state"] == "released"
    assert [record["lease_id"] for record in quota_client.get("/api/usage").json()] == [lease["id"]]


def test_a_failed_commit_fails_the_inputs_queued_behind_it(quota_client, monkeypatch):
    held = HeldCommits(monkeypatch, fail_first=True)

    async def crowd(client):
        first = _ask(client, *STUDENTS[0])
        await asyncio.sleep(0.2)
        behind = [_ask(client, *student) for student in STUDENTS[1:3]]
        await asyncio.sleep(0.2)
        held.gate.set()
        return [await first, *[await task for task in behind]]

    answers = _against(quota_client.app, crowd)
    assert [answer.status_code for answer in answers] == [503] * 3
    assert all("disk is full" in answer.json()["detail"] for answer in answers)
    assert held.batches == [1]  # those behind it were never written: they stood on the failed one
    assert quota_client.get("/api/leases").json() == []
    # the allocator was rebuilt from the database: both slices are free again
    again = [quota_client.post("/api/leases", json={"user": user, "school": school, "profile": "gpu-slice"}).json()
             for user, school in STUDENTS[:2]]
    assert [lease["state"] for lease in again] == ["granted", "granted"]


@pytest.mark.parametrize("failing", [False, True])
def test_a_retry_with_the_same_key_while_its_commit_is_written_is_the_same_lease(quota_client, monkeypatch, failing):
    held = HeldCommits(monkeypatch, fail_first=failing)
    body = {"user": "c01-s1", "school": "c01", "profile": "gpu-slice", "idempotency_key": "spawn-1"}

    async def twice(client):
        first = asyncio.ensure_future(client.post("/api/leases", json=body))
        await asyncio.sleep(0.2)
        retry = asyncio.ensure_future(client.post("/api/leases", json=body))
        await asyncio.sleep(0.2)
        held.gate.set()
        return await first, await retry

    first, retry = _against(quota_client.app, twice)
    if failing:
        assert first.status_code == retry.status_code == 503
        assert quota_client.get("/api/leases").json() == []
    else:
        assert (first.status_code, retry.status_code) == (201, 200) and first.json()["id"] == retry.json()["id"]
        assert len(quota_client.get("/api/leases").json()) == 1
