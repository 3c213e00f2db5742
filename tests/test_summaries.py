"""Performance, log and alert summaries folded in run by run (frozen clock).

The daemon runs without its scheduler; the tests run the summary job themselves,
reading through a read-only connection and writing through the real writer.
"""
from __future__ import annotations

import json
import math
import random

import pytest
from conftest import calendar_bucket
from hypothesis import given, settings
from hypothesis import strategies as st

from linkband_historyd.rollups import ddsketch, summarizer
from linkband_historyd.rollups.summarizer import Summarizer
from linkband_historyd.storage import schema
from linkband_historyd.writer_client import WriterClient

NOW = 1_790_000_000.0            # a frozen clock (2026-09-21)
KEYS = [("buffer", "push"), ("stream", "broadcast"), ("network", "send")]


@pytest.fixture
def env(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    conn = schema.open_reader(str(d.db_path))
    writer = WriterClient(d.control)
    yield d, conn, writer
    writer.close()
    conn.close()


def _perf(rng, t0, n):
    return [{"timestamp": t0 + rng.uniform(0, 5400), "component": c, "operation": o,
             "duration_ms": rng.choice([round(rng.lognormvariate(1.0, 0.8), 3)] * 9 + [None]),
             "error_count": rng.choice([0, 0, 1]),
             "throughput": rng.choice([None, rng.uniform(10, 250)])}
            for c, o in (rng.choice(KEYS) for _ in range(n))]


def _logs(rng, t0, n):
    return [{"timestamp": t0 + rng.uniform(0, 5400), "level": rng.choice(["INFO", "INFO", "ERROR"]),
             "logger_name": rng.choice(["DEVICE.manager", "STREAM.eeg"]),
             "message": "[DEVICE_MGR:CONNECT] 디바이스 연결이 끊어졌습니다"} for _ in range(n)]


def _push(d, perf, logs):
    c = d.client()
    c.store_performance(perf)
    c.store_logs(logs)
    assert c.flush(timeout=30)
    c.close()


def _stored(conn, tier, kind):
    return {(k, ps): json.loads(v) for k, ps, v in conn.execute(
        "SELECT summary_key, period_start, summary_data FROM data_summaries "
        "WHERE summary_type = ? AND data_type = ?", (tier, kind))}


def _check(conn, perf, logs):
    """Every hourly and daily row equals the rows pushed (p95 within the sketch's error)."""
    assert any(r["duration_ms"] is None for r in perf)
    for tier in ("hourly", "daily"):
        want = {}
        for r in perf:
            want.setdefault((f"{r['component']}/{r['operation']}",
                             calendar_bucket(tier, r["timestamp"])), []).append(r)
        got = _stored(conn, tier, "performance")
        assert got.keys() == want.keys(), tier
        for key, rows in want.items():
            # a record without a duration is counted, and left out of the duration figures
            g, durs = got[key], sorted(r["duration_ms"] for r in rows if r["duration_ms"] is not None)
            thr = [r["throughput"] for r in rows if r["throughput"] is not None]
            assert g["count"] == len(rows) and g["error_count"] == sum(r["error_count"] for r in rows)
            assert g["duration_count"] == len(durs)
            assert g["throughput_mean"] == (pytest.approx(sum(thr) / len(thr)) if thr else None)
            if not durs:
                assert (g["duration_min"], g["duration_max"], g["duration_p95"]) == (None, None, None)
                continue
            assert (g["duration_min"], g["duration_max"]) == (durs[0], durs[-1])
            assert g["duration_sum"] == pytest.approx(math.fsum(durs), rel=1e-9)
            pos = 0.95 * (len(durs) - 1)
            lo, hi = durs[math.floor(pos)], durs[math.ceil(pos)]
            assert lo * (1 - ddsketch.ALPHA) <= g["duration_p95"] <= hi * (1 + ddsketch.ALPHA), key
        want = {}
        for r in logs:
            w = want.setdefault(("all", calendar_bucket(tier, r["timestamp"])),
                                {"count": 0, "by_level": {}, "by_logger_name": {}})
            w["count"] += 1
            for f in ("level", "logger_name"):
                w[f"by_{f}"][r[f]] = w[f"by_{f}"].get(r[f], 0) + 1
        got = {k: {f: v[f] for f in ("count", "by_level", "by_logger_name")}
               for k, v in _stored(conn, tier, "log").items()}
        assert got == want, tier


class _CutShort(Summarizer):
    """A run that dies after its first chunk of summaries reached the writer."""

    def send(self, summaries_, rollups, new_state):
        self.writer.bulk("summaries.upsert", rows=summaries_[:summarizer.CHUNK],
                         rollups=rollups[:summarizer.CHUNK], state=None,
                         state_key=summarizer.STATE_KEY)
        raise RuntimeError("killed")


def test_runs_fold_new_rows_into_the_hours_and_a_cut_run_counts_nothing_twice(env, monkeypatch):
    d, conn, writer = env
    rng = random.Random(7)
    perf, logs = [], []
    t0 = calendar_bucket("hourly", NOW) - 3 * 3600
    for i in range(3):                        # three runs, each with rows in the same hours
        p, lg = _perf(rng, t0, 700), _logs(rng, t0, 300)
        _push(d, p, lg)
        perf += p
        logs += lg
        Summarizer(conn, writer).run(NOW)
        _check(conn, perf, logs)
        hourly = _stored(conn, "hourly", "performance")
        assert all(v["_upto"] == conn.execute("SELECT max(id) FROM performance_data").fetchall()[0][0]
                   for v in hourly.values())

    # a run that dies between chunks: its first rows are stored, the watermark is not
    monkeypatch.setattr(summarizer, "CHUNK", 3)
    p, lg = _perf(rng, t0, 500), _logs(rng, t0, 200)
    _push(d, p, lg)
    perf += p
    logs += lg
    with pytest.raises(RuntimeError):
        _CutShort(conn, writer).run(NOW)
    p, lg = _perf(rng, t0, 100), _logs(rng, t0, 50)         # and more rows arrive
    _push(d, p, lg)
    perf += p
    logs += lg
    Summarizer(conn, writer).run(NOW)
    _check(conn, perf, logs)

    # forgetting the watermark folds nothing twice either
    before = {k: _stored(conn, "daily", k) for k in ("performance", "log")}
    writer.call("state.set", key=summarizer.STATE_KEY, value={})
    Summarizer(conn, writer).run(NOW)
    assert {k: _stored(conn, "daily", k) for k in ("performance", "log")} == before


def test_a_run_reads_only_the_new_rows(env):
    """A run's work follows the rows that are new, not the size of the hour: the
    hourly rows of a later run are not recomputed from the rows summarized before."""
    d, conn, writer = env
    rng = random.Random(8)
    t0 = calendar_bucket("hourly", NOW) - 3600
    first = [dict(r, timestamp=t0 + 10) for r in _perf(rng, t0, 300)]
    _push(d, first, [])
    Summarizer(conn, writer).run(NOW)
    # rows summarized already are gone from the detail (as retention would do): a run
    # that recomputed the hour from the detail would lose them
    writer.call("delete", kind="performance", before=t0 + 11, limit=1000)
    late = [dict(r, timestamp=t0 + 20) for r in _perf(rng, t0, 50)]
    _push(d, late, [])
    Summarizer(conn, writer).run(NOW)
    got = _stored(conn, "hourly", "performance")
    for key in {f"{r['component']}/{r['operation']}" for r in first + late}:
        rows = [r for r in first + late if f"{r['component']}/{r['operation']}" == key]
        assert got[(key, t0)]["count"] == len(rows)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=1e7, allow_nan=False), min_size=1, max_size=400),
       st.sampled_from([0.5, 0.95, 0.99]), st.integers(1, 4))
