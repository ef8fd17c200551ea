"""The per-school decayed usage cache (quota.decayed_usage) agrees with a full recount of
the ledger, counts only committed records, and picks up records other processes wrote."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from quota.db import make_engine, session_factory, upgrade
from quota.decayed_usage import DecayedUsage
from quota.fairshare.priority import decayed_interval
from quota.tables import UsageRecord

HALF_LIFE, PENALTY = 3600.0, 600.0
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def record(n: int, school: str, start_min: float, minutes: float, fraction: float = 1.0) -> UsageRecord:
    start = T0 + timedelta(minutes=start_min)
    held = minutes * 60
    return UsageRecord(
        lease_id=f"l-{n}", user=f"{school}-s1", school=school, tier="county", profile="gpu", pool="p", device="d",
        unit_kind="whole", started_at=start, ended_at=start + timedelta(seconds=held), held_seconds=held,
        gpu_seconds=held * fraction, end_reason="released",
    )


def recount(records: list[UsageRecord], now: datetime) -> dict[str, float]:
    t = now.timestamp()
    sums: dict[str, float] = {}
    for r in records:
        milli = 1000.0 * r.gpu_seconds / r.held_seconds
        start, end = r.started_at.timestamp(), r.ended_at.timestamp()
        sums[r.school] = sums.get(r.school, 0.0) + decayed_interval(milli, start, end, t, HALF_LIFE) + (
            milli * PENALTY * 2.0 ** (-(t - start) / HALF_LIFE))
    return sums


def read(cache: DecayedUsage, sessions, now: datetime, commit: bool = True) -> dict[str, float]:
    session = sessions()
    try:
        return cache.at(session, now)
    finally:
        session.commit() if commit else session.rollback()
        session.close()


def add(sessions, *records: UsageRecord) -> None:
    with sessions() as session:
        session.add_all(records)
        session.commit()


def test_the_cache_agrees_with_a_recount_as_the_ledger_grows(sessions):
    written = [record(1, "c01", 0, 30), record(2, "u01", 10, 60, 0.5)]
    add(sessions, *written)
    cache = DecayedUsage(HALF_LIFE, PENALTY)
    for step, later in enumerate([record(3, "c01", 90, 20), record(4, "u01", 100, 45), record(5, "c02", 150, 10)]):
        now = T0 + timedelta(minutes=200 + 60 * step)
        assert read(cache, sessions, now) == pytest.approx(recount(written, now))
        add(sessions, later)  # as another service process would
        written.append(later)
    now = T0 + timedelta(hours=8)
    assert read(cache, sessions, now) == pytest.approx(recount(written, now))


def test_records_of_a_transaction_that_rolled_back_are_not_kept(sessions):
    add(sessions, record(1, "c01", 0, 30))
    cache = DecayedUsage(HALF_LIFE, PENALTY)
    now = T0 + timedelta(hours=1)
    read(cache, sessions, now)
    session = sessions()
    session.add(record(2, "c01", 40, 10))
    session.flush()  # written in this transaction, as a release writes its usage record
    seen = cache.at(session, now)
    session.rollback()
    session.close()
    assert seen["c01"] > read(cache, sessions, now)["c01"]  # counted while the transaction lived, then gone
    assert read(cache, sessions, now) == pytest.approx(recount([record(1, "c01", 0, 30)], now))
