"""A heartbeat from a side thread while the main thread is inside one long C call.

The writer beats from its loop and from SQLite's progress handler, which runs
every so many statement steps. Some calls run no steps for seconds: VACUUM's
copy of the rebuilt database back into the file and its commit, a checkpoint
that truncates the WAL, their fsyncs. Around such a call the writer starts a
:class:`BusyBeat`: a thread that beats only while it sees the process working,
its CPU time or the bytes it has written advancing, or the calling thread
waiting on the disk (Linux: state ``D``). A call that is blocked for good (a lock
never released, a dead network file system) shows none of these, so the writer
still stops beating and the supervisor still takes it for hung; SIGSTOP stops
this thread with the rest of the process.
"""
from __future__ import annotations

import os
import threading

INTERVAL_S = 0.2          # how often the thread looks; well under any hang limit


def _written() -> int:
    """Bytes the process has written (0 where the platform does not say: macOS)."""
    try:
        import psutil
        return psutil.Process().io_counters().write_bytes
    except Exception:      # no psutil, no io_counters, AccessDenied: no figure, never a crash
        return 0


def _waits_on_disk(tid: int | None) -> bool:
    """Whether the thread ``tid`` is in uninterruptible (disk) sleep; Linux only."""
    if tid is None:
        return False
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] == b"D"


class BusyBeat:
    """``with BusyBeat(child.beat): conn.execute("VACUUM")``."""

    def __init__(self, beat, interval: float = INTERVAL_S):
        self.beat = beat
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tid: int | None = None

    def __enter__(self) -> "BusyBeat":
        self._tid = threading.get_native_id()
        self._thread = threading.Thread(target=self._run, name="busy-beat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _work(self) -> tuple:
        t = os.times()
        return t.user + t.system, _written()

    def _run(self) -> None:
        last = self._work()
        while not self._stop.wait(self.interval):
            now = self._work()
            if now != last or _waits_on_disk(self._tid):
                self.beat()
            last = now
