"""The client's on-disk spool (``spool_dir``) against the real daemon: away at start,
stopped or killed mid-stream, the byte bound, a torn tail, a second replay."""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import pytest
from conftest import all_rows, wait_for

T0 = 1_700_000_000.0          # one timestamp for all: listings then follow commit order (id)


def _metrics(start: int, n: int) -> list[dict]:
    return [{"metric_name": "spooled", "value": i, "timestamp": T0} for i in range(start, start + n)]


def _values(daemon) -> list[int]:
    return [int(r["value"]) for r in all_rows(daemon, "metrics", metric_name="spooled", limit=5000)]


def _spool_bytes(path) -> int:
    total = 0
    for p in path.glob("*.seg"):
        try:
            total += p.stat().st_size
        except FileNotFoundError:            # deleted while we looked
            pass
    return total


def test_daemon_up_the_spool_stays_empty(daemon, tmp_path):
    c = daemon.client(spool_dir=str(tmp_path / "spool"))
    for i in range(0, 10_000, 100):
        c.store_metrics(_metrics(i, 100))
    assert c.flush(timeout=20)
    assert _values(daemon) == list(range(10_000))
    assert c.stats()["spool_bytes"] == 0 and not list((tmp_path / "spool").glob("*.seg"))


def test_daemon_away_at_start_then_everything_once_and_in_order(daemon_factory, tmp_path):
    daemon = daemon_factory(start=False)
    spool = tmp_path / "spool"
    c = daemon.client(spool_dir=str(spool), batch_size=100)
    n = 5000
    for i in range(0, n, 50):
        c.store_metrics(_metrics(i, 50))
    assert c.flush(timeout=0.5) is False                       # nobody there: no ack
    wait_for(lambda: c.stats()["queued"] == 0)
    assert _spool_bytes(spool) > 0 and c.stats()["messages"] == 0   # all of it on disk
    daemon.start()
    assert c.flush(timeout=30)
    assert _values(daemon) == list(range(n))                   # each once, in order
    stats = daemon.stats()
    assert stats["stored_total"] == n
    assert stats["lost_records_total"] == 0 and stats["client_dropped_total"] == 0
    wait_for(lambda: not list(spool.glob("*.seg")))            # committed segments are deleted


@pytest.mark.parametrize("how", ["sigterm_daemon", "sigkill_writer"])
def test_daemon_stopped_or_writer_killed_mid_stream(daemon_factory, tmp_path, how):
    daemon = daemon_factory()
    c = daemon.client(spool_dir=str(tmp_path / "spool"), batch_size=50)
    sent = 0
    stop = threading.Event()

    def produce():
        nonlocal sent
        while not stop.is_set():
            c.store_metrics(_metrics(sent, 20))
            sent += 20
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_for(lambda: sent > 5000)
        if how == "sigterm_daemon":
            assert daemon.stop(signal.SIGTERM) == 0            # the client keeps storing
            before = sent
            wait_for(lambda: sent > before + 5000)             # ... with nobody there
            assert c.stats()["spool_bytes"] > 0
            daemon.start()
        else:
            old = daemon.writer_pid()
            os.kill(old, signal.SIGKILL)                       # what it received dies with it
            wait_for(lambda: daemon.stats()["writer"].get("pid") not in (None, old), timeout=30)
        before = sent
        wait_for(lambda: sent > before + 5000)
    finally:
        stop.set()
        producer.join()
    assert c.flush(timeout=60)
    assert _values(daemon) == list(range(sent))                # each once, in order
    assert daemon.stats()["lost_records_total"] == 0


def test_the_byte_bound_drops_the_oldest_and_the_daemon_counts_them(daemon_factory, tmp_path):
    daemon = daemon_factory(start=False)
    spool = tmp_path / "spool"
    bound = 256 << 10
    c = daemon.client(spool_dir=str(spool), spool_max_bytes=bound, batch_size=100)
    sizes = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            sizes.append(_spool_bytes(spool))
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    n = 20_000                                                 # about three times the bound
    try:
        for i in range(0, n, 100):
            c.store_metrics(_metrics(i, 100))
        wait_for(lambda: c.stats()["queued"] == 0)
        time.sleep(0.05)
    finally:
        stop.set()
        sampler.join()
    assert max(sizes) <= bound and len(sizes) > 10
    dropped = c.stats()["spool_dropped"]
    assert dropped > n // 2
    daemon.start()
    assert c.flush(timeout=30)
    values = _values(daemon)
    assert values == list(range(n - len(values), n))           # the oldest went first
    stats = daemon.stats()
    assert stats["client_dropped_total"] == dropped            # counted where stats shows it
    assert stats["stored_total"] + stats["client_dropped_total"] == n
    assert stats["lost_records_total"] == 0


@pytest.mark.parametrize("tear", ["cut", "zeroed"])
def test_torn_tail_skipped_and_a_second_replay_stores_nothing_twice(daemon_factory, tmp_path, tear):
    daemon = daemon_factory(start=False)
    spool = tmp_path / "spool"
    first = daemon.client(spool_dir=str(spool), batch_size=100)
    n = 3000
    for i in range(0, n, 100):
        first.store_metrics(_metrics(i, 100))
    first.close()                                              # the process ends, daemon away
    holder = daemon.client(spool_dir=str(spool))
    with pytest.raises(RuntimeError, match="in use"):          # one process per spool at a time
        daemon.client(spool_dir=str(spool))
    holder.close()
    last = sorted(spool.glob("*.seg"))[-1]
    size = last.stat().st_size
    with open(last, "r+b") as f:                               # died in the middle of a write:
        if tear == "cut":
            f.truncate(size - 7)                               # the last record is short
        else:
            f.seek(size - 7)                                   # the size was, its bytes were not
            f.write(bytes(7))
    copy = tmp_path / "copy"
    shutil.copytree(spool, copy)

    daemon.start()
    again = daemon.client(spool_dir=str(spool))                # a new process, same directory
    assert again.flush(timeout=30)
    assert _values(daemon) == list(range(n - 100))             # all but the torn message, in order
    assert again.stats()["spool_torn"] == 1
    again.close()

    replay = daemon.client(spool_dir=str(copy))                # the same messages once more
    assert replay.flush(timeout=30)
    assert _values(daemon) == list(range(n - 100))             # (client_id, seq): stored once
    stats = daemon.stats()
    assert stats["duplicate_messages_total"] >= (n - 100) // 100
    assert stats["lost_records_total"] == 0


def test_only_the_sender_thread_touches_the_spool(daemon_factory, tmp_path, monkeypatch):
    from linkband_history.spool import Spool

    touched = []
    for name in ("add", "add_message", "next_message", "sent", "unsent", "seal_sent", "release",
                 "close", "_start", "_write", "_records", "_unlink"):
        def spy(self, *args, _original=getattr(Spool, name), _name=name, **kw):
            touched.append((_name, threading.current_thread().name))
            return _original(self, *args, **kw)
        monkeypatch.setattr(Spool, name, spy)
    daemon = daemon_factory(start=False)
    c = daemon.client(spool_dir=str(tmp_path / "spool"), spool_max_bytes=64 << 10, batch_size=100)
    for i in range(0, 20_000, 10):                             # the daemon is away: disk it is
        c.store_metrics(_metrics(i, 10))
    assert c.flush(timeout=0.2) is False
    c.close()
    assert {"add", "_write", "_unlink", "close"} <= {name for name, _ in touched}
    assert {thread for _, thread in touched} == {"linkband-history-sender"}