def test_sketch_quantiles_are_within_alpha_and_merging_changes_nothing(values, q, parts):
    whole, merged = {}, {}
    for x in values:
        ddsketch.add(whole, x)
    for i in range(parts):
        part = {}
        for x in values[i::parts]:
            ddsketch.add(part, x)
        ddsketch.merge(merged, ddsketch.load(json.loads(json.dumps(ddsketch.dump(part)))))
    assert merged == whole
    s = sorted(values)
    pos = q * (len(s) - 1)
    est = ddsketch.quantile(whole, q)
    assert s[math.floor(pos)] * (1 - ddsketch.ALPHA) <= est <= s[math.ceil(pos)] * (1 + ddsketch.ALPHA)


def test_ids_never_go_back_when_a_table_was_emptied(env):
    """SQLite gives a new row max(id) + 1: without AUTOINCREMENT a table emptied by
    retention starts again from 1, under the summary watermark."""
    d, conn, writer = env
    rng = random.Random(9)
    _push(d, [], _logs(rng, NOW - 7200, 200))
    Summarizer(conn, writer).run(NOW)
    top = conn.execute("SELECT max(id) FROM system_logs").fetchall()[0][0]
    while not writer.call("delete", kind="log", before=NOW + 1, limit=1000)["done"]:
        pass
    assert conn.execute("SELECT count(*) FROM system_logs").fetchall()[0][0] == 0
    later = _logs(rng, NOW - 7200, 30)
    _push(d, [], later)
    assert conn.execute("SELECT min(id) FROM system_logs").fetchall()[0][0] == top + 1
    Summarizer(conn, writer).run(NOW)
    assert sum(v["count"] for v in _stored(conn, "daily", "log").values()) == 230
    assert len(d.ask("logs.search", q="연결", limit=1000)["rows"]) == 30


def test_the_migration_to_autoincrement_keeps_rows_ids_and_the_search_index(tmp_path):
    import apsw
    path = str(tmp_path / "v5.db")
    conn = apsw.Connection(path)
    conn.execute("PRAGMA journal_mode = WAL")
    with conn:
        for stmts in schema.MIGRATIONS[:5]:
            for stmt in stmts:
                conn.execute(stmt)
        conn.execute("PRAGMA user_version = 5")
        conn.executemany(schema.INSERT["log"], [
            (NOW + i, "INFO", "DEVICE.manager", f"디바이스 연결이 끊어졌습니다 {i}", None, None, None,
             None, None, None) for i in range(50)])
        conn.execute("DELETE FROM system_logs WHERE id <= 10")
        conn.execute("INSERT INTO logs_fts (rowid, message) SELECT id, message || '\x1f\x1f' "
                     "FROM system_logs WHERE id BETWEEN 11 AND 50")   # schema 5's index
    before = conn.execute("SELECT * FROM system_logs ORDER BY id").fetchall()
    with conn:                                # migration 6 alone (7: test_schema_conversion.py)
        schema.MIGRATIONS[5][0](conn)
        conn.execute("PRAGMA user_version = 6")
    assert conn.execute("SELECT * FROM system_logs ORDER BY id").fetchall() == before
    sql = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'system_logs'").fetchall()[0][0]
    assert "AUTOINCREMENT" in sql
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE tbl_name = 'system_logs' "
                                       "AND type = 'index'")} >= {"idx_logs_time", "idx_logs_level_time"}
    assert conn.execute("SELECT count(*) FROM logs_fts WHERE logs_fts MATCH '끊어졌습'").fetchall() == [(40,)]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
