"""The pool of query workers: no query waits behind another, a time budget per query,
percentiles in bounded memory, a clear 'busy' rather than a timeout.

The database (1.2 million metric rows) is built directly with APSW before the
daemons start, as the writer stores rows; the scheduler is off so nothing folds
them into summaries meanwhile.
"""
from __future__ import annotations

import os
import shutil
import signal
import statistics
import threading
import time

import psutil
import pytest
from conftest import wait_for

from linkband_history import HistoryClient
from linkband_historyd.commands.base import COMMANDS
from linkband_historyd.harness import DaemonProcess
from linkband_historyd.processes.query_server import LIGHT
from linkband_historyd.storage import schema

NAMES = 12
SECONDS = 100_000                      # 12 metrics at 1 Hz: 1.2M rows
T0 = 1_700_000_000.0
HEAVY = dict(bucket="1h", functions=["avg", "p95"], group_by=["metric_name"], tier="detail")
ENV = {"LINKBAND_HISTORY_COLLECTOR": "false", "LINKBAND_HISTORY_SCHEDULER": "false"}


def build(path: str) -> None:
    conn = schema.open_writer(path, synchronous="OFF")
    tx = 100_000

    def rows(start):
        for i in range(start, min(start + tx, NAMES * SECONDS)):
            s, k = divmod(i, NAMES)
            yield (T0 + s + k * 0.001, "test", f"metric_{k:02d}", float((i * 7919) % 1000),
                   "%", None)
    for start in range(0, NAMES * SECONDS, tx):
        with conn:
            conn.executemany(schema.INSERT["metric"], rows(start))
            conn.execute(schema.UPDATE_LATEST, (start + 1, start + tx))
            conn.execute(schema.ADD_COUNT, ("system_metrics", tx))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.close()


@pytest.fixture(scope="module")
def big_db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("bigdb") / "history.db")
    build(path)
    return path


def daemon_on(base, db: str, env: dict) -> DaemonProcess:
    d = DaemonProcess(base, env={**ENV, **env})
    os.makedirs(d.data_dir, mode=0o700)
    shutil.copyfile(db, d.db_path)
    d.start()
    with d.client() as c:
        c.store_logs([{"timestamp": T0 + i, "level": "INFO", "logger_name": "test",
                       "message": f"line {i}"} for i in range(1000)])
        assert c.flush(timeout=20)
    return d


@pytest.fixture(scope="module")
def pooled(big_db, tmp_path_factory):
    d = daemon_on(tmp_path_factory.mktemp("pooled"), big_db,
                  {"LINKBAND_HISTORY_QUERY_WORKERS": "2"})
    yield d
    d.close()


def heavy(c: HistoryClient, i: int, **more) -> dict:
    """The heavy aggregate; ``i`` moves its range by a second (no cached reply)."""
    return c.query("metrics.aggregate", since=T0 - i, until=T0 + SECONDS + i, **HEAVY, **more)


def query_memory_mb(d: DaemonProcess) -> float:
    """Private memory (resident minus shared: not the mmap'ed database) of the query
    process and its workers."""
    query = psutil.Process(d.stats()["pid"])
    total = 0.0
    for p in [query] + query.children():
        m = p.memory_info()
        total += (m.rss - getattr(m, "shared", 0)) / 1e6
    return total


def test_every_light_command_is_a_command():
    assert LIGHT <= set(COMMANDS), LIGHT - set(COMMANDS)


def test_ping_dashboard_and_a_page_of_logs_answer_within_50_ms_while_a_heavy_aggregate_runs(pooled):
    runs, stop = [], threading.Event()

    def load():
        with HistoryClient(query=pooled.query, query_timeout=120) as c:
            i = 0
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                reply = heavy(c, i)
                runs.append((t0, time.monotonic(), reply))

    thread = threading.Thread(target=load)
    thread.start()
    took = {"ping": [], "dashboard": [], "logs": []}
    asked_at = []
    try:
        time.sleep(0.3)                                # the first heavy query is running
        with HistoryClient(query=pooled.query, query_timeout=5) as c:
            for i in range(7):
                # the dashboard's window moves by a second: computed, not a cached reply
                for name, params in (("ping", {}), ("dashboard", {"window": 3600 + i}),
                                     ("logs", {"limit": 100})):
                    t = time.monotonic()
                    reply = c.query(name, **params)
                    took[name].append(time.monotonic() - t)
                    asked_at.append(t)
                    assert reply["ok"], reply
                    if name == "logs":
                        assert len(reply["rows"]) == 100
    finally:
        stop.set()
        thread.join(120)
    assert runs and all(r["ok"] for _, _, r in runs), [r for _, _, r in runs if not r["ok"]]
    first_took = runs[0][1] - runs[0][0]
    assert first_took > 0.5, f"the heavy aggregate took only {first_took:.2f}s: not heavy"
    # every cheap question was asked while a heavy one was running
    assert all(any(a <= t <= b for a, b, _ in runs) for t in asked_at)
    medians = {k: statistics.median(v) * 1e3 for k, v in took.items()}
    print(f"heavy aggregate {first_took:.2f}s; medians while it ran (ms): {medians}")
    assert all(m < 50 for m in medians.values()), medians


