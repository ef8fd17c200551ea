"""Fixtures for the quota service, used in-process (FastAPI's TestClient).

- ``clock``: a settable UTC clock the service reads instead of the wall clock;
- ``quota_alliance``: a small alliance file (one pool: one whole GPU, one GPU in two slices);
- ``database_url``: a fresh database, once on SQLite and once on PostgreSQL (marked ``postgres``);
- ``quota_client``: a TestClient on a fresh app and database, with the token set;
- ``make_quota_app``: build more apps (e.g. a restart on the same database);
- ``client_as``: a TestClient on the same app that sends the token of one account.

The hub's token is ``TOKEN``; every other account's JupyterHub token is ``tok-<name>``
(resolved by a stand-in for the hub, so role checks can be tested in-process).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from quota.app import create_app
from quota.settings import QuotaSettings
from tests.postgres import postgres_server  # noqa: F401  (fixture, started only for the postgres runs)

TOKEN = "test-token"

QUOTA_ALLIANCE = """
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: uni-a, gpus: 2, sliced_gpus: 1, slices_per_gpu: 2, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 120}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 60}
  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 30}
schools:
  - id: c01
    tier: county
    students: [c01-s1, c01-s2, c01-s3]
    teachers: [c01-teacher]
    admins: [c01-admin]
    classes: [{id: ai-club, teachers: [c01-teacher], students: [c01-s1, c01-s2]}]
  - {id: u01, tier: urban, students: [u01-s1, u01-s2], teachers: [u01-teacher]}
staff: [staff-admin]
operators: [it-ops]
# these tests follow borrowed leases of full length taken back with a warning, and the
# usage of the last hour; lent leases have their own tests (tests/test_lent_leases.py)
fairshare: {half_life_minutes: 60, lent_lease_minutes: null}
"""


def account_of_token(token: str) -> str | None:
    """Stand-in for asking the hub: ``tok-<name>`` belongs to <name>."""
    return token.removeprefix("tok-") if token.startswith("tok-") else None


class Clock:
    def __init__(self):
        self.now = datetime(2026, 9, 1, 8, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def quota_alliance(tmp_path) -> Path:
    path = tmp_path / "alliance.yaml"
    path.write_text(QUOTA_ALLIANCE)
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A fresh, empty database for one test: SQLite in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'quota' / 'quota.sqlite'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def make_quota_app(tmp_path, quota_alliance, clock, database_url):
    def make(**overrides):
        fields = dict(alliance=quota_alliance, data_dir=tmp_path / "quota", database_url=database_url, api_token=TOKEN,
                      use_nvml=False)
        fields.update(overrides)
        return create_app(QuotaSettings(**fields), clock=clock, token_resolver=account_of_token, run_timers=False)

    return make


@pytest.fixture
def quota_client(make_quota_app):
    with TestClient(make_quota_app(), headers={"Authorization": f"token {TOKEN}"}) as client:
        yield client


@pytest.fixture
def client_as(quota_client):
    """``client_as("c01-s1")``: requests to the same app with that account's token."""
    opened = []

    def make(account: str) -> TestClient:
        client = TestClient(quota_client.app, headers={"Authorization": f"token tok-{account}"})
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()
