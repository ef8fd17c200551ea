"""Guaranteed shares and borrowing limits, derived from weights unless staff set them."""

from __future__ import annotations

import math

from quota.fairshare.model import Config, PoolSpec, SchoolSpec


class ShareError(ValueError):
    """Shares that do not add up; the message names the schools and the fix."""


def guarantees_milli(schools: list[SchoolSpec], pools: list[PoolSpec], config: Config) -> list[float]:
    """Each school's guaranteed milli-GPU out of the alliance's whole capacity.

    Schools with ``guaranteed_share`` get that fraction; the rest of the capacity is split
    among the others in proportion to their weights. With ``whole_slice_guarantees`` the
    guarantees are apportioned in whole slices (largest remainder), as a static partition
    has to be.
    """
    total = sum(p.capacity_milli for p in pools)
    explicit = sum(s.guaranteed_share for s in schools if s.guaranteed_share is not None)
    if explicit > 1.0 + 1e-9:
        named = [s.id for s in schools if s.guaranteed_share is not None]
        raise ShareError(
            f"the guaranteed_share of schools {named[:5]}{'…' if len(named) > 5 else ''} add up to "
            f"{explicit:.3f}, more than the whole alliance (1.0); lower them"
        )
    free_weight = sum(s.weight for s in schools if s.guaranteed_share is None)
    left = max(0.0, 1.0 - explicit)
    shares = [
        s.guaranteed_share if s.guaranteed_share is not None else (left * s.weight / free_weight if free_weight else 0.0)
        for s in schools
    ]
    if not config.whole_slice_guarantees or not pools:
        return [share * total for share in shares]
    quantum = max(p.slice_milli for p in pools)
    units = sum(p.capacity_milli for p in pools) // quantum
    exact = [share * units for share in shares]
    whole = [math.floor(x + 1e-9) for x in exact]
    spare = units - sum(whole)
    order = sorted(range(len(schools)), key=lambda i: (-(exact[i] - whole[i]), i))
    for i in order[: max(0, spare)]:
        if exact[i] > whole[i]:
            whole[i] += 1
    return [w * quantum for w in whole]


def limits_milli(schools: list[SchoolSpec], guarantees: list[float], config: Config) -> list[float]:
    """The most a school may hold in general capacity: guarantee plus borrowing limit."""
    limits = []
    for school, guarantee in zip(schools, guarantees):
        if not config.borrowing:
            limits.append(guarantee)
        elif school.borrowing_limit_milli is None:
            limits.append(math.inf)
        else:
            limits.append(guarantee + school.borrowing_limit_milli)
    return limits
