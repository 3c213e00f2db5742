"""Stopping, crashing and restarting: what was acknowledged or received is kept."""
from __future__ import annotations

import multiprocessing
import os
import signal

import apsw
import pusher
from conftest import all_rows, wait_for


def _values_by_client(db_path):
    conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
    out = {}
    for name, value in conn.execute("SELECT metric_name, value FROM system_metrics"):
        out.setdefault(name, []).append(int(value))
    conn.close()
    return out


def test_sigterm_under_load_loses_no_received_record(daemon_factory):
    daemon = daemon_factory()
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    counters = [ctx.Value("q", 0) for _ in range(4)]
    procs = [ctx.Process(target=pusher.push_numbered, args=(daemon.ingest, daemon.query, who, stop, counters[who]))
             for who in range(4)]
    for p in procs:
        p.start()
    wait_for(lambda: all(c.value > 20_000 for c in counters), timeout=60)
    assert daemon.stop(signal.SIGTERM) == 0                      # drains, commits, exits 0
    stop.set()
    for p in procs:
        p.join(60)
    state = __import__("json").loads(apsw.Connection(str(daemon.db_path)).execute(
        "SELECT value FROM writer_state WHERE key = 'writer'").fetchall()[0][0])
    assert state["received_records"] == state["committed_records"] > 0
    values = _values_by_client(daemon.db_path)
    conn = apsw.Connection(str(daemon.db_path))
    for cid, stored, lost, rejected in conn.execute(
            "SELECT client_id, stored, lost_records, rejected FROM ingest_clients"):
        assert lost == 0 and rejected == 0, list(conn.execute("SELECT * FROM ingest_rejects"))
    for who in range(4):
        got = sorted(values.get(f"client{who}", []))
        assert got == list(range(len(got))), "a hole in what was stored"   # a prefix, no gaps
        assert len(got) > 0
    assert sum(len(v) for v in values.values()) == state["committed_records"]


def test_writer_killed_is_restarted_and_flushed_records_survive(daemon):
    c = daemon.client()
    acknowledged = []
    for round_ in range(3):
        batch = [{"metric_type": "test", "metric_name": "acked", "value": round_ * 1000 + i}
                 for i in range(500)]
        c.store_metrics(batch)
        assert c.flush(timeout=20)
        acknowledged.extend(r["value"] for r in batch)
        old = daemon.writer_pid()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: (lambda s: s["writer"].get("pid") not in (None, old))(daemon.stats()), timeout=20)
    c.store_metrics([{"metric_type": "test", "metric_name": "acked", "value": -1}])
    assert c.flush(timeout=20)
    got = sorted(r["value"] for r in all_rows(daemon, "metrics", metric_name="acked"))
    assert got == sorted(acknowledged + [-1])
    assert "died" in daemon.log() or "restart" in daemon.log()


def test_client_started_before_daemon_keeps_the_newest_and_counts_drops(daemon_factory):
    daemon = daemon_factory(start=False)
    # a tiny ZeroMQ queue, so the client's own bound (1000 records) decides
    c = daemon.client(max_queue=1000, send_hwm=1, batch_size=100)
    for i in range(1500):
        c.store_metrics([{"metric_name": "early", "value": i}])   # never blocks, daemon or not
    assert c.flush(timeout=0.3) is False                          # nobody there: no ack
    dropped = c.stats()["dropped"]
    assert dropped > 0
    daemon.start()
    assert c.flush(timeout=20)
    stored = {int(r["value"]) for r in all_rows(daemon, "metrics", metric_name="early")}
    assert len(stored) + dropped == 1500                          # every record stored or counted
    assert set(range(500, 1500)) <= stored                        # the newest were kept
    assert daemon.stats()["client_dropped_total"] == dropped


def test_second_daemon_on_the_same_data_dir_is_refused(daemon_factory, tmp_path):
    first = daemon_factory()
    second = daemon_factory(start=False, name="second")
    second.data_dir = first.data_dir                     # same database, other sockets
    second.db_path = first.db_path
    import subprocess
    proc = subprocess.run(second.argv(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "another linkband-historyd writer is using" in proc.stderr
    c = first.client()
    c.store_metrics([{"metric_name": "still", "value": 1}])
    assert c.flush()
