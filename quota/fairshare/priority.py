"""Fair-share priority: each school's GPU usage, decayed with a half-life, over its weight.

A school's decayed usage at time ``t`` is

    U(t) = sum over past and running sessions of  milli * integral 2^-((t - u) / h) du
         + entry penalties, each decayed the same way from the moment it was charged.

Lower is better: the queue serves the school with the smallest ``U / weight`` first.

To keep every update O(1) the ledger stores usage *scaled* by ``2^((t - epoch) / h)``:
in that frame nothing decays, a running session adds ``milli * h/ln2 * 2^((t-epoch)/h)``
(a closed form) and comparing two schools at the same ``t`` gives the same answer as
comparing their decayed usage. A scaled value never decreases with time, which is what
lets the queue keep stale heap keys as lower bounds (see :mod:`quota.fairshare.queue`).
The epoch is moved forward every ``REBASE_HALF_LIVES`` half-lives so nothing overflows.
"""

from __future__ import annotations

import math

REBASE_HALF_LIVES = 32.0


class UsageLedger:
    """Decayed usage of every school, indexed by school position."""

    __slots__ = ("half_life", "c", "epoch", "base", "rate", "last_scale_t", "last_scale", "rebase_after")

    def __init__(self, schools: int, half_life_s: float, epoch: float = 0.0) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be > 0")
        self.half_life = half_life_s
        self.rebase_after = REBASE_HALF_LIVES * half_life_s  # callers rebase once t - epoch exceeds this
        self.c = half_life_s / math.log(2.0)
        self.epoch = epoch
        self.base = [0.0] * schools  # scaled closed usage minus running sessions' offsets
        self.rate = [0] * schools  # milli held now by running sessions
        self.last_scale_t = math.nan  # scale(t) remembered for the last t asked
        self.last_scale = 1.0

    def scale(self, t: float) -> float:
        if t != self.last_scale_t:
            self.last_scale_t = t
            self.last_scale = 2.0 ** ((t - self.epoch) / self.half_life)
        return self.last_scale

    def rebase(self, t: float) -> float:
        """Move the epoch to ``t``; returns the factor every stored scaled value
        (including heap keys kept elsewhere) must be multiplied by."""
        # 2^-(Δ/h) rather than 1/2^(Δ/h): after a long idle spell (weeks of holidays)
        # the forward scale would overflow, the inverse merely underflows to 0
        factor = 2.0 ** (-(t - self.epoch) / self.half_life)
        self.base[:] = [b * factor for b in self.base]  # in place: the allocator's key function holds the list
        self.epoch = t
        self.last_scale_t = math.nan
        return factor

    def start(self, school: int, milli: int, t: float, penalty_s: float = 0.0) -> None:
        x = self.scale(t)
        self.rate[school] += milli
        self.base[school] += milli * (penalty_s - self.c) * x

    def stop(self, school: int, milli: int, t: float) -> None:
        x = self.scale(t)
        self.rate[school] -= milli
        self.base[school] += milli * self.c * x

    def scaled(self, school: int, t: float) -> float:
        """Usage in the scaled frame (only for comparisons at the same ``t``)."""
        return self.base[school] + self.rate[school] * self.c * self.scale(t)

    def decayed(self, school: int, t: float) -> float:
        """Decayed usage in milli-GPU-seconds, for people to read."""
        return self.scaled(school, t) / self.scale(t)


def decayed_interval(milli: float, start: float, end: float, now: float, half_life_s: float) -> float:
    """Usage of ``milli`` held from ``start`` to ``end`` (<= ``now``), decayed to ``now``:
    ``milli * integral over [start, end] of 2^-((now - u) / h) du``."""
    c = half_life_s / math.log(2.0)
    return milli * c * (2.0 ** (-(now - end) / half_life_s) - 2.0 ** (-(now - start) / half_life_s))
