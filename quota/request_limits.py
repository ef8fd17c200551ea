"""What one student may ask of the quota service before the allocator is asked: how many
lease requests a minute (refused ones too) and how many CPU leases at once.

The allocator decides who gets a GPU; these limits keep one student (or a script with
their token) from flooding the service and its journal: each request the allocator
decides writes a row. Limits are per student, counted in this process (a standby that
takes over starts counting afresh). Settings: ``lease_requests_per_minute`` and
``max_cpu_leases_per_student`` (quota/settings.py).
"""

from __future__ import annotations

import threading
from collections import deque

WINDOW_S = 60.0


class RequestRate:
    """A sliding minute per student: at most ``per_minute`` requests in any 60 seconds
    (0 = no limit). Only requests the allocator decided are recorded, so a retry of a
    request answered 503 (nothing decided) does not count."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, student: str, now: float) -> float:
        """Seconds until ``student`` may ask again; 0 when they may ask now."""
        if self.per_minute <= 0:
            return 0.0
        with self._lock:
            seen = self._forget_old(student, now)
            if len(seen) < self.per_minute:
                return 0.0
            return max(seen[0] + WINDOW_S - now, 0.001)

    def record(self, student: str, now: float) -> None:
        if self.per_minute <= 0:
            return
        with self._lock:
            self._seen.setdefault(student, deque()).append(now)
            if len(self._seen) > 10_000:  # students who stopped asking
                for name in [name for name, times in self._seen.items() if times[-1] <= now - WINDOW_S]:
                    del self._seen[name]

    def _forget_old(self, student: str, now: float) -> deque[float]:
        seen = self._seen.get(student)
        if seen is None:
            return deque()
        while seen and seen[0] <= now - WINDOW_S:
            seen.popleft()
        if not seen:
            del self._seen[student]
        return seen
