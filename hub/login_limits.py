"""How many failed logins an account, and an address, may have before the hub stops checking.

A sliding window: at most ``per_account`` failed logins for one account name (known or not:
the answer must not tell which names exist) and ``per_address`` from one address within
``window_s`` seconds; one more is refused without looking at the password, with the time
until the oldest counted failure leaves the window. An attempt counts as failed from the
moment it begins until it succeeds, so a flood sent all at once is cut off as surely as one
sent a request at a time. Plain data and a clock passed in: no I/O here (hub/auth.py uses it).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass

from gpu_commons_i18n import Message, _, _n


@dataclass(frozen=True)
class Attempt:
    account: str
    address: str
    at: float
    number: int


@dataclass(frozen=True)
class Refusal:
    retry_after_s: float
    limit: str  # "account" or "address"

    def message(self, per_account: int, per_address: int, window_s: float) -> Message:
        """What the login page says (in its language: a catalogue message): the reason and
        when to try again."""
        wait = _duration(self.retry_after_s)
        window = _duration(window_s)
        if self.limit == "account":
            why = _("Too many failed logins for this account (at most {limit} in {window}).",
                    limit=per_account, window=window)
        else:
            why = _("Too many failed logins from your network address (at most {limit} in {window}).",
                    limit=per_address, window=window)
        return _("{why} Try again in {wait}. If you forgot your password, ask your teacher to set a new one; "
                 "waiting does not reset it.", why=why, wait=wait)


class LoginLimiter:
    PRUNE_EVERY = 1000  # attempts between two sweeps of names and addresses with nothing left in the window

    def __init__(self, per_account: int = 10, per_address: int = 50, window_s: float = 300.0):
        if window_s <= 0:
            raise ValueError("window_s: give the window in seconds, more than 0 (e.g. 300)")
        self.per_account = per_account  # 0: no limit
        self.per_address = per_address
        self.window_s = window_s
        self._failures: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._numbers = itertools.count()

    def refusal(self, account: str, address: str, now: float) -> Refusal | None:
        """Whether a login for ``account`` from ``address`` is refused now, and for how long."""
        waits = [
            (self._wait(("account", account), self.per_account, now), "account"),
            (self._wait(("address", address), self.per_address, now), "address"),
        ]
        wait, limit = max(waits)
        return Refusal(wait, limit) if wait > 0 else None

    def begin(self, account: str, address: str, now: float) -> Attempt:
        """An attempt that counts as a failure until :meth:`succeeded`."""
        attempt = Attempt(account, address, now, next(self._numbers))
        for key in (("account", account), ("address", address)):
            self._failures.setdefault(key, deque()).append((now, attempt.number))
        if attempt.number % self.PRUNE_EVERY == 0:
            self._prune(now)
        return attempt

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: this attempt no longer counts."""
        for key in (("account", attempt.account), ("address", attempt.address)):
            entries = self._failures.get(key)
            if entries is not None:
                try:
                    entries.remove((attempt.at, attempt.number))
                except ValueError:
                    pass  # already out of the window
                if not entries:
                    del self._failures[key]

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> float:
        entries = self._failures.get(key)
        if not limit or not entries:
            return 0.0
        while entries and entries[0][0] <= now - self.window_s:
            entries.popleft()
        if len(entries) < limit:
            return 0.0
        # allowed again once all but limit - 1 of the counted failures have left the window
        return entries[len(entries) - limit][0] + self.window_s - now

    def _prune(self, now: float) -> None:
        cutoff = now - self.window_s
        for key in [key for key, entries in self._failures.items() if not entries or entries[-1][0] <= cutoff]:
            del self._failures[key]

    def __len__(self) -> int:
        """Names and addresses with failures kept (for tests: the memory stays bounded)."""
        return len(self._failures)


def _duration(seconds: float) -> Message:
    seconds = max(1, math.ceil(seconds))
    if seconds < 120:
        return _n("{n} second", "{n} seconds", seconds)
    minutes, rest = divmod(seconds, 60)
    if not rest:
        return _n("{n} minute", "{n} minutes", minutes)
    return _("{minutes} {seconds}", minutes=_n("{n} minute", "{n} minutes", minutes),
             seconds=_n("{n} second", "{n} seconds", rest))
