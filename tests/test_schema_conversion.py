"""A database of schema 6 (before issue 16's lean rows) is converted in place by the
writer, in paced steps, while a client pushes: every old row is readable and
searchable after, and nothing pushed meanwhile is lost."""
from __future__ import annotations

import random
import time

import apsw
import pytest
import sdkdata

from linkband_history.protocol import row_from_record
from linkband_historyd.harness import DaemonProcess
from linkband_historyd.storage import schema

# -- schema 6, frozen: a released schema never changes; its tables of logs and
# metrics, its search index, and how rows went into them
V6_MIGRATIONS = 6
V6_INSERT = {
    "log": "INSERT INTO system_logs (timestamp, level, logger_name, message, module, "
           "function_name, line_number, thread_id, process_id, extra_data) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "metric": "INSERT INTO system_metrics (timestamp, metric_type, metric_name, value, unit, "
              "tags) VALUES (?, ?, ?, ?, ?, ?)",
}
V6_INDEX_LOGS = ("INSERT INTO logs_fts (rowid, message) SELECT id, message || '\x1f\x1f' "
                 "FROM system_logs WHERE id BETWEEN ? AND ?")
V6_LOGS_DDL = "id INTEGER PRIMARY KEY AUTOINCREMENT,\n            timestamp REAL NOT NULL,\n            level TEXT NOT NULL"

NOW = time.time()
OLD_LOGS, OLD_METRICS = 20_000, 100_000


def _built_to(path: str, version: int) -> apsw.Connection:
    """A new database at schema ``version``: the first ``version`` migrations, as the
    daemon of that version made it."""
    conn = apsw.Connection(path)
    conn.execute("PRAGMA journal_mode = WAL")
    with conn:
        for stmts in schema.MIGRATIONS[:version]:
            for stmt in stmts:
                stmt(conn) if callable(stmt) else conn.execute(stmt)
        conn.execute(f"PRAGMA user_version = {version}")
    return conn


def build_v6(path: str) -> dict:
    """A schema 6 database with SDK-shaped rows; the rows as schema 6 reads them."""
    conn = _built_to(path, V6_MIGRATIONS)
    assert V6_LOGS_DDL in conn.execute(
        "SELECT sql FROM sqlite_schema WHERE name = 'system_logs'").fetchall()[0][0]
    rng = random.Random(16)
    logs = [row_from_record("log", sdkdata.log(rng, NOW - 7200 + i * 0.25), NOW)
            for i in range(OLD_LOGS)]
    metrics = [row_from_record("metric", sdkdata.metric(rng, NOW - 7200 + i * 0.05, i), NOW)
               for i in range(OLD_METRICS)]
    with conn:
        conn.executemany(V6_INSERT["log"], logs)
        conn.execute(V6_INDEX_LOGS, (1, OLD_LOGS))
        conn.executemany(V6_INSERT["metric"], metrics)
        conn.executemany(schema.ADD_COUNT, [("system_logs", OLD_LOGS),
                                            ("system_metrics", OLD_METRICS)])
        conn.execute("DELETE FROM system_logs WHERE id <= 10")    # ids need not start at 1
        conn.execute("DELETE FROM logs_fts WHERE rowid <= 10")
        conn.execute(schema.ADD_COUNT, ("system_logs", -10))
    old = {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
           for t in ("system_logs", "system_metrics")}
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.close()
    return old


def wait_converted(d: DaemonProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    conn = schema.open_reader(str(d.db_path))
    try:
        while time.monotonic() < deadline:
            left = conn.execute("SELECT count(*) FROM sqlite_schema WHERE name IN "
                                "('legacy_logs', 'legacy_metrics', 'legacy_logs_fts')").fetchall()
            if left[0][0] == 0:
                return
            time.sleep(0.2)
    finally:
        conn.close()
    pytest.fail("the conversion did not finish")


def test_an_old_database_is_converted_in_place_while_a_client_pushes(tmp_path):
    d = DaemonProcess(tmp_path / "d", env={"LINKBAND_HISTORY_COLLECTOR": "false"})
    try:
        d.data_dir.mkdir(parents=True, mode=0o700)
        old = build_v6(str(d.db_path))
        d.start()
        reader = schema.open_reader(str(d.db_path))
        pending = reader.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'legacy_metrics'"
                                 ).fetchall()[0][0]
        reader.close()
        assert pending, "the conversion was over before the client pushed"
        pushed = []
        with d.client() as c:
            for k in range(40):                   # meanwhile: new rows, as the SDK sends them
                batch = [{"timestamp": NOW - 60 + k, "level": "INFO", "logger_name": "TEST.new",
                          "message": f"새 로그 줄 pushed during conversion {k}-{j}"}
                         for j in range(50)]
                c.store_logs(batch)
                c.store_metrics([{"metric_type": "test", "metric_name": "during_conversion",
                                  "value": float(k * 50 + j), "timestamp": NOW - 60 + k}
                                 for j in range(50)])
                pushed += batch
                time.sleep(0.01)
            assert c.flush(timeout=60)
        wait_converted(d)

        conn = schema.open_reader(str(d.db_path))
        try:
            for table, rows in old.items():
                ids = [r[0] for r in rows]
                got = conn.execute(f"SELECT * FROM {table} WHERE id BETWEEN ? AND ? ORDER BY id",
                                   (ids[0], ids[-1])).fetchall()
                assert got == rows, table
            new_logs = conn.execute("SELECT count(*), min(id) FROM system_logs "
                                    "WHERE logger_name = 'TEST.new'").fetchall()[0]
            assert new_logs[0] == len(pushed)
            assert new_logs[1] > old["system_logs"][-1][0]          # above every old id
            new_metrics = conn.execute("SELECT count(*), sum(value) FROM system_metrics "
                                       "WHERE metric_name = 'during_conversion'").fetchall()[0]
            assert new_metrics == (2000, float(sum(range(2000))))
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()

        # every old line is found by search, as exactly as before
        probe = old["system_logs"][123][4]         # a message
        word = probe.split()[-1][-4:]
        expect = sorted(r[0] for r in old["system_logs"] if word.lower() in r[4].lower())
        found = d.ask("logs.search", q=word, limit=10_000, until=NOW - 100)
        assert sorted(r["id"] for r in found["rows"]) == expect
        for term in ("연결", "EEG", "[STREAM:PPG]"):
            expect = sorted(r[0] for r in old["system_logs"] if term.lower() in r[4].lower())
            found = d.ask("logs.search", q=term, limit=10_000, until=NOW - 100)
            assert sorted(r["id"] for r in found["rows"]) == expect, term
        stats = d.stats()
        assert stats is not None
        assert d.stop() == 0
    finally:
        d.close()


# -- schema 7, frozen: duration_ms NOT NULL; migration 8 lets a record have none
V7_MIGRATIONS = 7
OLD_PERF = 5_000


def build_v7(path: str) -> list:
    """A schema 7 database with performance rows; those rows as schema 7 reads them."""
    conn = _built_to(path, V7_MIGRATIONS)
    assert "duration_ms REAL NOT NULL" in conn.execute(
        "SELECT sql FROM sqlite_schema WHERE name = 'performance_data'").fetchall()[0][0]
    rng = random.Random(8)
    rows = [row_from_record("performance", sdkdata.performance(rng, NOW - 3600 + i * 0.5), NOW)
            for i in range(OLD_PERF)]
    with conn:
        conn.executemany(schema.INSERT["performance"], rows)
        conn.execute(schema.ADD_COUNT, ("performance_data", OLD_PERF))
    with pytest.raises(apsw.ConstraintError):          # what schema 7 did with no duration
        conn.execute(schema.INSERT["performance"], [NOW, "buffer", "push", None, None, None, 0, None])
    old = conn.execute("SELECT * FROM performance_data ORDER BY id").fetchall()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.close()
    return old


def test_a_schema_7_database_takes_performance_records_without_a_duration_after_conversion(tmp_path):
    d = DaemonProcess(tmp_path / "d", env={"LINKBAND_HISTORY_COLLECTOR": "false"})
    try:
        d.data_dir.mkdir(parents=True, mode=0o700)
        old = build_v7(str(d.db_path))
        d.start()
        with d.client() as c:
            c.store_performance([{"timestamp": NOW - 60 + k, "component": "device",
                                  "operation": "connect", "duration_ms": None if k % 2 else 3.0}
                                 for k in range(10)])
            assert c.flush(timeout=60)
        conn = schema.open_reader(str(d.db_path))
        try:
            assert conn.execute("PRAGMA user_version").fetchall() == [(schema.SCHEMA_VERSION,)]
            assert conn.execute("SELECT * FROM performance_data WHERE id <= ? ORDER BY id",
                                (old[-1][0],)).fetchall() == old
            new = conn.execute("SELECT duration_ms FROM performance_data WHERE id > ? ORDER BY id",
                               (old[-1][0],)).fetchall()
            assert [r[0] for r in new] == [None if k % 2 else 3.0 for k in range(10)]
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
        assert d.stats()["rejected"] == {}
        assert d.stop() == 0
    finally:
        d.close()
