"""Push every kind from several processes; read back exactly what was pushed."""
from __future__ import annotations

import json
import logging
import multiprocessing
import time
from datetime import datetime, timezone

import pusher
from conftest import all_rows


def _norm(rows, fields):
    out = []
    for r in rows:
        out.append(tuple(json.dumps(r.get(f), sort_keys=True, ensure_ascii=False) for f in fields))
    return sorted(out)


def test_three_processes_push_every_kind_and_read_it_back(daemon):
    base = time.time() - 3600
    n = 400
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        flushed = pool.starmap(pusher.push, [(daemon.ingest, daemon.query, seed, n, base)
                                            for seed in (1, 2, 3)])
    assert flushed == [True, True, True]
    expected = {k: [] for k in ("metric", "performance", "log", "alert")}
    for seed in (1, 2, 3):
        for k, v in pusher.records(seed, n, base).items():
            expected[k].extend(v)
    for kind, command in (("metric", "metrics"), ("performance", "performance"),
                          ("log", "logs"), ("alert", "alerts")):
        got = all_rows(daemon, command, limit=250)
        fields = list(expected[kind][0])
        assert len(got) == len(expected[kind]), kind
        assert _norm(got, fields) == _norm(expected[kind], fields), kind
        assert [r["timestamp"] for r in got] == sorted(r["timestamp"] for r in got)
    stats = daemon.stats()
    assert stats["tables"]["system_metrics"] == 3 * n
    assert stats["tables"]["system_logs"] == 3 * n // 2
    assert stats["lost_records_total"] == 0 and stats["rejected_total"] == 0


def test_filters_and_pagination(daemon):
    c = daemon.client()
    t0 = 1_700_000_000.0
    c.store_metrics([{"timestamp": t0 + i, "metric_type": "cpu" if i % 2 else "memory",
                      "metric_name": f"m{i % 3}", "value": float(i),
                      "tags": {"sensor": "eeg" if i % 4 == 0 else "ppg"}} for i in range(100)])
    assert c.flush()
    rows = all_rows(daemon, "metrics", metric_name="m1", limit=7)
    assert [r["value"] for r in rows] == [float(i) for i in range(100) if i % 3 == 1]
    rows = all_rows(daemon, "metrics", metric_type="cpu", since=t0 + 10, until=t0 + 20)
    assert [r["value"] for r in rows] == [11.0, 13.0, 15.0, 17.0, 19.0]
    rows = all_rows(daemon, "metrics", tags={"sensor": "eeg"}, metric_name=["m0", "m2"])
    assert [r["value"] for r in rows] == [float(i) for i in range(100) if i % 4 == 0 and i % 3 != 1]
    desc = all_rows(daemon, "metrics", order="desc", limit=30)
    assert [r["value"] for r in desc] == [float(i) for i in reversed(range(100))]
    iso = datetime.fromtimestamp(t0 + 95, timezone.utc).isoformat()
    assert [r["value"] for r in all_rows(daemon, "metrics", since=iso)] == [95.0, 96.0, 97.0, 98.0, 99.0]


def test_timestamps_accepted_as_epoch_iso_and_datetime(daemon):
    c = daemon.client()
    t = 1_750_000_000.25
    dt = datetime.fromtimestamp(t, timezone.utc)
    c.store_metrics([
        {"timestamp": t, "metric_name": "a", "value": 1},
        {"timestamp": dt.isoformat(), "metric_name": "b", "value": 2},
        {"timestamp": dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "metric_name": "c", "value": 3},
        {"timestamp": dt, "metric_name": "d", "value": 4},
        {"timestamp": dt.astimezone(), "metric_name": "e", "value": 5},
    ])
    assert c.flush()
    rows = all_rows(daemon, "metrics")
    assert [r["timestamp"] for r in rows] == [t] * 5


def test_log_handler_round_trips_extra_fields_and_exception(daemon):
    from linkband_history import HistoryLogHandler

    handler = HistoryLogHandler(daemon.client())
    logger = logging.getLogger("DEVICE.manager")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("디바이스 연결이 끊어졌습니다", extra={"address": "AA:BB:CC:DD:EE:FF", "status": "lost"})
        try:
            raise ConnectionError("BLE link lost")
        except ConnectionError:
            logger.exception("[DEVICE_MGR:CONNECT] 재연결 실패")
        assert handler.client.flush()
    finally:
        logger.removeHandler(handler)
    rows = all_rows(daemon, "logs")
    assert len(rows) == 2
    first, second = rows
    assert first["message"] == "디바이스 연결이 끊어졌습니다"
    assert first["level"] == "INFO" and first["logger_name"] == "DEVICE.manager"
    assert first["extra_data"] == {"address": "AA:BB:CC:DD:EE:FF", "status": "lost"}
    assert first["function_name"] == "test_log_handler_round_trips_extra_fields_and_exception"
    assert first["module"] == "test_roundtrip" and first["line_number"] > 0
    assert first["process_id"] > 0 and first["thread_id"] > 0
    exc = second["extra_data"]["exception"]
    assert second["level"] == "ERROR"
    assert exc["type"] == "ConnectionError" and exc["message"] == "BLE link lost"
    assert "raise ConnectionError" in exc["traceback"]


def test_alert_pushed_again_updates_its_resolution(daemon):
    c = daemon.client()
    alert = {"alert_id": "a-1", "level": "WARNING", "category": "SYSTEM", "title": "메모리 경고",
             "timestamp": 1_700_000_000}
    c.store_alerts([alert])
    assert c.flush()
    c.store_alerts([{**alert, "resolved_at": 1_700_000_060}])
    assert c.flush()
    rows = all_rows(daemon, "alerts")
    assert len(rows) == 1 and rows[0]["resolved_at"] == 1_700_000_060.0
    assert all_rows(daemon, "alerts", open=True) == []
