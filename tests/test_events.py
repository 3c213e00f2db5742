"""Events: subscribe, push data, archive, cross a storage threshold; each event once."""
from __future__ import annotations

import time

from conftest import EventCollector

from linkband_historyd import config
from linkband_historyd.storage import maintenance, schema
from linkband_historyd.writer_client import WriterClient


def test_each_event_arrives_once_with_its_payload(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_METRIC_DAYS": "1", "LINKBAND_HISTORY_SCHEDULER": "true",
                            "LINKBAND_HISTORY_BUDGET_INTERVAL_S": "3600"})
    with EventCollector(d.events, [], timeout=3.0) as collector:
        c = d.client()
        now = time.time()
        c.store_metrics([{"timestamp": now - 5 * 86400 + i, "metric_name": "old", "value": i}
                         for i in range(100)])
        c.store_alerts([{"level": "ERROR", "category": "SYSTEM", "title": "높은 CPU 사용률 감지",
                         "alert_id": "evt-1"}])
        assert c.flush()
        job = d.ask("archive")["rows"][0]["id"]
        for _ in range(100):
            if d.ask("jobs", id=job)["rows"][0]["state"] == "done":
                break
            time.sleep(0.05)
        cfg = config.load(None, environ={}, cli={"daemon.data_dir": str(d.data_dir),
                                                 "daemon.runtime_dir": str(d.run_dir)})
        conn = schema.open_reader(str(d.db_path))
        w = WriterClient(d.control)
        # an anomaly: a spike on top of two weeks of a daily profile, found by the trend watch
        from test_trend_watch import STEP, _daily

        from linkband_historyd.trends.watch import watch
        last = float(int(now // STEP) * STEP)
        series = _daily(last, spike_at=last - 2 * STEP)
        for r in series:
            r["metric_name"] = "trend_cpu"
        c2 = d.client(max_queue=100_000)
        c2.store_metrics(series)
        assert c2.flush(timeout=30)
        assert watch(conn, w, cfg.updated({"trends.watch": ["trend_cpu"]}), last + 1)["alerts"] == 1
        maintenance.enforce_budget(conn, w, cfg.updated({"retention.max_db_bytes": 1,
                                                         "archive.enabled": False}), now)
        w.close()
        conn.close()
    got = collector.events
    topics = [topic for topic, _ in got]
    payload = {topic: p for topic, p in got}
    stored = [p for topic, p in got if topic == "alert_stored"]
    assert [a["alert_id"] for a in stored][0] == "evt-1" and len(stored) == 2   # pushed, trend
    assert stored[0]["title"] == "높은 CPU 사용률 감지"
    assert stored[1]["source_component"] == "trend_analyzer"
    assert topics.count("trend_alert") == 1
    assert payload["trend_alert"]["metadata"]["metric_name"] == "trend_cpu"
    assert payload["trend_alert"]["metadata"]["kind"] in ("spike", "level_shift")
    assert topics.count("archive_completed") == 1
    assert payload["archive_completed"]["kind"] == "metric" and payload["archive_completed"]["rows"] == 100
    assert topics.count("storage_warning") == 1
    assert payload["storage_warning"]["reason"] == "size_budget"
    updates = [p for topic, p in got if topic == "history_data_updated"]
    assert 1 <= len(updates) <= 6                         # coalesced, not one per message
    assert sum(u["counts"].get("metric", 0) for u in updates) == 100 + len(series)
    assert sum(u["counts"].get("alert", 0) for u in updates) == 1