def test_query_memory_stays_within_100_mb_after_ten_p95_aggregates_over_a_million_rows(pooled):
    with pooled.client(query_timeout=120) as c:
        assert c.query("ping")["ok"]
        before = query_memory_mb(pooled)
        for i in range(10):
            # one group of 1.2M values (the sketch), then hourly groups (exact)
            params = dict(HEAVY, bucket="none") if i % 2 == 0 else HEAVY
            reply = c.query("metrics.aggregate", since=T0 - i, until=T0 + SECONDS + i,
                            **{**params, "functions": ["p95"]})
            assert reply["ok"], reply
            assert all(abs(r["p95"] - 950) <= 950 * 0.011 for r in reply["rows"]), reply["rows"][:3]
        after = query_memory_mb(pooled)
    print(f"query process and workers, private MB: {before:.0f} before, {after:.0f} after")
    assert after - before < 100, (before, after)
    assert pooled.stats()["query"]["replaced"] == 0      # not by recycling workers


@pytest.fixture(scope="module")
def single(big_db, tmp_path_factory):
    """One worker, a short budget and wait, a short hang limit: every path is visible."""
    d = daemon_on(tmp_path_factory.mktemp("single"), big_db, {
        "LINKBAND_HISTORY_QUERY_WORKERS": "1", "LINKBAND_HISTORY_QUERY_MAX_SECONDS": "0.3",
        "LINKBAND_HISTORY_QUERY_QUEUE_WAIT_S": "0.5", "LINKBAND_HISTORY_CHILD_HANG_S": "2"})
    yield d
    d.close()


def test_a_query_over_its_budget_gets_the_budget_error_and_the_worker_serves_the_next(single):
    with single.client(query_timeout=30) as c:
        worker = c.query("stats")["rows"][0]["query_worker_pid"]
        reply = heavy(c, 1)
        assert not reply["ok"] and reply["error"]["code"] == "over_budget", reply
        msg = reply["error"]["message"]
        assert "0.3 s" in msg and "query.max_seconds" in msg and "tier" in msg and "export" in msg
        page = c.query("logs", limit=100)
        assert page["ok"] and len(page["rows"]) == 100
        again = c.query("stats")["rows"][0]
        assert again["query_worker_pid"] == worker and again["query"]["replaced"] == 0
        # a request may ask for less than the budget ...
        short = heavy(c, 2, max_seconds=0.05)
        assert short["error"]["code"] == "over_budget" and "0.05 s" in short["error"]["message"]
        # ... and here (no admin endpoint, no admin keys: every client is admin) for more
        assert heavy(c, 3, max_seconds=60)["ok"]
        bad = c.query("ping", max_seconds="soon")
        assert bad["error"]["code"] == "bad_param" and "max_seconds" in bad["error"]["message"]


def test_when_every_worker_is_busy_a_request_gets_busy_rather_than_a_timeout(single):
    result = {}

    def long_one():
        with HistoryClient(query=single.query, query_timeout=60) as c:
            result["reply"] = heavy(c, 10, max_seconds=60)

    t = threading.Thread(target=long_one)
    t.start()
    try:
        time.sleep(0.3)
        with HistoryClient(query=single.query, query_timeout=5) as c:
            t0 = time.monotonic()
            reply = c.query("ping")
            waited = time.monotonic() - t0
    finally:
        t.join(60)
    assert result["reply"]["ok"], result
    assert not reply["ok"] and reply["error"]["code"] == "busy", reply
    assert "query.queue_wait_s" in reply["error"]["message"] and waited < 5


def test_a_worker_killed_while_answering_is_replaced_and_its_client_gets_an_error(single):
    with single.client(query_timeout=30) as c:
        query_pid = c.query("stats")["rows"][0]["pid"]
        worker = psutil.Process(query_pid).children()[0].pid
        box = {}
        t = threading.Thread(target=lambda: box.update(reply=heavy(c, 20, max_seconds=60)))
        t.start()
        time.sleep(0.5)
        os.kill(worker, signal.SIGKILL)
        t.join(30)
        assert box["reply"]["error"]["code"] == "unavailable", box
        stats = wait_for(lambda: (lambda r: r.get("ok") and r)(c.query("stats")), timeout=20)
        row = stats["rows"][0]
        assert row["pid"] == query_pid and row["query_worker_pid"] != worker
        assert row["query"]["replaced"] >= 1


def test_a_hung_worker_is_killed_and_replaced(single):
    with single.client(query_timeout=10) as c:
        query_pid = c.query("stats")["rows"][0]["pid"]
        worker = psutil.Process(query_pid).children()[0].pid
        os.kill(worker, signal.SIGSTOP)               # alive, but it never beats again
        wait_for(lambda: not psutil.pid_exists(worker)
                 or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE, timeout=20)
        reply = wait_for(lambda: (lambda r: r.get("ok") and r)(c.query("stats")), timeout=20)
        assert reply["rows"][0]["query_worker_pid"] != worker
    assert f"query worker 0 (pid {worker}) is hung" in single.log()
