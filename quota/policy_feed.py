"""A change of staff's settings, fed to the running allocator as inputs.

After staff change a tier, a school, a reservation or a roster, the lease book reads the
settings again (:func:`quota.fair_snapshot.policy_inputs`, no lease is read) and
:func:`feed` gives the allocator what differs: every school's settings at once
(:meth:`~quota.fairshare.Allocator.set_schools`), reservations cancelled, changed or booked
(:meth:`~quota.fairshare.Allocator.cancel_reservation`,
:meth:`~quota.fairshare.Allocator.add_reservation`), and who is in a booked class. The
allocator keeps its sessions, its queue and its decayed usage; what the change makes
possible (grants, reclaim warnings) comes back as actions for the book to store.

A pool opened or drained is the one change not fed here: an allocator's pools are fixed, so
the book gives the running allocator's sessions, queue, usage and budgets to a new one with
the open pools (:attr:`Fed.pools_changed`, :func:`quota.fair_snapshot.with_pools`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from quota.fair_snapshot import PolicyInputs, Snapshot
from quota.fairshare.model import Action, Refuse, Reservation
from quota.fairshare.reservations import ReservationError

log = logging.getLogger(__name__)


@dataclass
class Fed:
    actions: list[Action] = field(default_factory=list)
    refusals: list[Refuse] = field(default_factory=list)  # queued requests that may no longer wait
    budgets_started: bool = False  # budgets count from now on: the caller seeds the period's ended leases
    pools_changed: bool = False  # a pool opened or drained: nothing was fed (quota.fair_snapshot.with_pools)


def feed(snap: Snapshot, inputs: PolicyInputs, t: float) -> Fed:
    allocator = snap.allocator
    fed = Fed()
    if [p for p in allocator.pools] != inputs.pools or snap.pool_of != inputs.pool_of:
        fed.pools_changed = True
        return fed
    snap.reserved_class_of = dict(inputs.reserved_class_of)
    if list(allocator.schools) != inputs.schools:
        counted = allocator.track_budgets
        actions, refusals = allocator.set_schools(inputs.schools, t)
        fed.actions += actions
        fed.refusals += refusals
        fed.budgets_started = allocator.track_budgets and not counted
    booked = {res.id: res for res in allocator.book.by_id.values() if res.end > t}
    wanted = {res.id: res for res in inputs.reservations if res.end > t}
    for res_id, res in booked.items():
        if res_id not in wanted or not _same_window(res, wanted[res_id], t):
            fed.actions += allocator.cancel_reservation(res_id, t)
    for res_id, res in wanted.items():
        if res_id in allocator.book.by_id:
            continue
        try:
            fed.actions += allocator.add_reservation(res, t)
        except ReservationError as exc:  # a window that opens now with its slices still taken
            log.warning("reservation %s cannot be honoured now: %s", res_id, exc)
    return fed


def _same_window(held: Reservation, wanted: Reservation, t: float) -> bool:
    """An open window whose start moved (a neighbour's booking changes when its lead time
    begins) is still the same window: nothing to take back from its students."""
    if held.start <= t and wanted.start <= t:
        return (held.pool, held.school, held.slices, held.end, held.group) == (
            wanted.pool, wanted.school, wanted.slices, wanted.end, wanted.group)
    return held == wanted
