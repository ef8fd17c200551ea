"""Who can give up a session in a rebalancing reclaim, found without scanning the pool.

When a school that would borrow waits, the allocator may reclaim a borrowed session of
school ``v`` only if ``v`` still holds at least the waiting school's claim per weight
afterwards: ``(held[v] - leaving[v] - milli) / weight[v] >= claim``, and it takes such
sessions longest idle first. Every session in a pool holds at least one slice, so a
school's *level* in a pool,

    level(v) = (held[v] - leaving[v] - slice_milli) / weight[v],

must reach the claim for any of its sessions to qualify. The numerators are whole
milli-GPU, so the level computed in floating point is never below a value the search
itself computes.

Per pool, :class:`Givers` groups the schools with an unwarned borrowed session there by
level, and orders each group by the school's longest-idle such session. Levels are few in
practice (holdings are whole slices, weights come from a handful of tiers), so

* the highest level bounds what anybody could give: a claim above it is hopeless and its
  search is skipped at once (:meth:`most`, under load almost every claim);
* :meth:`in_idle_order` yields the sessions of the schools at or above a claim's level,
  longest idle first, by merging the groups, without visiting the schools below (the
  many that hold one session that has idled longest).

The allocator calls :meth:`changed` after anything that moves a school's holding, its
reclaim warnings or its borrowed sessions; the school is filed again when the index is
next read (a rebalance search happens for a few events in a hundred, most of the others
change a school). A touch (a session used again) needs no call: it only makes the school's
filed idle time an earlier bound of the true one, and the merge, which visits a school at
its filed time and then its sessions at their own, still yields them in the right order.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterator

from quota.fairshare.model import Session


class Givers:
    """Reads the allocator's ``held``, ``leaving``, ``weight`` and ``borrowed``, updated in place."""

    __slots__ = ("held", "leaving", "weight", "borrowed", "slice_milli", "entry", "version", "groups",
                 "levels", "members", "dirty")

    def __init__(self, held: list[int], leaving: list[int], weight: list[float],
                 borrowed: list[dict[str, Session]], slice_milli: list[int]) -> None:
        self.held = held
        self.leaving = leaving
        self.weight = weight
        self.borrowed = borrowed  # per school, its borrowed sessions
        self.slice_milli = slice_milli  # per pool
        pools = range(len(slice_milli))
        self.entry: list[dict[int, tuple]] = [{} for _ in pools]  # pool -> school -> (level, last_active, seq)
        self.version: list[dict[int, int]] = [{} for _ in pools]  # pool -> school -> its live heap entry
        self.groups: list[dict[float, list]] = [{} for _ in pools]  # pool -> level -> heap (last_active, seq, school, version)
        self.levels: list[list[float]] = [[] for _ in pools]  # pool -> levels with members, ascending
        self.members: list[dict[float, int]] = [{} for _ in pools]  # pool -> level -> schools at it
        self.dirty: set[int] = set()  # schools changed since they were last filed

    def level(self, pool: int, school: int) -> float:
        weight = self.weight[school]
        if weight <= 0:  # never skip a search the allocator would make (it fails there itself)
            return math.inf
        return (self.held[school] - self.leaving[school] - self.slice_milli[pool]) / weight

    def changed(self, school: int) -> None:
        """The school's holding, warnings or borrowed sessions changed: file it again
        before the next read."""
        self.dirty.add(school)

    def _refresh(self) -> None:
        """File every school changed since the last read."""
        for school in self.dirty:
            self._refile(school)
        self.dirty.clear()

    def _refile(self, school: int) -> None:
        by_pool: dict[int, tuple] = {}
        for session in self.borrowed[school].values():
            if session.stop_at is None:
                idle = (session.last_active, session.seq)
                pool = session.pool_index
                if pool not in by_pool or idle < by_pool[pool]:
                    by_pool[pool] = idle
        for pool in range(len(self.entry)):
            self._file(pool, school, by_pool.get(pool))

    def _file(self, pool: int, school: int, idle: tuple | None) -> None:
        """File ``school`` in ``pool`` at its level with ``idle``, the (last_active, seq) of
        its longest-idle unwarned borrowed session there (None: it has none, it leaves)."""
        entries = self.entry[pool]
        old = entries.get(school)
        if idle is None:
            if old is not None:
                del entries[school]
                self.version[pool][school] += 1
                self._leave(pool, old[0])
            return
        level = self.level(pool, school)
        entry = (level, *idle)
        if entry == old:
            return
        entries[school] = entry
        versions = self.version[pool]
        version = versions[school] = versions.get(school, 0) + 1
        heap = self.groups[pool].setdefault(level, [])
        heapq.heappush(heap, (idle[0], idle[1], school, version))
        if old is None or old[0] != level:
            if old is not None:
                self._leave(pool, old[0])
            self._join(pool, level)
        elif len(heap) > 2 * self.members[pool][level] + 64:  # retired entries pile up: start afresh
            heap[:] = [e for e in heap if versions[e[2]] == e[3]]
            heapq.heapify(heap)

    def _join(self, pool: int, level: float) -> None:
        members = self.members[pool]
        members[level] = members.get(level, 0) + 1
        if members[level] == 1:
            bisect.insort(self.levels[pool], level)

    def _leave(self, pool: int, level: float) -> None:
        members = self.members[pool]
        members[level] -= 1
        if not members[level]:
            del members[level]
            del self.groups[pool][level]
            levels = self.levels[pool]
            del levels[bisect.bisect_left(levels, level)]

    # -- reading ---------------------------------------------------------------------------

    def most(self, pool: int) -> float:
        """The highest level in ``pool`` (-inf without members): no claim above it can be met."""
        if self.dirty:
            self._refresh()
        levels = self.levels[pool]
        return levels[-1] if levels else -math.inf

    def in_idle_order(self, pool: int, claim: float, exclude: int) -> Iterator[Session]:
        """The unwarned borrowed sessions in ``pool`` of the schools (but ``exclude``) whose
        level reaches ``claim``, longest idle first. Close the iterator when done with it."""
        if self.dirty:
            self._refresh()
        groups = self.groups[pool]
        versions = self.version[pool]
        # one item per group (its longest-idle school), then per school visited its sessions;
        # an item is (last_active, seq, 0 for a school / 1 for a session, ...): a school's item
        # sorts just before its own longest-idle session's
        merge: list[tuple] = []
        popped: list[tuple[float, tuple]] = []

        def next_school(level: float) -> None:
            heap = groups[level]
            while heap:
                top = heap[0]
                if versions[top[2]] == top[3]:
                    heapq.heappush(merge, (top[0], top[1], 0, level))
                    return
                heapq.heappop(heap)  # retired

        try:
            levels = self.levels[pool]
            for k in range(len(levels) - 1, -1, -1):
                if levels[k] < claim:
                    break
                next_school(levels[k])
            while merge:
                item = heapq.heappop(merge)
                if item[2] == 0:
                    level = item[3]
                    entry = heapq.heappop(groups[level])
                    popped.append((level, entry))
                    next_school(level)
                    school = entry[2]
                    if school != exclude:
                        sessions = sorted(
                            (x for x in self.borrowed[school].values() if x.pool_index == pool and x.stop_at is None),
                            key=lambda x: (x.last_active, x.seq), reverse=True,
                        )
                        first = sessions.pop()
                        heapq.heappush(merge, (first.last_active, first.seq, 1, first, sessions))
                else:
                    session, rest = item[3], item[4]
                    yield session
                    if rest:
                        after = rest.pop()
                        heapq.heappush(merge, (after.last_active, after.seq, 1, after, rest))
        finally:
            for level, entry in popped:
                heapq.heappush(groups[level], entry)
