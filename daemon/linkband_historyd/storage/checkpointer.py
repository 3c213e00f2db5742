"""WAL checkpoints off the commit path, and the one short copy that lets the WAL start over.

A thread copies the WAL into the database with PASSIVE checkpoints on its own
connection, beside the writer's commits. But SQLite starts the WAL over only
when a write transaction begins after a checkpoint that copied *everything*,
and with a commit every millisecond the copy never catches up: under a steady
stream the WAL grew without end (``tests/test_wal.py``). So once the WAL is
past ``storage.wal_max_mb`` and the thread has copied the bulk (until a pass is
short), the writer itself copies the few pages committed meanwhile, between two
batches, and its next transaction starts the WAL over. It gives way to waiting
ingest for up to ``DEFER_S`` first. While maintenance writes fast the passes
may not get short: then the copy waits for a later round, up to a WAL of
``FORCED_TIMES`` its limit.

(Handing that last copy to the thread while the writer paused for at most a
few ms was tried: on a busy disk its fsyncs outlast the pause, the WAL grew to
``FORCED_TIMES`` its limit, and ingest commits stalled more, not less --
``bench/README.md``, issue 16. A RESTART checkpoint from the thread would take
the write lock, and a transaction that began with a read gets SQLITE_BUSY at
once, without its busy handler.)
"""
from __future__ import annotations

import logging
import threading
import time

import apsw

from linkband_historyd.storage import schema

CATCH_UP_PASSES = 20       # passes in a row before the writer copies the rest
CATCH_UP_SHORT_S = 0.003   # ... stopping once a pass took less than this
DEFER_S = 0.25             # the writer's copy gives way to waiting ingest at most this long
FORCED_TIMES = 4           # WAL at this many times its limit: the writer copies even after long passes

log = logging.getLogger("linkband_historyd.storage.checkpointer")


class Checkpointer:
    def __init__(self, db_path: str, interval_s: float, wal_max_bytes: int):
        self.db_path = db_path
        self.interval = interval_s
        self.wal_max = wal_max_bytes
        self.want = threading.Event()       # the thread asks the writer to copy the rest
        self._stop = threading.Event()
        self._since = 0.0
        self.copies = self.forced_copies = 0
        self.forced = False
        self._thread = threading.Thread(target=self._loop, name="checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # -- the thread ------------------------------------------------------------
    def _loop(self) -> None:
        conn = schema.open_checkpointer(self.db_path)
        page_size = conn.execute("PRAGMA page_size").fetchall()[0][0]
        try:
            while not self._stop.wait(self.interval):
                try:
                    self._round(conn, page_size)
                except apsw.Error as exc:
                    log.warning("checkpoint failed: %s", exc)
        finally:
            conn.close()

    def _round(self, conn, page_size: int) -> None:
        wal_pages = _passive(conn)
        if wal_pages * page_size < self.wal_max:
            return
        # each pass copies what was committed during the one before: go on until a
        # pass is short, then the writer copies the rest
        for _ in range(CATCH_UP_PASSES):
            t = time.perf_counter()
            wal_pages = _passive(conn)
            short = time.perf_counter() - t < CATCH_UP_SHORT_S
            if short:
                break
        # while maintenance writes fast the passes may not get short: then the
        # writer's copy would be long, so it waits for a later round
        forced = wal_pages * page_size >= FORCED_TIMES * self.wal_max
        if short or forced:
            self.forced = forced
            self.want.set()

    # -- the writer, between two batches -----------------------------------------
    def finish(self, conn, ingest_waiting) -> bool:
        """Copy what was committed since the thread's pass, on the writer's ``conn``,
        if the thread asked (whether it did)."""
        if not self.want.is_set():
            self._since = 0.0
            return False
        now = time.monotonic()
        self._since = self._since or now
        if now - self._since < DEFER_S and ingest_waiting():
            return False
        self._since = 0.0
        self.want.clear()
        self.copies += 1
        self.forced_copies += self.forced
        try:
            _passive(conn)
        except apsw.Error as exc:
            log.warning("checkpoint failed: %s", exc)
        return True

    def counts(self) -> dict:
        return {"copies": self.copies, "after_long_passes": self.forced_copies}


def _passive(conn) -> int:
    """One PASSIVE checkpoint; the WAL's size in pages."""
    return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0][1]
