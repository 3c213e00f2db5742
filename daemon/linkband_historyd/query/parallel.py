"""Side readers: a query worker runs one large per-bucket aggregate as parts at once.

A worker answers one request at a time, so a chart of a day of detail rows (tens
of thousands of rows per series) would use one core of a machine that has more.
SQLite lets go of the GIL while it steps a statement: the worker cuts such an
aggregate at bucket boundaries, runs the later parts on side connections in
threads and the first part on its own connection, and joins the parts' rows in
order. A request that is small (fewer than ``MIN_BUCKETS`` buckets a part) runs
as one part, as on a connection that has no side readers (tools, the scheduler).

Every bucket is computed whole by one connection. The parts' read snapshots may
differ by a commit that lands between their first reads: the same as a series
read while rows arrive, never within a bucket. The side connections obey the
request's budget (:meth:`Budget.watch`), are interrupted when the first part
fails, and the worker keeps beating while it waits for them (:meth:`Budget.wait`).
"""
from __future__ import annotations

import concurrent.futures
import weakref

MIN_BUCKETS = 120              # a part smaller than this is not worth a thread

_readers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class SideReaders:
    """``parts - 1`` side connections from ``open_conn()``, each stepped by its own
    thread; opened at the first request that is cut, closed by :meth:`close`."""

    def __init__(self, conn, open_conn, budget, parts: int):
        self.open_conn, self.budget, self.parts = open_conn, budget, parts
        self.conns: list = []
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        _readers[conn] = self

    def _ensure_open(self) -> None:
        if self._pool is None:
            self.conns = [self.open_conn() for _ in range(self.parts - 1)]
            for c in self.conns:
                self.budget.watch(c)
            self._pool = concurrent.futures.ThreadPoolExecutor(
                len(self.conns), thread_name_prefix="side-reader")

    def run(self, conn, fn, pieces: list) -> list:
        """``[fn(connection, piece) for piece in pieces]``: the first piece on
        ``conn`` in this thread, each other one on a side connection at once."""
        self._ensure_open()
        futures = [self._pool.submit(fn, c, piece) for c, piece in zip(self.conns, pieces[1:])]
        try:
            first = fn(conn, pieces[0])
            return [first] + [self.budget.wait(f) for f in futures]
        except BaseException:            # the other parts stop too, before the next request
            for c in self.conns:
                c.interrupt()
            concurrent.futures.wait(futures)
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            for c in self.conns:
                c.close()
            self._pool, self.conns = None, []


def readers_of(conn) -> SideReaders | None:
    return _readers.get(conn)


def cut(first: float, until: float, step: float, parts: int) -> list[tuple[float, float]]:
    """``[first, until)`` as up to ``parts`` ranges that start on bucket boundaries
    (``first`` is one), each of at least ``MIN_BUCKETS`` buckets; one range when
    the whole is too small to cut."""
    buckets = -(-(until - first) // step)
    k = int(max(1, min(parts, buckets // MIN_BUCKETS)))
    starts = [first + (i * buckets // k) * step for i in range(k)]
    return list(zip(starts, starts[1:] + [until]))
