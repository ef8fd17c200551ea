"""Reclaim: which borrowed sessions to warn so that waiting requests get their share.

The allocator's rule 5 (see :mod:`quota.fairshare.policy`), as a mixin of
:class:`~quota.fairshare.policy.Allocator`: it reads the allocator's state (``pools``,
``general``, ``reserved_now``, ``pending``, ``queue``, ``givers``, ``config``, ``held``,
``leaving``, ``weight``, ``sessions``, ``borrowed``, ``victims``) and warns through its
``_mark_warned``; it keeps nothing of its own.

* For requests within their school's guarantee (class 0): any borrowed session of another
  school in the pool, longest idle first (the pool's heap of candidates, ``victims``).
* For requests that would borrow (class 1, the *rebalance*): only sessions of schools that
  keep at least the waiting school's claim per weight, longest idle first among them
  (:class:`~quota.fairshare.givers.Givers` finds those schools), the claims walked smallest
  first.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from quota.fairshare.model import INF, Action, Session, Warn

if TYPE_CHECKING:
    from quota.fairshare.policy import Allocator

# the rebalance reclaims for the best claims up to this many slices per pool: with that much
# already on its way back (idle slices, warned sessions) a pass has nothing to do
REBALANCE_SLICES = 64
# and it tops that up only once this many are missing, so that in a big pool one pass warns
# several sessions instead of every event walking the claims for one (a pool of fewer slices
# than REBALANCE_SLICES - REBALANCE_BATCH is never held back by this)
REBALANCE_BATCH = 8


class Reclaiming:
    """The reclaim searches of :class:`~quota.fairshare.policy.Allocator`."""

    def _reclaim(self, free: list[int], now: float, out: list[Action]) -> None:
        """Warn borrowed sessions so that waiting requests get their share (``free``: the
        free slices of every pool, see ``_free_per_pool``).

        First for requests within their school's guarantee (class 0, the best 64 of each
        size in queue order), then, with ``Config.rebalance``, for requests that would
        borrow (class 1), taking only from schools that would still hold more per weight
        than the waiting school's claim after the move, so capacity never swings back and
        forth. Slices already on their way back (warned sessions, idle slices) are counted
        once across all the waiting requests."""
        # under the fair order a line's class is exact (see WaitQueue.lines_in_class); with
        # FIFO keys class 0 also holds requests that would borrow
        nobody_below = not self.fifo and not self.queue.lines_in_class(0)
        if nobody_below and self.givers is None:
            return
        avail = [max(0, f) + pending for f, pending in zip(free, self.pending)]
        for bucket in ([] if nobody_below else self.queue.buckets()):
            for key, waiting in self.queue.peek_many(bucket, now, lambda top: top[0][0] > 0):
                s = waiting.school_index
                if self.fifo and self.held[s] + self.bucket_footprint[bucket] > self.guarantee[s]:
                    continue  # it would borrow: no reclaim for it (the rebalance is for the fair order)
                for pool, need in enumerate(waiting.needs):
                    if not need or need > self.pools[pool].slices - self.reserved_now[pool]:
                        continue
                    if avail[pool] >= need:
                        avail[pool] -= need  # enough is already on its way back in this pool
                        break
                    got = self._warn_victims(pool, s, need - avail[pool], now, out)
                    if got:
                        avail[pool] += got - need
                        break
        if self.givers is not None:
            self._rebalance(avail, now, out)

    def _rebalance(self, avail: list[int], now: float, out: list[Action]) -> None:
        """The class-1 part of :meth:`_reclaim`: walk the waiting heads that would borrow
        by their claim, smallest first (the likeliest to find a school holding more), for at
        most ``REBALANCE_SLICES`` slices per pool, and stop where nobody can succeed any
        more: the claim is above what any school could give up (:class:`Givers`), or a
        search for one slice found nothing (the schools that qualify only get fewer as the
        claim grows, and a school never qualifies for its own claim). The slices on their
        way back are counted off the walk first, so with ``REBALANCE_SLICES`` of them in a
        pool the pass has nothing to do there. Claims do not change with time, so unlike the
        fair keys nothing is re-keyed on the way."""
        queue = self.queue
        givers = self.givers
        done: set[int] = set()  # lines (slots) served by this pass (in some pool)
        for pool, spec in enumerate(self.pools):
            if avail[pool] > REBALANCE_SLICES - REBALANCE_BATCH:
                first = queue.claim_top(pool)
                if first is None or queue.bucket_of[first[2]][1][pool] <= avail[pool]:
                    continue  # enough is on its way back for the best claims
            capacity = spec.slices - self.reserved_now[pool]
            most = givers.most(pool)
            failed = INF  # the fewest slices a search in this pool failed to find
            walked = 0
            walk = queue.by_claim(pool)
            for claim, _, slot, _ in walk:
                if claim > most:
                    break
                need = queue.bucket_of[slot][1][pool]
                if walked and walked + need > REBALANCE_SLICES:
                    break
                walked += need
                if need > capacity or slot in done:
                    continue
                if avail[pool] >= need:
                    avail[pool] -= need  # enough is already on its way back in this pool
                    done.add(slot)
                    continue
                short = need - avail[pool]
                if short >= failed:
                    continue  # a larger claim, as many slices or more: fails as well
                chosen = self._givers_for(pool, queue.school_of[slot], short, claim)
                if chosen:
                    self._warn(chosen, pool, now, out, False)
                    avail[pool] += sum(x.slices for x in chosen) - need
                    done.add(slot)
                    most = givers.most(pool)
                else:
                    failed = short
                    if failed <= 1:
                        break
            walk.close()

    def _givers_for(self, pool: int, school: int, short: int, claim: float) -> list[Session]:
        """Borrowed sessions of other schools in ``pool`` that give ``short`` slices back for
        ``claim``, longest idle first, taking only from schools that would still hold at
        least ``claim`` per weight afterwards; none when not enough can be found. Only the
        schools whose level reaches the claim are visited (:class:`Givers`)."""
        sessions = self.givers.in_idle_order(pool, claim, school)
        chosen, got = self._choose_victims(sessions, school, short, claim)
        sessions.close()
        return chosen if got >= short else []

    def _warn_victims(self, pool: int, school: int, short: int, now: float, out: list[Action]) -> int:
        """Warn borrowed sessions of other schools in ``pool``, longest idle first, until
        ``short`` slices are on their way back; returns the slices warned (0: none, when
        not enough could be found). The pool's heap of borrowed sessions is scanned and the
        sessions passed over go back into it."""
        heap = self.victims[pool]
        skipped: list[tuple] = []
        chosen, got = self._choose_victims(self._borrowed_by_idleness(heap, skipped), school, short, None)
        taken = {id(session) for session in chosen} if got >= short else set()
        for entry in skipped:
            session = self.sessions.get(entry[2])
            if session is not None and id(session) not in taken:
                heapq.heappush(heap, entry)
        if got < short:
            return 0
        self._warn(chosen, pool, now, out, True)
        return got

    def _push_victim(self, pool: int, entry: tuple) -> None:
        heap = self.victims[pool]
        heapq.heappush(heap, entry)
        if len(heap) > 4 * len(self.sessions) + 64:  # entries of ended, warned or touched sessions pile up
            victim_of = self._victim_of
            heap[:] = [e for e in heap if victim_of(e) is not None]
            heapq.heapify(heap)

    def _victim_of(self, entry: tuple) -> Session | None:
        """The session of a ``victims`` entry (last_active, seq, id) while it still is a
        candidate: running, borrowed, not warned, and not used since the entry was made."""
        session = self.sessions.get(entry[2])
        if session is None or not session.borrowed or session.stop_at is not None or session.last_active != entry[0]:
            return None
        return session

    def _borrowed_by_idleness(self, heap: list[tuple], popped: list[tuple]):
        """The pool's unwarned borrowed sessions, longest idle first, popped from ``heap``
        (stale entries are dropped, the others recorded in ``popped``)."""
        while heap:
            entry = heapq.heappop(heap)
            session = self._victim_of(entry)
            if session is not None:
                popped.append(entry)
                yield session

    def _choose_victims(self, sessions, school: int, short: int, claim: float | None) -> tuple[list[Session], int]:
        """Take sessions in the given order as :class:`_VictimChooser` does, until ``short``
        slices are found (or the sessions run out)."""
        chooser = _VictimChooser(self, school, short, claim)
        for session in sessions:
            if chooser.offer(session):
                break
        return chooser.chosen, chooser.got

    def _warn(self, chosen: list[Session], pool: int, now: float, out: list[Action], for_guarantee: bool) -> None:
        reason = ("a school below its guaranteed share is waiting for this GPU share" if for_guarantee
                  else "a school holding less than its fair share is waiting for this GPU share")
        for session in chosen:
            stop_at = max(now + self.config.warning_s, session.start + self.config.min_runtime_s)
            self._mark_warned(session, stop_at)
            out.append(Warn(session.id, stop_at, reason))


class _VictimChooser:
    """Takes the sessions offered to it, in the order offered, skipping the waiting
    school's own and, with ``claim``, those of schools that would then hold less than the
    claim per weight, until ``short`` slices are found."""

    __slots__ = ("held", "leaving", "weight", "school", "short", "claim", "chosen", "got", "giving")

    def __init__(self, alloc: Allocator, school: int, short: int, claim: float | None) -> None:
        self.held, self.leaving, self.weight = alloc.held, alloc.leaving, alloc.weight
        self.school = school
        self.short = short
        self.claim = claim
        self.chosen: list[Session] = []
        self.got = 0
        self.giving: dict[int, int] = {}

    def offer(self, session: Session) -> bool:
        """True once enough is found."""
        if self.got >= self.short:
            return True
        v = session.school_index
        if v == self.school:
            return False
        if self.claim is not None:
            giving = self.giving.get(v, 0) + session.milli
            if (self.held[v] - self.leaving[v] - giving) / self.weight[v] < self.claim:
                return False
            self.giving[v] = giving
        self.chosen.append(session)
        self.got += session.slices
        return self.got >= self.short
