"""What the allocator tells a student besides an admission: why a request is refused, and
where a queued one stands.

A mixin of :class:`~quota.fairshare.policy.Allocator`, as :mod:`quota.fairshare.reclaim` is:
it reads the allocator's state (``school_index``, ``schools``, ``pools``, ``pool_index``,
``limit``, ``book``, ``waiting``, ``sessions``, ``per_user``, ``budgets``, ``track_budgets``,
``config``, ``queue``, ``bucket_footprint``) through its ``_shape``, ``_key``,
``free_slices`` and ``_session_ends`` and changes nothing.

* :meth:`Answering._refusal`: the checks a request must pass before it may wait at all,
  each with the reason a student reads, the fix, and when retrying can help.
* :meth:`Answering.explain`: a queued request's place in the line and an honest wait
  estimate; :meth:`Answering.places`: the same for every queued request at once, in
  O(n log n) rather than n times O(n).
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate

from quota.fairshare.model import INF, Queue, Refuse, Request


class Answering:
    """Refusals and queue places of :class:`~quota.fairshare.policy.Allocator`."""

    def _refusal(self, request: Request, now: float) -> Refuse | None:
        rid = request.id
        if request.school not in self.school_index:
            return Refuse(rid, f"school {request.school!r} is not in the alliance; ask staff to add it", None, "unknown_school")
        if request.id in self.waiting or request.id in self.sessions:
            return Refuse(rid, f"request {rid!r} is already queued or running", None, "duplicate")
        if request.milli <= 0:
            return Refuse(rid, "a request must ask for a positive GPU share", None, "bad_request")
        if request.pool is not None and request.pool not in self.pool_index:
            return Refuse(rid, f"pool {request.pool!r} does not exist; choose one of {sorted(self.pool_index)}", None, "unknown_pool")
        if request.kind is not None and not any(p.kind == request.kind for p in self.pools):
            return Refuse(rid, f"no pool has GPU shares of the kind {request.kind!r}; choose another profile", None, "unknown_kind")
        smallest = self._shape(request)[2]
        if smallest is None:
            return Refuse(rid, f"{request.milli / 1000:g} GPU is more than any pool has; ask for a smaller share", None, "too_large")
        s = self.school_index[request.school]
        school = self.schools[s]
        if smallest > self.limit[s] and not any(r.admits(request.school, request.group) for r in self.book.by_id.values()):
            return Refuse(
                rid, f"your school may hold at most {self.limit[s] / 1000:.3g} GPU at once and this asks for "
                f"{smallest / 1000:.3g}; ask for a smaller share or ask staff to raise the school's share", None, "over_limit")
        cap = school.max_sessions_per_student
        if cap is not None and self.per_user.get(request.user, 0) >= cap:
            mine = [x.lease_end for x in self.sessions.values() if x.request.user == request.user]
            return Refuse(
                rid, f"you already have {cap} workspace(s) running or waiting, the most your school allows; "
                "stop one and try again", min(mine) if mine else None, "concurrency_cap")
        if self.track_budgets:
            for key, budget, whose in (
                (f"school:{school.id}", school.budget_gpu_hours, "your school's"),
                (f"user:{request.user}", school.student_budget_gpu_hours, "your"),
            ):
                if budget is not None:
                    used = self.budgets.used_gpu_hours(key, now)
                    if used >= budget:
                        days = self.config.budget_period_s / 86400
                        return Refuse(
                            rid, f"{whose} GPU budget is used up ({used:.3g} of {budget:g} GPU-hours in the last "
                            f"{days:g} days); try again later or ask your teacher",
                            self.budgets.retry_at(key, now, budget), "budget_exhausted")
        return None

    def explain(self, request_id: str, now: float) -> Queue:
        """Place in the line and a wait estimate for a queued request.

        The estimate walks the running leases by their end (or announced stop) and
        returns when the slices they free cover this request and every request ahead of
        it. Sessions often end before their lease does, so it is an upper bound unless a
        request with a better claim arrives later."""
        waiting = self.waiting[request_id]
        mine = self._key(waiting.school_index, waiting.bucket, waiting, now)
        mine = (mine[0], mine[1], waiting.seq)
        ahead = 0
        ahead_milli = 0
        for school, bucket, line in self.queue.all_lines():
            if not any(a and b for a, b in zip(bucket[1], waiting.needs)):
                continue  # waits for other pools (another kind of GPU): not ahead in this line
            key = self._key(school, bucket, line[0], now)
            for other in line:
                if other is waiting:
                    break
                if school == waiting.school_index or (key[0], key[1], other.seq) < mine:
                    ahead += 1
                    ahead_milli += self.bucket_footprint[bucket]
        need = self.bucket_footprint[waiting.bucket] + ahead_milli
        free = sum(
            max(0, self.free_slices(i)) * p.slice_milli for i, p in enumerate(self.pools) if waiting.needs[i]
        )
        reason = "waiting for a free GPU share"
        if mine[0] == 2:
            reason = "your school is using all it may borrow; waiting for one of its sessions to end"
        estimate = INF
        for end, session in self._session_ends():
            if waiting.needs[session.pool_index] and session.reservation is None:
                free += session.milli
                if free >= need:
                    estimate = max(0.0, end - now)
                    break
        return Queue(request_id, ahead + 1, estimate, reason)

    def places(self, now: float) -> dict[str, Queue]:
        """:meth:`explain` of every waiting request, with the same answers, in one pass per
        set of pools that requests wait for (the service's kinds of GPU: one or two).

        Who is ahead of a request (see :meth:`explain`): every request of its own school
        in an overlapping line, but those behind it in its own line; and every request of
        another school whose (line key, arrival number) is smaller than its own. Sorting
        all those tuples once answers the second part by bisection for each request, with
        running sums of the slices they take; the wait estimate is one walk over the
        running sessions' ends, shared by every request of the same pools."""
        lines = list(self.queue.all_lines())
        footprint = self.bucket_footprint
        answers: dict[str, Queue] = {}
        patterns: dict[tuple, list] = {}
        for school, bucket, line in lines:
            pattern = tuple(bool(n) for n in bucket[1])
            patterns.setdefault(pattern, []).append((school, bucket, line))
        for pattern, mine in patterns.items():
            overlapping = [(school, bucket, line) for school, bucket, line in lines
                           if any(a and b for a, b in zip(bucket[1], pattern))]
            entries = []  # (class, usage key, arrival number, school, milli)
            school_count: dict[int, int] = {}
            school_milli: dict[int, int] = {}
            for school, bucket, line in overlapping:
                k = self._key(school, bucket, line[0], now)
                fp = footprint[bucket]
                for other in line:
                    entries.append((k[0], k[1], other.seq, school, fp))
                school_count[school] = school_count.get(school, 0) + len(line)
                school_milli[school] = school_milli.get(school, 0) + fp * len(line)
            entries.sort()
            keys = [e[:3] for e in entries]
            milli_before = [0, *accumulate(e[4] for e in entries)]
            by_school: dict[int, tuple[list, list]] = {}
            for e in entries:
                ks, ms = by_school.setdefault(e[3], ([], [0]))
                ks.append(e[:3])
                ms.append(ms[-1] + e[4])
            free = sum(max(0, self.free_slices(i)) * p.slice_milli for i, p in enumerate(self.pools) if pattern[i])
            ends = [(end, session.milli) for end, session in self._session_ends()
                    if pattern[session.pool_index] and session.reservation is None]
            freed = list(accumulate(milli for _, milli in ends))
            for school, bucket, line in mine:
                fp = footprint[bucket]
                for index, waiting in enumerate(line):
                    key = self._key(school, bucket, waiting, now)
                    me = (key[0], key[1], waiting.seq)
                    ks, ms = by_school[school]
                    at, at_own = bisect_left(keys, me), bisect_left(ks, me)
                    behind_in_line = len(line) - index
                    ahead = at - at_own + school_count[school] - behind_in_line
                    ahead_milli = milli_before[at] - ms[at_own] + school_milli[school] - fp * behind_in_line
                    need = fp + ahead_milli - free
                    estimate = INF
                    if need <= 0 and ends:
                        estimate = max(0.0, ends[0][0] - now)
                    elif ends:
                        reach = bisect_left(freed, need)
                        if reach < len(ends):
                            estimate = max(0.0, ends[reach][0] - now)
                    reason = "waiting for a free GPU share"
                    if me[0] == 2:
                        reason = "your school is using all it may borrow; waiting for one of its sessions to end"
                    answers[waiting.request.id] = Queue(waiting.request.id, ahead + 1, estimate, reason)
        return answers
