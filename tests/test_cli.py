"""The linkband-history tool against a real daemon."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def tool(daemon, *args):
    env = {**os.environ, "LINKBAND_HISTORY_QUERY": daemon.query}
    return subprocess.run([sys.executable, "-m", "linkband_history.cli", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_tool_lists_searches_and_reports(daemon):
    c = daemon.client()
    c.store_metrics([{"metric_type": "cpu", "metric_name": "cpu_percent", "value": 15.5, "unit": "%"}])
    c.store_logs([{"level": "WARNING", "logger_name": "DEVICE.manager",
                   "message": "디바이스 연결이 끊어졌습니다"},
                  {"level": "INFO", "logger_name": "STREAM.eeg", "message": "[STREAM:EEG] started"}])
    c.store_alerts([{"level": "ERROR", "title": "높은 CPU 사용률 감지"}])
    assert c.flush()
    out = tool(daemon, "--json", "metrics", "--name", "cpu_percent", "--since", "1h")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"][0]["value"] == 15.5
    out = tool(daemon, "search", "연결")
    assert out.returncode == 0 and "디바이스 연결이 끊어졌습니다" in out.stdout
    assert "STREAM" not in out.stdout
    out = tool(daemon, "logs", "--level", "INFO")
    assert "[STREAM:EEG] started" in out.stdout and "디바이스" not in out.stdout
    out = tool(daemon, "alerts", "--open")
    assert "높은 CPU 사용률 감지" in out.stdout
    out = tool(daemon, "status")
    assert out.returncode == 0 and "system_logs" in out.stdout
    out = tool(daemon, "logs", "--since", "yesterday-ish")
    assert out.returncode != 0 and "since" in out.stderr.lower()
    out = tool(daemon, "logs", "--level", "LOUD")
    assert out.returncode == 1 and "bad_param" in out.stderr


def test_tool_says_when_no_daemon_answers(tmp_path):
    env = {**os.environ, "LINKBAND_HISTORY_QUERY": f"ipc://{tmp_path}/none.sock"}
    out = subprocess.run([sys.executable, "-m", "linkband_history.cli", "--timeout", "0.3", "status"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1 and "is linkband-historyd running" in out.stderr


def test_export_round_trips_in_every_format(daemon, tmp_path):
    from conftest import all_rows

    from linkband_history.export import read_back
    c = daemon.client()
    c.store_metrics([{"timestamp": 1_700_000_000 + i * 0.5, "metric_type": "cpu",
                      "metric_name": "cpu_percent", "value": i / 3, "unit": "%",
                      "tags": {"host": "h", "n": i % 3}} for i in range(25_000)])
    c.store_logs([{"timestamp": 1_700_000_000 + i, "level": "INFO", "logger_name": "STREAM.eeg",
                   "message": f"디바이스 연결 {i}, \"quoted\", comma", "extra_data": {"k": [i, None]}}
                  for i in range(300)])
    assert c.flush(timeout=30)
    for kind, command in (("metrics", "metrics"), ("logs", "logs")):
        want = all_rows(daemon, command, limit=10_000)
        for fmt in ("csv", "jsonl", "parquet"):
            out = tmp_path / f"{kind}.{fmt}"
            r = tool(daemon, "export", kind, "--format", fmt, "-o", str(out))
            assert r.returncode == 0, r.stderr
            assert f"{len(want):,} rows" in r.stdout
            assert read_back(str(out), fmt, kind) == want, (kind, fmt)
    out = tmp_path / "filtered.jsonl"
    r = tool(daemon, "export", "metrics", "--format", "jsonl", "-o", str(out), "--since",
             "1700012000")
    assert r.returncode == 0 and len(read_back(str(out), "jsonl", "metrics")) == 1000
    r = tool(daemon, "export", "metrics", "--format", "xml", "-o", str(out))
    assert r.returncode == 2


def test_analysis_subcommands(daemon):
    c = daemon.client()
    c.store_metrics([{"metric_name": "cpu_percent", "value": v} for v in (10, 20, 30)])
    c.store_performance([{"component": "buffer", "operation": "push", "duration_ms": d}
                         for d in (1, 2, 3)])
    c.store_logs([{"level": "ERROR", "logger_name": "X", "message": f"failed after {n} tries"}
                  for n in (1, 2)])
    assert c.flush()
    out = tool(daemon, "summary")
    assert out.returncode == 0 and "cpu_percent" in out.stdout
    rows = json.loads(tool(daemon, "--json", "summary").stdout)["rows"]
    cpu = next(r for r in rows if r["metric_name"] == "cpu_percent")
    assert (cpu["count"], cpu["min"], cpu["max"], cpu["avg"]) == (3, 10.0, 30.0, 20.0)
    out = tool(daemon, "--json", "aggregate", "--bucket", "none", "--fn", "max")
    assert json.loads(out.stdout)["rows"][0]["max"] == 30.0
    out = tool(daemon, "perf")
    assert out.returncode == 0 and "buffer" in out.stdout
    out = tool(daemon, "log-stats")
    assert out.returncode == 0 and "failed after <n> tries" in out.stdout
    out = tool(daemon, "dashboard")
    assert out.returncode == 0 and "cpu_percent" in out.stdout
    log_id = json.loads(tool(daemon, "--json", "logs").stdout)["rows"][0]["id"]
    out = tool(daemon, "context", str(log_id), "-C", "1")
    assert out.stdout.splitlines()[0].startswith("> ")
    out = tool(daemon, "perf-compare", "--a-since", "2h", "--a-until", "1h", "--b-since", "1h",
               "--b-until", "now")
    assert out.returncode == 0 and "buffer" in out.stdout


def test_follow_prints_lines_as_they_are_committed(daemon):
    import time
    c = daemon.client()
    c.store_logs([{"level": "INFO", "logger_name": "X", "message": "before"}])
    assert c.flush()
    env = {**os.environ, "LINKBAND_HISTORY_QUERY": daemon.query, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "linkband_history.cli", "logs", "--follow",
                             "--interval", "0.05"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert "before" in proc.stdout.readline()
        time.sleep(0.2)
        c.store_logs([{"level": "WARNING", "logger_name": "X", "message": "디바이스 연결이 끊어졌습니다"}])
        assert c.flush()
        assert "디바이스 연결이 끊어졌습니다" in proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()


def test_maintenance_subcommands_follow_their_job(daemon, tmp_path):
    import time as _t
    c = daemon.client()
    c.store_metrics([{"timestamp": _t.time() - 40 * 86400 + i, "metric_name": "old", "value": i}
                     for i in range(1000)])
    assert c.flush()
    out = tool(daemon, "archive")
    assert out.returncode == 0 and "archive done" in out.stdout, out.stdout + out.stderr
    out = tool(daemon, "--json", "archives")
    parts = json.loads(out.stdout)["rows"]
    assert parts and parts[0]["rows"] == 1000
    out = tool(daemon, "archives")
    assert out.stdout.split()[:3] == ["kind", "month", "part"] and parts[0]["month"] in out.stdout
    out = tool(daemon, "restore", "metric", parts[0]["month"])
    assert out.returncode == 0 and "restore done" in out.stdout
    assert len(json.loads(tool(daemon, "--json", "metrics").stdout)["rows"]) == 1000
    out = tool(daemon, "cleanup", "--days", "log=7")
    assert out.returncode == 0 and "retention done" in out.stdout
    out = tool(daemon, "optimize")
    assert out.returncode == 0 and "optimize done" in out.stdout
    out = tool(daemon, "storage")
    assert out.returncode == 0 and "metric_points" in out.stdout   # the table behind system_metrics
    out = tool(daemon, "jobs")
    assert out.returncode == 0 and out.stdout.split()[:2] == ["id", "state"] and "optimize" in out.stdout
    out = tool(daemon, "restore", "metric", "1999-01")
    assert out.returncode == 1 and "no archive" in out.stdout


def test_trend_report_and_alert_subcommands(daemon):
    c = daemon.client()
    c.store_metrics([{"metric_name": "cpu_percent", "value": float(v % 7)} for v in range(50)])
    c.store_alerts([{"alert_id": "cli-1", "level": "WARNING", "title": "메모리 경고"}])
    assert c.flush()
    out = tool(daemon, "trends", "cpu_percent", "--since", "1h", "--bucket", "1m")
    assert out.returncode == 0 and "cpu_percent" in out.stdout, out.stderr
    out = tool(daemon, "report", "--period", "day")
    assert out.returncode == 0 and out.stdout.startswith("# linkband-history report (day)")
    assert "메모리 경고" in out.stdout
    assert tool(daemon, "ack", "cli-1").returncode == 0
    assert tool(daemon, "resolve", "cli-1").returncode == 0
    assert json.loads(tool(daemon, "--json", "alerts", "--open").stdout)["rows"] == []
    out = tool(daemon, "ack", "nope")
    assert out.returncode == 1 and "no alert" in out.stderr


def test_query_reaches_every_command_with_its_declared_table(daemon):
    c = daemon.client()
    c.store_metrics([{"metric_type": "cpu", "metric_name": "cpu_percent", "value": 15.5, "unit": "%"},
                     {"metric_type": "cpu", "metric_name": "load", "value": 0.5}])
    assert c.flush()
    listed = tool(daemon, "metrics", "--name", "cpu_percent")
    out = tool(daemon, "query", "metrics", "metric_name=cpu_percent")
    assert out.returncode == 0, out.stderr
    assert out.stdout == listed.stdout                        # the same table as the subcommand
    assert out.stdout.split()[:3] == ["timestamp", "metric_type", "metric_name"]
    out = tool(daemon, "query", "metrics", "metric_name=cpu_percent", "metric_name=load", "limit=5")
    assert "cpu_percent" in out.stdout and "load" in out.stdout
    out = tool(daemon, "query", "ping")                       # no subcommand, no columns: JSON
    assert out.returncode == 0 and json.loads(out.stdout)["rows"][0]["pong"] is True
    out = tool(daemon, "--json", "query", "commands")
    rows = {r["command"]: r for r in json.loads(out.stdout)["rows"]}
    assert rows["jobs"]["route"] == "GET /jobs" and rows["stop"]["route"] is None
    out = tool(daemon, "query", "metrics", "limit=0")
    assert out.returncode == 1 and "bad_param" in out.stderr and "limit" in out.stderr
    out = tool(daemon, "query", "no.such.command")
    assert out.returncode == 1 and "unknown_command" in out.stderr
    out = tool(daemon, "query", "metrics", "limit")
    assert out.returncode == 2 and "KEY=VALUE" in out.stderr
