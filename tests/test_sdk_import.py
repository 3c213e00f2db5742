"""linkband-history import-sdk: an SDK-shaped history.db, built with plain sqlite3 as the
SDK writes it, imported into a real daemon and compared row by row."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from conftest import all_rows
from linkband_history import HistoryClient
from linkband_history.sdk import HistoryDatabaseManager, LogQuery, import_sdk_db

SEOUL = ZoneInfo("Asia/Seoul")
T0 = datetime(2026, 11, 26, 14, 3, 7, 123456)       # naive: the SDK's datetime.now()

SCHEMA = """
CREATE TABLE system_metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
    metric_type TEXT NOT NULL, metric_name TEXT NOT NULL, value REAL NOT NULL, unit TEXT, tags TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE performance_data (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
    component TEXT NOT NULL, operation TEXT NOT NULL, duration_ms REAL, throughput REAL,
    efficiency_percent REAL, error_count INTEGER DEFAULT 0, metadata TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE system_logs (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
    level TEXT NOT NULL, logger_name TEXT NOT NULL, message TEXT NOT NULL, module TEXT,
    function_name TEXT, line_number INTEGER, thread_id INTEGER, process_id INTEGER, extra_data TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE alert_history (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
    alert_id TEXT NOT NULL, level TEXT NOT NULL, category TEXT NOT NULL, title TEXT NOT NULL,
    description TEXT, source_component TEXT, acknowledged_at TEXT, resolved_at TEXT, metadata TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE data_summaries (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
    summary_type TEXT NOT NULL, data_type TEXT NOT NULL, summary_data TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
"""


def _json(v):
    return json.dumps(v) if v else None          # the SDK: NULL when empty


def build_sdk_db(path):
    """What the SDK's HistoryDatabaseManager leaves on disk; returns the rows put in, per table."""
    rows = {t: [] for t in ("system_metrics", "performance_data", "system_logs", "alert_history",
                            "data_summaries")}
    for i in range(120):
        rows["system_metrics"].append(dict(
            timestamp=(T0 + timedelta(seconds=i)).isoformat(), metric_type=("cpu", "memory", "disk")[i % 3],
            metric_name=("cpu_usage_percent", "memory_usage_percent", "disk_usage_percent")[i % 3],
            value=15.0 + i / 10, unit="%" if i % 5 else None, tags=_json({"host": "a"} if i % 2 else {})))
    for i in range(20):
        rows["performance_data"].append(dict(
            timestamp=(T0 + timedelta(seconds=i)).isoformat(), component=("buffer", "batch", "stream")[i % 3],
            operation="flush", duration_ms=None if i == 7 else 1.5 + i, throughput=250.0 if i % 2 else None,
            efficiency_percent=98.5, error_count=i % 2, metadata=_json({"sensor": "eeg"} if i % 4 else None)))
    messages = ["[STREAM:EEG] 250 samples broadcast", "디바이스 연결이 끊어졌습니다 (address=AA:BB)",
                "BLE 연결 성공: Device Connected", "높은 CPU 사용률 감지"]
    for i in range(60):
        rows["system_logs"].append(dict(
            timestamp=(T0 + timedelta(seconds=i)).isoformat(), level=("INFO", "WARNING", "ERROR", "DEBUG")[i % 4],
            logger_name="app.services", message=messages[i % 4], module=None if i % 3 else "device",
            function_name="run", line_number=i, thread_id=140000 + i, process_id=4242,
            extra_data=_json({"address": "AA:BB", "traceback": ["line 1", "line 2"]} if i % 2 else None),
            created_at=f"2026-11-26 05:0{3 + i // 20}:{i % 20 * 3:02d}"))    # UTC, as CURRENT_TIMESTAMP
    aware = datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc)
    for i in range(6):
        rows["alert_history"].append(dict(
            timestamp=(aware if i == 5 else T0 + timedelta(minutes=i)).isoformat(), alert_id=f"alert-{i}",
            level=("WARNING", "ERROR", "CRITICAL")[i % 3], category=("PERFORMANCE", "SENSOR", "SYSTEM")[i % 3],
            title="높은 CPU 사용률 감지", description="CPU 사용률이 87.3%로 임계값 85.0%을 초과했습니다",
            source_component="monitor", acknowledged_at=(T0 + timedelta(minutes=i, seconds=30)).isoformat()
            if i % 2 else None, resolved_at=None, metadata=_json({"threshold": 85.0})))
    for i, kind in enumerate(("hourly", "daily", "weekly")):
        rows["data_summaries"].append(dict(timestamp=(T0 + timedelta(hours=i)).isoformat(), summary_type=kind,
                                           data_type="metrics", summary_data=json.dumps({"avg": 15.2 + i})))
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    for table, items in rows.items():
        for r in items:
            conn.execute(f"INSERT INTO {table} ({', '.join(r)}) VALUES ({', '.join('?' * len(r))})",
                         list(r.values()))
    conn.commit()
    conn.close()
    return rows


def utc(text, tz=SEOUL):
    dt = datetime.fromisoformat(text)
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).timestamp()


def run_cli(daemon, *args):
    env = {**os.environ, "LINKBAND_HISTORY_QUERY": daemon.query, "LINKBAND_HISTORY_INGEST": daemon.ingest}
    return subprocess.run([sys.executable, "-m", "linkband_history.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_an_sdk_database_is_imported_row_by_row_in_its_zone_and_a_second_import_adds_nothing(daemon, tmp_path):
    source = tmp_path / "history.db"
    put = build_sdk_db(source)
    first = run_cli(daemon, "--json", "import-sdk", str(source), "--tz", "Asia/Seoul")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert {t: (r["read"], r["stored"], r["refused"]) for t, r in report.items()} == {
        "system_metrics": (120, 120, 0), "performance_data": (20, 20, 0), "system_logs": (60, 60, 0),
        "alert_history": (6, 6, 0), "data_summaries": (3, 3, 0)}
    assert report["performance_data"]["reasons"] == {}

    metrics = all_rows(daemon, "metrics")
    assert len(metrics) == 120
    for got, want in zip(sorted(metrics, key=lambda r: r["timestamp"]), put["system_metrics"]):
        assert got["timestamp"] == pytest.approx(utc(want["timestamp"]), abs=1e-6)
        assert (got["metric_type"], got["metric_name"], got["value"], got["unit"]) == \
            (want["metric_type"], want["metric_name"], want["value"], want["unit"])
        assert got["tags"] == (json.loads(want["tags"]) if want["tags"] else None)
    # 2026-11-26 14:03:07.123456 in Seoul is 05:03:07.123456 UTC
    assert min(r["timestamp"] for r in metrics) == \
        datetime(2026, 11, 26, 5, 3, 7, 123456, tzinfo=timezone.utc).timestamp()

    logs = sorted(all_rows(daemon, "logs"), key=lambda r: r["timestamp"])
    for got, want in zip(logs, put["system_logs"], strict=True):
        assert got["timestamp"] == pytest.approx(utc(want["timestamp"]), abs=1e-6)
        for f in ("level", "logger_name", "message", "module", "function_name", "line_number",
                  "thread_id", "process_id"):
            assert got[f] == want[f], f
        assert got["extra_data"] == (json.loads(want["extra_data"]) if want["extra_data"] else None)

    # each line keeps the SDK's created_at (UTC), read back as naive local time
    with HistoryDatabaseManager(str(daemon.db_path), ingest=daemon.ingest, query=daemon.query) as m:
        got = {log.line_number: log.created_at for log in m.query_logs(LogQuery(limit=100))}
    assert got == {w["line_number"]: datetime.fromtimestamp(
        datetime.fromisoformat(w["created_at"] + "+00:00").timestamp()) for w in put["system_logs"]}

    perf = sorted(all_rows(daemon, "performance"), key=lambda r: r["timestamp"])
    assert [r["duration_ms"] is None for r in perf].count(True) == 1      # NULL kept as NULL
    for got, want in zip(perf, put["performance_data"], strict=True):
        assert (got["component"], got["duration_ms"], got["throughput"], got["error_count"]) == \
            (want["component"], want["duration_ms"], want["throughput"], want["error_count"])
        assert got["metadata"] == (json.loads(want["metadata"]) if want["metadata"] else None)

    alerts = {r["alert_id"]: r for r in all_rows(daemon, "alerts")}
    for want in put["alert_history"]:
        got = alerts[want["alert_id"]]
        assert got["timestamp"] == pytest.approx(utc(want["timestamp"]), abs=1e-6)
        assert (got["level"], got["category"], got["title"], got["description"]) == \
            (want["level"], want["category"], want["title"], want["description"])
        ack = want["acknowledged_at"]
        assert got["acknowledged_at"] == (pytest.approx(utc(ack), abs=1e-6) if ack else None)
    assert alerts["alert-5"]["timestamp"] == datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc).timestamp()

    db = sqlite3.connect(f"file:{daemon.db_path}?mode=ro", uri=True)
    summaries = db.execute("SELECT summary_type, data_type, period_start, summary_data FROM data_summaries "
                           "WHERE summary_key = 'sdk' ORDER BY period_start").fetchall()
    db.close()
    assert [(s[0], s[1], s[2], json.loads(s[3])) for s in summaries] == [
        (w["summary_type"], w["data_type"], pytest.approx(utc(w["timestamp"]), abs=1e-6),
         json.loads(w["summary_data"])) for w in put["data_summaries"]]

    second = run_cli(daemon, "import-sdk", str(source), "--tz", "Asia/Seoul")
    assert second.returncode == 0, second.stderr
    lines = {line.split()[0]: line.split() for line in second.stdout.splitlines()[1:] if line.strip()}
    assert lines["system_metrics"][1:5] == ["120", "0", "120", "0"]          # read stored dup refused
    assert len(all_rows(daemon, "metrics")) == 120 and len(all_rows(daemon, "logs")) == 60


def test_a_copy_of_the_file_imported_from_python_adds_nothing_either(daemon, tmp_path):
    source = tmp_path / "history.db"
    build_sdk_db(source)
    with HistoryClient(daemon.ingest, daemon.query, query_timeout=60) as client:
        first = import_sdk_db(str(source), tz="UTC", client=client)
        copy = tmp_path / "elsewhere" / "copy.db"
        copy.parent.mkdir()
        copy.write_bytes(source.read_bytes())
        seen = []
        again = import_sdk_db(str(copy), tz="UTC", client=client,
                              progress=lambda table, done, total: seen.append((table, done, total)))
    assert first["system_logs"]["stored"] == 60
    assert sum(r["stored"] for r in again.values()) == 0
    assert again["system_logs"]["duplicates"] == 60
    assert ("system_metrics", 120, 120) in seen
    logs = all_rows(daemon, "logs")
    assert len(logs) == 60
    assert min(r["timestamp"] for r in logs) == utc(T0.isoformat(), timezone.utc)


def test_an_unknown_zone_is_refused_before_anything_is_read(daemon, tmp_path):
    source = tmp_path / "history.db"
    build_sdk_db(source)
    out = run_cli(daemon, "import-sdk", str(source), "--tz", "Mars/Olympus")
    assert out.returncode != 0 and "unknown zone 'Mars/Olympus'" in out.stderr
    assert all_rows(daemon, "logs") == []
