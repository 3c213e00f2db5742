"""Trend commands on stored metrics, the trend watch job (once per episode), alerts
acknowledged and resolved through the writer, and reports."""
from __future__ import annotations

import random
import time

from conftest import EventCollector
from linkband_historyd import config, schema
from linkband_history.report_format import report_markdown
from linkband_historyd.trend_commands import watch
from linkband_historyd.writer_client import WriterClient

STEP = 300


def _daily(now, days=14, spike_at=None, seed=5):
    rng = random.Random(seed)
    start = int(now // STEP) * STEP - days * 86400
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
    cfg = {**cfg, "trends.watch": ["cpu_percent"]}
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
    assert a["trend_direction"] in ("stable", "increasing", "decreasing")
    assert len(a["forecast"]) == 6
    assert [e for e in a["anomalies"] if abs(e["t"] - spike) <= STEP]
    assert not [e for e in a["anomalies"] if abs(e["t"] - spike) > 2 * STEP]
    w.close()
    conn.close()

    rep = d.ask("reports", period="week")
    assert rep["ok"]
    md = report_markdown(rep["rows"][0])
    assert "cpu_percent 이상 감지" in md and "## Performance p95" in md
