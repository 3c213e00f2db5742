"""Trend commands on stored metrics, the trend watch job (once per episode), alerts
acknowledged and resolved through the writer, and reports."""
from __future__ import annotations

import random
import time

import pytest
from conftest import EventCollector

from linkband_history.report_format import report_markdown
from linkband_historyd import config
from linkband_historyd.storage import schema
from linkband_historyd.trends.anomaly_detector import SCORE_THRESHOLD
from linkband_historyd.trends.watch import watch
from linkband_historyd.writer_client import WriterClient

STEP = 300


def _daily(now, days=14, spike_at=None, seed=5):
    """At least ``days`` of a clean daily cycle up to ``now``, from a midnight UTC: the
    detector's first day then always holds the same part of the cycle, whatever hour
    the tests run. (How the detector itself fares from other start hours is
    ``test_trends.py``'s ``test_a_clean_daily_step_raises_nothing_whatever_the_hour_the_series_starts``.)"""
    rng = random.Random(seed)
    start = int((now - days * 86400) // 86400) * 86400
    out = []
    for t in range(start, int(now // STEP) * STEP, STEP):
        hour = (t % 86400) / 3600
        v = 20 + (30 if 9 <= hour < 18 else 0) + rng.gauss(0, 1.5)
        if spike_at is not None and abs(t - spike_at) < STEP / 2:
            v += 40
        out.append({"timestamp": float(t), "metric_type": "cpu", "metric_name": "cpu_percent",
                    "value": round(v, 2)})
    return out


def test_watch_alerts_once_per_episode_and_trend_commands(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    now = float(int(time.time() // STEP) * STEP)
    spike = now - 2 * STEP
    c = d.client(max_queue=100_000)
    c.store_metrics(_daily(now, spike_at=spike))
    assert c.flush(timeout=30)
    cfg = config.load(None, environ={}, cli={"daemon.data_dir": str(d.data_dir),
                                             "daemon.runtime_dir": str(d.run_dir)})
    cfg = cfg.updated({"trends.watch": ["cpu_percent"]})
    conn = schema.open_reader(str(d.db_path))
    w = WriterClient(d.control)
    with EventCollector(d.events, ["trend_alert"]) as ev:
        assert watch(conn, w, cfg, now + 1)["alerts"] == 1
        assert watch(conn, w, cfg, now + 2)["alerts"] == 0             # the same episode
    events = ev.events
    assert [topic for topic, _ in events] == ["trend_alert"]
    assert events[0][1]["metadata"]["metric_name"] == "cpu_percent"
    alerts = d.ask("alerts", open=True)["rows"]
    assert len(alerts) == 1 and alerts[0]["source_component"] == "trend_analyzer"
    assert abs(alerts[0]["metadata"]["t"] - spike) <= STEP

    # acknowledging and resolving go through the writer
    aid = alerts[0]["alert_id"]
    r = d.ask("alerts.ack", alert_id=aid)
    assert r["ok"] and r["rows"][0]["acknowledged_at"] is not None
    assert d.ask("alerts.resolve", alert_id=aid)["ok"]
    assert d.ask("alerts", open=True)["rows"] == []
    bad = d.ask("alerts.ack", alert_id="no-such-alert")
    assert not bad["ok"] and bad["error"]["code"] == "bad_param"

    # the normal daily peak is not an anomaly; the injected spike is
    r = d.ask("metrics.trends", metric_name="cpu_percent", since=now - 14 * 86400, until=now,
              bucket="5m", horizon=6)
    assert r["ok"], r
    a = r["rows"][0]
    assert a["trend_direction"] == "stable"                # a daily profile, no trend
    assert len(a["forecast"]) == 6
    assert [e for e in a["anomalies"] if abs(e["t"] - spike) <= STEP]
    assert not [e for e in a["anomalies"] if abs(e["t"] - spike) > 2 * STEP]
    w.close()
    conn.close()

    rep = d.ask("reports", period="week")
    assert rep["ok"]
    md = report_markdown(rep["rows"][0])
    assert "cpu_percent 이상 감지" in md and "## Performance p95" in md


def _watch_runs(d, timeout=60):
    """Wait for a finished run of the trend watch job of this daemon's scheduler."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in d.ask("jobs").get("rows", []) if r["job"] == "trend_watch"]
        if runs and runs[0]["state"] in ("done", "failed"):
            assert runs[0]["state"] == "done", runs[0]
            return runs[0]
        time.sleep(0.2)
    raise AssertionError("the trend watch did not run")


def _saved(d):
    conn = schema.open_reader(str(d.db_path))
    try:
        return schema.read_state(conn, "trend_watch", {})
    finally:
        conn.close()


def test_a_daemon_restart_keeps_each_watched_metrics_detector_state(daemon_factory):
    """The scheduler saves the detector through the writer; after a restart it goes
    on from the saved state instead of learning again from trends.history_days."""
    now = float(int(time.time() // STEP) * STEP)
    d = daemon_factory(name="w", env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    c = d.client(max_queue=100_000)
    c.store_metrics(_daily(now - STEP, days=3))
    assert c.flush(timeout=30)
    d.stop()
    watch_env = {"LINKBAND_HISTORY_TREND_WATCH": "cpu_percent",
                 "LINKBAND_HISTORY_SCHEDULER": "true"}
    d.env.update(watch_env)
    d.start()
    _watch_runs(d)
    first = _saved(d)["cpu_percent"]
    assert first["detector"]["n"] >= 3 * 86400 // STEP - 2
    assert first["last"] == now - 2 * STEP
    d.client().store_metrics([{"timestamp": now - STEP, "metric_type": "cpu",
                               "metric_name": "cpu_percent", "value": 20.0}])
    assert d.client().flush(timeout=30)
    d.stop()
    d.env.update({**watch_env, "LINKBAND_HISTORY_TREND_HISTORY_DAYS": "1"})
    d.start()
    _watch_runs(d)
    second = _saved(d)["cpu_percent"]
    # one new bucket scored on top of the saved state; a fresh detector would have
    # learnt one day only
    assert second["detector"]["n"] == first["detector"]["n"] + 1
    assert second["last"] == now - STEP


def test_each_watch_and_each_query_sets_its_own_sensitivity(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    now = float(int(time.time() // STEP) * STEP)
    spike = now - 2 * STEP
    c = d.client(max_queue=100_000)
    c.store_metrics(_daily(now, days=14, spike_at=spike))   # past the warm-up: a score < 1
    assert c.flush(timeout=30)
    r = d.ask("metrics.trends", metric_name="cpu_percent", since=now - 14 * 86400, until=now,
              bucket="5m")
    [e] = [e for e in r["rows"][0]["anomalies"] if abs(e["t"] - spike) <= STEP]
    assert SCORE_THRESHOLD <= e["score"] < 1.0
    top = [t for t, s in r["rows"][0]["anomaly_scores"] if s >= e["score"]]
    assert top and all(e["start"] <= t < e["end"] for t in top)      # the episode's peak
    strict = d.ask("metrics.trends", metric_name="cpu_percent", since=now - 14 * 86400,
                   until=now, bucket="5m", threshold=min(1.0, e["score"] + 1e-6))
    assert strict["ok"] and strict["rows"][0]["anomalies"] == []
    bad = d.ask("metrics.trends", metric_name="cpu_percent", threshold=2)
    assert not bad["ok"] and bad["error"]["code"] == "bad_param"
    base = config.load(None, environ={}, cli={"daemon.data_dir": str(d.data_dir),
                                              "daemon.runtime_dir": str(d.run_dir)})
    conn = schema.open_reader(str(d.db_path))
    w = WriterClient(d.control)
    deaf = base.updated({"trends.watch": [f"cpu_percent:{min(1.0, e['score'] + 1e-6)}"]})
    assert watch(conn, w, deaf, now + 1)["alerts"] == 0
    w.call("state.set", key="trend_watch", value={})
    assert watch(conn, w, base.updated({"trends.watch": [f"cpu_percent:{e['score'] - 0.01}"]}), now + 1)["alerts"] == 1
    w.close()
    conn.close()
    with pytest.raises(config.ConfigError):
        config.load(None, environ={"LINKBAND_HISTORY_TREND_WATCH": "cpu_percent:7"}, cli={})


def test_the_scheduler_process_runs_the_watch_and_stores_one_alert_for_a_spike(daemon_factory):
    if time.time() % STEP > STEP - 90:          # the whole test within one bucket of the watch
        time.sleep(STEP - time.time() % STEP + 1)
    now = float(int(time.time() // STEP) * STEP)
    spike = now - 2 * STEP
    d = daemon_factory(env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    c = d.client(max_queue=100_000)
    c.store_metrics(_daily(now, spike_at=spike))
    assert c.flush(timeout=30)
    d.stop()
    d.env.update({"LINKBAND_HISTORY_TREND_WATCH": "cpu_percent", "LINKBAND_HISTORY_SCHEDULER": "true"})
    d.start()
    run = _watch_runs(d)                          # its first run: 5 s after the start
    assert run["result"]["alerts"] == 1, run
    [alert] = d.ask("alerts", open=True)["rows"]
    assert alert["source_component"] == "trend_analyzer"
    assert alert["metadata"]["metric_name"] == "cpu_percent"
    assert abs(alert["metadata"]["t"] - spike) <= STEP


def test_a_trend_range_of_too_many_buckets_is_refused_before_it_is_built(daemon):
    c = daemon.client()
    c.store_metrics([{"metric_name": "cpu_percent", "value": 1.0}])
    assert c.flush(timeout=30)
    for command, params in [("analyze", {"since": -2 ** 63}),
                            ("metrics.trends", {"metric_name": "cpu_percent", "since": -1e308}),
                            ("metrics.trends", {"metric_name": "cpu_percent", "bucket": "1s",
                                                "since": time.time() - 30 * 86400})]:
        r = daemon.ask(command, **params)
        assert not r["ok"] and r["error"]["code"] == "bad_param", r
        assert "at most 1,000,000 buckets" in r["error"]["message"]
    one_day = daemon.ask("metrics.trends", metric_name="cpu_percent", bucket="1s",
                         since=time.time() - 86400)
    assert one_day["ok"] and one_day["rows"][0]["bucket_seconds"] == 1
