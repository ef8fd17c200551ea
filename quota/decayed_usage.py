"""Each school's past GPU usage, decayed with the fair-share half-life, kept up to date
from the usage ledger without reading the whole ledger for every decision.

The fair-share priority needs, at every decision, each school's usage of ended leases
decayed to *now*. The ledger only grows, and decaying is a multiplication, so this cache
keeps the sum per school as of one moment plus the id of the last record it has counted;
a decision reads only the records written since (usually none or one) and decays the
sums to its own time.

Records are counted into the cache only once the transaction that read them commits:
a decision whose transaction rolls back (its own usage records with it) leaves the cache
as it was. Writers are serialised (one lock per process, an advisory lock on
PostgreSQL), so ledger ids become visible in order and "id > last counted" misses none.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from quota.fairshare.priority import decayed_interval
from quota.tables import UsageRecord

# at start-up, usage older than this many half-lives weighs less than 2^-20 of its size: skipped
HORIZON_HALF_LIVES = 20


class DecayedUsage:
    def __init__(self, half_life_s: float, entry_penalty_s: float):
        self.half_life_s = half_life_s
        self.entry_penalty_s = entry_penalty_s
        self._lock = threading.Lock()
        self._sums: dict[str, float] = {}  # milli-GPU-seconds, decayed to self._as_of
        self._as_of: float | None = None  # None: nothing loaded yet
        self._last_id = 0

    def at(self, session: Session, now: datetime) -> dict[str, float]:
        """Decayed usage per school at ``now`` (milli-GPU-seconds), read inside ``session``."""
        t = now.timestamp()
        with self._lock:
            sums, as_of, last_id = dict(self._sums), self._as_of, self._last_id
        query = select(UsageRecord.id, UsageRecord.school, UsageRecord.started_at, UsageRecord.ended_at,
                       UsageRecord.held_seconds, UsageRecord.gpu_seconds)
        if as_of is None:  # first use in this process: the recent ledger
            horizon = now - timedelta(seconds=HORIZON_HALF_LIVES * self.half_life_s)
            query = query.where(UsageRecord.ended_at > horizon)
            last_id = session.scalar(select(func.max(UsageRecord.id))) or 0
            rows = session.execute(query.where(UsageRecord.id <= last_id)).all()
        else:
            rows = session.execute(query.where(UsageRecord.id > last_id)).all()
            factor = 2.0 ** (-(t - as_of) / self.half_life_s)
            sums = {school: value * factor for school, value in sums.items()}
        for record_id, school, started, ended, held, gpu_seconds in rows:
            last_id = max(last_id, record_id)
            if not held or gpu_seconds <= 0:
                continue
            milli = 1000.0 * gpu_seconds / held
            start, end = started.timestamp(), min(ended.timestamp(), t)
            # the entry penalty was charged at admission and decays like the usage itself
            penalty = milli * self.entry_penalty_s * 2.0 ** (-(t - start) / self.half_life_s)
            sums[school] = sums.get(school, 0.0) + decayed_interval(milli, start, end, t, self.half_life_s) + penalty
        if rows or as_of is None:
            event.listen(session, "after_commit", lambda _session: self._advance(sums, t, last_id), once=True)
        return sums

    def _advance(self, sums: dict[str, float], t: float, last_id: int) -> None:
        with self._lock:
            if last_id >= self._last_id and (self._as_of is None or t >= self._as_of):
                self._sums, self._as_of, self._last_id = sums, t, last_id
