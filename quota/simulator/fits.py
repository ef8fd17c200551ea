"""What one trace line may ask of an alliance's pools, so a line asking more fails before anything runs.

A line naming a profile gets one unit of the profile's kind (the quota service's rule,
:func:`quota.allocator_inputs.request_shapes`): its ``gpu_milli`` may not be more than that
unit, or the simulation would count a share the student could never get. A line without a
profile takes ``ceil(gpu_milli / slice_milli)`` slices of one allocator pool: it may not be
more than the largest pool holds. :func:`quota.simulator.trace.read_trace` checks every line
against :func:`request_limits` and names the line, the column and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from quota.alliance import Alliance
from quota.allocator_inputs import pool_specs, request_shapes

_KIND_WORDS = {"whole": "a whole GPU", "slice": "one MIG slice", "shared": "one student's share of a shared GPU"}


@dataclass(frozen=True)
class Limit:
    milli: int
    what: str  # why it is too much, in words, for the message
    fix: str


def request_limits(alliance: Alliance) -> dict[str | None, Limit]:
    """The most ``gpu_milli`` a line may ask, by profile id (None: a line without a profile)."""
    pools = pool_specs(alliance)
    limits: dict[str | None, Limit] = {}
    if pools:
        largest = max(pools, key=lambda p: p.capacity_milli)
        limits[None] = Limit(largest.capacity_milli,
                             f"more than any pool holds (the largest, {largest.id}: {largest.slices} slice(s) of "
                             f"{largest.slice_milli} milli = {largest.capacity_milli})",
                             "write a smaller gpu_milli, split the request, or add GPUs to a pool")
    for profile_id, shape in request_shapes(alliance, pools).items():
        limits[profile_id] = Limit(shape.milli,
                                   f"but profile {profile_id!r} gets one unit: {_KIND_WORDS.get(shape.kind, shape.kind)}, "
                                   f"{shape.milli} milli",
                                   f"write gpu_milli of at most {shape.milli}, or name a profile of a larger unit")
    return limits


def problem(limits: dict[str | None, Limit], milli: int, profile: str | None) -> str | None:
    """What is wrong with a line asking ``milli`` for ``profile``, or None."""
    limit = limits.get(profile)
    if limit is None or milli <= limit.milli:
        return None
    return f"gpu_milli is {milli}, {limit.what}; {limit.fix}"
