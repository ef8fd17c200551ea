"""How much any school could give up in a rebalancing reclaim: a bound that ends hopeless searches at once.

When a school that would borrow waits, the allocator may reclaim a borrowed session of
school ``v`` only if ``v`` still holds at least the waiting school's claim per weight
afterwards: ``(held[v] - leaving[v] - milli) / weight[v] >= claim``. Every session in a
pool holds at least one slice, so over all schools

    most(slice_milli) = max over v of (held[v] - leaving[v] - slice_milli) / weight[v]

is an upper bound of that left-hand side; a claim above it cannot be met by anybody and
the search through the borrowed sessions can be skipped (under load almost every search
is such a one). The numerators are whole milli-GPU, so the bound computed in floating
point is never below a value the search itself computes.

The maximum is kept in a lazy max-heap per slice size: the allocator calls
:meth:`ReclaimBound.raised` whenever ``held - leaving`` of a school grows (a session
admitted, a reclaim warning withdrawn); drops need no call, as a stale entry that reaches
the top is re-keyed there.
"""

from __future__ import annotations

import heapq
import math


class ReclaimBound:
    """Reads the allocator's ``held``, ``leaving`` and ``weight`` lists, updated in place."""

    __slots__ = ("held", "leaving", "weight", "heaps", "version")

    def __init__(self, held: list[int], leaving: list[int], weight: list[float], slice_sizes: list[int]) -> None:
        self.held = held
        self.leaving = leaving
        self.weight = weight
        self.heaps: dict[int, list[tuple]] = {size: [] for size in sorted(set(slice_sizes))}
        self.version = [0] * len(weight)
        self._rebuild()

    def _key(self, school: int, slice_milli: int) -> float:
        weight = self.weight[school]
        if weight <= 0:  # never skip a search the allocator would make (it fails there itself)
            return math.inf
        return (self.held[school] - self.leaving[school] - slice_milli) / weight

    def _rebuild(self) -> None:
        for size, heap in self.heaps.items():
            heap[:] = [(-self._key(v, size), v, self.version[v]) for v in range(len(self.weight))]
            heapq.heapify(heap)

    def raised(self, school: int) -> None:
        """``held - leaving`` of ``school`` grew."""
        self.version[school] += 1
        version = self.version[school]
        for size, heap in self.heaps.items():
            heapq.heappush(heap, (-self._key(school, size), school, version))
            if len(heap) > 2 * len(self.weight) + 64:  # retired entries pile up: start afresh
                self._rebuild()
                break

    def _top(self, heap: list[tuple], slice_milli: int) -> float | None:
        """The true largest key at the top of ``heap`` (retired entries dropped, a stale
        key re-pushed until the top one is current); None when the heap is empty."""
        version = self.version
        while heap:
            neg, school, seen = heap[0]
            if seen != version[school]:
                heapq.heappop(heap)
                continue
            now = self._key(school, slice_milli)
            if now == -neg:
                return now
            heapq.heapreplace(heap, (-now, school, seen))
        return None

    def most(self, slice_milli: int) -> float:
        """The bound for a pool of ``slice_milli`` slices (-inf without schools)."""
        top = self._top(self.heaps[slice_milli], slice_milli)
        return -math.inf if top is None else top

    def schools_at_least(self, claim: float, slice_milli: int, limit: int) -> list[int] | None:
        """The schools whose bound for ``slice_milli`` is at least ``claim``: the only ones
        that can give up a session for that claim; None when there are more than ``limit``."""
        heap = self.heaps[slice_milli]
        found: list[int] | None = []
        taken: list[tuple] = []
        while (top := self._top(heap, slice_milli)) is not None and top >= claim:
            if len(found) == limit:
                found = None
                break
            taken.append(heapq.heappop(heap))
            found.append(taken[-1][1])
        for entry in taken:
            heapq.heappush(heap, entry)
        return found
