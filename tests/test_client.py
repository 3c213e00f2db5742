"""The client library on its own: conversion at the edge, threads, bad records."""
from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone

import pytest
from conftest import all_rows

from linkband_history import protocol
from linkband_history.times import parse_time, to_epoch


def test_time_conversion_at_the_edge():
    t = 1_750_000_000.5
    dt = datetime.fromtimestamp(t, timezone.utc)
    assert to_epoch(t) == t and to_epoch(int(t)) == float(int(t))
    assert to_epoch(dt) == t
    assert to_epoch(dt.astimezone(timezone(timedelta(hours=9)))) == t
    assert to_epoch(dt.isoformat()) == t
    assert to_epoch("2025-06-15T15:06:40.5Z") == t
    assert parse_time("15m", now=1000.0) == 100.0
    assert parse_time("2h", now=10_000.0) == 10_000.0 - 7200
    for bad in ("tomorrow", float("nan"), float("inf"), True, None, [1]):
        with pytest.raises(ValueError):
            to_epoch(bad)


def test_json_fields_keep_types_and_unknown_keys():
    row = protocol.row_from_record("metric", {"metric_name": "a", "value": 1, "tags": {"x": 1},
                                               "sensor": "eeg"}, 5.0)
    assert row[0] == 5.0 and row[1] == "custom"
    assert row[5] == '{"sensor":"eeg","x":1}'
    assert protocol.dumps_json({"x": 1}) == '{"x":1}'
    assert protocol.dumps_json({"x": True}) == '{"x":true}'
    assert protocol.dumps_json({"x": 1.0}) == '{"x":1.0}'
    log = protocol.row_from_record("log", {"level": "warn", "message": "m", "logger": "L"}, 1.0)
    assert log[1] == "WARNING" and log[2] == "L"
    alert = protocol.row_from_record("alert", {"level": 40, "title": "t", "message": "d"}, 1.0)
    assert alert[2] == "ERROR" and alert[5] == "d" and len(alert[1]) == 36


def test_bad_record_raises_and_the_others_are_kept(daemon):
    c = daemon.client()
    with pytest.raises(ValueError, match="record 1"):
        c.store_metrics([{"metric_name": "a", "value": 1},
                         {"metric_name": "a", "value": 2, "timestamp": "not a time"},
                         {"metric_name": "a", "value": 3}])
    assert c.flush()
    assert [r["value"] for r in all_rows(daemon, "metrics")] == [1.0, 3.0]


def test_one_client_shared_by_many_threads(daemon):
    c = daemon.client(batch_size=64)
    per_thread = 2000

    def work(k):
        for i in range(per_thread):
            c.store_metrics([{"metric_name": f"t{k}", "value": i, "timestamp": 1_700_000_000 + i}])
        assert c.query("ping")["ok"]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.flush(timeout=20)
    for k in range(8):
        values = [r["value"] for r in all_rows(daemon, "metrics", metric_name=f"t{k}", limit=5000)]
        assert values == [float(i) for i in range(per_thread)]
    assert c.stats()["dropped"] == 0


def _threads() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


@pytest.mark.skipif(not (hasattr(os, "SCHED_BATCH") and os.path.isdir("/proc/self/task")),
                    reason="Linux scheduling policies")
@pytest.mark.parametrize("spooled", [False, True], ids=["plain", "spooled"])
def test_the_sender_and_zeromqs_io_thread_never_preempt_the_thread_that_logs(daemon, tmp_path,
                                                                          spooled):
    """Every thread a client starts (its sender, and the I/O threads of its ZeroMQ
    context) is under SCHED_BATCH, which never preempts a running thread on
    wake-up; the thread that made the client keeps its own policy."""
    mine = os.sched_getscheduler(0)
    before = _threads()
    c = daemon.client(**({"spool_dir": str(tmp_path / "spool")} if spooled else {}))
    started = _threads() - before
    c.store_logs([{"level": "INFO", "logger_name": "t", "message": "한 줄"}])
    assert c.flush(timeout=10)
    names = {open(f"/proc/self/task/{t}/comm").read().strip() for t in started & _threads()}
    assert c._thread.native_id in started
    assert any(n.startswith("ZMQbg/IO") for n in names), names
    assert {t: os.sched_getscheduler(t) for t in started} == dict.fromkeys(started, os.SCHED_BATCH)
    assert os.sched_getscheduler(0) == mine != os.SCHED_BATCH


def test_a_batch_is_split_by_encoded_size_in_order_and_a_record_too_long_alone_is_named():
    import msgpack
    rows = [("log", [float(i), "INFO", "T", "m" * (i * 37 % 900), None, None, None, None, None, None])
            for i in range(200)]
    rows.insert(50, ("metric", [1.0, "t", "huge", 1.0, None, "x" * 5000]))
    rows.insert(120, ("log", [1.0, "INFO", "T", "big but fits", None, None, None, None, None, None]))
    parts, refused = protocol.split_rows(rows, 4096)
    assert refused == ["metric"]
    assert all(len(body) <= 4096 for body, _ in parts) and len(parts) > 10
    back = [row for body, n in parts for row in msgpack.unpackb(body)["log"]]
    assert back == [r for k, r in rows if k == "log"]                  # every row, in order
    assert sum(n for _, n in parts) == 201
    body, n = protocol.split_rows(rows[:3], 1 << 20)[0][0]
    assert n == 3 and body == protocol.pack_payload({"log": [r for _, r in rows[:3]]})
