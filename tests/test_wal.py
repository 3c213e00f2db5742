"""The WAL stays bounded under a steady stream, which never lets a checkpoint that
runs beside the commits catch up by itself."""
from __future__ import annotations

import os
import threading
import time

from conftest import wait_for


def test_wal_starts_over_under_a_steady_stream(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_WAL_MAX_MB": "1",
                            "LINKBAND_HISTORY_CHECKPOINT_INTERVAL_S": "0.1"})
    wal = str(d.db_path) + "-wal"
    stop = threading.Event()
    sent = [0]

    def push():     # a commit every millisecond or so, never a pause
        c = d.client(batch_interval=0.0005)
        while not stop.is_set():
            c.store_metrics([{"metric_name": f"m{k}", "value": float(sent[0] + k)} for k in range(5)])
            sent[0] += 5
            time.sleep(0.0005)
        assert c.flush(timeout=30)

    t = threading.Thread(target=push)
    t.start()
    sizes = []
    try:
        t_end = time.monotonic() + 8
        while time.monotonic() < t_end:
            time.sleep(0.1)
            if os.path.exists(wal):
                sizes.append(os.path.getsize(wal))
    finally:
        stop.set()
        t.join(60)
    # without the writer finishing the checkpoints the WAL grows by tens of MB in
    # these 8 s; with them it starts over past the 1 MiB cap, and the file, which
    # SQLite cuts back to 4 x the cap (journal_size_limit), stays there: in one run
    # at 4.0 MiB most of the time, 8.0 MiB at most
    assert sent[0] > 10_000
    cap = 1024 * 1024
    later = sorted(sizes[len(sizes) // 2:])
    assert later[len(later) // 2] <= 4 * cap + 64 * 1024, sizes         # the median
    assert later[-1] < 12 * cap, sizes
    wait_for(lambda: d.stats()["stored_total"] == sent[0], timeout=30)
