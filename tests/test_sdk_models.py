"""linkband_history.sdk.models: the SDK's models to our records and back (to_wire, from_row)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import sdk_models as sdk
from linkband_history.sdk import models

TESTS = Path(__file__).parent


@pytest.fixture
def seoul(monkeypatch):
    """The process's local zone is Asia/Seoul (UTC+9) for the test."""
    monkeypatch.setenv("TZ", "Asia/Seoul")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_pydantic_log_becomes_a_record_with_enum_values_and_local_time_read_as_utc_epoch(seoul):
    log = sdk.SystemLog(timestamp=datetime(2026, 11, 26, 14, 3, 7, 123456), level=sdk.LogLevel.WARNING,
                        logger_name="DEVICE.manager", message="디바이스 연결이 끊어졌습니다",
                        module="manager", line_number=42, extra_data={"address": "AA:BB"})
    wire = models.to_wire("log", log)
    utc = datetime(2026, 11, 26, 5, 3, 7, 123456, tzinfo=timezone.utc).timestamp()
    assert wire["timestamp"] == pytest.approx(utc, abs=1e-6)
    assert wire["level"] == "WARNING" and type(wire["level"]) is str
    assert wire["extra_data"] == {"address": "AA:BB"}
    assert wire["line_number"] == 42 and wire["function_name"] is None
    assert "id" not in wire and "created_at" not in wire


def test_an_aware_timestamp_keeps_its_offset():
    alert = sdk.AlertHistory(alert_id="a1", level=sdk.LogLevel.ERROR, category=sdk.AlertCategory.SENSOR,
                             title="높은 CPU 사용률 감지",
                             timestamp=datetime(2026, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=9))),
                             resolved_at=datetime(2026, 1, 1, 0, 30, tzinfo=timezone.utc))
    wire = models.to_wire("alert", alert)
    assert wire["timestamp"] == datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    assert wire["resolved_at"] == wire["timestamp"] + 1800
    assert wire["category"] == "SENSOR" and wire["acknowledged_at"] is None


def test_any_object_with_the_attributes_and_a_dict_give_the_same_record():
    ts = datetime(2026, 3, 1, 12, 0)
    fields = dict(timestamp=ts, metric_type=sdk.MetricType.CPU, metric_name="cpu_usage_percent",
                  value=15.2, unit="%", tags={"host": "a"})
    as_obj = models.to_wire("metric", types.SimpleNamespace(**fields, id=7))
    as_dict = models.to_wire("metric", {**fields, "id": 7, "created_at": ts})
    as_model = models.to_wire("metric", sdk.SystemMetric(**fields))
    assert as_obj == as_dict == as_model == {
        "timestamp": ts.timestamp(), "metric_type": "cpu", "metric_name": "cpu_usage_percent",
        "value": 15.2, "unit": "%", "tags": {"host": "a"}}


def test_a_dict_keeps_keys_beyond_the_fields_for_the_client_to_keep():
    wire = models.to_wire("performance", {"component": "buffer", "operation": "flush",
                                          "duration_ms": 2.5, "sensor": "eeg"})
    assert wire == {"component": "buffer", "operation": "flush", "duration_ms": 2.5, "sensor": "eeg"}


def test_an_iso_text_timestamp_is_read_too_and_an_unknown_kind_is_refused():
    assert models.to_wire("summary", {"timestamp": "2026-01-01T00:00:00+00:00", "summary_type": "daily",
                                      "data_type": "metrics", "summary_data": {"n": 1}})["timestamp"] \
        == datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    with pytest.raises(ValueError, match="unknown kind 'trace'"):
        models.to_wire("trace", {})


def test_a_row_comes_back_as_a_model_with_naive_local_datetimes_and_enum_members(seoul):
    utc = datetime(2026, 11, 26, 5, 3, 7, tzinfo=timezone.utc).timestamp()
    row = {"id": 3, "timestamp": utc, "alert_id": "a1", "level": "CRITICAL", "category": "DATA",
           "title": "데이터 손실", "description": None, "source_component": "stream",
           "acknowledged_at": utc + 60, "resolved_at": None, "metadata": {"threshold": 10}}
    alert = models.from_row("alert", row)
    assert isinstance(alert, models.AlertHistory)
    assert alert.timestamp == datetime(2026, 11, 26, 14, 3, 7) and alert.timestamp.tzinfo is None
    assert alert.acknowledged_at == datetime(2026, 11, 26, 14, 4, 7) and alert.resolved_at is None
    assert alert.level is models.LogLevel.CRITICAL and alert.level == "CRITICAL"
    assert alert.category is models.AlertCategory.DATA
    assert alert.id == 3 and alert.metadata == {"threshold": 10} and alert.created_at is None


def test_a_metric_type_outside_the_sdk_enum_is_kept_as_text():
    metric = models.from_row("metric", {"id": 1, "timestamp": 0.0, "metric_type": "custom",
                                        "metric_name": "x", "value": 1.0, "unit": None, "tags": None})
    assert metric.metric_type == "custom" and metric.metric_name == "x"


def test_a_performance_row_without_an_error_count_reads_as_zero_and_round_trips():
    row = {"id": 1, "timestamp": 1_700_000_000.5, "component": "batch", "operation": "compress",
           "duration_ms": 1.5, "throughput": None, "efficiency_percent": 98.0, "error_count": None,
           "metadata": None}
    perf = models.from_row("performance", row)
    assert perf.error_count == 0 and perf.component is models.ComponentType.BATCH
    again = models.to_wire("performance", perf)
    assert again["timestamp"] == pytest.approx(1_700_000_000.5) and again["component"] == "batch"


def test_the_query_models_refuse_a_limit_outside_1_to_1000():
    assert models.LogQuery().limit == 100 and models.MetricQuery().offset == 0
    with pytest.raises(ValueError, match="limit"):
        models.LogQuery(limit=1001)
    with pytest.raises(ValueError, match="offset"):
        models.MetricQuery(offset=-1)


def _run(code: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, **env}, check=True)
    return json.loads(out.stdout)


def test_importing_the_sdk_package_loads_neither_the_daemon_nor_pydantic():
    got = _run("""
        import json, sys
        import linkband_history.sdk as s
        s.SystemLog, s.LogQuery, s.MetricType
        from linkband_history.sdk import models
        print(json.dumps(sorted(m for m in sys.modules
                                if m.split(".")[0] in ("pydantic", "linkband_historyd", "apsw"))))
    """)
    assert got == []


def test_inside_the_sdk_its_own_model_classes_are_used(tmp_path):
    pkg = tmp_path / "app" / "models"
    pkg.mkdir(parents=True)
    (tmp_path / "app" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "history_models.py").write_text("from sdk_models import *  # noqa\n")
    got = _run("""
        import json
        from datetime import datetime
        import sdk_models
        from linkband_history.sdk import SystemLog, LogLevel, models
        log = models.from_row("log", {"id": 1, "timestamp": 0.0, "level": "INFO",
                                      "logger_name": "app.api", "message": "hi"})
        print(json.dumps([SystemLog is sdk_models.SystemLog, type(log) is sdk_models.SystemLog,
                          log.level is sdk_models.LogLevel.INFO, models.SDK_MODELS]))
    """, PYTHONPATH=os.pathsep.join([str(tmp_path), str(TESTS)]))
    assert got == [True, True, True, True]
