"""Schema migration 7 (issue 16): log lines and metric rows in fewer bytes.

Where the bytes of a row went (``bench/storage.py`` splits them by table and
index with ``dbstat``): names repeated on every row and in every index over them,
and an FTS5 trigram index that kept the position of every trigram. Now:

- ``log_lines``: time, level (0..4: its place in ``LOG_LEVELS``), a logger id
  (``log_loggers``), a source id (``log_sources``: module, function, line,
  thread, process: few distinct ones, as few as the lines of code that log),
  the message and the extra data. Indexed by time, (level, time) and
  (logger, time), all on small integers.
- ``metric_points``: time, a name id (``metric_names``), a series id
  (``metric_series``: type, unit, tags) and the value. One index over
  (name, time, id, value) serves per-metric pages in (time, id) order and
  aggregates without touching the table; one over time serves the rest.
- ``logs_fts``: ``detail=none`` (which rows hold a trigram, not where), and
  ``columnsize=0``; a search rechecks its candidates on the message.
- The views ``system_logs`` and ``system_metrics`` have the columns of the old
  tables, so every reader reads as before. Their joins are LEFT JOINs on unique
  ids (every id has its row): SQLite leaves out a join whose columns a query does
  not use, so an aggregate of values reads the covering index alone, and a filter
  on a name still turns its join inner and starts from the name.

On an existing database the old tables are renamed (``legacy_logs``,
``legacy_metrics``, ``legacy_logs_fts``), nothing else: the migration itself
takes no time, and the writer moves their rows over in small paced steps with
ingestion running (``conversion.py``). New rows take ids above every old one,
and the old rows keep theirs.
"""
from __future__ import annotations

from linkband_history.protocol import LOG_LEVELS

_LEVELS = ", ".join(f"({i}, '{name}')" for i, name in enumerate(LOG_LEVELS))

TABLES = [
    "CREATE TABLE log_levels (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT",
    f"INSERT INTO log_levels (id, name) VALUES {_LEVELS}",
    "CREATE TABLE log_loggers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT",
    """CREATE TABLE log_sources (
        id INTEGER PRIMARY KEY,
        module TEXT,
        function_name TEXT,
        line_number INTEGER,
        thread_id INTEGER,
        process_id INTEGER
    ) STRICT""",
    "CREATE INDEX idx_log_sources ON log_sources(module, function_name, line_number, thread_id, "
    "process_id)",
    f"""CREATE TABLE log_lines (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp REAL NOT NULL,
        level INTEGER NOT NULL CHECK (level BETWEEN 0 AND {len(LOG_LEVELS) - 1}),
        logger INTEGER NOT NULL,
        source INTEGER NOT NULL,
        message TEXT NOT NULL,
        extra_data TEXT CHECK (extra_data IS NULL OR json_valid(extra_data))
    ) STRICT""",
    "CREATE INDEX idx_log_lines_time ON log_lines(timestamp)",
    "CREATE INDEX idx_log_lines_level_time ON log_lines(level, timestamp)",
    "CREATE INDEX idx_log_lines_logger_time ON log_lines(logger, timestamp)",
    """CREATE VIRTUAL TABLE logs_fts USING fts5(
        message, content='', columnsize=0, detail=none, tokenize='trigram case_sensitive 0')""",
    # merges run in paced steps by the writer (fts_merger.py), never inside a commit
    "INSERT INTO logs_fts (logs_fts, rank) VALUES ('automerge', 0)",
    "INSERT INTO logs_fts (logs_fts, rank) VALUES ('deletemerge', 0)",
    "CREATE TABLE metric_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT",
    """CREATE TABLE metric_series (
        id INTEGER PRIMARY KEY,
        metric_type TEXT NOT NULL,
        unit TEXT,
        tags TEXT CHECK (tags IS NULL OR json_valid(tags))
    ) STRICT""",
    "CREATE INDEX idx_metric_series ON metric_series(metric_type, unit, tags)",
    """CREATE TABLE metric_points (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp REAL NOT NULL,
        name INTEGER NOT NULL,
        series INTEGER NOT NULL,
        value REAL NOT NULL
    ) STRICT""",
    "CREATE INDEX idx_metric_points_name_time ON metric_points(name, timestamp, id, value)",
    "CREATE INDEX idx_metric_points_time ON metric_points(timestamp)",
]

