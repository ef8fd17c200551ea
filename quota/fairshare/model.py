"""The fair-share allocator's plain data: what goes in and what comes out.

Units used everywhere in :mod:`quota.fairshare`:

* GPU amounts are in **milli-GPU** (1000 = one whole GPU), like the trace's ``gpu_milli``.
* A pool is counted in **slices** of ``slice_milli`` each: a pool of whole GPUs has
  ``slice_milli=1000``; a pool of A100s cut into 7 MIG slices has ``slice_milli=142``
  (rounded down). A request for ``milli`` takes ``ceil(milli / slice_milli)`` slices of
  the pool it lands in, and that many slices times ``slice_milli`` is what it holds.
* Times are seconds on whatever clock the caller uses (wall clock in the service, the
  virtual clock in the simulator); the allocator never reads a clock itself.

Everything here is a frozen dataclass or a small mutable record with ``__slots__``;
nothing does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

INF = math.inf


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """GPU capacity that leases are cut from."""

    id: str
    slices: int  # how many slices the pool has
    slice_milli: int = 1000  # size of one slice in milli-GPU
    kind: str | None = None  # e.g. "whole" or "slice": a request naming a kind lands only in pools of it

    @property
    def capacity_milli(self) -> int:
        return self.slices * self.slice_milli

    def need(self, milli: int) -> int:
        """Slices a request of ``milli`` takes in this pool."""
        return -(-milli // self.slice_milli)


@dataclass(frozen=True, slots=True)
class SchoolSpec:
    """One school as the allocator sees it.

    ``guaranteed_share`` is a fraction of the alliance's total capacity; ``None`` means
    "derived from the weights" (the capacity left after explicit shares, split in
    proportion to the weights of the schools without one). ``borrowing_limit_milli``
    caps how much the school may hold beyond its guarantee (``None`` = no cap).
    Budgets are GPU-hours per rolling ``Config.budget_period_s``.
    """

    id: str
    tier: str = "default"
    weight: float = 1.0
    guaranteed_share: float | None = None
    borrowing_limit_milli: int | None = None
    budget_gpu_hours: float | None = None
    student_budget_gpu_hours: float | None = None
    max_sessions_per_student: int | None = None
    idle_release_s: float | None = None  # a session unused this long while others wait is warned, then stopped


@dataclass(frozen=True, slots=True)
class Reservation:
    """A teacher's class booking: ``slices`` of ``pool`` held for ``school`` (and, if
    ``group`` is set, only for requests of that class) from ``start`` to ``end``."""

    id: str
    pool: str
    school: str
    slices: int
    start: float
    end: float
    group: str | None = None
    # from then on the slices no member holds go back to the pool for the rest of the window
    # (a member who comes later asks like anyone else); None: all are held to the end
    release_at: float | None = None

    def active(self, now: float) -> bool:
        return self.start <= now < self.end

    def joins(self, now: float) -> bool:
        """May a member still take the reservation's slices at ``now``?"""
        return self.start <= now < self.end and (self.release_at is None or now < self.release_at)

    def admits(self, school: str, group: str | None) -> bool:
        return school == self.school and (self.group is None or self.group == group)


@dataclass(frozen=True, slots=True)
class Config:
    """Policy knobs. The defaults are the ``fair`` policy; :func:`fcfs_config` and
    :func:`static_config` give the baselines the simulator compares against."""

    ordering: Literal["fair", "fifo"] = "fair"
    half_life_s: float = 3600.0  # decay of past usage in the fair-share priority
    entry_penalty_s: float = 600.0  # usage charged at admission, in seconds of the session's size
    borrowing: bool = True  # may a school hold more than its guarantee when slices idle?
    reclaim: bool = True  # stop borrowed sessions when a school below its guarantee waits
    rebalance: bool = True  # also reclaim for a borrower holding less per weight than the lender-to-be
    min_runtime_s: float = 600.0  # a borrowed session runs at least this long before a reclaim stop
    warning_s: float = 120.0  # lead time between the warning and the stop
    max_lease_s: float = 4 * 3600.0  # a lease ends after this; renewed only if nobody better waits
    budget_period_s: float = 7 * 24 * 3600.0  # rolling window for GPU-hour budgets
    whole_slice_guarantees: bool = False  # round guarantees down to whole slices (static partition)
    # a session beyond its school's guarantee gets a lease of at most this (told at admission:
    # "borrowed until HH:MM"), renewed at its end while nobody with a better claim waits;
    # None: borrowed sessions get full leases and are taken back with a warning (the rebalance)
    lent_lease_s: float | None = None


