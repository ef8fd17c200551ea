"""The allocation decision of the quota service: plain data in, a decision out.

No database, no clock, no I/O: the service (quota.leases) hands in what is free and who
waits, and stores what comes back. This is the first-come-first-served policy of the
walking skeleton; the fair-share policy (quota.fairshare) grows from the same shape.

Rules:
- a CPU request (``kind=None``) is always granted, with no unit;
- a GPU request for a kind no pool has is refused: waiting would never end;
- a student at the cap of GPU leases (granted or queued) is refused;
- otherwise the first free unit of the kind is granted, unless someone asked for that
  kind earlier and still waits: then the request joins the queue behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

Outcome = Literal["granted", "queued", "refused"]

NO_SUCH_KIND = "No GPU of this kind exists in the alliance; choose another profile."


@dataclass(frozen=True)
class Unit:
    """A leasable GPU unit: a whole GPU or one slice."""

    id: str
    pool: str
    kind: str  # "whole" or "slice"


@dataclass(frozen=True)
class Request:
    """A lease request; ``kind`` is None for a CPU-only workspace."""

    lease_id: str
    user: str
    kind: str | None


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    unit: Unit | None = None
    queue_position: int | None = None
    reason: str | None = None


def decide(
    request: Request,
    units: Sequence[Unit],
    held: frozenset[str] | set[str],
    waiting: Sequence[Request],
    active_gpu_leases_of_user: int,
    max_gpu_leases_per_user: int,
) -> Decision:
    """Decide one new request.

    ``units``: every unit of the alliance; ``held``: ids of units granted to someone;
    ``waiting``: queued requests, oldest first; ``active_gpu_leases_of_user``: the
    student's granted or queued GPU leases, not counting this request.
    """
    if request.kind is None:
        return Decision("granted")
    if not any(unit.kind == request.kind for unit in units):
        return Decision("refused", reason=NO_SUCH_KIND)
    if active_gpu_leases_of_user >= max_gpu_leases_per_user:
        return Decision(
            "refused",
            reason=(
                f"You already have {active_gpu_leases_of_user} GPU workspace(s) running or waiting, "
                f"the most one student may have. Stop one before starting another."
            ),
        )
    ahead = sum(1 for other in waiting if other.kind == request.kind)
    if ahead == 0:
        unit = first_free(request.kind, units, held)
        if unit is not None:
            return Decision("granted", unit=unit)
    return Decision("queued", queue_position=ahead + 1)


def first_free(kind: str, units: Sequence[Unit], held: frozenset[str] | set[str]) -> Unit | None:
    for unit in units:
        if unit.kind == kind and unit.id not in held:
            return unit
    return None


def promote(
    waiting: Sequence[Request], units: Sequence[Unit], held: frozenset[str] | set[str]
) -> list[tuple[Request, Unit]]:
    """Grants for queued requests, oldest first, while units of their kind are free.

    A request whose kind has nothing free does not block requests of another kind.
    """
    taken = set(held)
    grants: list[tuple[Request, Unit]] = []
    for request in waiting:
        if request.kind is None:
            continue
        unit = first_free(request.kind, units, taken)
        if unit is not None:
            taken.add(unit.id)
            grants.append((request, unit))
    return grants


def queue_positions(waiting: Sequence[Request]) -> dict[str, int]:
    """Position of each queued lease among those waiting for the same kind (1 = next)."""
    seen: dict[str | None, int] = {}
    positions: dict[str, int] = {}
    for request in waiting:
        seen[request.kind] = seen.get(request.kind, 0) + 1
        positions[request.lease_id] = seen[request.kind]
    return positions
