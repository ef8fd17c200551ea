"""Ticker: time drives the allocator.

A thread that sleeps until the lease book's next wake-up (the allocator's next timer: a
reservation window opening or closing, a reclaim stop, a lease's end; or a queued lease's
heartbeat running out) and then calls :meth:`quota.leases.LeaseBook.advance`, so those
decisions are taken on time with no other traffic. An input that brings the wake-up
forward rings its alarm (``book.on_wake_change``). It also wakes at least every
``max_sleep_s`` (a clock that jumped, a missed alarm cost at most that).
"""

from __future__ import annotations

import logging
import threading

from quota.leases import JournalUnavailable, LeaseBook

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, book: LeaseBook, max_sleep_s: float = 5.0, is_writer=lambda: True):
        self._book = book
        self._max_sleep = max_sleep_s
        self._is_writer = is_writer
        self._alarm = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quota-ticker", daemon=True)
        book.on_wake_change = self._alarm.set

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._alarm.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            delay = self._book.next_wake - self._book.clock().timestamp()
            if delay > 0:
                self._alarm.wait(min(delay, self._max_sleep))
                self._alarm.clear()
                continue  # woken early, or the wait ran out: look at the wake-up again
            if not self._is_writer():
                self._alarm.wait(self._max_sleep)
                continue
            try:
                ended = self._book.advance()
                if ended:
                    log.info("ended %d lease(s) on time (expired, reclaimed or abandoned)", ended)
            except JournalUnavailable as exc:
                log.warning("time-driven decisions postponed: %s", exc)
                self._alarm.wait(1.0)
            except Exception:  # keep ticking: one bad pass must not stop time for good
                log.exception("the allocator's time-driven pass failed")
                self._alarm.wait(1.0)
