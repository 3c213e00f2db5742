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
