"""All SQL of the database's shape: tables, indexes, migrations, connections.

Tables are STRICT, so SQLite itself rejects a wrong type, a missing required
field or a bad level (CHECK) in C, and the writer needs no per-record Python
validation on its fast path. Migrations are recorded in ``PRAGMA user_version``.

Log lines and metric rows are lean (migration 7, issue 16): a log line keeps its
time, its level as a small integer, its message and extra data, and two ids into
dictionary tables (its logger; its source: module, function, line, thread and
process); a metric row keeps its time, its value and two ids (its name; its
series: type, unit and tags). The views ``system_logs`` and ``system_metrics``
give the rows back with their names, column for column as before, so readers
did not change; rows go in through :mod:`row_store`.

Logs are searched through ``logs_fts``, a contentless FTS5 trigram index with
``detail=none`` (row ids only, no positions) that the writer fills in the same
transaction as the rows; a search rechecks its candidates on the message (see
``search.py``). Each message is indexed with two sentinel characters appended
(``SENTINEL``), so that every occurrence of a one- or two-character term is the
prefix of some indexed trigram: the search module finds such terms through the
``logs_fts_terms`` term list. A line leaves the index by FTS5's ``'delete'``
command with its indexed text (:data:`UNINDEX_LOGS`).
"""
from __future__ import annotations

import json
import os
import time

import apsw

from linkband_history.protocol import ALERT_LEVELS, FIELDS, LOG_LEVELS
from linkband_historyd.storage import commit_seconds, lean_schema

SENTINEL = "\x1f\x1f"

TABLES = {"metric": "system_metrics", "performance": "performance_data",
          "log": "system_logs", "alert": "alert_history"}
# where the rows of a kind are stored, when TABLES names a view over them
BASE_TABLES = {**TABLES, "metric": "metric_points", "log": "log_lines"}
# the tables of schema 6 that migration 7 renames; conversion.py moves their rows
LEGACY_TABLES = {"log": "legacy_logs", "metric": "legacy_metrics"}
COUNTED_TABLES = ("system_metrics", "performance_data", "system_logs")

_JSON = "CHECK ({0} IS NULL OR json_valid({0}))"
_LEVEL = "CHECK (level IN ({}))"
# the protocol's levels, written into migration 1: a new level needs a migration too
_LOG_LEVELS = ", ".join(f"'{x}'" for x in LOG_LEVELS)
_ALERT_LEVELS = ", ".join(f"'{x}'" for x in ALERT_LEVELS)

