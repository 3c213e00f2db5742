"""WAL checkpoints off the commit path, and the short pauses that let the WAL start over.

A thread copies the WAL into the database with PASSIVE checkpoints on its own
connection, beside the writer's commits. But SQLite starts the WAL over only
when a write transaction begins after a checkpoint that copied *everything*,
and with a commit every millisecond the copy never catches up: under a steady
stream the WAL grew without end (``tests/test_wal.py``). So once the WAL is
past ``storage.wal_max_mb`` and the thread has copied the bulk, it asks the
writer for a pause: between two batches the writer stops committing for at
most ``HOLD_S`` while the thread copies the few pages committed meanwhile, and
the writer's next transaction starts the WAL over. The copy includes two
fsyncs (WAL, then database); on a disk that other programs keep busy they may
take far longer than the hold: then the writer goes on (the copy finishes
beside its commits, but the WAL cannot start over) and a later round tries
again. Only when the WAL has grown to ``FORCED_TIMES`` its limit does the
writer copy the rest itself, however long that takes (the WAL stays bounded).
The writer gives way to waiting ingest for up to ``DEFER_S`` first.

(A RESTART checkpoint from the thread would take the write lock, and a
transaction that began with a read gets SQLITE_BUSY at once, without its busy
handler.)
"""
from __future__ import annotations

import logging
import threading
import time

import apsw

from linkband_historyd.storage import schema

CATCH_UP_PASSES = 20       # passes in a row before asking for a pause
CATCH_UP_SHORT_S = 0.003   # ... stopping once a pass took less than this
HOLD_S = 0.004             # the writer pauses at most this long for the thread's copy
DEFER_S = 0.25             # ... and gives way to waiting ingest at most this long first
FORCED_TIMES = 4           # WAL at this many times its limit: the writer copies the rest itself

log = logging.getLogger("linkband_historyd.storage.checkpointer")


class Checkpointer:
    def __init__(self, db_path: str, interval_s: float, wal_max_bytes: int):
        self.db_path = db_path
        self.interval = interval_s
        self.wal_max = wal_max_bytes
        self.want = threading.Event()       # the thread asks the writer for a pause
        self.forced = False                 # ... to copy the rest itself (WAL far too big)
        self.paused = threading.Event()     # the writer is pausing
        self.copied = threading.Event()     # the thread's copy in the pause is done
        self._stop = threading.Event()
        self._since = 0.0
        self.holds = self.timeouts = self.forced_copies = 0
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
        # pass is short, then ask for the pause
        for _ in range(CATCH_UP_PASSES):
            t = time.perf_counter()
            wal_pages = _passive(conn)
            short = time.perf_counter() - t < CATCH_UP_SHORT_S
            if short:
                break
        # while maintenance writes fast the passes may not get short: then the last
        # copy would be long, so it waits for a later round, up to FORCED_TIMES the limit
        forced = wal_pages * page_size >= FORCED_TIMES * self.wal_max
        if not (short or forced):
            return
        self.forced = forced
        self.copied.clear()
        self.want.set()
        if forced:
            return                          # the writer copies the rest itself
        while not self.paused.wait(0.2):
            if self._stop.is_set() or not self.want.is_set():
                return                      # stopping, or the writer's pause came and went
        _passive(conn)
        self.copied.set()

    # -- the writer, between two batches -----------------------------------------
    def pause_point(self, conn, ingest_waiting) -> bool:
        """Pause for the thread's copy if it asked (whether it did); ``conn``: the
        writer's connection, for a forced copy."""
        if not self.want.is_set():
            self._since = 0.0
            return False
        now = time.monotonic()
        self._since = self._since or now
        if now - self._since < DEFER_S and ingest_waiting():
            return False
        self._since = 0.0
        if self.forced:
            self.want.clear()
            self.forced_copies += 1
            try:
                _passive(conn)
            except apsw.Error as exc:
                log.warning("checkpoint failed: %s", exc)
            return True
        self.paused.set()
        self.want.clear()
        try:
            self.holds += 1
            if not self.copied.wait(HOLD_S):
                self.timeouts += 1
        finally:
            self.paused.clear()
        return True

    def counts(self) -> dict:
        return {"holds": self.holds, "hold_timeouts": self.timeouts,
                "forced_copies": self.forced_copies}


def _passive(conn) -> int:
    """One PASSIVE checkpoint; the WAL's size in pages."""
    return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0][1]