def fcfs_config() -> Config:
    """What plain JupyterHub does: first come, first served, no shares, no leases."""
    return Config(ordering="fifo", reclaim=False, rebalance=False, max_lease_s=INF, entry_penalty_s=0.0)


def static_config() -> Config:
    """One hard quota per school (like one ResourceQuota per namespace): no borrowing."""
    return Config(
        ordering="fifo", borrowing=False, reclaim=False, rebalance=False, max_lease_s=INF, entry_penalty_s=0.0,
        whole_slice_guarantees=True,
    )


@dataclass(frozen=True, slots=True)
class Request:
    """A student (or teacher) asks for a GPU share."""

    id: str
    user: str
    school: str
    milli: int
    group: str | None = None  # the class, for reservations
    pool: str | None = None  # a pool the request must land in, or None for any
    kind: str | None = None  # a kind of pool the request must land in (a MIG slice, not a whole GPU), or None
    lease_s: float | None = None  # length of its lease and of each renewal; None = Config.max_lease_s

    def fits_pool(self, pool: PoolSpec) -> bool:
        return self.pool in (None, pool.id) and self.kind in (None, pool.kind)


# -- what the allocator answers ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admit:
    request_id: str
    session_id: str
    pool: str
    slices: int
    lease_end: float
    borrowed: bool  # True when the session is beyond its school's guarantee (may be reclaimed)
    reservation: str | None = None
    kind: str = "admit"


@dataclass(frozen=True, slots=True)
class Queue:
    request_id: str
    position: int | None  # 1 = next; None when not computed (explain=False)
    wait_estimate_s: float | None  # INF when nothing now running would make room
    reason: str = ""
    kind: str = "queue"


@dataclass(frozen=True, slots=True)
class Refuse:
    request_id: str
    reason: str
    retry_at: float | None  # None: retrying will not help (ask staff)
    code: str = "refused"
    kind: str = "refuse"


Decision = Admit | Queue | Refuse


@dataclass(frozen=True, slots=True)
class Warn:
    """A borrowed session will be stopped at ``stop_at`` to give the slices back."""

    session_id: str
    stop_at: float
    reason: str
    kind: str = "warn"


@dataclass(frozen=True, slots=True)
class Stop:
    session_id: str
    reason: Literal["reclaimed", "lease_expired", "budget_exhausted", "idle"]
    message: str
    kind: str = "stop"


@dataclass(frozen=True, slots=True)
class Renew:
    """The lease now ends at ``lease_end`` (later: renewed; earlier: shortened so a class
    reservation gets its slices). ``warning_withdrawn``: an earlier :class:`Warn` no longer
    holds, the session will not be stopped for a reclaim."""

    session_id: str
    lease_end: float
    warning_withdrawn: bool = False
    kind: str = "renew"


Action = Admit | Warn | Stop | Renew


@dataclass(slots=True, eq=False)
class Session:
    """A running lease (mutable: the allocator updates it). Compared by identity: two
    sessions are the same only if they are one object."""

    id: str
    request: Request
    school_index: int
    pool_index: int
    slices: int
    milli: int  # slices * slice_milli
    start: float
    lease_end: float
    borrowed: bool
    reservation: str | None = None
    last_active: float = 0.0
    stop_at: float | None = None  # set once a reclaim (or idle) warning went out
    seq: int = 0
    stop_for: str = "reclaimed"  # the Stop reason at stop_at: "reclaimed", or "idle" (quota.fairshare.idle)


@dataclass(slots=True, eq=False)
class Waiting:
    """A queued request (mutable: the allocator updates it). Compared by identity, so taking
    one out of its line does not compare every field of those before it."""

    request: Request
    arrival: float
    seq: int
    school_index: int
    needs: tuple[int, ...]  # slices per pool (0 = cannot go to that pool)
    bucket: tuple = field(default_factory=tuple)
    slot: int = -1  # its line in the WaitQueue (set when it joins one)