MIGRATIONS: list[list] = [   # SQL statements, or functions of the connection
    # 1: the design's five tables, FTS over log messages, ingest bookkeeping
    [
        f"""CREATE TABLE system_metrics (
            id INTEGER PRIMARY KEY,
            timestamp REAL NOT NULL,
            metric_type TEXT NOT NULL,
            metric_name TEXT NOT NULL,
            value REAL NOT NULL,
            unit TEXT,
            tags TEXT {_JSON.format('tags')}
        ) STRICT""",
        # per-metric pages come in (timestamp, id) order without a sort, and
        # aggregates of (timestamp, value) never touch the table (covering)
        "CREATE INDEX idx_metrics_name_time ON system_metrics(metric_name, timestamp, id, value)",
        "CREATE INDEX idx_metrics_time ON system_metrics(timestamp)",
        f"""CREATE TABLE performance_data (
            id INTEGER PRIMARY KEY,
            timestamp REAL NOT NULL,
            component TEXT NOT NULL,
            operation TEXT NOT NULL,
            duration_ms REAL NOT NULL,
            throughput REAL,
            efficiency_percent REAL,
            error_count INTEGER,
            metadata TEXT {_JSON.format('metadata')}
        ) STRICT""",
        "CREATE INDEX idx_perf_comp_time ON performance_data(component, operation, timestamp)",
        "CREATE INDEX idx_perf_time ON performance_data(timestamp)",
        f"""CREATE TABLE system_logs (
            id INTEGER PRIMARY KEY,
            timestamp REAL NOT NULL,
            level TEXT NOT NULL {_LEVEL.format(_LOG_LEVELS)},
            logger_name TEXT NOT NULL,
            message TEXT NOT NULL,
            module TEXT,
            function_name TEXT,
            line_number INTEGER,
            thread_id INTEGER,
            process_id INTEGER,
            extra_data TEXT {_JSON.format('extra_data')}
        ) STRICT""",
        "CREATE INDEX idx_logs_time ON system_logs(timestamp)",
        "CREATE INDEX idx_logs_level_time ON system_logs(level, timestamp)",
        "CREATE INDEX idx_logs_logger_time ON system_logs(logger_name, timestamp)",
        """CREATE VIRTUAL TABLE logs_fts USING fts5(
            message, content='', contentless_delete=1, tokenize='trigram case_sensitive 0')""",
        "CREATE VIRTUAL TABLE logs_fts_vocab USING fts5vocab(logs_fts, 'row')",
        f"""CREATE TABLE alert_history (
            id INTEGER PRIMARY KEY,
            timestamp REAL NOT NULL,
            alert_id TEXT NOT NULL UNIQUE,
            level TEXT NOT NULL {_LEVEL.format(_ALERT_LEVELS)},
            category TEXT NOT NULL,
            title TEXT NOT NULL,
            description TEXT,
            source_component TEXT,
            acknowledged_at REAL,
            resolved_at REAL,
            metadata TEXT {_JSON.format('metadata')}
        ) STRICT""",
        "CREATE INDEX idx_alerts_time ON alert_history(timestamp)",
        """CREATE TABLE data_summaries (
            id INTEGER PRIMARY KEY,
            summary_type TEXT NOT NULL
                CHECK (summary_type IN ('minute', 'hourly', 'daily', 'weekly', 'monthly')),
            data_type TEXT NOT NULL,
            summary_key TEXT NOT NULL DEFAULT '',
            period_start REAL NOT NULL,
            period_end REAL NOT NULL,
            summary_data TEXT NOT NULL CHECK (json_valid(summary_data)),
            created_at REAL NOT NULL,
            UNIQUE (summary_type, data_type, summary_key, period_start)
        ) STRICT""",
        # one row per client: the last committed sequence number is written in
        # the same transaction as the client's records (flush() reads it back)
        """CREATE TABLE ingest_clients (
            client_id TEXT PRIMARY KEY,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            last_seq INTEGER NOT NULL,
            records_next INTEGER NOT NULL,
            stored INTEGER NOT NULL,
            rejected INTEGER NOT NULL,
            lost_records INTEGER NOT NULL,
            lost_messages INTEGER NOT NULL,
            duplicates INTEGER NOT NULL,
            client_dropped INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID""",
        "CREATE TABLE ingest_rejects (reason TEXT PRIMARY KEY, count INTEGER NOT NULL) STRICT",
        "CREATE TABLE table_counts (name TEXT PRIMARY KEY, rows INTEGER NOT NULL) STRICT",
        # small JSON documents the writer publishes (e.g. its latency histogram)
        "CREATE TABLE writer_state (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
    ],
    # 2: the latest value of every metric, kept by the writer (dashboards, metric lists)
    [
        """CREATE TABLE metric_latest (
            metric_name TEXT PRIMARY KEY,
            metric_type TEXT NOT NULL,
            timestamp REAL NOT NULL,
            value REAL NOT NULL,
            unit TEXT,
            tags TEXT
        ) STRICT, WITHOUT ROWID""",
        """INSERT INTO metric_latest (metric_name, metric_type, timestamp, value, unit, tags)
            SELECT metric_name, metric_type, max(timestamp), value, unit, tags
            FROM system_metrics GROUP BY metric_name""",
    ],
    # 3: typed metric summaries per tier (minute, hourly, daily, weekly, monthly), so
    # charts over days never touch detail rows; count/sum/min/max/last keep every
    # tier's averages exact. data_summaries keeps the readable JSON of every kind.
    [
        """CREATE TABLE metric_rollups (
            tier TEXT NOT NULL,
            metric_name TEXT NOT NULL,
            tags TEXT NOT NULL,
            bucket REAL NOT NULL,
            metric_type TEXT NOT NULL,
            unit TEXT,
            count INTEGER NOT NULL,
            sum REAL NOT NULL,
            min REAL NOT NULL,
            max REAL NOT NULL,
            last REAL NOT NULL,
            last_ts REAL NOT NULL,
            PRIMARY KEY (tier, metric_name, tags, bucket)
        ) STRICT, WITHOUT ROWID""",
        "CREATE INDEX idx_rollups_bucket ON metric_rollups(tier, bucket)",
    ],
    # 4: deleting log lines (retention, archives) must not merge FTS segments inside
    # the writer's commit (seconds at a time); optimize merges them in bounded steps.
    # A covering index lets tier queries read rollups without touching the table.
    [
        "INSERT INTO logs_fts (logs_fts, rank) VALUES ('deletemerge', 0)",
        "DROP INDEX idx_rollups_bucket",
        "CREATE INDEX idx_rollups_bucket ON metric_rollups(tier, bucket, metric_name, count, sum, "
        "min, max)",
    ],
    # 5: no FTS merge work inside any commit (it made single commits of deletes take
    # up to hundreds of ms): the writer merges in small paced steps (fts_merger.py)
    [
        "INSERT INTO logs_fts (logs_fts, rank) VALUES ('automerge', 0)",
    ],
    # 6: ids never go back: SQLite gives a new row max(id) + 1, so once retention
    # emptied a table (a month without the headband) ids started again from 1, under
    # the summary job's watermark and the archives' id ranges
    [
        lambda conn: _rebuild_with_autoincrement(conn, TABLES.values()),
    ],
    # 7: lean rows (issue 16): names through dictionary tables, level as an integer,
    # an FTS index of row ids only; the old tables are renamed and converted in
    # paced steps by the writer (conversion.py)
    [
        lambda conn: lean_schema.migrate(conn),
    ],
    # 8: a performance record may have no duration (the SDK's model allows None);
    # the second in which rows were stored, per kind (commit_seconds.py)
    [
        lambda conn: drop_not_null(conn, "performance_data", "duration_ms REAL"),
        commit_seconds.TABLE,
    ],
    # 9: the search index's terms as fts5vocab 'instance' rows: a search finds the
    # trigrams that start with a short term in one probe each (query/search.py),
    # where the 'row' table reads each trigram's whole list of lines
    [
        "CREATE VIRTUAL TABLE logs_fts_terms USING fts5vocab(logs_fts, 'instance')",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

CLIENT_COLUMNS = ("client_id", "first_seen", "last_seen", "last_seq", "records_next", "stored",
                  "rejected", "lost_records", "lost_messages", "duplicates", "client_dropped")


def _insert(kind: str, upsert: str = "") -> str:
    cols = FIELDS[kind]
    return (f"INSERT INTO {TABLES[kind]} ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))}){upsert}")


INSERT = {
    "metric": _insert("metric"),
    "performance": _insert("performance"),
    "log": _insert("log"),
    # the alert manager pushes an alert again when it is acknowledged or resolved
    "alert": _insert("alert", " ON CONFLICT (alert_id) DO UPDATE SET "
                     "acknowledged_at = coalesce(excluded.acknowledged_at, acknowledged_at), "
                     "resolved_at = coalesce(excluded.resolved_at, resolved_at), "
                     "description = coalesce(excluded.description, description), "
                     "metadata = coalesce(excluded.metadata, metadata)"),
}
INDEX_LOGS = (f"INSERT INTO logs_fts (rowid, message) SELECT id, message || '{SENTINEL}' "
              "FROM log_lines WHERE id BETWEEN ? AND ?")
# before the lines themselves are deleted: their indexed text leaves the index
UNINDEX_LOGS = ("INSERT INTO logs_fts (logs_fts, rowid, message) SELECT 'delete', id, "
                f"message || '{SENTINEL}' FROM log_lines WHERE id IN (SELECT value FROM json_each(?))")
# With exactly one max() aggregate, SQLite takes the bare columns from its row.
UPDATE_LATEST = """INSERT INTO metric_latest (metric_name, metric_type, timestamp, value, unit, tags)
    SELECT metric_name, metric_type, max(timestamp), value, unit, tags
    FROM system_metrics WHERE id BETWEEN ? AND ? GROUP BY metric_name
    ON CONFLICT (metric_name) DO UPDATE SET metric_type = excluded.metric_type,
        timestamp = excluded.timestamp, value = excluded.value, unit = excluded.unit,
        tags = excluded.tags
    WHERE excluded.timestamp >= metric_latest.timestamp"""
UPSERT_CLIENT = (f"INSERT OR REPLACE INTO ingest_clients ({', '.join(CLIENT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(CLIENT_COLUMNS))})")
ADD_REJECTS = ("INSERT INTO ingest_rejects (reason, count) VALUES (?, ?) "
               "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count")
ROLLUP_COLUMNS = ("tier", "metric_name", "tags", "bucket", "metric_type", "unit", "count", "sum",
                  "min", "max", "last", "last_ts")
UPSERT_ROLLUP = (f"INSERT OR REPLACE INTO metric_rollups ({', '.join(ROLLUP_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(ROLLUP_COLUMNS))})")
SUMMARY_COLUMNS = ("summary_type", "data_type", "summary_key", "period_start", "period_end",
                   "summary_data", "created_at")
UPSERT_SUMMARY = ("INSERT INTO data_summaries (summary_type, data_type, summary_key, period_start, "
                  "period_end, summary_data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (summary_type, data_type, summary_key, period_start) DO UPDATE SET "
                  "period_end = excluded.period_end, summary_data = excluded.summary_data, "
                  "created_at = excluded.created_at")
SET_WRITER_STATE = "INSERT OR REPLACE INTO writer_state (key, value) VALUES (?, ?)"


def read_state(conn, key: str, default=None):
    """The JSON value kept under ``key`` in writer_state, or ``default``."""
    row = conn.execute("SELECT value FROM writer_state WHERE key = ?", (key,)).fetchall()
    return json.loads(row[0][0]) if row else default
ADD_COUNT = ("INSERT INTO table_counts (name, rows) VALUES (?, ?) "
             "ON CONFLICT (name) DO UPDATE SET rows = rows + excluded.rows")


def _configure(conn: apsw.Connection, synchronous: str = "NORMAL") -> None:
    conn.setbusytimeout(5000)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA temp_store = MEMORY")


def check_or_move_aside(path: str) -> str | None:
    """A quick look at an existing database file; a damaged one is renamed (never
    deleted) with its WAL, so a fresh one can start. Returns the new name, or None."""
    if not os.path.exists(path):
        return None
    try:
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
        try:
            conn.execute("PRAGMA user_version").fetchall()
            conn.execute("SELECT name FROM sqlite_schema").fetchall()
            if conn.execute("PRAGMA quick_check(1)").fetchall()[0][0] != "ok":
                raise _Damaged()
        finally:
            conn.close()
        return None
    except (apsw.CorruptError, apsw.NotADBError, _Damaged):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = f"{path}.damaged-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, aside + suffix)
        return aside


class _Damaged(Exception):
    pass


def open_writer(path: str, synchronous: str = "NORMAL", max_page_count: int = 0,
                wal_max_bytes: int = 64 * 1024 * 1024) -> apsw.Connection:
    """The one read-write connection; creates and migrates the database.

    Automatic checkpoints are off: they would run inside the writer's commits and
    raise the send->commit p99 (shared/reference/measured-limits.md); a
    checkpointer runs them on its own connection instead (:func:`open_checkpointer`).
    """
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    conn = apsw.Connection(path)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")   # only effective on a new file
    conn.execute("PRAGMA journal_mode = WAL")
    _configure(conn, synchronous)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    # when the WAL starts over, a file grown past this is cut back (writer.py); a file
    # kept this large is overwritten in place, with no new blocks to allocate
    conn.execute(f"PRAGMA journal_size_limit = {int(wal_max_bytes)}")
    if max_page_count:
        conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
    migrate(conn)
    return conn


def open_checkpointer(path: str) -> apsw.Connection:
    conn = apsw.Connection(path)
    conn.setbusytimeout(5000)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def open_reader(path: str) -> apsw.Connection:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    conn.setbusytimeout(5000)
    conn.execute("PRAGMA query_only = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA mmap_size = 268435456")    # reads straight from the page cache
    return conn


def _rebuild_with_autoincrement(conn: apsw.Connection, tables) -> None:
    """Each table again, same rows and ids, as ``id INTEGER PRIMARY KEY AUTOINCREMENT``
    (the ids stay, so the FTS index keyed by them stays right)."""
    for table in tables:
        sql = conn.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?",
                           (table,)).fetchall()[0][0]
        if "AUTOINCREMENT" in sql:
            continue
        indexes = [r[0] for r in conn.execute(
            "SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL", (table,))]
        new = sql.replace(f"CREATE TABLE {table} (", f"CREATE TABLE {table}_rebuilt (", 1)
        new = new.replace("id INTEGER PRIMARY KEY,", "id INTEGER PRIMARY KEY AUTOINCREMENT,", 1)
        assert new != sql and "AUTOINCREMENT" in new, table
        conn.execute(new)
        conn.execute(f"INSERT INTO {table}_rebuilt SELECT * FROM {table}")
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"ALTER TABLE {table}_rebuilt RENAME TO {table}")
        for index in indexes:
            conn.execute(index)


