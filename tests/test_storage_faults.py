"""Storage faults: a full disk (max_page_count) and a damaged database file."""
from __future__ import annotations

import os
import signal
import time

from conftest import EventCollector, all_rows, wait_for


def test_full_storage_stops_storing_keeps_rows_readable_and_resumes(daemon_factory, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text("[storage]\nmax_page_count = 400\n")
    d = daemon_factory("--config", str(conf), env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    with EventCollector(d.events, ["storage_warning"], timeout=3.0) as ev:
        c = d.client(max_queue=1_000_000)
        for i in range(0, 60_000, 2_000):
            c.store_metrics([{"metric_name": "fill", "value": float(i + k), "tags": {"pad": "x" * 40}}
                             for k in range(2_000)])
        assert c.flush(timeout=30) is False                 # some could not be stored
        stats = d.stats()
        stored = stats["tables"]["system_metrics"]
        assert 0 < stored < 60_000
        assert stats["lost_records_total"] == 60_000 - stored   # every record stored or counted
        assert len(all_rows(d, "metrics", limit=100_000)) == stored    # all readable
    assert [p["reason"] for _, p in ev.events] == ["storage_full"]   # once per episode
    # room returns (a larger cap on reload): storing resumes by itself
    conf.write_text("[storage]\nmax_page_count = 0\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in d.log(), timeout=30)
    c.store_metrics([{"metric_name": "after", "value": 1.0}])
    assert c.flush(timeout=20)
    assert len(all_rows(d, "metrics", metric_name="after")) == 1
    time.sleep(2.5)                                          # the episode ends after a quiet spell
    c.store_metrics([{"metric_name": "after", "value": 2.0}])
    assert c.flush(timeout=20)
    wait_for(lambda: "storing resumed" in d.log(), timeout=10)


def test_damaged_database_is_moved_aside_and_a_fresh_one_started(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    c = d.client()
    c.store_metrics([{"metric_name": "before", "value": 1.0}])
    assert c.flush()
    c.close()
    assert d.stop() == 0
    with open(d.db_path, "r+b") as f:                        # overwrite the header
        f.write(os.urandom(100))
    d.start()
    damaged = [n for n in os.listdir(d.data_dir) if ".damaged-" in n]
    assert damaged, os.listdir(d.data_dir)
    alerts = d.ask("alerts")["rows"]
    assert alerts[0]["level"] == "CRITICAL" and "damaged" in alerts[0]["title"]
    assert "DAMAGED" in d.log()
    c = d.client()
    c.store_metrics([{"metric_name": "after", "value": 2.0}])
    assert c.flush()
    assert [r["metric_name"] for r in all_rows(d, "metrics")] == ["after"]