VIEWS = [
    """CREATE VIEW system_logs AS
        SELECT l.id AS id, l.timestamp AS timestamp, v.name AS level, g.name AS logger_name,
               l.message AS message, s.module AS module, s.function_name AS function_name,
               s.line_number AS line_number, s.thread_id AS thread_id,
               s.process_id AS process_id, l.extra_data AS extra_data
        FROM log_lines l LEFT JOIN log_levels v ON v.id = l.level
        LEFT JOIN log_loggers g ON g.id = l.logger LEFT JOIN log_sources s ON s.id = l.source""",
    """CREATE VIEW system_metrics AS
        SELECT p.id AS id, p.timestamp AS timestamp, s.metric_type AS metric_type,
               n.name AS metric_name, p.value AS value, s.unit AS unit, s.tags AS tags
        FROM metric_points p LEFT JOIN metric_names n ON n.id = p.name
        LEFT JOIN metric_series s ON s.id = p.series""",
    # what aggregates of values per metric need, without the series: SQLite leaves
    # out an unused LEFT JOIN, but not in an aggregate query
    """CREATE VIEW metric_values AS
        SELECT p.id AS id, p.timestamp AS timestamp, n.name AS metric_name, p.value AS value
        FROM metric_points p LEFT JOIN metric_names n ON n.id = p.name""",
]

# Rows inserted into a view by SQL (tests, tools, the conversion of old rows) go
# through these triggers; the writer maps names itself (row_store.py), in bulk.
# An unknown level becomes -1, which the CHECK refuses, as the old CHECK did.
TRIGGERS = [
    """CREATE TRIGGER system_logs_insert INSTEAD OF INSERT ON system_logs BEGIN
        INSERT INTO log_loggers (name) SELECT NEW.logger_name
            WHERE NOT EXISTS (SELECT 1 FROM log_loggers WHERE name IS NEW.logger_name);
        INSERT INTO log_sources (module, function_name, line_number, thread_id, process_id)
            SELECT NEW.module, NEW.function_name, NEW.line_number, NEW.thread_id, NEW.process_id
            WHERE NOT EXISTS (SELECT 1 FROM log_sources WHERE module IS NEW.module
                AND function_name IS NEW.function_name AND line_number IS NEW.line_number
                AND thread_id IS NEW.thread_id AND process_id IS NEW.process_id);
        INSERT INTO log_lines (id, timestamp, level, logger, source, message, extra_data)
            VALUES (NEW.id, NEW.timestamp,
                CASE WHEN NEW.level IS NOT NULL
                     THEN coalesce((SELECT id FROM log_levels WHERE name = NEW.level), -1) END,
                (SELECT id FROM log_loggers WHERE name IS NEW.logger_name),
                (SELECT id FROM log_sources WHERE module IS NEW.module
                    AND function_name IS NEW.function_name AND line_number IS NEW.line_number
                    AND thread_id IS NEW.thread_id AND process_id IS NEW.process_id),
                NEW.message, NEW.extra_data);
    END""",
    """CREATE TRIGGER system_metrics_insert INSTEAD OF INSERT ON system_metrics BEGIN
        INSERT INTO metric_names (name) SELECT NEW.metric_name
            WHERE NOT EXISTS (SELECT 1 FROM metric_names WHERE name IS NEW.metric_name);
        INSERT INTO metric_series (metric_type, unit, tags) SELECT NEW.metric_type, NEW.unit, NEW.tags
            WHERE NOT EXISTS (SELECT 1 FROM metric_series WHERE metric_type IS NEW.metric_type
                AND unit IS NEW.unit AND tags IS NEW.tags);
        INSERT INTO metric_points (id, timestamp, name, series, value)
            VALUES (NEW.id, NEW.timestamp,
                (SELECT id FROM metric_names WHERE name IS NEW.metric_name),
                (SELECT id FROM metric_series WHERE metric_type IS NEW.metric_type
                    AND unit IS NEW.unit AND tags IS NEW.tags),
                NEW.value);
    END""",
]

# schema 6's tables -> the names they keep while their rows are converted
RENAMES = [("system_logs", "legacy_logs"), ("logs_fts", "legacy_logs_fts"),
           ("system_metrics", "legacy_metrics")]
# the new table whose ids must start above the old table's
ID_SUCCESSORS = [("legacy_logs", "log_lines"), ("legacy_metrics", "metric_points")]


def _exists(conn, name: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM sqlite_schema WHERE name = ?", (name,)).fetchall())


def migrate(conn) -> None:
    """Rename schema 6's tables (if any), create the lean ones and the views."""
    if _exists(conn, "logs_fts_vocab"):
        conn.execute("DROP TABLE logs_fts_vocab")
    for old, new in RENAMES:
        if not _exists(conn, old):
            continue
        if conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {old} LIMIT 1)").fetchall()[0][0]:
            conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
        else:                                   # nothing to convert (a new database)
            conn.execute(f"DROP TABLE {old}")
    for stmt in TABLES + VIEWS + TRIGGERS:
        conn.execute(stmt)
    conn.execute("CREATE VIRTUAL TABLE logs_fts_vocab USING fts5vocab(logs_fts, 'row')")
    for legacy, table in ID_SUCCESSORS:
        if _exists(conn, legacy):
            top = conn.execute(f"SELECT max(coalesce(max(id), 0), coalesce((SELECT seq FROM "
                               f"sqlite_sequence WHERE name = ?), 0)) FROM {legacy}",
                               (legacy,)).fetchall()[0][0]
            if top:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, top))
