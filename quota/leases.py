"""LeaseBook: the quota service's one long-lived allocator, with the database as its journal.

At start-up (and when this process takes over as the writer) the book rebuilds the
fair-share allocator from the database (:mod:`quota.fair_snapshot`). From then on every
input is fed to that same allocator as it happens: a request, a release, a withdrawn
queue place, a renewal, an abandoned place, the passing of time (:meth:`LeaseBook.advance`,
called by :class:`quota.ticker.Ticker` at the allocator's next wake-up). Each input, with
every action it produced (grants, reclaim warnings, stops, renewals) and the usage records
of the leases it ended, is journalled (:mod:`quota.journal`): inputs are decided one after
another in memory and share durable commits (group commit); nobody is answered before the
commit holding their input is durable, and a read waits for the inputs that changed what
it reads.

If a commit fails, the allocator's memory is ahead of the database, so it is dropped and
rebuilt from the database (which holds what it held before): the callers get
:class:`JournalUnavailable` (answered 503) and nothing is granted that is not stored.

A change of policy (a tier, a school, a reservation booked or cancelled, a roster) is a
staff action: it is stored, then fed to the same allocator as an input
(:mod:`quota.policy_feed`), so the new shares apply to everything at once and the
allocator keeps its sessions, queue and usage. A pool opened or drained changes the
allocator's pools: a new allocator takes over the running one's sessions, queue, usage
and budgets in the same input (:func:`quota.fair_snapshot.with_pools`).

Reads (a lease, the queue, places and wait estimates, the inventory, schools' standing)
come from memory; only history (ended leases, the usage ledger) is read from the database.

What is kept in memory only: a queued lease's heartbeat and a session's last activity.
After a restart (or when this process takes over as the writer) every queued lease gets a
fresh heartbeat window and keeps its place, but is *unconfirmed* until its student's side
(the spawner, every few seconds) asks about it again: the allocator may pick it for a unit
meanwhile, but the grant is held back until that heartbeat, and a lease nobody asks about
is abandoned when its window runs out, never granted. A student who left while the service
was down is then neither given a GPU nor billed for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from quota import fair_snapshot, policy_feed
from quota import lease_rows
from quota.lease_rows import Memory, _at
from quota.alliance import Alliance
from quota.decayed_usage import DecayedUsage
from quota.errors import InvalidField
from quota.fairshare.model import INF
from quota.inventory import Unit
from quota.messages import NO_SUCH_KIND, WITHDRAWN, ask_again_from, not_renewed
from quota.messages import sentence as _sentence
from quota.journal import Batch, Entry, GroupCommit, JournalUnavailable, begin_write, settled, short_reason
from quota.policy_store import PolicyStore
from quota.unit_holders import UnitHolders
from quota.tables import LeaseRow, UsageRecord, WithdrawnKey

log = logging.getLogger(__name__)

ACTIVE = ("granted", "queued")
Clock = Callable[[], datetime]
_SETTLED = settled()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class NotWriter(JournalUnavailable):
    """This process is a standby (:mod:`quota.writer`): another one decides."""


@dataclass(frozen=True)
class Listener:
    """What the book tells the metrics module (all optional)."""

    on_request: Callable[[str, str], None] = lambda outcome, tier: None  # outcome, tier
    on_grant: Callable[[str, str], None] = lambda pool, tier: None
    on_commit: Callable[[float, int], None] = lambda seconds, inputs: None  # one durable commit of the journal
    on_commit_failure: Callable[[], None] = lambda: None  # a commit of the journal failed
    on_decision: Callable[[float], None] = lambda seconds: None  # the allocator decided one input in memory
    on_queue_wait: Callable[[str, float], None] = lambda tier, seconds: None  # a queued lease was granted


class LeaseBook:
    def __init__(
        self,
        alliance: Alliance,
        units: Iterable[Unit],
        sessions: sessionmaker,
        clock: Clock = utc_now,
        heartbeat_timeout_s: float = 120.0,
        listener: Listener | None = None,
    ):
        self.alliance = alliance
        self.units = list(units)
        self._kinds = {unit.kind for unit in self.units}
        self._no_holders = UnitHolders(self.units)
        self._sessions = sessions
        self._clock = clock
        self._heartbeat_timeout = timedelta(seconds=heartbeat_timeout_s)
        self._listener = listener or Listener()
        self._lock = threading.RLock()
        self.policy = PolicyStore(alliance)
        fs = alliance.fairshare
        self._usage = DecayedUsage(fs.half_life_minutes * 60, fs.entry_penalty_minutes * 60)
        self._mem: Memory | None = None
        self._heard_since_start = False  # False until the first rebuild: queued leases are then unconfirmed
        self._unconfirmed: set[str] = set()  # queued leases not asked about since this process started writing
        self.next_wake: float = INF  # when advance() must run next (read by the ticker without the lock)
        self.on_wake_change: Callable[[], None] = lambda: None  # the ticker's alarm
        self.is_writer: Callable[[], bool] = lambda: True  # quota.writer.Leadership.is_writer
        self._committer = GroupCommit(sessions, self._journal_failed, self._listener.on_commit)

    @property
    def simulated(self) -> bool:
        return any(unit.simulated for unit in self.units)

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- the inputs -------------------------------------------------------------------------

    def request(self, user: str, school_id: str, profile_id: str, idempotency_key: str | None) -> tuple[LeaseRow, bool]:
        """Decide a request. Returns the lease and whether it is new (False: the same
        idempotency key was seen before and its lease is returned unchanged)."""
        return self._input(self._request_input(user, school_id, profile_id, idempotency_key))

    async def request_async(self, user: str, school_id: str, profile_id: str,
                            idempotency_key: str | None) -> tuple[LeaseRow, bool]:
        """:meth:`request` for the event loop: other inputs are decided while this one's commit is made."""
        return await self._input_async(self._request_input(user, school_id, profile_id, idempotency_key))

    def _request_input(self, user: str, school_id: str, profile_id: str, idempotency_key: str | None):
        try:
            school = self.alliance.school(school_id)
        except KeyError:
            known = ", ".join(s.id for s in self.alliance.schools)
            raise InvalidField("school", f"unknown school '{school_id}'. Known schools: {known}.") from None
        try:
            profile = self.alliance.profile(profile_id)
        except KeyError:
            known = ", ".join(p.id for p in self.alliance.profiles)
            raise InvalidField("profile", f"unknown profile '{profile_id}'. Choose one of: {known}.") from None
        kind = None if profile.gpu == "none" else profile.gpu

        def decide(mem: Memory, journal: Entry, now: datetime):
            if idempotency_key:
                if idempotency_key in mem.by_key:
                    return lease_rows.view(mem.rows[mem.by_key[idempotency_key]]), False
                if idempotency_key in mem.settling_keys:
                    return lease_rows.view(mem.settling[mem.settling_keys[idempotency_key]][0]), False
                stored = journal.session.scalar(select(LeaseRow).where(LeaseRow.idempotency_key == idempotency_key))
                if stored is not None:
                    return lease_rows.view(stored), False
            mem.seq += 1
            lease = LeaseRow(
                id=f"l-{uuid.uuid4().hex[:16]}", user=user, school=school.id, tier=school.tier, profile=profile.id,
                state="queued", kind=kind, requested_at=now, last_seen_at=now, idempotency_key=idempotency_key,
                seq=mem.seq, gpu_fraction=0.0, simulated=self.simulated, pool=None, device=None, unit_id=None,
                unit_kind=None, granted_at=None, expires_at=None, released_at=None, reclaim_at=None, reason=None,
            )
            journal.added.append(lease)
            journal.requests.append((self._decide(mem, journal, lease, now), school.tier))
            return lease_rows.view(lease, mem), True

        return decide

    def _decide(self, mem: Memory, journal: Entry, lease: LeaseRow, now: datetime) -> str:
        """Decide a new lease; returns the outcome."""
        if lease.idempotency_key and lease.idempotency_key in mem.withdrawn:
            lease.state, lease.released_at = "refused", now
            lease.reason = WITHDRAWN
            return "refused"
        if lease.kind is None:  # CPU only: nothing scarce to allocate, so the lease has no end
            lease.state, lease.granted_at = "granted", now
            mem.remember(lease)
            return "granted"
        if lease.kind not in self._kinds:
            lease.state, lease.reason, lease.released_at = "refused", NO_SUCH_KIND, now
            return "refused"
        mem.remember(lease)
        if lease.kind not in mem.snap.milli_of_kind:
            self._heartbeat_from(mem, now)
            return "queued"  # only draining pools have this kind: it waits until one opens again
        decision, actions = mem.snap.submit(lease.id, lease.user, lease.school, lease.kind, lease.profile,
                                            now.timestamp())
        if decision.kind == "admit":
            pool, kind = mem.snap.pool_of[decision.pool]
            lease_rows.grant(mem, journal, lease, pool, kind, now, decision.lease_end)
        elif decision.kind == "refuse":
            lease.state, lease.reason, lease.released_at = "refused", _sentence(decision.reason), now
            if decision.retry_at is not None and decision.retry_at < INF:
                lease.reason = ask_again_from(lease.reason, _at(decision.retry_at))
            mem.forget(lease)
        else:
            self._heartbeat_from(mem, now)
        lease_rows.apply_actions(mem, journal, actions, now)
        return {"admit": "granted", "queue": "queued", "refuse": "refused"}[decision.kind]

    def release(self, lease_id: str, end_reason: str = "released", charge_from: datetime | None = None) -> LeaseRow | None:
        """End a lease (its unit goes to whoever is next); an ended lease is returned as it is.
        ``charge_from``: the usage record counts from then, not from the grant (a workspace
        started ahead of a lesson is charged from its student's first activity; never opened,
        from its end: nothing)."""
        return self._input(self._release_input(lease_id, end_reason, charge_from))

    async def release_async(self, lease_id: str, end_reason: str = "released",
                            charge_from: datetime | None = None) -> LeaseRow | None:
        """:meth:`release` for the event loop."""
        return await self._input_async(self._release_input(lease_id, end_reason, charge_from))

    def _release_input(self, lease_id: str, end_reason: str, charge_from: datetime | None = None):
        def decide(mem: Memory, journal: Entry, now: datetime):
            lease = mem.rows.get(lease_id)
            if lease is None:
                if lease_id in mem.settling:
                    return lease_rows.view(mem.settling[lease_id][0])
                stored = journal.session.get(LeaseRow, lease_id)
                return lease_rows.view(stored) if stored is not None else None
            if charge_from is not None and lease.granted_at is not None and charge_from > lease.granted_at:
                mem.allocator.uncharge(lease.id, charge_from.timestamp(), now.timestamp())  # as its usage record says
            actions = mem.leave_allocator(lease, now.timestamp())
            lease_rows.end(mem, journal, lease, end_reason, now, charge_from)
            lease_rows.apply_actions(mem, journal, actions, now)
            return lease_rows.view(lease)

        return decide

    def release_by_key(self, idempotency_key: str) -> LeaseRow | None:
        """Release the lease made with this key. If no request with it has arrived yet,
        the key is remembered as withdrawn so the late request is refused (returns None)."""

        def decide(mem: Memory, journal: Entry, now: datetime):
            lease_id = mem.by_key.get(idempotency_key) or mem.settling_keys.get(idempotency_key) or journal.session.scalar(
                select(LeaseRow.id).where(LeaseRow.idempotency_key == idempotency_key))
            if lease_id is None and idempotency_key not in mem.withdrawn:
                journal.withdrawn.append(WithdrawnKey(idempotency_key=idempotency_key, withdrawn_at=now))
                mem.withdrawn.add(idempotency_key)
            return lease_id

        lease_id = self._input(decide)
        return None if lease_id is None else self.release(lease_id)

    def renew(self, lease_id: str) -> LeaseRow:
        """Renew a granted lease now, by the allocator's rule (a full lease length from now).
        Refused (InvalidField naming ``lease``) while someone with a better claim waits,
        a budget is used up, a class reservation needs the unit or the share is being
        reclaimed; the refusal is also written on the lease for the workspace to show."""

        def decide(mem: Memory, journal: Entry, now: datetime):
            lease = mem.rows.get(lease_id)
            if lease is None or lease.state != "granted":
                return None, "only a granted lease can be renewed; this one is not running."
            if lease.kind is None or lease.id not in mem.allocator.sessions:
                return lease_rows.view(lease), None  # a CPU lease (or one on a draining pool) has nothing to renew
            answer, actions = mem.allocator.renew(lease.id, now.timestamp())
            refusal = None
            if answer.kind == "renew":
                lease.expires_at = _at(answer.lease_end) if answer.lease_end < INF else None
                if lease.reclaim_at is None:
                    lease.reason = lease_rows.lent_reason(mem, lease)
            else:
                ends = lease.reclaim_at or lease.expires_at
                refusal, why = not_renewed(_sentence(answer.reason), ends)
                if lease.reclaim_at is None:  # a reclaim warning already says why it ends
                    lease.reason = why
            journal.changed[lease.id] = lease
            lease_rows.apply_actions(mem, journal, actions, now)
            return lease_rows.view(lease), refusal

        lease, refusal = self._input(decide)
        if refusal is not None:
            raise InvalidField("lease", refusal)
        return lease

    def touch(self, lease_id: str, at: datetime | None = None) -> bool:
        """The student used the workspace at ``at`` (default now; kept in memory: the reclaim
        takes the longest idle first). An older moment than the one known changes nothing.
        False when the lease is not running."""
        with self._lock:
            mem = self._memory()
            lease = mem.rows.get(lease_id)
            session = mem.allocator.sessions.get(lease_id)
            if lease is None or lease.state != "granted" or session is None:
                return False
            t = min(self._clock(), at or self._clock()).timestamp()  # never in the future
            if t > session.last_active:
                mem.allocator.touch(lease_id, t)
            return True

    def advance(self) -> int:
        """Take the decisions that time alone makes (reservation windows, reclaim stops,
        lease ends and renewals, abandoned queue places). Returns how many leases ended."""

        def decide(mem: Memory, journal: Entry, now: datetime):
            t = now.timestamp()
            lease_rows.grant_confirmed(mem, journal, now)
            lease_rows.apply_actions(mem, journal, mem.allocator.advance(t), now)
            if t >= mem.abandon_check_at:
                cutoff = now - self._heartbeat_timeout
                oldest = INF
                for lease in [row for row in mem.rows.values() if row.state == "queued"]:
                    if lease.last_seen_at <= cutoff:
                        actions = mem.leave_allocator(lease, t)
                        lease_rows.end(mem, journal, lease, "abandoned", now)
                        lease_rows.apply_actions(mem, journal, actions, now)
                    else:
                        oldest = min(oldest, lease.last_seen_at.timestamp())
                mem.abandon_check_at = oldest + self._heartbeat_timeout.total_seconds()
            return sum(1 for row in journal.changed.values() if row.state not in ACTIVE)

        return self._input(decide)

    sweep = advance  # the name of the periodic pass before time drove the allocator

    def promote(self) -> None:
        """Build the allocator now (at start-up) and take what the rebuild decided."""
        with self._lock:
            self._memory()

    def drop_memory(self) -> None:
        """Forget the allocator (this process stops being the writer); the next input rebuilds it."""
        with self._lock:
            self._mem = None
            self._heard_since_start = False  # the heartbeats go to the other writer meanwhile
            self.next_wake = INF

    # -- reading ----------------------------------------------------------------------------

    def get(self, lease_id: str, heartbeat: bool = True) -> LeaseRow | None:
        """The lease, as stored; asking about a queued lease keeps its place (heartbeat)."""
        view, stored = self._get_now(lease_id, heartbeat)
        if stored is None:
            return self._stored(lease_id)
        stored.result()
        return view

    async def get_async(self, lease_id: str, heartbeat: bool = True) -> LeaseRow | None:
        """:meth:`get` for the event loop."""
        view, stored = self._get_now(lease_id, heartbeat)
        if stored is None:
            return self._stored(lease_id)
        await asyncio.wrap_future(stored)
        return view

    def _get_now(self, lease_id: str, heartbeat: bool) -> tuple[LeaseRow | None, Future | None]:
        """The lease from memory and the commit to wait for before showing it (None: not in memory)."""
        with self._lock:
            mem = self._memory()
            lease = mem.rows.get(lease_id)
            if lease is not None:
                if heartbeat and lease.state == "queued":
                    lease.last_seen_at = self._clock()
                    if lease_id in self._unconfirmed:  # its student is still there: a held-back grant may go ahead
                        self._unconfirmed.discard(lease_id)
                        self._set_wake(mem)
                return lease_rows.view(lease, mem), mem.unsettled.get(lease_id) or _SETTLED
            if lease_id in mem.settling:
                lease, stored = mem.settling[lease_id]
                return lease_rows.view(lease), stored
            return None, None

    def _stored(self, lease_id: str) -> LeaseRow | None:
        with self._transaction() as session:
            stored = session.get(LeaseRow, lease_id)
            return lease_rows.view(stored) if stored is not None else None

    def leases(self, state: str | None = None, user: str | None = None, school: str | None = None) -> list[LeaseRow]:
        if state in ACTIVE:
            with self._lock:
                mem = self._memory()
                rows = [row for row in mem.rows.values() if row.state == state
                        and (user is None or row.user == user) and (school is None or row.school == school)]
                waits = {id(done): done for row in rows if (done := mem.unsettled.get(row.id)) is not None}
                rows = [lease_rows.view(row, mem) for row in rows]
            for done in waits.values():  # show only what is stored
                done.result()
            return sorted(rows, key=lambda row: row.seq)
        query = select(LeaseRow).order_by(LeaseRow.seq)
        if state:
            query = query.where(LeaseRow.state == state)
        if user:
            query = query.where(LeaseRow.user == user)
        if school:
            query = query.where(LeaseRow.school == school)
        with self._transaction() as session:
            return [lease_rows.view(row) for row in session.scalars(query).all()]

    def queue(self) -> list[LeaseRow]:
        return self.leases(state="queued")

    def queue_positions(self) -> dict[str, fair_snapshot.QueuePlace]:
        """Each queued lease's place in the fair-share order and its wait estimate, computed
        for all at once and kept until the next input or for one second."""
        with self._lock:
            mem = self._memory()
            t = self._clock().timestamp()
            version, computed_at, places = mem.places
            if version != mem.version or not computed_at <= t < computed_at + 1.0:
                places = mem.snap.places(t)
                mem.places = (mem.version, t, places)
            return {lease_id: place.at(t) for lease_id, place in places.items()}

    def holders(self) -> dict[str, LeaseRow]:
        """unit id -> the granted lease holding it."""
        with self._lock:
            mem = self._memory()
            return {unit_id: lease_rows.view(mem.rows[lease_id]) for unit_id, lease_id in mem.units.holders().items()}

    def fair_share(self) -> list[fair_snapshot.SchoolShare]:
        """Each school's guaranteed GPUs, GPUs held and fair-share priority now."""
        with self._lock:
            return self._memory().snap.shares(self._clock().timestamp())

    def usage(self, user: str | None = None, school: str | None = None) -> list[UsageRecord]:
        query = select(UsageRecord).order_by(UsageRecord.id)
        if user:
            query = query.where(UsageRecord.user == user)
        if school:
            query = query.where(UsageRecord.school == school)
        with self._transaction() as session:
            return list(session.scalars(query).all())

    def reclaimed_by_tier(self) -> dict[str, int]:
        """Leases ended to give their GPU share back, from the usage ledger."""
        with self._transaction() as session:
            rows = session.execute(
                select(UsageRecord.tier, func.count()).where(UsageRecord.end_reason == "reclaimed").group_by(UsageRecord.tier)
            )
            return {tier: count for tier, count in rows}

    def gpu_seconds_by_school(self) -> dict[tuple[str, str], float]:
        with self._transaction() as session:
            rows = session.execute(
                select(UsageRecord.school, UsageRecord.tier, func.sum(UsageRecord.gpu_seconds)).group_by(
                    UsageRecord.school, UsageRecord.tier
                )
            )
            return {(school, tier): float(total or 0) for school, tier, total in rows}

    def queued_gpus_by_school(self) -> dict[str, float]:
        """GPUs the queued requests of each school ask for (a slice counts as its fraction)."""
        with self._lock:
            asked: dict[str, float] = {}
            for waiting in self._memory().allocator.waiting.values():
                school = waiting.request.school
                asked[school] = asked.get(school, 0.0) + waiting.request.milli / 1000
            return asked

    def budget_use(self) -> list[tuple[str, str, float, float]]:
        """(school, tier, budget, GPU-hours used in the rolling budget period) of the schools
        with a GPU-hour budget."""
        with self._lock:
            allocator = self._memory().allocator
            t = self._clock().timestamp()
            return [(school.id, school.tier, school.budget_gpu_hours,
                     allocator.budgets.used_gpu_hours(f"school:{school.id}", t))
                    for school in allocator.schools if school.budget_gpu_hours is not None]

    def idle_seconds_by_unit(self) -> dict[str, tuple[str, float]]:
        """For each held GPU unit: (pool, seconds since its lease's workspace was last known
        to be used: its grant, or the latest :meth:`touch`)."""
        with self._lock:
            mem = self._memory()
            t = self._clock().timestamp()
            idle = {}
            for unit_id, lease_id in mem.units.holders().items():
                session = mem.allocator.sessions.get(lease_id)
                if session is not None:
                    idle[unit_id] = (mem.rows[lease_id].pool, max(0.0, t - session.last_active))
            return idle

    # -- staff and operator settings, reservations (quota.policy_store) ----------------------

    def read_policy(self, action):
        """Run ``action(session, now)`` in a read transaction."""
        with self._transaction() as session:
            return action(session, self._clock())

    def write_records(self, action):
        """Run ``action(session, now)`` in a write transaction for rows the allocator never
        reads (the library's usage counts), so nothing is rebuilt after it."""
        with self._transaction(write=True) as session:
            return action(session, self._clock())

    def change_policy(self, action):
        """Run ``action(session, now)`` (staff's change) and feed the running allocator what
        it changed (:mod:`quota.policy_feed`), in one transaction: the change and what it made
        possible (grants, reclaim warnings, refusals) are stored together or not at all. A pool
        opened or drained gives a new allocator, built from the running one and the active
        leases (:func:`quota.fair_snapshot.with_pools`). The inputs decided before it are
        stored first (staff's changes are rare; every other input goes on in group commits)."""
        while True:
            self._committer.settle()
            with self._lock:
                if self._committer.idle():
                    return self._change_policy_now(action)

    def _change_policy_now(self, action):
        mem = self._mem if self.is_writer() else None  # without one, the next input builds it with the change
        now = self._clock()
        entry = None
        try:
            with self._transaction(write=True) as session:
                result = action(session, now)
                session.flush()
                if mem is not None:
                    entry = Entry(self._sessions, _reader=session)  # reads what the change wrote
                    self._policy_input(mem, entry, now)
                    batch = Batch()
                    batch.take(entry)
                    batch.write(session)
        except BaseException as exc:
            if entry is not None:  # the allocator took the change, the database did not
                self._mem = None
            if isinstance(exc, SQLAlchemyError):
                raise JournalUnavailable(f"the database did not store the change: {short_reason(exc)}") from exc
            raise
        if mem is not None:
            mem.version += 1
            self._set_wake(mem)
            self._tell(entry)
        return result

    def _policy_input(self, mem: Memory, journal: Entry, now: datetime):
        inputs = fair_snapshot.policy_inputs(self.alliance, self.policy, journal.session, now)
        fed = policy_feed.feed(mem.snap, inputs, now.timestamp())
        if fed.pools_changed:  # a pool opened or drained: a new allocator from this one and the active leases
            mem.snap = fair_snapshot.with_pools(mem.snap, self.alliance, inputs, mem.rows.values(), now)
            mem.deferred.clear()  # admissions held back are decided again by the new allocator
            fed.refusals, fed.actions = mem.snap.decisions, mem.snap.actions
        if fed.budgets_started:
            fair_snapshot.seed_budgets(mem.allocator, journal.session, now)
        for refusal in fed.refusals:
            lease_rows.refuse_queued(mem, journal, refusal, now)
        lease_rows.apply_actions(mem, journal, fed.actions, now)

    # -- one input: decided in memory, answered once stored --------------------------------

    def _input(self, decide):
        """Decide ``decide(memory, entry, now)`` on the allocator and wait until what it
        did is durable (:mod:`quota.journal`); raises :class:`JournalUnavailable` if not."""
        result, entry, stored = self._decide_input(decide)
        stored.result()
        self._tell(entry)
        return result

    async def _input_async(self, decide):
        """:meth:`_input` for the event loop: it awaits the commit, deciding other inputs meanwhile."""
        result, entry, stored = self._decide_input(decide)
        await asyncio.wrap_future(stored)
        self._tell(entry)
        return result

    def _decide_input(self, decide) -> tuple[object, Entry, Future]:
        with self._lock:
            mem = self._memory()
            now = self._clock()
            entry = Entry(self._sessions)
            began = time.perf_counter()
            try:
                result = decide(mem, entry, now)
                self._listener.on_decision(time.perf_counter() - began)
            except SQLAlchemyError as exc:  # reading history failed half-way through the input
                self._mem = None
                raise JournalUnavailable(f"the database did not answer: {short_reason(exc)}") from exc
            except BaseException:
                self._mem = None
                raise
            finally:
                entry.close_reader()
            if entry.empty():  # nothing to store; what it read is stored once the inputs before it are
                stored = self._committer.tail()
            else:
                stored = self._committer.submit(entry)
                mem.track_unsettled(entry, stored)
            mem.version += 1
            self._set_wake(mem)
            return result, entry, stored

    def _tell(self, entry: Entry) -> None:
        for outcome, tier in entry.requests:
            self._listener.on_request(outcome, tier)
        asked_now = {row.id for row in entry.added}
        for lease in entry.granted:
            self._listener.on_grant(lease.pool or "", lease.tier)
            if lease.id not in asked_now:  # it waited in the queue
                self._listener.on_queue_wait(lease.tier, (lease.granted_at - lease.requested_at).total_seconds())

    def _journal_failed(self, error: JournalUnavailable) -> None:
        """A commit failed (called by the journal's thread): memory is ahead of the database."""
        with self._lock:
            self._mem = None
            self._committer.fail_queued(error)
        self._listener.on_commit_failure()
        log.error("the journal could not store inputs; the allocator is rebuilt from the database: %s", error)

    def close(self) -> None:
        """Store what is decided, then stop the journal's thread (service shutdown)."""
        self._committer.close()

    def _memory(self) -> Memory:
        if not self.is_writer():
            self._mem = None
            raise NotWriter("this quota service process is a standby; the writer answers (or one takes over within "
                            "seconds): try again shortly.")
        if self._mem is None:
            self._mem = self._rebuild()
            self._set_wake(self._mem)
        return self._mem

    def _rebuild(self) -> Memory:
        now = self._clock()
        try:
            with self._transaction(write=True) as session:
                snap = fair_snapshot.build(
                    self.alliance, self.policy, session, now, self._usage.at(session, now))
                active = session.scalars(select(LeaseRow).where(LeaseRow.state.in_(ACTIVE)).order_by(LeaseRow.seq))
                if not self._heard_since_start:
                    self._unconfirmed = set()
                mem = Memory(
                    snap=snap, rows={}, by_key={}, withdrawn=set(session.scalars(select(WithdrawnKey.idempotency_key))),
                    units=self._no_holders.empty(), seq=session.scalar(select(func.max(LeaseRow.seq))) or 0,
                    unconfirmed=self._unconfirmed,
                )
                for lease in active:
                    if lease.state == "queued":
                        lease.last_seen_at = now  # a fresh heartbeat window: the student keeps the place
                        if not self._heard_since_start:
                            self._unconfirmed.add(lease.id)  # ... and is granted nothing before it is heard from
                    mem.remember(lease)
                    if lease.state == "granted" and mem.units.knows(lease.unit_id):
                        mem.units.hold(lease.unit_id, lease.id)
                if any(row.state == "queued" for row in mem.rows.values()):
                    self._heartbeat_from(mem, now)
                journal = Entry(self._sessions)
                for refusal in snap.decisions:  # queued leases that can no longer wait
                    lease_rows.refuse_queued(mem, journal, refusal, now)
                lease_rows.apply_actions(mem, journal, snap.actions, now)
                rebuilt = Batch()
                rebuilt.take(journal)
                rebuilt.write(session)
        except SQLAlchemyError as exc:
            raise JournalUnavailable(f"the allocator could not be rebuilt from the database: {short_reason(exc)}") from exc
        log.info("allocator built from the database: %d running, %d queued leases (%d not heard from yet)",
                 sum(1 for row in mem.rows.values() if row.state == "granted"),
                 sum(1 for row in mem.rows.values() if row.state == "queued"), len(self._unconfirmed))
        self._heard_since_start = True
        return mem

    def _set_wake(self, mem: Memory) -> None:
        wake = mem.allocator.next_wake()
        wake = min(INF if wake is None else wake, mem.abandon_check_at)
        if any(lease_id not in self._unconfirmed for lease_id in mem.deferred):
            wake = 0.0  # a held-back grant was confirmed: grant it at once
        earlier = wake < self.next_wake
        self.next_wake = wake
        if earlier:
            self.on_wake_change()

    def _heartbeat_from(self, mem: Memory, now: datetime) -> None:
        """A queued lease's heartbeat window starts at ``now``: check for abandoned places by its end."""
        mem.abandon_check_at = min(mem.abandon_check_at, now.timestamp() + self._heartbeat_timeout.total_seconds())

    def _transaction(self, write: bool = False):
        return _Transaction(self._sessions, write)


class _Transaction:
    """``with`` block: one session, committed on success, rolled back on error. On
    PostgreSQL an advisory lock serialises writers across service processes (there is one
    writer; the lock guards against a second one started by mistake)."""

    def __init__(self, sessions: sessionmaker, write: bool):
        self._session = sessions()
        self._write = write

    def __enter__(self):
        if self._write:
            begin_write(self._session)
        return self._session

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._session.commit()
            else:
                self._session.rollback()
        finally:
            self._session.close()
        return False


__all__ = ["LeaseBook", "Listener", "JournalUnavailable", "NotWriter", "ACTIVE", "utc_now"]
