"""GPU-hour budgets over a rolling window, per school and per student.

Usage in the window ``[now - period, now]`` counts every closed session's overlap with
the window and every running session from its start (or the window's start) to now.
:meth:`RollingBudget.retry_at` says when enough old usage will have left the window for
the key to be under its budget again, assuming the running sessions keep running: an
estimate the refusal message can give the student.
"""

from __future__ import annotations

import math
from collections import deque


class RollingBudget:
    __slots__ = ("period", "closed", "running")

    def __init__(self, period_s: float) -> None:
        self.period = period_s
        self.closed: dict[str, deque[tuple[float, float, int]]] = {}  # key -> (start, end, milli)
        self.running: dict[str, dict[str, tuple[float, int]]] = {}  # key -> session -> (start, milli)

    def start(self, key: str, session: str, t: float, milli: int) -> None:
        self.running.setdefault(key, {})[session] = (t, milli)

    def stop(self, key: str, session: str, t: float) -> None:
        running = self.running.get(key)
        if not running or session not in running:
            return
        start, milli = running.pop(session)
        if not running:
            del self.running[key]
        if t > start:
            self.closed.setdefault(key, deque()).append((start, t, milli))

    def used_gpu_hours(self, key: str, now: float) -> float:
        return self._used(key, now, prune=True) / 1000.0 / 3600.0

    def _used(self, key: str, at: float, prune: bool = False) -> float:
        low = at - self.period
        total = 0.0
        closed = self.closed.get(key)
        if closed:
            if prune:
                while closed and closed[0][1] <= low:
                    closed.popleft()
            for start, end, milli in closed:
                if end > low:
                    total += milli * (min(end, at) - max(start, low))
        for start, milli in self.running.get(key, {}).values():
            total += milli * (at - max(start, low))
        return total

    def retry_at(self, key: str, now: float, budget_gpu_hours: float) -> float | None:
        """The first whole second after ``now`` at which the key is under its budget again,
        if its running sessions keep running; None if that never happens.

        Usage in the window is piecewise linear in time, with corners where a session's
        start or end leaves the window, so it is evaluated at those corners and the
        crossing is interpolated inside the segment where it falls below the budget."""
        limit = budget_gpu_hours * 3600.0 * 1000.0
        corners = {start + self.period for start, _, _ in self.closed.get(key, ())}
        corners |= {end + self.period for _, end, _ in self.closed.get(key, ())}
        corners |= {start + self.period for start, _ in self.running.get(key, {}).values()}
        points = [now, *sorted(t for t in corners if t > now)]
        before = self._used(key, now)
        if before < limit:
            return float(math.floor(now) + 1)
        for a, b in zip(points, points[1:]):
            after = self._used(key, b)
            if after < limit:
                crossing = a + (before - limit) / (before - after) * (b - a)
                return float(math.floor(crossing) + 1)
            before = after
        return None