def drop_not_null(conn: apsw.Connection, table: str, column: str) -> None:
    """Remove the NOT NULL of ``column`` (its declaration up to the constraint, as in
    the table's SQL) by editing the table's SQL in the schema.

    SQLite documents this way for changes that leave every stored record valid as
    it is (lang_altertable.html, "making other kinds of table schema changes"):
    it takes no time whatever the table holds, with ingestion waiting for nothing,
    where a rebuild would copy every row. The schema version goes up by one so
    that every open connection reads the new SQL; it runs inside the migration's
    transaction, and the table is read back through the new SQL before the commit.
    """
    old = conn.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?",
                       (table,)).fetchall()[0][0]
    declared = f"{column} NOT NULL"
    if old.count(declared) != 1:
        raise RuntimeError(f"{table}: cannot find {declared!r} once in its SQL")
    version = conn.execute("PRAGMA schema_version").fetchall()[0][0]
    defensive = conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, -1)
    conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 0)    # some builds forbid writable_schema
    try:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = ?",
                     (old.replace(declared, column), table))
        conn.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, defensive)
    name = column.split()[0]
    info = [r for r in conn.execute(f"PRAGMA table_info({table})") if r[1] == name]
    if len(info) != 1 or info[0][3] != 0:
        raise RuntimeError(f"{table}.{name}: still NOT NULL after the schema change")


def migrate(conn: apsw.Connection) -> int:
    version = conn.execute("PRAGMA user_version").fetchall()[0][0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"database schema {version} is newer than this daemon ({SCHEMA_VERSION})")
    for v in range(version, SCHEMA_VERSION):
        with conn:
            for stmt in MIGRATIONS[v]:
                stmt(conn) if callable(stmt) else conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {v + 1}")
    return SCHEMA_VERSION
