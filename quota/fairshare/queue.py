"""The waiting line: requests grouped by size, schools ordered by a key the policy gives.

Requests that take the same slices in every pool share a *bucket*. Inside a bucket each
school has its own first-in-first-out line, and the schools are kept in a heap ordered
by ``key_fn(school, bucket, head, now)`` (smaller is served first). The fair policy's key
is ``(class, usage / weight)``: class 0 for a request that fits within its school's
guarantee, class 1 for one that would borrow.

Keys change with time (a school with running sessions keeps accruing usage), but for a
given class they never *decrease*, so a key stored in the heap is a lower bound of the
school's current key. :meth:`WaitQueue.top` therefore re-keys only the entries that
reach the top: when the top entry's fresh key still is no larger than its stored key it
is the true minimum. Anything that can lower a key (a class change after a release, a
new head) calls :meth:`touch`, which pushes a fresh entry and retires the old one by a
version number.

For the rebalancing reclaim the queue also keeps, per pool, the heads that would borrow
ordered by their *claim* (``claim_fn(school, bucket)`` gives ``(pool, claim)`` pairs, or
nothing for a head that would not borrow). A claim depends on the school's holding only,
not on time, so the same :meth:`touch` that re-keys a school's lines keeps it exact.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator

from quota.fairshare.model import Waiting

_NO_BOUND = float("inf")  # top(): every key is below it

KeyFn = Callable[[int, tuple, Waiting, float], tuple]
ClaimFn = Callable[[int, tuple], list]


class WaitQueue:
    """Lines are numbered (a *slot* per school and bucket, kept for good) so that the heaps
    and tables below are keyed by small integers: ``school_of[slot]``, ``bucket_of[slot]``."""

    __slots__ = ("key_fn", "claim_fn", "claims", "lines", "heaps", "versions", "by_school", "size", "classes",
                 "in_class", "slot_of", "school_of", "bucket_of")

    def __init__(self, key_fn: KeyFn, claim_fn: ClaimFn | None = None) -> None:
        self.key_fn = key_fn
        self.claim_fn = claim_fn
        self.slot_of: dict[tuple[int, tuple], int] = {}  # (school, bucket) -> slot
        self.school_of: list[int] = []  # slot -> school
        self.bucket_of: list[tuple] = []  # slot -> bucket
        self.versions: list[int] = []  # slot -> version of its live heap entries
        self.classes: list[int | None] = []  # slot -> class of its head's key (None: empty line)
        self.claims: dict[int, list[tuple]] = {}  # pool -> heap of (claim, seq, slot, version)
        self.lines: dict[int, deque[Waiting]] = {}  # slot -> line (only lines with requests)
        self.heaps: dict[tuple, list[list]] = {}  # bucket -> heap of [k0, k1, seq, slot, version]
        self.by_school: dict[int, set[int]] = {}  # school -> slots of its lines
        self.size = 0
        self.in_class: dict[int, int] = {}  # class -> lines whose head is in it

    def lines_in_class(self, cls: int) -> int:
        """How many lines have their head in class ``cls`` (the first part of the key). The
        class of a line only changes when :meth:`touch` re-keys it, so this is exact."""
        return self.in_class.get(cls, 0)

    def _set_class(self, slot: int, cls: int | None) -> None:
        old = self.classes[slot]
        if old == cls:
            return
        if old is not None:
            self.in_class[old] -= 1
        self.classes[slot] = cls
        if cls is not None:
            self.in_class[cls] = self.in_class.get(cls, 0) + 1

    def __len__(self) -> int:
        return self.size

    def buckets(self) -> list[tuple]:
        return [b for b, heap in self.heaps.items() if heap]

    def add(self, waiting: Waiting, now: float) -> None:
        school = waiting.school_index
        slot = self.slot_of.get((school, waiting.bucket))
        if slot is None:
            slot = self.slot_of[(school, waiting.bucket)] = len(self.school_of)
            self.school_of.append(school)
            self.bucket_of.append(waiting.bucket)
            self.versions.append(0)
            self.classes.append(None)
        waiting.slot = slot
        line = self.lines.get(slot)
        if line is None:
            line = self.lines[slot] = deque()
            self.by_school.setdefault(school, set()).add(slot)
        line.append(waiting)
        self.size += 1
        if len(line) == 1:
            self._push(slot, now)

    def _push(self, slot: int, now: float) -> None:
        versions = self.versions
        version = versions[slot] = versions[slot] + 1
        line = self.lines.get(slot)
        if not line:
            self._set_class(slot, None)
            return
        head = line[0]
        school, bucket = self.school_of[slot], self.bucket_of[slot]
        key = self.key_fn(school, bucket, head, now)
        if self.classes[slot] != key[0]:
            self._set_class(slot, key[0])
        heap = self.heaps.setdefault(bucket, [])
        entry = [key[0], key[1], head.seq, slot, version]
        if heap and heap[0][3] == slot:
            heapq.heapreplace(heap, entry)  # its retired entry is on top (the line just served): reuse the place
        else:
            self._push_entry(heap, entry)
        if self.claim_fn is not None:
            for pool, claim in self.claim_fn(school, bucket):
                self._push_entry(self.claims.setdefault(pool, []), (claim, head.seq, slot, version))

    def _push_entry(self, heap: list, entry) -> None:
        """Push onto a bucket's or a pool's heap; entries of both end in (slot, version)."""
        heapq.heappush(heap, entry)
        if len(heap) > 64 and len(heap) > 4 * len(self.lines):  # retired entries pile up
            versions = self.versions
            heap[:] = [e for e in heap if versions[e[-2]] == e[-1]]
            heapq.heapify(heap)

    def touch(self, school: int, now: float) -> None:
        """The school's keys may have dropped (or its class changed): re-key its lines."""
        for slot in self.by_school.get(school, ()):
            self._push(slot, now)

    def remove(self, waiting: Waiting, now: float, rekey_head: bool = True) -> None:
        """Take ``waiting`` out of its line; ``rekey_head=False`` when the caller calls
        :meth:`touch` for the school right after (which keys the new head anyway)."""
        slot = waiting.slot
        line = self.lines[slot]
        was_head = line[0] is waiting
        line.remove(waiting)
        self.size -= 1
        if not line:
            del self.lines[slot]
            self.versions[slot] += 1
            self._set_class(slot, None)
            slots = self.by_school[waiting.school_index]
            slots.discard(slot)
            if not slots:
                del self.by_school[waiting.school_index]
        elif was_head and rekey_head:
            self._push(slot, now)

    def top(self, bucket: tuple, now: float) -> tuple[tuple, Waiting] | None:
        """The best (key, head request) in ``bucket`` at ``now``, or None."""
        return self.top_below(bucket, now, _NO_BOUND, _NO_BOUND)

    def top_below(self, bucket: tuple, now: float, cls: int, usage: float) -> tuple[tuple, Waiting] | None:
        """:meth:`top` when its key is below ``(cls, usage)``, else None. Re-keys only the
        entries stored below that bound (what :meth:`top` would re-key first anyway): once
        the smallest stored key reaches it, every line's key does (stored keys are lower
        bounds), whatever the best of them is."""
        heap = self.heaps.get(bucket)
        versions = self.versions
        key_fn = self.key_fn
        lines = self.lines
        school_of = self.school_of
        while heap:
            entry = heap[0]
            if entry[0] > cls or (entry[0] == cls and entry[1] >= usage):
                return None
            slot = entry[3]
            if versions[slot] != entry[4]:
                heapq.heappop(heap)
                continue
            head = lines[slot][0]
            key = key_fn(school_of[slot], bucket, head, now)
            if key[0] == entry[0] and key[1] <= entry[1]:
                return (key[0], key[1], head.seq), head
            heapq.heapreplace(heap, [key[0], key[1], head.seq, slot, entry[4]])
        return None

    def rescale(self, factor: float) -> None:
        """Multiply every stored usage key by ``factor`` (> 0) after a ledger rebase."""
        for heap in self.heaps.values():
            for entry in heap:
                entry[1] *= factor

    def lines_of(self, school: int) -> Iterator[deque[Waiting]]:
        for slot in self.by_school.get(school, ()):
            yield self.lines[slot]

    def all_lines(self) -> Iterator[tuple[int, tuple, deque[Waiting]]]:
        for slot, line in self.lines.items():
            yield self.school_of[slot], self.bucket_of[slot], line

    def peek_many(self, bucket: tuple, now: float, stop: Callable[[tuple], bool], limit: int = 64):
        """The best entries of ``bucket`` in order until ``stop(top)`` is true (at most
        ``limit``), leaving the queue as it was."""
        heap = self.heaps.get(bucket)
        taken: list[list] = []
        found = []
        while heap and len(found) < limit:
            top = self.top(bucket, now)
            if top is None or stop(top):
                break
            found.append(top)
            taken.append(heapq.heappop(heap))
        for entry in taken:
            heapq.heappush(heap, entry)
        return found

    def claim_top(self, pool: int) -> tuple | None:
        """The head with the smallest claim on ``pool``: (claim, seq, slot, version), or
        None. Retired entries are dropped on the way."""
        heap = self.claims.get(pool)
        versions = self.versions
        while heap:
            entry = heap[0]
            if versions[entry[2]] == entry[3]:
                return entry
            heapq.heappop(heap)
        return None

    def by_claim(self, pool: int) -> Iterator[tuple]:
        """The entries of :meth:`claim_top`, smallest claim first; everything taken is put
        back when the iterator is closed (retired entries are dropped)."""
        heap = self.claims.get(pool)
        if not heap:
            return
        versions = self.versions
        pop = heapq.heappop
        taken: list[tuple] = []
        try:
            while heap:
                entry = pop(heap)
                if versions[entry[2]] == entry[3]:
                    taken.append(entry)
                    yield entry
        finally:
            push = heapq.heappush
            for entry in taken:
                push(heap, entry)
