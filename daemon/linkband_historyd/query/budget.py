"""The time budget of a query, kept by SQLite's progress handler.

A query worker installs one :class:`Budget` on its read-only connection. SQLite
calls it every ``STEPS`` virtual-machine steps of any statement; it beats the
worker's heartbeat (a long statement is not a hang) and interrupts the statement
(``apsw.InterruptError``) once the request's deadline has passed, or when the
worker is asked to stop. A command may add a shorter deadline of its own around
one statement with :func:`deadline` (the search's bounded count does): a
connection has only one progress handler, so the deadlines share it.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import math
import time
import weakref

STEPS = 5000                   # VM steps between two calls: well under a millisecond
ADMIN_MAX_SECONDS = 3600.0     # the most an admin request may ask for
BEAT_EVERY_S = 0.05

_budgets: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class Budget:
    def __init__(self, conn, beat=None, stopping=None):
        self.beat = beat or (lambda: None)
        self.stopping = stopping or (lambda: False)
        self.request_deadline = math.inf
        self.inner: list[float] = []        # deadlines pushed by deadline()
        self.exceeded = False               # the request's own deadline interrupted it
        self._next_beat = 0.0
        self._stop = False                  # stopping() at the last beat
        conn.set_progress_handler(self._progress, STEPS)
        _budgets[conn] = self

    def start(self, seconds: float) -> None:
        self.request_deadline = time.monotonic() + seconds
        self.exceeded = False

    def end(self) -> None:
        self.request_deadline = math.inf
        self.inner.clear()

    def _progress(self) -> bool:
        now = time.monotonic()
        if now >= self._next_beat:         # a few times a second: beat, and stop if asked
            self._next_beat = now + BEAT_EVERY_S
            self.beat()
            self._stop = self.stopping()
        return self._over(now)

    def _over(self, now: float) -> bool:
        if self._stop:
            return True
        if now > self.request_deadline:
            self.exceeded = True
            return True
        return bool(self.inner) and now > self.inner[-1]

    def watch(self, conn) -> None:
        """Hold ``conn`` (a side reader's, stepped in another thread) to the same
        deadlines and stop; it never beats: :meth:`wait` does, in this thread."""
        conn.set_progress_handler(lambda: self._over(time.monotonic()), STEPS)

    def wait(self, future):
        """``future.result()``, beating (and noticing a stop) while it runs."""
        while True:
            try:
                return future.result(timeout=BEAT_EVERY_S)
            except concurrent.futures.TimeoutError:
                self.beat()
                self._stop = self.stopping()


@contextlib.contextmanager
def deadline(conn, seconds: float):
    """Interrupt the statements run inside after ``seconds`` (``apsw.InterruptError``);
    the request's own budget, if any, still applies."""
    end = time.monotonic() + seconds
    budget = _budgets.get(conn)
    if budget is None:                     # a connection without a Budget (tools, tests)
        conn.set_progress_handler(lambda: time.monotonic() > end, STEPS)
        try:
            yield
        finally:
            conn.set_progress_handler(None)
        return
    budget.inner.append(min(end, budget.inner[-1]) if budget.inner else end)
    try:
        yield
    finally:
        budget.inner.pop()


def over(conn) -> bool:
    """Whether the request's own budget has interrupted ``conn``."""
    budget = _budgets.get(conn)
    return budget is not None and budget.exceeded
