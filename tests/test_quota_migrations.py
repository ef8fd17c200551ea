"""The quota service's schema: the migrations build what the models say, and an alliance's
data written under the first schema (revision 0001) survives the upgrade to the newest,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient

from quota.db import make_engine, upgrade
from quota.tables import Base
from tests.quota_fixtures import TOKEN

START = datetime(2026, 9, 1, 8, 0, tzinfo=timezone.utc)

# What a 0001 deployment held: a granted slice, a queued request, a released lease with its
# usage record, a refused request and a withdrawn idempotency key.
LEASES = [
    # id, user, school, tier, profile, state, kind, pool, device, unit_id, unit_kind, fraction,
    # requested, granted, expires, released, reason, key, seq
    ("l-granted", "c01-s1", "c01", "county", "gpu-slice", "granted", "slice", "uni-a", "MIG-sim-uni-a-gpu1-slice0",
     "uni-a/MIG-sim-uni-a-gpu1-slice0", "slice", 0.5, "08:00", "08:00", "09:00", None, None, "key-1", 1),
    ("l-queued", "u01-s1", "u01", "urban", "gpu-whole", "queued", "whole", None, None, None, None, 0.0,
     "08:01", None, None, None, None, None, 2),
    ("l-released", "c01-s2", "c01", "county", "gpu-whole", "released", "whole", "uni-a", "0",
     "uni-a/0", "whole", 1.0, "07:00", "07:00", "07:30", "07:20", None, None, 0),
    ("l-refused", "u01-s2", "u01", "urban", "gpu-whole", "refused", "whole", None, None, None, None, 0.0,
     "08:02", None, None, "08:02", "Stop one before starting another.", None, 3),
]


def at(dialect: str, clock: str | None) -> str | None:
    """A time of 1 September 2026 as a 0001 deployment stored it (UTC)."""
    if clock is None:
        return None
    return f"2026-09-01 {clock}:00.000000" if dialect == "sqlite" else f"2026-09-01 {clock}:00+00"


def write_first_schema_rows(connection) -> None:
    dialect = connection.dialect.name
    insert = sqlalchemy.text(
        'INSERT INTO leases (id, "user", school, tier, profile, state, kind, pool, device, unit_id, unit_kind, '
        "gpu_fraction, simulated, requested_at, granted_at, expires_at, released_at, last_seen_at, reason, "
        "idempotency_key, seq) VALUES (:id, :user, :school, :tier, :profile, :state, :kind, :pool, :device, "
        ":unit_id, :unit_kind, :fraction, true, :requested, :granted, :expires, :released, :seen, :reason, :key, :seq)"
    )
    names = ("id", "user", "school", "tier", "profile", "state", "kind", "pool", "device", "unit_id", "unit_kind",
             "fraction", "requested", "granted", "expires", "released", "reason", "key", "seq")
    for row in LEASES:
        values = dict(zip(names, row))
        for name in ("requested", "granted", "expires", "released"):
            values[name] = at(dialect, values[name])
        values["seen"] = values["requested"]
        connection.execute(insert, values)
    usage = (
        'INSERT INTO usage (lease_id, "user", school, tier, profile, pool, device, unit_kind, started_at, ended_at, '
        "held_seconds, gpu_seconds, end_reason) VALUES ('l-released', 'c01-s2', 'c01', 'county', 'gpu-whole', "
        f"'uni-a', '0', 'whole', '{at(dialect, '07:00')}', '{at(dialect, '07:20')}', 1200, 1200, 'released')"
    )
    connection.execute(sqlalchemy.text(usage))
    connection.execute(sqlalchemy.text(
        f"INSERT INTO withdrawn_keys (idempotency_key, withdrawn_at) VALUES ('key-late', '{at(dialect, '07:59')}')"
    ))


def test_models_and_migrations_agree(database_url):
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], "quota/tables.py and quota/migrations differ; add a migration for: " + repr(differences)


def test_data_written_at_the_first_schema_survives_the_upgrade(database_url, make_quota_app, clock):
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as connection:
            write_first_schema_rows(connection)
        upgrade(engine, "head")
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT count(*) FROM leases")).scalar() == len(LEASES)
            with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):  # 0003 guards old records too
                connection.execute(sqlalchemy.text("UPDATE usage SET gpu_seconds = 0"))
    finally:
        engine.dispose()

    clock.now = START.replace(minute=5)
    with TestClient(make_quota_app(), headers={"Authorization": f"token {TOKEN}"}) as client:
        leases = {lease["id"]: lease for lease in client.get("/api/leases").json()}
        assert {lease_id: lease["state"] for lease_id, lease in leases.items()} == {
            "l-granted": "granted", "l-released": "released", "l-refused": "refused",
            "l-queued": "queued",  # the free whole GPU is held for the waiting student until they are heard from
        }
        client.get("/api/leases/l-queued")  # their spawner asks again after the restart
        client.app.state.book.advance()
        assert client.get("/api/leases/l-queued").json()["state"] == "granted"
        granted = leases["l-granted"]
        assert granted["device"] == "MIG-sim-uni-a-gpu1-slice0" and granted["idempotency_key"] == "key-1"
        assert granted["granted_at"] == "2026-09-01T08:00:00Z" and granted["expires_at"] == "2026-09-01T09:00:00Z"
        assert leases["l-refused"]["reason"] == "Stop one before starting another."
        [record] = client.get("/api/usage").json()
        assert (record["lease_id"], record["gpu_seconds"], record["ended_at"]) == ("l-released", 1200, "2026-09-01T07:20:00Z")

        # the old rows still count: the slice stays held, a retry with the old key gets the old lease,
        # and the withdrawn key is still refused
        other = client.post("/api/leases", json={"user": "c01-s3", "school": "c01", "profile": "gpu-slice"}).json()
        assert other["state"] == "granted" and other["device"] != granted["device"]
        retry = client.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "gpu-slice", "idempotency_key": "key-1"})
        assert retry.status_code == 200 and retry.json()["id"] == "l-granted"
        late = client.post("/api/leases", json={"user": "c01-s2", "school": "c01", "profile": "cpu", "idempotency_key": "key-late"})
        assert late.json()["state"] == "refused"
