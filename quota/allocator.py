"""The allocation decision of the quota service: plain data in, a decision out.

No database, no clock, no I/O: the service (quota.leases) hands in what is free and who
waits, and stores what comes back. This is the first-come-first-served policy of the
walking skeleton; the fair-share policy (quota.fairshare) grows from the same shape.

Rules:
- a CPU request (``kind=None``) is always granted, with no unit;
- a GPU request for a kind no pool has is refused: waiting would never end;
- a student at the cap of GPU leases (granted or queued) is refused;
- a school or student whose GPU-hour budget for the period is spent is refused, with
  the time to retry;
- units a reservation holds for another school in its window are not granted;
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
    school: str = ""


@dataclass(frozen=True)
class Hold:
    """Units of a kind in a pool that a reservation, inside its window, still keeps for a
    school (reserved minus what the school already holds there)."""

    pool: str
    kind: str
    school: str
    units: int


@dataclass(frozen=True)
class BudgetSpent:
    """The school's or the student's GPU-hour budget for the period is used up."""

    whose: Literal["school", "student"]
    retry_after_s: float


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
    holds: Sequence[Hold] = (),
    budget_spent: BudgetSpent | None = None,
    known_kinds: frozenset[str] | set[str] | None = None,
) -> Decision:
    """Decide one new request.

    ``units``: every unit of the alliance open for new leases; ``held``: ids of units
    granted to someone; ``waiting``: queued requests, oldest first;
    ``active_gpu_leases_of_user``: the student's granted or queued GPU leases, not
    counting this request; ``holds``: reservations in their window; ``budget_spent``:
    set when the school's or student's budget is used up; ``known_kinds``: kinds any
    pool has, open or draining (default: those of ``units``).
    """
    if request.kind is None:
        return Decision("granted")
    if request.kind not in (known_kinds if known_kinds is not None else {unit.kind for unit in units}):
        return Decision("refused", reason=NO_SUCH_KIND)
    if active_gpu_leases_of_user >= max_gpu_leases_per_user:
        return Decision(
            "refused",
            reason=(
                f"You already have {active_gpu_leases_of_user} GPU workspace(s) running or waiting, "
                f"the most one student may have. Stop one before starting another."
            ),
        )
    if budget_spent is not None:
        hours = budget_spent.retry_after_s / 3600
        return Decision(
            "refused",
            reason=(
                f"{'Your school' if budget_spent.whose == 'school' else 'You'} used all GPU hours of this period. "
                f"Try again in {hours:.1f} hours, or choose the CPU-only profile now."
            ),
        )
    # Serve the queue first, then this request: it gets a unit only if one is left that
    # nobody earlier could take (e.g. a unit a reservation keeps for its school).
    for granted, unit in promote([*waiting, request], units, held, holds):
        if granted.lease_id == request.lease_id:
            return Decision("granted", unit=unit)
    ahead = sum(1 for other in waiting if other.kind == request.kind)
    return Decision("queued", queue_position=ahead + 1)


def first_free(
    kind: str, units: Sequence[Unit], held: frozenset[str] | set[str], withheld: dict[str, int] | None = None
) -> Unit | None:
    """The first free unit of ``kind``, leaving ``withheld[pool]`` free units in each pool."""
    free_by_pool: dict[str, list[Unit]] = {}
    for unit in units:
        if unit.kind == kind and unit.id not in held:
            free_by_pool.setdefault(unit.pool, []).append(unit)
    for pool, free in free_by_pool.items():
        if len(free) > (withheld or {}).get(pool, 0):
            return free[0]
    return None


def _withheld_from(request: Request, holds: Sequence[Hold]) -> dict[str, int]:
    """Units per pool that reservations keep for schools other than the requester's."""
    withheld: dict[str, int] = {}
    for hold in holds:
        if hold.kind == request.kind and hold.school != request.school and hold.units > 0:
            withheld[hold.pool] = withheld.get(hold.pool, 0) + hold.units
    return withheld


def promote(
    waiting: Sequence[Request],
    units: Sequence[Unit],
    held: frozenset[str] | set[str],
    holds: Sequence[Hold] = (),
) -> list[tuple[Request, Unit]]:
    """Grants for queued requests, oldest first, while units of their kind are free.

    A request whose kind has nothing free does not block requests of another kind; a
    grant to a school with a reservation uses up its hold first.
    """
    taken = set(held)
    remaining = list(holds)
    grants: list[tuple[Request, Unit]] = []
    for request in waiting:
        if request.kind is None:
            continue
        unit = first_free(request.kind, units, taken, _withheld_from(request, remaining))
        if unit is not None:
            taken.add(unit.id)
            grants.append((request, unit))
            remaining = _use_hold(remaining, request.school, unit)
    return grants


def _use_hold(holds: list[Hold], school: str, unit: Unit) -> list[Hold]:
    for index, hold in enumerate(holds):
        if hold.school == school and hold.pool == unit.pool and hold.kind == unit.kind and hold.units > 0:
            return [*holds[:index], Hold(hold.pool, hold.kind, hold.school, hold.units - 1), *holds[index + 1:]]
    return holds


def queue_positions(waiting: Sequence[Request]) -> dict[str, int]:
    """Position of each queued lease among those waiting for the same kind (1 = next)."""
    seen: dict[str | None, int] = {}
    positions: dict[str, int] = {}
    for request in waiting:
        seen[request.kind] = seen.get(request.kind, 0) + 1
        positions[request.lease_id] = seen[request.kind]
    return positions
