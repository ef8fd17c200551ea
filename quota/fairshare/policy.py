"""The allocator: requests in, decisions and actions out. Pure and deterministic.

:class:`Allocator` holds the state of one alliance (pools, schools, running sessions, the
waiting line) as plain Python data. Every method takes the current time ``now`` from the
caller and returns what happened; it never reads a clock, a file or the network, so the
quota service (wall clock, database around it) and the simulator (virtual clock) drive
the very same code, and the same calls give the same answers.

Decisions for a request (:meth:`Allocator.submit`):

* :class:`~quota.fairshare.model.Admit` -- a lease on slices of one pool, now;
* :class:`~quota.fairshare.model.Queue` -- waiting, with its place and a wait estimate;
* :class:`~quota.fairshare.model.Refuse` -- with the reason and when retrying can help.

Actions (from every method): ``Admit`` for queued requests that got their turn, ``Warn``
before a reclaim stop, ``Stop`` (reclaimed, lease expired, budget exhausted) and
``Renew``. The caller must call :meth:`Allocator.advance` at :meth:`Allocator.next_wake`.

The rules, in order:

1. Reservations: inside its window a reservation's slices serve only its members; from
   its ``release_at`` on, only those its members hold (the rest go back to the pool).
2. Queue order: requests within their school's guarantee (class 0) before requests that
   would borrow (class 1); a school at its borrowing limit waits (class 2). Inside a class
   the school with the least decayed usage per weight goes first; an admission charges an
   entry penalty so a burst cannot take the whole pool at once.
3. Work conservation: any waiting request that fits in idle general slices and is within
   its school's limit is admitted (smaller requests may pass a larger one that does not fit).
4. Reclaim: when a class-0 request does not fit, borrowed sessions of other schools in the
   pool are warned and stopped ``warning_s`` later (never before ``min_runtime_s``),
   longest-idle first. Sessions within their school's guarantee are never reclaimed.
   With ``Config.rebalance`` the same for requests that would borrow (class 1), taken by
   their claim (the school's holding per weight once admitted, smallest first), from
   schools that would still hold more per weight than that claim after the move.
5. Leases end after ``max_lease_s`` and are renewed only while no waiting request with a
   better claim could use the slices, the budgets allow it and no reservation needs them.
6. Idle release: where a school's tier sets ``idle_release_s``, a session unused that long
   while a request waits that its slices would serve is warned and stopped ``warning_s``
   later (:mod:`quota.fairshare.idle`).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import replace

from quota.fairshare.answers import Answering
from quota.fairshare.budgets import RollingBudget
from quota.fairshare.givers import Givers
from quota.fairshare.idle import demand_per_pool, idle_to_release
from quota.fairshare.model import (
    INF, Action, Admit, Config, Decision, PoolSpec, Queue, Refuse, Renew, Request, Reservation,
    SchoolSpec, Session, Stop, Waiting, Warn,
)
from quota.fairshare.policy_changes import PolicyChanges
from quota.fairshare.priority import UsageLedger
from quota.fairshare.queue import WaitQueue
from quota.fairshare.reclaim import Reclaiming
from quota.fairshare.reservations import ReservationBook, ReservationError
from quota.fairshare.shares import guarantees_milli, limits_milli

# at equal times a reservation window opens or closes before any stop or lease end, so
# everything decided at that instant already sees the window
_BOUNDARY, _STOP, _LEASE = 0, 1, 2
_IDLE = 3  # a session becomes idle by its school's rule (quota.fairshare.idle): look again then
_RELEASE = 4  # a reservation gives back the slices its members do not hold (Reservation.release_at)

IDLE_WARNING = "the GPU was not used for a while and others are waiting for it"
IDLE_STOPPED = "released: the GPU was not used and others were waiting for it"


class Allocator(Reclaiming, Answering, PolicyChanges):
    def __init__(
        self,
        pools: list[PoolSpec],
        schools: list[SchoolSpec],
        config: Config | None = None,
        reservations: list[Reservation] = (),
        start: float = 0.0,
    ) -> None:
        self.config = config = config or Config()
        self.pools = list(pools)
        self.pool_index = {p.id: i for i, p in enumerate(self.pools)}
        self.schools = list(schools)
        self.school_index = {s.id: i for i, s in enumerate(self.schools)}
        n = len(self.schools)
        self.weight = [s.weight for s in self.schools]
        self.guarantee = guarantees_milli(self.schools, self.pools, config)
        self.limit = limits_milli(self.schools, self.guarantee, config)
        self.held = [0] * n  # milli held in general capacity
        self.held_guaranteed = [0] * n  # of which within the guarantee
        self.general = [0] * len(self.pools)  # slices held in general capacity
        self.reserved_now = [0] * len(self.pools)  # slices taken out by active reservations
        self.pending = [0] * len(self.pools)  # slices that warned sessions will give back
        self.leaving = [0] * n  # milli of each school's warned sessions
        rebalancing = config.reclaim and config.rebalance and config.ordering == "fair" and config.lent_lease_s is None
        self.ledger = UsageLedger(n, config.half_life_s, start)
        self.bucket_footprint: dict[tuple, int] = {}  # bucket -> the least milli it takes in a pool
        self.bucket_claims: dict[tuple, list[tuple[int, int]]] = {}  # bucket -> (pool, milli it takes there)
        self.shapes: dict[tuple, tuple] = {}  # (milli, pool, kind) -> see _shape
        self.fifo = config.ordering == "fifo"
        self.reclaim_on = config.reclaim
        self._key = self._key_function()
        self.queue = WaitQueue(self._key, self._claim_function() if rebalancing else None)
        self.waiting: dict[str, Waiting] = {}
        self.sessions: dict[str, Session] = {}
        self.borrowed: list[dict[str, Session]] = [dict() for _ in range(n)]  # per school, start order
        self.givers = (Givers(self.held, self.leaving, self.weight, self.borrowed, [p.slice_milli for p in self.pools])
                       if rebalancing else None)
        self.victims: list[list[tuple]] = [[] for _ in self.pools]  # heap (last_active, seq, id)
        self.per_user: dict[str, int] = {}  # sessions + waiting requests per user (counted only if a school caps them)
        self.track_users = any(s.max_sessions_per_student is not None for s in self.schools)
        self.idle_limit = [s.idle_release_s for s in self.schools]  # seconds, per school (None: never)
        self.idle_on = any(limit is not None for limit in self.idle_limit)
        self.timers: list[tuple] = []  # heap (time, kind, seq, ref)
        self.book = ReservationBook(self.pools)
        self.budgets = RollingBudget(config.budget_period_s)
        self.track_budgets = any(
            s.budget_gpu_hours is not None or s.student_budget_gpu_hours is not None for s in self.schools
        )
        # keys change with held slices unless FIFO order without any limit
        self.rekey = config.ordering == "fair" or any(x < INF for x in self.limit)
        self.seq = 0
        self.now = start
        for res in reservations:
            if res.end > start:  # a window that closed before the start cannot matter
                self.add_reservation(res, start)

    # -- keys ---------------------------------------------------------------------------

    # The queue calls these two for every line it (re-)keys: closures over the allocator's
    # lists (updated in place) rather than methods, as attribute look-ups add up there.

    def _key_function(self):
        """``key(school, bucket, head, now)``: (class, decayed usage per weight) under the
        fair order, (0 or 2, arrival number) under FIFO; class 0 within the guarantee, 1
        borrowing, 2 at the borrowing limit."""
        held, guarantee, limit, weight = self.held, self.guarantee, self.limit, self.weight
        footprint = self.bucket_footprint
        ledger = self.ledger
        base, rate, c = ledger.base, ledger.rate, ledger.c
        fifo = self.fifo

        def key(school: int, bucket: tuple, head: Waiting, now: float) -> tuple:
            h = held[school] + footprint[bucket]
            cls = 0 if h <= guarantee[school] else (1 if h <= limit[school] else 2)
            if fifo:
                return (0 if cls < 2 else 2), float(head.seq)
            x = ledger.last_scale if ledger.last_scale_t == now else ledger.scale(now)
            return cls, (base[school] + rate[school] * c * x) / weight[school]  # UsageLedger.scaled

        return key

    def _claim_function(self):
        """``claims(school, bucket)``: for a head that would borrow (class 1), its claim on
        each pool it fits, the milli per weight its school would hold once admitted there;
        else nothing."""
        held, guarantee, limit, weight = self.held, self.guarantee, self.limit, self.weight
        footprint, parts = self.bucket_footprint, self.bucket_claims

        def claims(school: int, bucket: tuple) -> list[tuple[int, float]]:
            h = held[school]
            if not guarantee[school] < h + footprint[bucket] <= limit[school]:
                return []
            w = weight[school]
            return [(pool, (h + milli) / w) for pool, milli in parts[bucket]]

        return claims

    def _renew_key(self, session: Session, now: float) -> tuple:
        if self.fifo:
            return 1 if session.borrowed else 0, -math.inf, -1
        s = session.school_index
        return (1 if session.borrowed else 0), self.ledger.scaled(s, now) / self.weight[s], -1

    # -- public interface ---------------------------------------------------------------

    def submit(self, request: Request, now: float, explain: bool = True) -> tuple[Decision, list[Action]]:
        """Decide on a new request; also returns whatever else happened at ``now``. When the
        request is admitted, the actions may already refer to its session: a reclaim
        warning, when it borrowed the last idle slices while a school below its guarantee
        waits for more than is idle (it then still runs for the minimum runtime)."""
        out: list[Action] = []
        self._run_timers(now, out)
        refusal = self._refusal(request, now)
        if refusal is not None:
            return refusal, out
        self._enqueue(request, now, now)
        self._schedule(now, out)
        for action in out:
            if isinstance(action, Admit) and action.request_id == request.id:
                out.remove(action)
                return action, out
        if not explain:
            return Queue(request.id, None, None), out
        return self.explain(request.id, now), out

    def wait_again(self, request: Request, arrival: float, now: float) -> Refuse | None:
        """Put back a request that was queued at ``arrival`` (the quota service rebuilding
        its state, see :meth:`resume`) without deciding anything yet: call
        :meth:`advance` once all are back. Returns a refusal if it can no longer wait
        (its school left, a pool of its kind is gone)."""
        self._run_timers(now, [])
        refusal = self._refusal(request, now)
        if refusal is None:
            self._enqueue(request, arrival, now)
        return refusal

    def _shape(self, request: Request) -> tuple[tuple[int, ...], tuple, int | None]:
        """The slices the request takes in each pool (0: it cannot go there), its bucket
        (see :mod:`quota.fairshare.queue`) and the least it holds in a pool big enough for
        it (None: none is); remembered per size, pool and kind."""
        shape = (request.milli, request.pool, request.kind)
        found = self.shapes.get(shape)
        if found is None:
            needs = tuple(p.need(request.milli) if request.fits_pool(p) else 0 for p in self.pools)
            bucket = (self.pool_index.get(request.pool, -1), needs)
            parts = [(pool, n * p.slice_milli) for pool, (n, p) in enumerate(zip(needs, self.pools)) if n]
            if bucket not in self.bucket_footprint and parts:
                self.bucket_claims[bucket] = parts
                self.bucket_footprint[bucket] = min(milli for _, milli in parts)
            smallest = min((milli for pool, milli in parts if needs[pool] <= self.pools[pool].slices), default=None)
            found = self.shapes[shape] = needs, bucket, smallest
        return found

    def _enqueue(self, request: Request, arrival: float, now: float) -> Waiting:
        s = self.school_index[request.school]
        needs, bucket, _ = self._shape(request)
        self.seq += 1
        waiting = Waiting(request, arrival, self.seq, s, needs, bucket)
        self.waiting[request.id] = waiting
        if self.track_users:
            self.per_user[request.user] = self.per_user.get(request.user, 0) + 1
        self.queue.add(waiting, now)
        return waiting

    def release(self, session_id: str, now: float) -> list[Action]:
        """The workspace stopped (the student logged out, the job ended).

        At its instant the release comes first: what was due before ``now`` runs, then the
        session ends, then what is due at ``now`` (a reclaim stop or lease end of this
        session at that very instant is not one any more: it ended by itself, and a lease
        of another session ending then is decided with these slices free)."""
        out: list[Action] = []
        self._run_timers(now, out, before=True)
        session = self.sessions.get(session_id)
        if session is not None:
            self._end(session, now, out)
        self._run_timers(now, out)
        if session is not None:
            self._schedule(now, out)
        return out

    def cancel(self, request_id: str, now: float) -> list[Action]:
        """A queued request is withdrawn (the student gave up or closed the page). Like a
        release, it comes first at its instant: a lease ending at ``now`` does not admit
        the request that is leaving at ``now``."""
        out: list[Action] = []
        self._run_timers(now, out, before=True)
        waiting = self.waiting.pop(request_id, None)
        if waiting is not None:
            self.queue.remove(waiting, now)
            if self.track_users:
                self._user_done(waiting.request.user)
        self._run_timers(now, out)
        if waiting is not None:
            self._schedule(now, out)
        return out

    def touch(self, session_id: str, now: float) -> None:
        """The session was used at ``now`` (keystroke, kernel busy): it is not idle."""
        session = self.sessions.get(session_id)
        if session is not None:
            session.last_active = now
            self._idle_timer(session)
            if session.borrowed and session.stop_at is None:
                self._push_victim(session.pool_index, (now, session.seq, session.id))
                # Givers needs no call: its entry for the school becomes an earlier bound of
                # the school's longest idle, which its merge tolerates

    def advance(self, now: float) -> list[Action]:
        """Run everything due by ``now`` (stops, lease ends, reservation windows)."""
        out: list[Action] = []
        self._run_timers(now, out)
        self._schedule(now, out)
        return out

    def next_wake(self) -> float | None:
        """When :meth:`advance` must be called next (None: only on new events)."""
        timers = self.timers
        sessions = self.sessions
        while timers:
            t, kind, _, ref = timer = timers[0]
            if kind == _LEASE:  # _timer_valid's rule for the usual timer, inline
                session = sessions.get(ref)
                if session is not None and session.lease_end == t and (session.stop_at is None or session.stop_at > t):
                    return t
            elif self._timer_valid(timer):
                return t
            heapq.heappop(timers)
        return None

    def add_reservation(self, res: Reservation, now: float) -> list[Action]:
        """Book a class reservation (raises ReservationError if it cannot be honoured).

        Running leases that would run into the window are shortened to the moment the
        reserved slices are needed, latest-started first; nobody is stopped early. A
        window that is already open can only take slices that are free now."""
        out: list[Action] = []
        self._run_timers(now, out)
        self.book.check(res)
        pool = self.pool_index[res.pool]
        spec = self.pools[pool]
        if res.end <= now:
            raise ReservationError(f"reservation {res.id}: its window ended at {res.end:g} s; book a future window")
        opens = max(res.start, now)
        if res.start <= now:
            free = spec.slices - self.book.reserved_at(res.pool, now) - self.general[pool]
            if res.slices > free:
                raise ReservationError(
                    f"reservation {res.id}: starts now but only {max(free, 0)} of pool {spec.id}'s slices are "
                    f"free; start it later or reserve at most {max(free, 0)}"
                )
        self.book.add(res)
        for t in (res.start, res.end):
            if t > now:
                self._timer(t, _BOUNDARY, res.id)
        if res.release_at is not None and res.release_at < res.end:
            self._timer(max(res.release_at, now), _RELEASE, res.id)
        self.reserved_now = [self.book.reserved_at(p.id, now) for p in self.pools]
        # the reserved total only rises where a window opens: at each such moment inside this
        # window, running leases beyond the room left end there (latest-started first)
        points = sorted({*([res.start] if res.start > now else []),
                         *(r.start for r in self.book.by_pool[res.pool] if opens < r.start < res.end)})
        for t in points:
            crossing = sorted(
                (s for s in self.sessions.values()
                 if s.pool_index == pool and s.reservation is None and s.lease_end > t),
                key=lambda s: (-s.start, -s.seq),
            )
            over = sum(s.slices for s in crossing) - (spec.slices - self.book.reserved_at(res.pool, t))
            for session in crossing:
                if over <= 0:
                    break
                session.lease_end = t
                self._timer(t, _LEASE, session.id)
                out.append(Renew(session.id, t))
                over -= session.slices
        self._schedule(now, out)
        return out

    # -- views for the service, the simulator and the tests ------------------------------

    def free_slices(self, pool: int) -> int:
        return self.pools[pool].slices - self.general[pool] - self.reserved_now[pool]

    def _free_per_pool(self) -> list[int]:
        """:meth:`free_slices` of every pool at once (negative while a window takes slices
        still held by leases that run into it)."""
        return [p.slices - g - r for p, g, r in zip(self.pools, self.general, self.reserved_now)]

    def priority(self, school_id: str, now: float) -> float:
        """Decayed usage (milli-GPU-seconds) over weight: lower is served first."""
        s = self.school_index[school_id]
        return self.ledger.decayed(s, now) / self.weight[s]

    # -- the scheduling loop -------------------------------------------------------------

    def _schedule(self, now: float, out: list[Action]) -> None:
        """Admit what fits (reservations first, then the general line), then reclaim."""
        self.now = now
        if self.book.by_id:
            self._admit_reserved(now, out)
        queue = self.queue
        heaps = queue.heaps
        pools, general, reserved = self.pools, self.general, self.reserved_now
        while queue.size:
            free = [p.slices - g - r for p, g, r in zip(pools, general, reserved)]  # _free_per_pool
            if max(free) <= 0:
                break  # every pool is full (the usual case under load)
            best = None
            for bucket, heap in heaps.items():  # (top() re-keys inside a heap; no bucket is added here)
                if not heap:
                    continue
                for n, room in zip(bucket[1], free):
                    if n and n <= room:
                        break
                else:
                    continue  # fits nowhere now
                top = queue.top(bucket, now)
                if top is not None and top[0][0] < 2 and (best is None or top[0] < best[0]):
                    best = top
            if best is None:
                break
            waiting = best[1]
            # best fit: the pool where the request holds the least (a MIG slice before a whole GPU)
            pool = min(
                (i for i, n in enumerate(waiting.needs) if n and n <= free[i]),
                key=lambda i: (waiting.needs[i] * self.pools[i].slice_milli, i),
            )
            self._admit(waiting, pool, None, now, out)
        if self.reclaim_on and queue.size:
            self._reclaim(free, now, out)  # free as of the loop's last round (nothing admitted since)
        if self.idle_on and queue.size:
            self._release_idle(now, out)

    def _release_idle(self, now: float, out: list[Action]) -> None:
        """Warn sessions unused beyond their school's idle limit, as many as the waiting
        requests need in each pool beyond what is free or on its way back (quota.fairshare.idle).
        Requests whose school is at its borrowing limit are not counted: a released GPU would
        not go to them."""
        held, limit, footprint = self.held, self.limit, self.bucket_footprint
        can_take = (w for w in self.waiting.values() if held[w.school_index] + footprint.get(w.bucket, 0) <= limit[w.school_index])
        demand = demand_per_pool(can_take, len(self.pools))
        free = self._free_per_pool()
        for pool, need in enumerate(demand):
            short = need - max(0, free[pool]) - self.pending[pool]
            if short <= 0:
                continue
            in_pool = (s for s in self.sessions.values() if s.pool_index == pool and s.reservation is None)
            for session in idle_to_release(in_pool, self.idle_limit, now, short):
                stop_at = now + self.config.warning_s
                session.stop_for = "idle"
                self._mark_warned(session, stop_at)
                out.append(Warn(session.id, stop_at, IDLE_WARNING))

    def _admit_reserved(self, now: float, out: list[Action]) -> None:
        for res in list(self.book.by_id.values()):
            if not res.active(now):
                continue
            pool = self.pool_index[res.pool]
            s = self.school_index.get(res.school)
            if s is None:
                continue
            for line in sorted(self.queue.lines_of(s), key=lambda line: line[0].seq):
                for waiting in list(line):
                    need = waiting.needs[pool]
                    if (need and res.admits(waiting.request.school, waiting.request.group)
                            and need <= self.book.room(res, now)):
                        self._admit(waiting, pool, res, now, out)

    def _admit(self, waiting: Waiting, pool: int, res: Reservation | None, now: float, out: list[Action]) -> None:
        request = waiting.request
        s = waiting.school_index
        spec = self.pools[pool]
        slices = waiting.needs[pool]
        milli = slices * spec.slice_milli
        del self.waiting[request.id]
        self.queue.remove(waiting, now, rekey_head=res is not None or not self.rekey)  # else touched below
        lease_end = now + (self.config.max_lease_s if request.lease_s is None else request.lease_s)
        borrowed = False
        if res is not None:
            lease_end = min(lease_end, res.end)
            self.book.held[res.id] += slices
        else:
            self.general[pool] += slices
            if self.held_guaranteed[s] + milli <= self.guarantee[s]:
                self.held_guaranteed[s] += milli
            else:
                borrowed = True
                if self.config.lent_lease_s is not None:
                    lease_end = min(lease_end, now + self.config.lent_lease_s)
            if self.book:
                lease_end = self.book.clip(spec.id, now, lease_end, self.general[pool])
            self.held[s] += milli
        self.seq += 1
        session = Session(
            request.id, request, s, pool, slices, milli, now, lease_end, borrowed,
            res.id if res else None, now, None, self.seq,
        )
        self.sessions[session.id] = session
        if borrowed:
            self.borrowed[s][session.id] = session
            if self.reclaim_on:
                self._push_victim(pool, (now, session.seq, session.id))
        if res is None and self.givers is not None:
            self.givers.changed(s)
        self.ledger.start(s, milli, now, self.config.entry_penalty_s)
        if self.track_budgets:
            self.budgets.start(f"school:{request.school}", session.id, now, milli)
            self.budgets.start(f"user:{request.user}", session.id, now, milli)
        if lease_end < INF:
            self._timer(lease_end, _LEASE, session.id)
        self._idle_timer(session)
        if res is None and self.rekey:
            self.queue.touch(s, now)
        out.append(Admit(request.id, session.id, spec.id, slices, lease_end, borrowed, res.id if res else None))

    def _end(self, session: Session, now: float, out: list[Action]) -> None:
        s = session.school_index
        pool = session.pool_index
        del self.sessions[session.id]
        if self.track_users:
            self._user_done(session.request.user)
        if session.stop_at is not None:
            self.pending[pool] -= session.slices
            self.leaving[s] -= session.milli
        if session.reservation is not None:
            self.book.held[session.reservation] -= session.slices
            if session.reservation in self.book.released:  # what it gave back is the pool's again
                self.reserved_now[pool] = self.book.reserved_at(self.pools[pool].id, now)
        else:
            self.general[pool] -= session.slices
            self.held[s] -= session.milli
            if session.borrowed:
                del self.borrowed[s][session.id]
            else:
                self.held_guaranteed[s] -= session.milli
                self._promote(s, out)
            if self.givers is not None:
                self.givers.changed(s)
            if self.rekey:
                self.queue.touch(s, now)
        self.ledger.stop(s, session.milli, now)
        if self.track_budgets:
            self.budgets.stop(f"school:{session.request.school}", session.id, now)
            self.budgets.stop(f"user:{session.request.user}", session.id, now)

    def _promote(self, s: int, out: list[Action]) -> None:
        """Borrowed sessions of school ``s`` that now fit within its guarantee stop being
        borrowed (and a pending reclaim stop of theirs is called off)."""
        room = self.guarantee[s] - self.held_guaranteed[s]
        for session in list(self.borrowed[s].values()):
            if session.milli <= room:
                room -= session.milli
                session.borrowed = False
                self.held_guaranteed[s] += session.milli
                del self.borrowed[s][session.id]
                if session.stop_at is not None and session.stop_for != "idle":  # idle stays idle
                    session.stop_at = None
                    self.pending[session.pool_index] -= session.slices
                    self.leaving[s] -= session.milli
                    out.append(Renew(session.id, session.lease_end, warning_withdrawn=True))

    def _user_done(self, user: str) -> None:
        left = self.per_user[user] - 1
        if left:
            self.per_user[user] = left
        else:
            del self.per_user[user]

    # -- reclaim bookkeeping (the searches are in quota.fairshare.reclaim) -------------------

    def _mark_warned(self, session: Session, stop_at: float) -> None:
        session.stop_at = stop_at
        self.pending[session.pool_index] += session.slices
        self.leaving[session.school_index] += session.milli
        if self.givers is not None:
            self.givers.changed(session.school_index)
        self._timer(stop_at, _STOP, session.id)

    # -- timers ------------------------------------------------------------------------------

    def _idle_timer(self, session: Session) -> None:
        limit = self.idle_limit[session.school_index] if self.idle_on else None
        if limit is not None and session.stop_at is None:
            self._timer(session.last_active + limit, _IDLE, session.id)

    def _timer(self, t: float, kind: int, ref: str) -> None:
        self.seq += 1
        heapq.heappush(self.timers, (t, kind, self.seq, ref))

    def _timer_valid(self, timer: tuple) -> bool:
        t, kind, _, ref = timer
        if kind == _BOUNDARY:
            return True
        if kind == _RELEASE:
            return ref in self.book.by_id and ref not in self.book.released
        session = self.sessions.get(ref)
        if session is None:
            return False
        if kind == _STOP:
            return session.stop_at == t
        if kind == _IDLE:
            return session.stop_at is None and session.last_active + self.idle_limit[session.school_index] == t
        return session.lease_end == t and (session.stop_at is None or session.stop_at > t)

    def _session_ends(self) -> Iterator[tuple[float, Session]]:
        """Running sessions by the time their lease ends or their reclaim stop falls,
        soonest first, each once (sessions whose lease never ends are left out). Read off
        the timer heap in order without changing it: a frontier of heap positions, each
        step taking the smallest and adding its two children, so a caller that stops early
        pays for what it read, not for sorting every session."""
        timers = self.timers
        sessions = self.sessions
        seen: set[str] = set()
        frontier = [(timers[0], 0)] if timers else []
        size = len(timers)
        while frontier:
            timer, i = heapq.heappop(frontier)
            for child in (2 * i + 1, 2 * i + 2):
                if child < size:
                    heapq.heappush(frontier, (timers[child], child))
            t, kind, _, ref = timer
            if kind == _BOUNDARY or kind == _IDLE or kind == _RELEASE or ref in seen or not self._timer_valid(timer):
                continue
            seen.add(ref)  # its first valid timer is the sooner of its lease end and its stop
            yield t, sessions[ref]

    def _run_timers(self, now: float, out: list[Action], before: bool = False) -> None:
        """Run the timers due by ``now`` (``before``: only those due before it), in order."""
        # every public call starts here, before any key is computed at ``now``
        ledger = self.ledger
        if now - ledger.epoch > ledger.rebase_after:
            factor = ledger.rebase(now)
            if not self.fifo:  # FIFO keys hold arrival numbers, not usage
                self.queue.rescale(factor)
        timers = self.timers
        sessions = self.sessions
        pop = heapq.heappop
        while timers and (timers[0][0] < now or (timers[0][0] == now and not before)):
            timer = pop(timers)
            t, kind, _, ref = timer
            if kind == _LEASE:  # the usual timer: _timer_valid's rule for it, inline
                session = sessions.get(ref)
                if session is not None and session.lease_end == t and (session.stop_at is None or session.stop_at > t):
                    self._lease_end(session, t, out)
                    self._schedule(t, out)
                continue
            if not self._timer_valid(timer):
                continue
            if kind == _BOUNDARY:
                self.reserved_now = [self.book.reserved_at(p.id, t) for p in self.pools]
                self._schedule(t, out)
            elif kind == _RELEASE:
                self.book.release(ref)
                self.reserved_now = [self.book.reserved_at(p.id, t) for p in self.pools]
                self._schedule(t, out)
            elif kind == _STOP:
                session = self.sessions[ref]
                self._end(session, t, out)
                if session.stop_for == "idle":
                    out.append(Stop(ref, "idle", IDLE_STOPPED))
                else:
                    out.append(Stop(ref, "reclaimed", "stopped to give the GPU share back to a school below its guarantee"))
                self._schedule(t, out)
            else:  # _IDLE
                self._schedule(t, out)

    def _better_claim_waits(self, session: Session, now: float) -> bool:
        """Would a waiting request with a better claim than this session's school use
        its slices if it ended now? For a lent lease, a waiting request that would borrow
        (class 1) must also claim no more per weight than this school holds now (what its
        school would hold once admitted): the rebalance's rule, so that lent capacity is not
        passed back and forth between borrowers at every lease end.

        Only the best head of each size is asked, and only as far as it could be better than
        this session (:meth:`WaitQueue.top_below`)."""
        queue = self.queue
        if not queue.size:
            return False
        pool = session.pool_index
        room = self.pools[pool].slices - self.general[pool] - self.reserved_now[pool] + session.slices  # free_slices + its own
        mine = None
        for bucket, heap in queue.heaps.items():
            if not heap:
                continue
            need = bucket[1][pool]
            if not need or need > room:
                continue
            if mine is None:
                mine = self._renew_key(session, now)
                m0, m1 = mine[0], mine[1]
                lent = session.borrowed and self.config.lent_lease_s is not None
            top = queue.top_below(bucket, now, m0, m1)
            if top is None or top[0][0] >= 2:
                continue
            if not lent or top[0][0] == 0:
                return True
            w = top[1].school_index
            s = session.school_index
            if (self.held[w] + need * self.pools[pool].slice_milli) / self.weight[w] <= self.held[s] / self.weight[s]:
                return True
        return False

    def _renewal_refusal(self, session: Session, now: float) -> tuple[str, str] | None:
        """Why the session's lease may not be renewed at ``now``: (stop reason, phrase), or
        None. The one rule for renewals, at a lease's end and asked for before it."""
        pool = session.pool_index
        spec = self.pools[pool]
        if session.reservation is not None:
            if now >= self.book.by_id[session.reservation].end:
                return "lease_expired", "the class reservation ended"
        elif self.book and self.general[pool] > spec.slices - self.book.reserved_at(spec.id, now):
            return "lease_expired", "a class reservation starts now on this pool"  # (never without a reservation)
        if self.track_budgets:
            school = self.schools[session.school_index]
            for key, budget in ((f"school:{school.id}", school.budget_gpu_hours),
                                (f"user:{session.request.user}", school.student_budget_gpu_hours)):
                if budget is not None and self.budgets.used_gpu_hours(key, now) >= budget:
                    return "budget_exhausted", "the GPU-hour budget is used up"
        if session.reservation is None and self._better_claim_waits(session, now):
            return "lease_expired", "someone with a better claim is waiting"
        return None

    def _renewed_end(self, session: Session, now: float) -> float:
        request = session.request
        lease_end = now + (self.config.max_lease_s if request.lease_s is None else request.lease_s)
        if session.borrowed and self.config.lent_lease_s is not None:
            lease_end = min(lease_end, now + self.config.lent_lease_s)
        if session.reservation is not None:
            return min(lease_end, self.book.by_id[session.reservation].end)
        if self.book:
            spec = self.pools[session.pool_index]
            return self.book.clip(spec.id, now, lease_end, self.general[session.pool_index])
        return lease_end

    def _lease_end(self, session: Session, now: float, out: list[Action]) -> None:
        """Renew the lease unless a request with a better claim could use the slices, a
        budget is used up, or a reservation needs them."""
        refusal = self._renewal_refusal(session, now)
        if refusal is not None:
            code, reason = refusal
            self._end(session, now, out)
            if code == "budget_exhausted":
                message = reason
            elif session.borrowed and self.config.lent_lease_s is not None:
                message = f"the borrowed GPU share went back at the time given when it was lent: {reason}"
            else:
                message = f"the lease ended and was not renewed: {reason}"
            out.append(Stop(session.id, code, message))
            return
        lease_end = self._renewed_end(session, now)
        session.lease_end = lease_end
        if lease_end < INF:
            self._timer(lease_end, _LEASE, session.id)
        out.append(Renew(session.id, lease_end))

    def renew(self, session_id: str, now: float) -> tuple[Renew | Refuse, list[Action]]:
        """Renew a running lease before its end, by the rule of :meth:`_lease_end`: the new
        end is a full lease length from ``now`` (never earlier than the current end). A
        refusal changes nothing: the lease runs to its end, where the rule is asked again.
        A session being reclaimed is not renewed."""
        out: list[Action] = []
        self._run_timers(now, out)
        session = self.sessions.get(session_id)
        if session is None:
            return Refuse(session_id, "the lease is not running", None, "not_running"), out
        if session.stop_at is not None:
            reason = IDLE_WARNING if session.stop_for == "idle" else "its GPU share goes back to a school below its guarantee"
            return Refuse(session_id, reason, session.stop_at, "being_reclaimed"), out
        refusal = self._renewal_refusal(session, now)
        if refusal is not None:
            return Refuse(session_id, refusal[1], session.lease_end, refusal[0]), out
        lease_end = self._renewed_end(session, now)
        if lease_end > session.lease_end:
            session.lease_end = lease_end
            if lease_end < INF:
                self._timer(lease_end, _LEASE, session.id)
        return Renew(session_id, session.lease_end), out

    # -- rebuilding state (the quota service keeps its state in a database) ---------------

    def resume(self, request: Request, pool_id: str, start: float, lease_end: float,
               stop_at: float | None = None, reservation: str | None = None) -> None:
        """Put back a session admitted at ``start`` that is still running.

        The quota service keeps leases in its database and rebuilds an allocator from
        them for each decision; it calls this for every running lease, oldest first, then
        :meth:`seed_usage`, then :meth:`wait_again` for the queued ones. Whether the session
        is borrowed is worked out again; ``stop_at`` restores a reclaim warning already
        given (kept only while the session still is borrowed)."""
        pool = self.pool_index[pool_id]
        waiting = self._enqueue(replace(request, pool=pool_id), start, start)  # pinned to the pool it runs on
        res = self.book.by_id.get(reservation) if reservation is not None else None
        self._admit(waiting, pool, res, start, [])
        session = self.sessions[request.id]
        if lease_end != session.lease_end:
            session.lease_end = lease_end
            if lease_end < INF:
                self._timer(lease_end, _LEASE, session.id)
        if stop_at is not None and session.borrowed:
            self._mark_warned(session, stop_at)

    def seed_usage(self, school_id: str, decayed_milli_s: float, now: float) -> None:
        """Add usage of sessions that ended before the allocator was built, already decayed
        to ``now`` (milli-GPU-seconds); see :func:`quota.fairshare.priority.decayed_interval`."""
        s = self.school_index[school_id]
        self.ledger.base[s] += decayed_milli_s * self.ledger.scale(now)
        if self.rekey:
            self.queue.touch(s, now)

    def seed_budget(self, school_id: str, user: str, start: float, end: float, milli: int) -> None:
        """Count a session that ended before the allocator was built against the school's
        and the student's GPU-hour budgets; call in the order the sessions ended."""
        if end <= start or not self.track_budgets:
            return
        for key in (f"school:{school_id}", f"user:{user}"):
            self.budgets.closed.setdefault(key, deque()).append((start, end, milli))
