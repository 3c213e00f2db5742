"""Scheduler jobs with a frozen clock: summaries, retention, budget, archives.

The daemon runs without its scheduler process; the tests call the job
functions themselves with a fixed ``now``, reading through a read-only
connection and writing through the real writer's control socket.
"""
from __future__ import annotations

import json
import math
import random

import pytest
from conftest import all_rows, calendar_bucket

from linkband_historyd import config
from linkband_historyd.archive.archiver import Archiver, list_parts
from linkband_historyd.archive.file_format import read_archive
from linkband_historyd.rollups.summarizer import TIERS, Summarizer
from linkband_historyd.storage import maintenance, schema
from linkband_historyd.writer_client import WriterClient

NOW = 1_790_000_000.0            # a frozen clock (2026-09-21)
DAY = 86400.0


@pytest.fixture
def env(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    cfg = config.load(None, environ={}, cli={"daemon.data_dir": str(d.data_dir),
                                             "daemon.runtime_dir": str(d.run_dir)})
    conn = schema.open_reader(str(d.db_path))
    writer = WriterClient(d.control)
    yield d, cfg, conn, writer
    writer.close()
    conn.close()


def _push(d, kind, records):
    c = d.client()
    getattr(c, {"metric": "store_metrics", "log": "store_logs", "performance": "store_performance",
                "alert": "store_alerts"}[kind])(records)
    assert c.flush(timeout=30)


def _metric_rows(rng, start, n, step=7.0):
    return [{"timestamp": start + i * step + rng.random(), "metric_type": "cpu",
             "metric_name": rng.choice(["cpu_percent", "memory_percent"]),
             "value": round(rng.uniform(0, 100), 2), "unit": "%",
             "tags": {"sensor": rng.choice(["eeg", "ppg"])}} for i in range(n)]


def _expected_rollups(records, tier):
    out = {}
    for r in records:
        key = (r["metric_name"], json.dumps(r["tags"], separators=(",", ":")),
               calendar_bucket(tier, r["timestamp"]))
        o = out.setdefault(key, {"count": 0, "sum": [], "min": math.inf, "max": -math.inf,
                                 "last_ts": -1, "last": None})
        o["count"] += 1
        o["sum"].append(r["value"])
        o["min"] = min(o["min"], r["value"])
        o["max"] = max(o["max"], r["value"])
        if r["timestamp"] > o["last_ts"]:
            o["last_ts"], o["last"] = r["timestamp"], r["value"]
    return out


def _stored_rollups(conn, tier):
    return {(n, t, b): {"count": c, "sum": s, "min": mn, "max": mx, "last": last}
            for n, t, b, c, s, mn, mx, last in conn.execute(
                "SELECT metric_name, tags, bucket, count, sum, min, max, last FROM metric_rollups "
                "WHERE tier = ?", (tier,))}


def test_summaries_equal_the_raw_rows_and_late_rows_update_them(env):
    d, cfg, conn, writer = env
    rng = random.Random(4)
    records = _metric_rows(rng, NOW - 9 * DAY, 2500, step=300.0)      # 9 days, every 5 min
    _push(d, "metric", records)
    _push(d, "performance", [{"timestamp": NOW - 3600 + i, "component": "buffer", "operation": "push",
                              "duration_ms": float(i % 100), "error_count": i % 2,
                              "throughput": 10.0} for i in range(1000)])
    _push(d, "log", [{"timestamp": NOW - 3600 + i, "level": ["INFO", "ERROR"][i % 2],
                      "logger_name": "L", "message": "m"} for i in range(100)])
    Summarizer(conn, writer).run(NOW)
    for tier in TIERS:
        want, got = _expected_rollups(records, tier), _stored_rollups(conn, tier)
        assert got.keys() == want.keys(), tier
        for k, w in want.items():
            g = got[k]
            assert (g["count"], g["min"], g["max"], g["last"]) == (w["count"], w["min"], w["max"], w["last"])
            assert g["sum"] == pytest.approx(math.fsum(w["sum"]), rel=1e-12)
    hour = calendar_bucket("hourly", NOW - 3600)
    perf = json.loads(conn.execute("SELECT summary_data FROM data_summaries WHERE summary_type = "
                                   "'hourly' AND data_type = 'performance' AND period_start = ?",
                                   (hour,)).fetchall()[0][0])
    in_hour = [i for i in range(1000) if NOW - 3600 + i < hour + 3600]
    assert perf["count"] == len(in_hour) and perf["error_count"] == sum(i % 2 for i in in_hour)
    logs = [json.loads(r[0]) for r in conn.execute(
        "SELECT summary_data FROM data_summaries WHERE summary_type = 'daily' AND data_type = 'log'")]
    assert sum(x["count"] for x in logs) == 100 and sum(x["by_level"]["ERROR"] for x in logs) == 50

    # a late record lands in an hour that was summarized already
    late = {"timestamp": records[10]["timestamp"] + 1, "metric_type": "cpu",
            "metric_name": records[10]["metric_name"], "value": 1000.0, "unit": "%",
            "tags": records[10]["tags"]}
    _push(d, "metric", [late])
    Summarizer(conn, writer).run(NOW)
    want = _expected_rollups(records + [late], "hourly")
    key = (late["metric_name"], json.dumps(late["tags"], separators=(",", ":")),
           calendar_bucket("hourly", late["timestamp"]))
    assert _stored_rollups(conn, "hourly")[key]["max"] == 1000.0 == want[key]["max"]
    assert _stored_rollups(conn, "hourly")[key]["count"] == want[key]["count"]

    # recomputing everything from scratch gives the same rows (idempotent)
    before = {t: _stored_rollups(conn, t) for t in TIERS}
    writer.call("state.set", key="summaries", value={})
    Summarizer(conn, writer).run(NOW)
    assert {t: _stored_rollups(conn, t) for t in TIERS} == before

    # the tiers answer queries: a daily series from summaries equals the detail one
    from_tier = d.ask("metrics.aggregate", bucket="1d", functions=["count", "avg", "max"],
                      since=NOW - 10 * DAY, until=NOW, tier="daily")
    from_detail = d.ask("metrics.aggregate", bucket="1d", functions=["count", "avg", "max"],
                        since=NOW - 10 * DAY, until=NOW, tier="detail")
    assert from_tier["tier"] == "daily" and from_detail["tier"] == "detail"
    assert len(from_tier["rows"]) == len(from_detail["rows"])
    for a, b in zip(from_tier["rows"], from_detail["rows"]):
        assert a["count"] == b["count"] and a["max"] == b["max"]
        assert a["avg"] == pytest.approx(b["avg"], rel=1e-12)


def _series(d, tier, since, until):
    q = dict(bucket="1m", functions=["count", "sum", "min", "max", "avg", "last"],
             group_by=["metric_name"], since=since, until=until)
    return d.ask("metrics.aggregate", tier=tier, **q), d.ask("metrics.aggregate", tier="detail", **q)


def test_minute_tier_equals_detail_with_one_and_with_several_tag_sets(env):
    """One tag set per name: the tier's rows are read as stored (no GROUP BY); a
    second tag set for a name: they are grouped. Both equal the detail rows."""
    d, cfg, conn, writer = env
    rng = random.Random(8)
    start = (NOW - 2 * 3600) // 60 * 60
    one = [{"timestamp": start + i * 5.0 + rng.random(), "metric_name": name, "value":
            round(rng.uniform(0, 100), 2), "tags": {"sensor": "eeg"}}
           for i in range(1440) for name in ("eeg_rms", "ppg_hr")]
    _push(d, "metric", one)
    Summarizer(conn, writer).run(NOW)
    from linkband_historyd.query import rollup_reader
    for several in (False, True):
        if several:     # the same names from a second device
            _push(d, "metric", [dict(r, tags={"sensor": "eeg", "device": "b"},
                                     value=r["value"] + 1000) for r in one[::3]])
            Summarizer(conn, writer).run(NOW)
        assert rollup_reader.one_series_per_name(conn, "minute") is not several
        got, want = _series(d, "minute", start, NOW)
        assert got["tier"] == "minute" and want["tier"] == "detail"
        assert len(got["rows"]) == len(want["rows"]) == 2 * 120     # 2 names, 2 hours
        for a, b in zip(got["rows"], want["rows"]):
            assert (a["bucket"], a["metric_name"], a["count"], a["min"], a["max"], a["last"]) == \
                   (b["bucket"], b["metric_name"], b["count"], b["min"], b["max"], b["last"])
            assert a["sum"] == pytest.approx(b["sum"], rel=1e-12)
            assert a["avg"] == pytest.approx(b["avg"], rel=1e-12)


def test_retention_deletes_exactly_the_rows_past_their_age(env):
    d, cfg, conn, writer = env
    ages = [0.5, 5, 29.9, 30.1, 31, 45, 400]
    for kind, mk in (("metric", lambda t: {"timestamp": t, "metric_name": "m", "value": 1.0}),
                     ("log", lambda t: {"timestamp": t, "level": "INFO", "message": f"연결 {t}"})):
        _push(d, kind, [mk(NOW - a * DAY) for a in ages])
    cfg = cfg.updated({"archive.enabled": False})
    out = maintenance.retention(conn, writer, cfg, NOW)
    assert out["metric"] == 4 and out["log"] == 4
    kept = [NOW - a * DAY for a in ages if a < 30]
    assert sorted(r["timestamp"] for r in all_rows(d, "metrics")) == sorted(kept)
    assert sorted(r["timestamp"] for r in all_rows(d, "logs")) == sorted(kept)
    # the search index forgot the deleted lines too
    assert len(all_rows(d, "logs.search", q="연결")) == 3
    assert d.stats()["tables"]["system_logs"] == 3


def test_size_budget_removes_the_oldest_first_and_warns(env):
    d, cfg, conn, writer = env
    rng = random.Random(1)
    _push(d, "metric", _metric_rows(rng, NOW - 20 * DAY, 60_000, step=20 * DAY / 60_000))
    used = maintenance.used_bytes(conn)
    budget = used // 2
    cfg = cfg.updated({"archive.enabled": False, "retention.max_db_bytes": budget,
                       "retention.min_free_percent": 0.0})
    out = maintenance.enforce_budget(conn, writer, cfg, NOW)
    assert out["rounds"] > 0
    assert maintenance.used_bytes(conn) <= budget
    remaining = [r["timestamp"] for r in all_rows(d, "metrics", limit=100_000)]
    cut = min(remaining)
    assert cut > NOW - 20 * DAY + DAY                      # the oldest days went
    assert len(remaining) < 60_000 and d.stats()["tables"]["system_metrics"] == len(remaining)
    warning = maintenance.storage(conn, cfg)["last_storage_warning"]
    assert warning["reason"] == "size_budget" and warning["limit"] == budget


def _old_summaries(conn):
    return (conn.execute("SELECT summary_type, data_type, summary_key, period_start, summary_data "
                         "FROM data_summaries WHERE period_start < ? ORDER BY 1, 2, 3, 4",
                         (NOW - 30 * DAY,)).fetchall(),
            conn.execute("SELECT * FROM metric_rollups WHERE bucket < ? ORDER BY 1, 2, 3, 4",
                         (NOW - 30 * DAY,)).fetchall())


def test_archive_delete_restore_gives_back_the_same_rows(env, monkeypatch):
    d, cfg, conn, writer = env
    rng = random.Random(9)
    old = _metric_rows(rng, NOW - 70 * DAY, 3000, step=600.0)         # about 20 days, 2 months
    _push(d, "metric", old)
    _push(d, "log", [{"timestamp": NOW - 50 * DAY + i, "level": "WARNING", "logger_name": "DEVICE",
                      "message": f"디바이스 연결이 끊어졌습니다 {i}", "extra_data": {"i": i}}
                     for i in range(500)])
    before_m = all_rows(d, "metrics", limit=100_000)
    before_l = all_rows(d, "logs", limit=100_000)
    Summarizer(conn, writer).run(NOW)
    summarized = _old_summaries(conn)
    arch = Archiver(conn, writer, cfg)
    done = arch.archive_due(NOW)
    assert done["metric"] == len(before_m) and done["log"] == 500
    assert all_rows(d, "metrics") == [] and all_rows(d, "logs") == []
    parts = list_parts(cfg.archive.dir)
    assert {p["kind"] for p in parts} == {"metric", "log"} and all(p["complete"] for p in parts)
    archived = [row for p in parts if p["kind"] == "metric" for _, _, block in read_archive(p["file"])
                for row in block]
    assert sorted(r[0] for r in archived) == sorted(r["id"] for r in before_m)
    strip = lambda rows: sorted((tuple((k, json.dumps(v, sort_keys=True)) for k, v in r.items()
                                       if k != "id") for r in rows))
    # live lines arrive while the restore runs: their ids fall inside the restored range
    monkeypatch.setattr("linkband_historyd.archive.archiver.IMPORT_CHUNK", 100)
    live = []

    def arrive(_step, _count):
        live.append({"timestamp": NOW - 60 + len(live), "level": "INFO", "logger_name": "STREAM",
                     "message": f"[STREAM:EEG] live {len(live)}"})
        _push(d, "log", live[-1:])

    for p in {(p["kind"], p["month"]) for p in parts}:
        arch.restore(*p, NOW, progress=arrive)
    assert len(live) >= 5
    assert strip(all_rows(d, "metrics", limit=100_000)) == strip(before_m)
    assert strip(all_rows(d, "logs", until=NOW - DAY, limit=100_000)) == strip(before_l)
    assert len(all_rows(d, "logs.search", q="연결")) == 500
    # the restored rows were summarized before: summaries stay as they were
    Summarizer(conn, writer).run(NOW)
    assert _old_summaries(conn) == summarized
    assert sum(json.loads(r[0])["count"] for r in conn.execute(
        "SELECT summary_data FROM data_summaries WHERE summary_type = 'daily' AND data_type = 'log' "
        "AND period_start > ?", (NOW - 2 * DAY,))) == len(live)
    # held: retention leaves restored rows alone until the hold ends
    maintenance.retention(conn, writer, cfg.updated({"archive.enabled": False}), NOW, arch)
    assert len(all_rows(d, "metrics", limit=100_000)) == len(before_m)
    arch.expire_holds(NOW + cfg.archive.restore_days * DAY + 1)
    assert all_rows(d, "metrics") == []
    assert [r["message"] for r in all_rows(d, "logs")] == [r["message"] for r in live]


def test_scheduler_killed_during_an_archive_loses_and_doubles_nothing(daemon_factory):
    import os
    import signal
    import time

    from conftest import wait_for
    d = daemon_factory(env={"LINKBAND_HISTORY_METRIC_DAYS": "1", "LINKBAND_HISTORY_BUDGET_INTERVAL_S": "3600",
                            "LINKBAND_HISTORY_RETENTION_INTERVAL_S": "86400"})
    rng = random.Random(3)
    now = time.time()
    n = 150_000
    sent = set()
    for round_, delay in enumerate((0.3, 0.3)):
        start = now - (40 + 35 * round_) * DAY
        c = d.client(max_queue=n)
        batch = [{"timestamp": start + i * 10.0, "metric_name": "m", "value": float(round_ * n + i)}
                 for i in range(n)]
        c.store_metrics(batch)
        assert c.flush(timeout=60)
        sent |= {r["value"] for r in batch}
        job = d.ask("archive")["rows"][0]["id"]
        wait_for(lambda: d.ask("jobs", id=job)["rows"][0]["state"] == "running", timeout=30,
                 interval=0.01)
        pid = d.ask("jobs")["pid"]
        time.sleep(delay * rng.random())
        os.kill(pid, signal.SIGKILL)
        parts = list_parts(str(d.data_dir / "archives"))
        print("round", round_, "rows left", d.stats()["tables"]["system_metrics"],
              "parts", [(p["part"], p["complete"]) for p in parts])
        wait_for(lambda: (lambda r: r.get("ok") and r.get("pid") not in (None, pid))(d.ask("jobs")),
                 timeout=30)
    job = d.ask("archive")["rows"][0]["id"]
    wait_for(lambda: d.ask("jobs", id=job)["rows"][0]["state"] in ("done", "failed"), timeout=120)
    assert d.ask("jobs", id=job)["rows"][0]["state"] == "done"
    in_db = [r["value"] for r in all_rows(d, "metrics", limit=100_000)]
    archived = []
    cfg_dir = str(d.data_dir / "archives")
    for p in list_parts(cfg_dir):
        assert p["complete"]
        archived += [row[4] for _, _, block in read_archive(p["file"]) for row in block]
    everything = in_db + archived
    assert len(everything) == len(set(everything)), "a row is both archived and kept, or twice archived"
    assert set(everything) == sent, "a row was lost"
    assert in_db == []


def test_full_vacuum_on_request_loses_nothing_that_arrives_meanwhile(daemon_factory):
    import threading
    import time

    from conftest import wait_for
    d = daemon_factory()
    c = d.client(max_queue=1_000_000)
    c.store_metrics([{"metric_name": "bulk", "value": float(i)} for i in range(200_000)])
    assert c.flush(timeout=60)
    w = WriterClient(d.control)
    w.call("delete", kind="metric", before=time.time() + 10, limit=20_000)     # free pages
    w.close()
    stop = threading.Event()
    sent = []

    def push():
        p = d.client()
        i = 0
        while not stop.is_set():
            p.store_metrics([{"metric_name": "during_vacuum", "value": float(i)}])
            sent.append(i)
            i += 1
            time.sleep(0.001)
        assert p.flush(timeout=60)

    t = threading.Thread(target=push)
    t.start()
    job = d.ask("vacuum")["rows"][0]["id"]
    wait_for(lambda: d.ask("jobs", id=job)["rows"][0]["state"] in ("done", "failed"), timeout=120)
    run = d.ask("jobs", id=job)["rows"][0]
    stop.set()
    t.join(60)
    assert run["state"] == "done" and run["result"]["pages_after"] < run["result"]["pages_before"]
    got = sorted(int(r["value"]) for r in all_rows(d, "metrics", metric_name="during_vacuum",
                                                   limit=100_000))
    assert got == sent and d.stats()["lost_records_total"] == 0


def test_cleanup_dry_run_counts_what_would_go_and_deletes_nothing(daemon_factory):
    import time

    from conftest import wait_for
    d = daemon_factory()
    now = time.time()
    ages = [0.5, 5, 29.9, 30.1, 31, 45, 400]
    _push(d, "metric", [{"timestamp": now - a * DAY, "metric_name": "m", "value": 1.0} for a in ages])
    _push(d, "log", [{"timestamp": now - a * DAY, "level": "INFO", "message": f"x {a}"} for a in ages])
    reply = d.ask("cleanup", dry_run=True)
    assert reply["ok"], reply
    row = reply["rows"][0]
    assert row["dry_run"] is True and row["metric"] == 4 and row["log"] == 4
    assert abs(row["cutoffs"]["log"] - (now - 30 * DAY)) < 60
    # a retention under one hour is refused without force, and nothing is started
    reply = d.ask("cleanup", policy={"log": 1e-9})
    assert not reply["ok"] and reply["error"]["code"] == "bad_param"
    assert "force=true" in reply["error"]["message"] and "log" in reply["error"]["message"]
    reply = d.ask("cleanup", policy={"log": 1e-9}, force=True, dry_run=True)
    assert reply["ok"] and reply["rows"][0]["log"] == 7
    time.sleep(0.5)
    assert d.stats()["tables"]["system_logs"] == 7 and d.stats()["tables"]["system_metrics"] == 7
    # with force it runs
    job = d.ask("cleanup", policy={"log": 1e-9}, force=True)
    assert job["ok"], job
    wait_for(lambda: d.ask("jobs", id=job["rows"][0]["id"])["rows"][0]["state"] == "done", timeout=60)
    assert d.stats()["tables"]["system_logs"] == 0 and d.stats()["tables"]["system_metrics"] == 3


def _finished_run(d, job, timeout=120):
    """The first finished run of ``job`` in this daemon's scheduler process."""
    from conftest import wait_for
    runs = wait_for(lambda: [r for r in d.ask("jobs").get("rows", [])
                             if r["job"] == job and r["state"] in ("done", "failed")],
                    timeout=timeout)
    assert runs[-1]["state"] == "done", runs[-1]
    return runs[-1]


def test_the_scheduler_process_runs_the_budget_job_and_the_oldest_days_go(daemon_factory):
    import time
    now = time.time()
    d = daemon_factory(env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    _push(d, "metric", _metric_rows(random.Random(1), now - 20 * DAY, 60_000, step=20 * DAY / 60_000))
    conn = schema.open_reader(str(d.db_path))
    budget = maintenance.used_bytes(conn) // 2
    conn.close()
    d.stop()
    d.env.update({"LINKBAND_HISTORY_SCHEDULER": "true", "LINKBAND_HISTORY_ARCHIVE": "false",
                  "LINKBAND_HISTORY_MAX_DB_BYTES": str(budget),
                  "LINKBAND_HISTORY_MIN_FREE_PERCENT": "0"})
    d.start()
    run = _finished_run(d, "budget")                 # its first run: 10 s after the start
    assert run["result"]["rounds"] > 0 and run["result"]["removed"]["metric"] > 0
    conn = schema.open_reader(str(d.db_path))
    try:
        assert maintenance.used_bytes(conn) <= budget
    finally:
        conn.close()
    warning = d.ask("storage")["rows"][0]["last_storage_warning"]
    assert warning["reason"] == "size_budget" and warning["limit"] == budget
    remaining = [r["timestamp"] for r in all_rows(d, "metrics", limit=100_000)]
    assert 0 < len(remaining) < 60_000 and min(remaining) > now - 19 * DAY   # the oldest day went
