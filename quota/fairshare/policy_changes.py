"""Staff's changes fed to a running allocator: new school settings, a cancelled class
reservation, a charge taken back.

A mixin of :class:`~quota.fairshare.policy.Allocator`, as :mod:`quota.fairshare.reclaim`
is. The quota service keeps one allocator for as long as it runs; a change of policy is an
input like a request, so the allocator must end up where an allocator built afresh with the
new settings and the same sessions and queue would be:

* :meth:`PolicyChanges.set_schools`: weights, guaranteed shares, borrowing limits, budgets,
  per-student caps and idle limits of every school at once. Guarantees and limits are
  worked out again; sessions that no longer fit in their school's guarantee become borrowed
  (latest started first) and borrowed ones that now fit stop being borrowed; every line of
  the queue is keyed again; queued requests that may no longer wait (over the new limit,
  cap or budget) are refused, as a rebuild would refuse them; then whatever the new shares
  allow is admitted or reclaimed.
* :meth:`PolicyChanges.cancel_reservation`: the window's slices go back to general
  capacity, and the sessions it served keep running as general ones (their lease end
  stays), within their school's guarantee or borrowed by the same rule.
* :meth:`PolicyChanges.uncharge`: a session is charged from a later moment than its start
  (a workspace started ahead of a lesson is charged from its student's first activity).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quota.fairshare.model import INF, Action, Refuse, Renew, SchoolSpec
from quota.fairshare.shares import guarantees_milli, limits_milli

if TYPE_CHECKING:
    from quota.fairshare.policy import Allocator


class PolicyChanges:
    """Inputs that change the rules, not the traffic, of :class:`~quota.fairshare.policy.Allocator`."""

    def set_schools(self: "Allocator", schools: list[SchoolSpec], now: float) -> tuple[list[Action], list[Refuse]]:
        """Replace every school's settings (the same schools, in the same order). Returns
        the actions and the refusals of queued requests that can no longer wait.

        When budgets start to count (no school had one before), the sessions running now
        count from their start; the caller seeds the ended ones (:meth:`seed_budget`)."""
        if [s.id for s in schools] != [s.id for s in self.schools]:
            raise ValueError("set_schools takes the same schools in the same order; a new school needs a new allocator")
        out: list[Action] = []
        self._run_timers(now, out)
        self.schools[:] = schools
        self.weight[:] = [s.weight for s in schools]  # in place: the key functions hold these lists
        self.guarantee[:] = guarantees_milli(schools, self.pools, self.config)
        self.limit[:] = limits_milli(schools, self.guarantee, self.config)
        self.idle_limit[:] = [s.idle_release_s for s in schools]
        self.idle_on = any(limit is not None for limit in self.idle_limit)
        self.rekey = self.config.ordering == "fair" or any(x < INF for x in self.limit)
        self._count_users_again()
        self._count_budgets_from_now_on()
        for s in range(len(schools)):
            self._borrowed_again(s, out)
        for session in self.sessions.values():
            self._idle_timer(session)
        for s in range(len(schools)):
            if self.givers is not None:
                self.givers.changed(s)
            self.queue.touch(s, now)
        refusals = self._refuse_who_may_not_wait(now)
        self._schedule(now, out)
        return out, refusals

    def cancel_reservation(self: "Allocator", reservation_id: str, now: float) -> list[Action]:
        """Cancel a class reservation (unknown ids change nothing)."""
        out: list[Action] = []
        self._run_timers(now, out)
        res = self.book.remove(reservation_id)
        if res is None:
            return out
        pool = self.pool_index[res.pool]
        schools = set()
        for session in self.sessions.values():
            if session.reservation == res.id:
                session.reservation = None
                self.general[pool] += session.slices
                self.held[session.school_index] += session.milli
                schools.add(session.school_index)
        for s in sorted(schools):
            self._borrowed_again(s, out)
            if self.givers is not None:
                self.givers.changed(s)
            if self.rekey:
                self.queue.touch(s, now)
        self.reserved_now = [self.book.reserved_at(p.id, now) for p in self.pools]
        self._schedule(now, out)
        return out

    def uncharge(self: "Allocator", session_id: str, until: float, now: float) -> None:
        """Charge the running session from ``until`` (at most ``now``) instead of its start:
        its school's usage and the GPU-hour budgets forget ``[start, until)``, and its entry
        penalty is charged at ``until``, or not at all if it was never used before ``now``."""
        session = self.sessions.get(session_id)
        if session is None or until <= session.start:
            return
        self._run_timers(now, [], before=True)
        until = min(until, now)
        s, milli, ledger = session.school_index, session.milli, self.ledger
        penalty = milli * self.config.entry_penalty_s
        ledger.base[s] -= milli * ledger.c * (ledger.scale(until) - ledger.scale(session.start)) + penalty * ledger.scale(session.start)
        if until < now:
            ledger.base[s] += penalty * ledger.scale(until)
        if self.track_budgets:
            for key in (f"school:{session.request.school}", f"user:{session.request.user}"):
                running = self.budgets.running.get(key)
                if running and session.id in running:
                    running[session.id] = (until, running[session.id][1])
        if self.rekey:
            self.queue.touch(s, now)

    # -- bookkeeping behind set_schools ---------------------------------------------------

    def _borrowed_again(self: "Allocator", s: int, out: list[Action]) -> None:
        """Which of school ``s``'s general sessions are within its (new) guarantee: walked in
        the order they started, each that still fits is, as admitting them again would have it.
        A session that stops being borrowed has its reclaim warning withdrawn."""
        self.held_guaranteed[s] = 0
        mine = sorted((x for x in self.sessions.values() if x.school_index == s and x.reservation is None),
                      key=lambda x: x.seq)
        self.borrowed[s].clear()
        for session in mine:
            if self.held_guaranteed[s] + session.milli <= self.guarantee[s]:
                self.held_guaranteed[s] += session.milli
                if session.borrowed:
                    session.borrowed = False
                    if session.stop_at is not None and session.stop_for != "idle":  # idle stays idle
                        session.stop_at = None
                        self.pending[session.pool_index] -= session.slices
                        self.leaving[s] -= session.milli
                        out.append(Renew(session.id, session.lease_end, warning_withdrawn=True))
            elif session.borrowed:
                self.borrowed[s][session.id] = session
            else:
                self._lend(session)

    def _lend(self: "Allocator", session) -> None:
        """Count a running session as borrowed (its school's borrowed sessions stay in start order)."""
        s = session.school_index
        session.borrowed = True
        mine = self.borrowed[s]
        in_order = not mine or next(reversed(mine.values())).seq < session.seq
        mine[session.id] = session
        if not in_order:
            ordered = sorted(mine.values(), key=lambda x: x.seq)
            mine.clear()
            mine.update((x.id, x) for x in ordered)
        if self.reclaim_on:
            self._push_victim(session.pool_index, (session.last_active, session.seq, session.id))

    def _count_users_again(self: "Allocator") -> None:
        self.track_users = any(s.max_sessions_per_student is not None for s in self.schools)
        self.per_user.clear()
        if self.track_users:
            for x in (*(session.request for session in self.sessions.values()),
                      *(waiting.request for waiting in self.waiting.values())):
                self.per_user[x.user] = self.per_user.get(x.user, 0) + 1

    def _count_budgets_from_now_on(self: "Allocator") -> None:
        tracked = any(s.budget_gpu_hours is not None or s.student_budget_gpu_hours is not None for s in self.schools)
        if tracked and not self.track_budgets:
            for session in self.sessions.values():
                self.budgets.start(f"school:{session.request.school}", session.id, session.start, session.milli)
                self.budgets.start(f"user:{session.request.user}", session.id, session.start, session.milli)
        self.track_budgets = tracked

    def _refuse_who_may_not_wait(self: "Allocator", now: float) -> list[Refuse]:
        """Queued requests the new settings would refuse on arrival (over the school's limit,
        its per-student cap or a budget), checked in the order they came, as a rebuild that
        puts each back does."""
        refusals: list[Refuse] = []
        line = sorted(self.waiting.values(), key=lambda w: w.seq)
        for waiting in line:
            del self.waiting[waiting.request.id]
            if self.track_users:
                self._user_done(waiting.request.user)
        for waiting in line:
            refusal = self._refusal(waiting.request, now)
            if refusal is None:
                self.waiting[waiting.request.id] = waiting
                if self.track_users:
                    self.per_user[waiting.request.user] = self.per_user.get(waiting.request.user, 0) + 1
            else:
                self.queue.remove(waiting, now)
                refusals.append(refusal)
        return refusals
