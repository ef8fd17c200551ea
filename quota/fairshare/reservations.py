"""Class reservations: slices of a pool held for a school or class between two times.

Inside its window a reservation's slices are taken out of the pool's general capacity:
only its members use them, and they may idle (the one exception to work conservation).
Before the window the allocator clips a new lease to the window's start when the pool
would otherwise be over-committed then (see :meth:`ReservationBook.clip`), so that at
the start the reserved slices are free without stopping anyone early.

A reservation with ``release_at`` gives back, at that moment, the slices no member holds:
from then on it takes out of the pool only what its members hold, less as each ends, and a
member who comes later asks in the general line (a class smaller than booked, or one that
does not come, leaves no GPU idle for the rest of the lesson).
"""

from __future__ import annotations

import bisect
import math

from quota.fairshare.model import PoolSpec, Reservation


class ReservationError(ValueError):
    """A reservation that cannot be honoured; the message says why and what to change."""


class ReservationBook:
    __slots__ = ("pools", "by_pool", "starts", "held", "by_id", "released")

    def __init__(self, pools: list[PoolSpec]) -> None:
        self.pools = {p.id: p for p in pools}
        self.by_pool: dict[str, list[Reservation]] = {p.id: [] for p in pools}
        self.starts: dict[str, list[float]] = {p.id: [] for p in pools}
        self.held: dict[str, int] = {}  # reservation id -> slices held by its members now
        self.by_id: dict[str, Reservation] = {}
        self.released: set[str] = set()  # ids past their release_at: they hold only what members hold

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def check(self, res: Reservation) -> None:
        pool = self.pools.get(res.pool)
        if pool is None:
            raise ReservationError(f"reservation {res.id}: pool {res.pool!r} does not exist; use one of {sorted(self.pools)}")
        if res.id in self.by_id:
            raise ReservationError(f"reservation {res.id}: that id is already booked; give it its own id")
        if res.slices <= 0:
            raise ReservationError(f"reservation {res.id}: slices must be at least 1")
        if res.slices > pool.slices:
            raise ReservationError(
                f"reservation {res.id}: asks for {res.slices} slices but pool {pool.id} has {pool.slices}; "
                f"reserve at most {pool.slices}"
            )
        if not res.end > res.start:
            raise ReservationError(f"reservation {res.id}: end ({res.end}) must be after start ({res.start})")
        if res.release_at is not None and not res.start < res.release_at:
            raise ReservationError(
                f"reservation {res.id}: release_at ({res.release_at}) must be after start ({res.start}); "
                "leave it empty to hold the slices to the end"
            )
        points = [res.start] + [r.start for r in self.by_pool[res.pool] if res.start < r.start < res.end]
        for t in points:
            booked = self.reserved_at(res.pool, t) + res.slices
            if booked > pool.slices:
                raise ReservationError(
                    f"reservation {res.id}: at {t:g} s pool {pool.id} would have {booked} of its "
                    f"{pool.slices} slices reserved; pick another time or fewer slices"
                )

    def add(self, res: Reservation) -> None:
        self.check(res)
        index = bisect.bisect_right(self.starts[res.pool], res.start)
        self.starts[res.pool].insert(index, res.start)
        self.by_pool[res.pool].insert(index, res)
        self.by_id[res.id] = res
        self.held[res.id] = 0

    def remove(self, reservation_id: str) -> Reservation | None:
        """Take a reservation out of the book (None if it is not booked)."""
        res = self.by_id.pop(reservation_id, None)
        if res is None:
            return None
        index = self.by_pool[res.pool].index(res)
        del self.by_pool[res.pool][index]
        del self.starts[res.pool][index]
        del self.held[res.id]
        self.released.discard(res.id)
        return res

    def release(self, reservation_id: str) -> None:
        """From now on the reservation holds only the slices its members hold."""
        if reservation_id in self.by_id:
            self.released.add(reservation_id)

    def room(self, res: Reservation, now: float) -> int:
        """Slices a member arriving at ``now`` may still take."""
        if res.id in self.released or not res.joins(now):
            return 0
        return res.slices - self.held[res.id]

    def active(self, pool: str, now: float) -> list[Reservation]:
        return [r for r in self.by_pool[pool] if r.start <= now < r.end]

    def reserved_at(self, pool: str, t: float) -> int:
        """Slices taken out of general capacity at ``t`` (a released reservation: what its
        members hold now, which can only fall before ``t``)."""
        total = 0
        released = self.released
        for r in self.by_pool[pool]:
            if r.start > t:
                break
            if t < r.end:
                total += self.held[r.id] if r.id in released else r.slices
        return total

    def clip(self, pool: str, now: float, lease_end: float, general_after: int) -> float:
        """Clip a general lease ``[now, lease_end)`` to the first reservation start at which
        ``general_after`` slices (held in general once it is admitted) would not fit."""
        starts = self.starts[pool]
        if not starts or starts[-1] <= now:
            return lease_end
        capacity = self.pools[pool].slices
        index = bisect.bisect_right(starts, now)
        while index < len(starts) and starts[index] < lease_end:
            t = starts[index]
            if general_after > capacity - self.reserved_at(pool, t):
                return t
            index += 1
        return lease_end

    def next_boundary(self, now: float) -> float:
        """The next start or end of any window after ``now`` (inf if none)."""
        best = math.inf
        for res in self.by_id.values():
            if now < res.start < best:
                best = res.start
            if now < res.end < best:
                best = res.end
        return best
