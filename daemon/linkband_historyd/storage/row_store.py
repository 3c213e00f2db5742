"""Rows of every kind into their tables, names through the dictionary tables.

A log line or metric row arrives with its names spelled out (the protocol's
``FIELDS``); it is stored with small ids into dictionary tables
(``lean_schema.py``). The ids come from :class:`Dictionary`, a ``dict`` whose
``__missing__`` looks a name up in its table (adding it the first time): per
batch, the columns are mapped by ``map`` over the dict's ``__getitem__``, so no
Python code runs per row once the names are known, as in ``ingest_batch.py``.

The database still checks every value (STRICT types, NOT NULL, CHECK): the
dictionary tables check the names' fields, the row tables the others. A level
that is not one of ``LOG_LEVELS`` has no id: the batch fails with ``KeyError``
and the writer retries it row by row, where :func:`refusal` names the reason.

The cache is only ever a copy of committed or pending rows: after a rollback
:meth:`RowStore.rolled_back` forgets it all (the ids it held may be gone).
"""
from __future__ import annotations

from itertools import repeat

from linkband_history.protocol import LOG_LEVELS
from linkband_historyd.storage import schema
from linkband_historyd.storage.commit_seconds import CommitSeconds

LEVEL_IDS = {name: i for i, name in enumerate(LOG_LEVELS)}
MAX_CACHED = 50_000          # names per dictionary held in memory; past it, start over

INSERT_LINES = ("INSERT INTO log_lines (id, timestamp, level, logger, source, message, "
                "extra_data) VALUES (?, ?, ?, ?, ?, ?, ?)")
INSERT_POINTS = "INSERT INTO metric_points (id, timestamp, name, series, value) VALUES (?, ?, ?, ?, ?)"


class Dictionary(dict):
    """Key (one value, or a tuple of the ``columns``) -> id in ``table``."""

    def __init__(self, conn, table: str, columns: tuple[str, ...]):
        super().__init__()
        self.conn = conn
        self.single = len(columns) == 1
        self.find = f"SELECT id FROM {table} WHERE {' AND '.join(c + ' IS ?' for c in columns)}"
        self.add = (f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' * len(columns))})")

    def __missing__(self, key):
        args = (key,) if self.single else key
        found = self.conn.execute(self.find, args).fetchall()
        if found:
            rid = found[0][0]
        else:
            self.conn.execute(self.add, args)
            rid = self.conn.last_insert_rowid()
        if len(self) >= MAX_CACHED:
            self.clear()
        self[key] = rid
        return rid


def refusal(kind: str, row) -> str | None:
    """Why the database cannot take ``row`` that the insert itself cannot say
    (a log level that is not one of LOG_LEVELS), or None."""
    if kind != "log":
        return None
    level = row[1]
    if level is None:
        return "missing_field"
    if not isinstance(level, str):
        return "wrong_type"
    return None if level in LEVEL_IDS else "bad_value"


class RowStore:
    """Inserts rows of every kind on one connection (the writer's)."""

    def __init__(self, conn):
        self.conn = conn
        self.loggers = Dictionary(conn, "log_loggers", ("name",))
        self.sources = Dictionary(conn, "log_sources", ("module", "function_name", "line_number",
                                                        "thread_id", "process_id"))
        self.names = Dictionary(conn, "metric_names", ("name",))
        self.series = Dictionary(conn, "metric_series", ("metric_type", "unit", "tags"))
        self.seconds = CommitSeconds(conn)

    def rolled_back(self) -> None:
        for d in (self.loggers, self.sources, self.names, self.series):
            d.clear()
        self.seconds.forget()

    def last_id(self, kind: str) -> int:
        table = schema.BASE_TABLES[kind]
        return self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchall()[0][0]

    def insert(self, kind: str, rows: list, ids=None) -> None:
        """``rows``: positional, in ``FIELDS[kind]`` order; ``ids``: theirs (logs and
        metrics only; default: new ones). Raises what SQLite raises for a bad value,
        KeyError for a bad level, TypeError for a bad shape."""
        if kind == "log":
            ts, level, logger, message, module, func, line, thread, pid, extra = zip(*rows)
            out = list(zip(ids or repeat(None), ts, map(LEVEL_IDS.__getitem__, level),
                           map(self.loggers.__getitem__, logger),
                           map(self.sources.__getitem__, zip(module, func, line, thread, pid)),
                           message, extra))
            self.conn.executemany(INSERT_LINES, out)
        elif kind == "metric":
            ts, mtype, name, value, unit, tags = zip(*rows)
            out = list(zip(ids or repeat(None), ts, map(self.names.__getitem__, name),
                           map(self.series.__getitem__, zip(mtype, unit, tags)), value))
            self.conn.executemany(INSERT_POINTS, out)
        else:
            self.conn.executemany(schema.INSERT[kind], rows)

    def after(self, kind: str, first: int, last: int, stamp: bool = True) -> None:
        """What follows new rows with ids ``first..last``: the second they were stored
        in (unless ``stamp`` is False: the caller noted it), their FTS entries (logs),
        the latest value of their metrics (metrics)."""
        if last < first:
            return
        if stamp:
            self.seconds.note(kind, first)
        if kind == "log":
            self.conn.execute(schema.INDEX_LOGS, (first, last))
        elif kind == "metric":
            self.conn.execute(schema.UPDATE_LATEST, (first, last))

    def add(self, kind: str, rows: list) -> tuple[int, int]:
        """Insert ``rows`` and what follows them; their id range ``(first, last)``."""
        first = self.last_id(kind) + 1
        if rows:
            self.insert(kind, rows)
        last = self.last_id(kind)
        self.after(kind, first, last)
        return first, last
