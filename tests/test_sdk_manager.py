"""linkband_history.sdk.HistoryDatabaseManager driven as the SDK's code drives it,
with stand-ins of its pydantic models, against a real daemon."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

import sdk_models as sdk
from linkband_history.sdk import HistoryDatabaseManager
from linkband_historyd.storage import schema

T0 = datetime(2026, 5, 1, 9, 0, 0)        # naive local time, as the SDK's datetime.now()


@pytest.fixture
def manager(daemon):
    m = HistoryDatabaseManager(str(daemon.db_path), ingest=daemon.ingest, query=daemon.query)
    yield m
    m.close()


def logs_of(manager, **kw):
    return manager.query_logs(sdk.LogQuery(**kw))


MESSAGES = [
    ("INFO", "app.api", "api", "[SERVER:START] Link Band SDK server started"),
    ("WARNING", "app.services", "device", "디바이스 연결이 끊어졌습니다 (address=AA:BB)"),
    ("ERROR", "app.services", "stream", "[STREAM:PPG] 버퍼 오버플로우 발생: 12 samples dropped"),
    ("INFO", "app.core", "device", "BLE 연결 성공: Device Connected"),
    ("DEBUG", "uvicorn", "server", "GET /device/status 200 OK"),
    ("CRITICAL", "app.core", "monitor", "높은 CPU 사용률 감지: cpu USAGE 97%"),
]


def store_messages(manager, n_rounds=5):
    """n_rounds x len(MESSAGES) log lines, one second apart, the last one newest."""
    i = 0
    for _ in range(n_rounds):
        for level, logger, module, message in MESSAGES:
            manager.store_log(sdk.SystemLog(timestamp=T0 + timedelta(seconds=i), level=level,
                                            logger_name=logger, module=module, message=message,
                                            extra_data={"i": i}))
            i += 1
    manager.force_flush()
    return i


def test_after_force_flush_every_record_is_counted_exactly(manager):
    for i in range(250):
        manager.store_metric(sdk.SystemMetric(metric_type=sdk.MetricType.CPU, metric_name="cpu_usage_percent",
                                              value=float(i), unit="%", timestamp=T0 + timedelta(seconds=i)))
    for i in range(40):
        manager.store_performance_data(sdk.PerformanceData(
            component=sdk.ComponentType.BUFFER if i % 4 else sdk.ComponentType.STREAM,
            operation="flush", duration_ms=1.5, timestamp=T0))
    store_messages(manager)
    manager.store_alert(sdk.AlertHistory(alert_id=str(uuid.uuid4()), level=sdk.LogLevel.ERROR,
                                         category=sdk.AlertCategory.SYSTEM, title="높은 CPU 사용률 감지",
                                         timestamp=T0))
    manager.store_summary(sdk.DataSummary(summary_type=sdk.SummaryType.HOURLY, data_type="metrics",
                                          summary_data={"avg": 15.2}, timestamp=T0))
    manager.force_flush()
    stats = manager.get_history_stats()
    assert stats.data_type_counts == {"metrics": 250, "performance": 40, "logs": 30, "alerts": 1,
                                      "summaries": 1}
    assert stats.total_records == 322
    assert stats.level_counts == {"INFO": 10, "WARNING": 5, "ERROR": 5, "DEBUG": 5, "CRITICAL": 5}
    assert stats.component_counts == {"buffer": 30, "stream": 10}
    assert stats.date_range["start"] == T0
    assert stats.date_range["end"] == T0 + timedelta(seconds=249)
    assert stats.storage_size_mb > 0
    info = manager.get_storage_info()
    assert info.record_counts == stats.data_type_counts
    assert info.oldest_record == T0 and info.total_size_mb > 0


def test_metrics_come_back_newest_first_as_models_with_naive_local_time_and_offset(manager):
    for i in range(30):
        manager.store_metric({"metric_type": "memory" if i % 2 else "cpu", "metric_name": f"m{i % 3}",
                              "value": float(i), "timestamp": T0 + timedelta(seconds=i),
                              "tags": {"host": "a"}})
    manager.force_flush()
    got = manager.query_metrics(sdk.MetricQuery(limit=5))
    assert [m.value for m in got] == [29.0, 28.0, 27.0, 26.0, 25.0]
    assert got[0].timestamp == T0 + timedelta(seconds=29) and got[0].timestamp.tzinfo is None
    assert got[0].metric_type == "memory" and got[0].tags == {"host": "a"} and got[0].id is not None
    page = manager.query_metrics(sdk.MetricQuery(limit=4, offset=10))
    assert [m.value for m in page] == [19.0, 18.0, 17.0, 16.0]
    assert manager.query_metrics(sdk.MetricQuery(offset=1000)) == []
    cpu = manager.query_metrics(sdk.MetricQuery(metric_types=[sdk.MetricType.CPU], metric_names=["m0"]))
    assert [m.value for m in cpu] == [24.0, 18.0, 12.0, 6.0, 0.0]


def test_both_ends_of_the_time_range_are_inclusive(manager):
    store_messages(manager, 1)
    got = logs_of(manager, start_time=T0 + timedelta(seconds=1), end_time=T0 + timedelta(seconds=4))
    assert [log.timestamp for log in got] == [T0 + timedelta(seconds=s) for s in (4, 3, 2, 1)]
    metrics_end = manager.query_metrics(sdk.MetricQuery(end_time=T0))
    assert metrics_end == []


def test_logs_newest_first_with_offset_and_level_logger_and_module_filters(manager):
    total = store_messages(manager)
    every = logs_of(manager, limit=1000)
    assert len(every) == total == 30
    assert [log.extra_data["i"] for log in every] == list(range(29, -1, -1))
    assert isinstance(every[0].level, sdk.LogLevel) is False and every[0].level == "CRITICAL"
    page = logs_of(manager, limit=3, offset=7)
    assert [log.extra_data["i"] for log in page] == [22, 21, 20]
    errors = logs_of(manager, levels=[sdk.LogLevel.ERROR, sdk.LogLevel.CRITICAL])
    assert len(errors) == 10 and {log.level for log in errors} == {"ERROR", "CRITICAL"}
    services = logs_of(manager, logger_names=["app.services"], modules=["device"])
    assert len(services) == 5 and {log.module for log in services} == {"device"}
    assert {log.logger_name for log in services} == {"app.services"}


def test_search_text_is_a_case_insensitive_substring_in_korean_and_english(manager):
    store_messages(manager)
    assert len(logs_of(manager, search_text="연결")) == 10           # two messages, five rounds
    assert len(logs_of(manager, search_text="연결이 끊어")) == 5       # spaces belong to the text
    assert len(logs_of(manager, search_text="device connected")) == 5
    assert len(logs_of(manager, search_text="DEVICE")) == 10          # also "/device/status"
    assert len(logs_of(manager, search_text="cpu usage")) == 5
    assert len(logs_of(manager, search_text="OK")) == 5               # short terms too
    assert logs_of(manager, search_text="connected device") == []     # the text as a whole
    combined = logs_of(manager, search_text="연결", levels=["WARNING"], limit=2, offset=1)
    assert [log.extra_data["i"] for log in combined] == [19, 13]


def test_a_cleanup_dry_run_counts_and_deletes_nothing_and_a_real_one_deletes(manager):
    old = datetime.now() - timedelta(days=40)
    for i in range(7):
        manager.store_log(sdk.SystemLog(level="INFO", logger_name="app.core", message=f"old {i}",
                                        timestamp=old))
        manager.store_metric(sdk.SystemMetric(metric_type="cpu", metric_name="cpu", value=1.0,
                                              timestamp=old))
    manager.store_log(sdk.SystemLog(level="INFO", logger_name="app.core", message="new"))
    manager.force_flush()
    preview = manager.cleanup_old_data(retention_days=30)
    assert preview["system_logs"] == 7 and preview["system_metrics"] == 7
    assert set(preview) == {"system_metrics", "performance_data", "system_logs", "alert_history",
                            "data_summaries"}
    assert manager.get_history_stats().data_type_counts["logs"] == 8
    deleted = manager.cleanup_old_data(retention_days=30, dry_run=False)
    assert deleted["system_logs"] == 7 and deleted["system_metrics"] == 7
    assert [log.message for log in logs_of(manager)] == ["new"]


def test_optimize_reports_its_duration_and_operations(manager):
    store_messages(manager, 1)
    result = manager.optimize_database()
    assert result["duration_seconds"] >= 0 and result["operations"]
    assert datetime.fromisoformat(result["completed_at"]).tzinfo is None


def test_a_bad_record_is_logged_and_the_others_are_stored(manager, caplog):
    manager.store_log({"level": "INFO", "logger_name": "x", "message": "kept", "timestamp": "yesterday"})
    manager.store_log({"level": "INFO", "logger_name": "x", "message": "also kept"})
    manager.force_flush()
    assert [log.message for log in logs_of(manager)] == ["also kept"]
    assert "not stored" in caplog.text


def test_a_performance_record_without_a_duration_is_stored_and_read_back_as_none(manager):
    for i, duration in enumerate([None, 4.0, None, 2.0]):
        manager.store_performance_data(sdk.PerformanceData(
            component=sdk.ComponentType.DEVICE, operation="connect", duration_ms=duration,
            error_count=1 if duration is None else 0, timestamp=T0 + timedelta(seconds=i)))
    manager.force_flush()
    reply = manager.client.query("performance", component="device", order="asc")
    assert [r["duration_ms"] for r in reply["rows"]] == [None, 4.0, None, 2.0]
    assert manager.client.query("stats")["rows"][0]["rejected"] == {}
    assert manager.get_history_stats().component_counts == {"device": 4}
    # counted as records, left out of the duration figures
    row = manager.client.query("performance.analysis", component="device")["rows"][0]
    assert (row["count"], row["duration_count"], row["duration_max"], row["errors"]) == (4, 2, 4.0, 2)
    assert row["duration_p50"] == pytest.approx(3.0)


def test_created_at_is_the_second_each_record_was_stored_in(manager):
    before = datetime.now().replace(microsecond=0)
    store_messages(manager, 1)
    manager.store_metric(sdk.SystemMetric(metric_type=sdk.MetricType.CPU, metric_name="cpu",
                                          value=1.0, timestamp=T0))
    manager.force_flush()
    after = datetime.now()
    stored = logs_of(manager) + manager.query_metrics(sdk.MetricQuery())
    assert len(stored) == len(MESSAGES) + 1
    for record in stored:
        assert record.created_at is not None and record.created_at.tzinfo is None
        assert before <= record.created_at <= after, (record.created_at, before, after)


def test_the_seconds_of_deleted_rows_are_pruned_and_the_rest_keep_theirs(manager, daemon):
    import time
    old = datetime.now() - timedelta(days=40)
    for i in range(3):                  # three seconds of stored lines: the last ones are new
        manager.store_log(sdk.SystemLog(level="INFO", logger_name="app.core", message=f"line {i}",
                                        timestamp=old if i < 2 else datetime.now()))
        manager.force_flush()
        time.sleep(1.1)
    conn = schema.open_reader(str(daemon.db_path))
    try:
        def seconds():
            return conn.execute("SELECT first_id, second FROM commit_seconds WHERE kind = 'log' "
                                "ORDER BY first_id").fetchall()
        before = seconds()
        assert len(before) == 3
        kept = logs_of(manager)[0].created_at
        manager.cleanup_old_data(retention_days=30, dry_run=False)
        assert seconds() == before[2:]
        [line] = logs_of(manager)
        assert (line.message, line.created_at) == ("line 2", kept)
    finally:
        conn.close()


SECOND_PROCESS = """
import sys
from linkband_history.sdk import HistoryDatabaseManager, SystemLog
m = HistoryDatabaseManager(sys.argv[1])
m.store_log(SystemLog(level="INFO", logger_name="app.services", message="from the second process"))
m.force_flush()
print(m.daemon.started)
m.close()
"""


def test_two_managers_on_one_path_share_one_daemon_and_the_last_close_stops_it(tmp_path):
    import os
    import subprocess
    import sys
    from linkband_history.embed import daemon_status
    path = str(tmp_path / "database" / "history.db")
    first = HistoryDatabaseManager(path)                 # starts the daemon: none runs
    second = HistoryDatabaseManager(path)
    try:
        assert first.daemon.started and first.daemon.pid == second.daemon.pid
        assert first.daemon.endpoints == second.daemon.endpoints
        first.store_log(sdk.SystemLog(level="INFO", logger_name="app.core", message="from the first"))
        first.force_flush()
        out = subprocess.run([sys.executable, "-c", SECOND_PROCESS, path], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["False"]           # it reused ours, started none
        assert sorted(log.message for log in logs_of(second)) == ["from the first",
                                                                  "from the second process"]
        assert os.path.exists(path)
        pid = first.daemon.pid
        first.close()
        assert [log.message for log in logs_of(second, search_text="FIRST")] == ["from the first"]
    finally:
        second.close()
    assert not daemon_status(str(tmp_path / "database"))["running"]
    with pytest.raises(OSError):
        os.kill(pid, 0)
