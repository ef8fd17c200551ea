"""Idle release: a GPU nobody uses goes to someone who waits.

A student who leaves a notebook open holds its GPU while others queue. A school's tier may set
``idle_release_s`` (:class:`~quota.fairshare.model.SchoolSpec`): a session unused for that long
(its ``last_active``, which the service moves on with the hub's activity and the GPU's
utilisation, :meth:`~quota.fairshare.policy.Allocator.touch`) while a request waits that its
slices would serve is warned, ``Config.warning_s`` ahead, and then stopped with the reason
``idle``. Sessions of every school and class are subject to it, within their guarantee or not:
the point is the idle GPU, not who holds it. Nobody waiting, nothing is released.

Only as many are warned as the waiting requests need, longest idle first, counting what is
already free or on its way back. This module decides over plain inputs; the allocator calls it
from its scheduling pass (only when some school has the rule) and warns through its own
bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterable

from quota.fairshare.model import Session, Waiting


def demand_per_pool(waiting: Iterable[Waiting], pools: int) -> list[int]:
    """Slices the waiting requests need, each counted once, in the first pool it can use
    (a request for any pool of a kind counts where it would land first)."""
    demand = [0] * pools
    for request in waiting:
        for pool, need in enumerate(request.needs):
            if need:
                demand[pool] += need
                break
    return demand


def idle_to_release(sessions: Iterable[Session], idle_limit: list[float | None], now: float,
                    short: int) -> list[Session]:
    """Of ``sessions`` (one pool's), those unused beyond their school's ``idle_limit`` and not
    warned yet, longest idle first, until ``short`` slices are found (fewer if there are none)."""
    idle = [
        session for session in sessions
        if session.stop_at is None and idle_limit[session.school_index] is not None
        and now - session.last_active >= idle_limit[session.school_index]
    ]
    idle.sort(key=lambda session: (session.last_active, session.seq))
    chosen, got = [], 0
    for session in idle:
        if got >= short:
            break
        chosen.append(session)
        got += session.slices
    return chosen
