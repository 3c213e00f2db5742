"""Storage: bytes per log line and per metric row in the database file, where they go.

    .venv/bin/python bench/storage.py [--quick] [--tx 1000]

The same SDK-shaped rows (``query.log_rows``: 200,000 log lines of ``common.make_logs``,
Korean and English; ``query.metric_rows``: 1,000,000 rows of 40 metrics at 1 Hz; a
tenth of each with ``--quick``) are written into fresh databases, one per kind and
schema, in ``--tx``-row transactions as the writer commits them (then the FTS index
merged as the writer's merge steps keep it):

- ``current``: this daemon's schema (``schema.open_writer``), filled through
  ``common.fill_table``, the writer's own insert path;
- ``previous``: schema 6, the schema before issue 16, from a frozen copy of its DDL
  and statements below (so its figures stay printable after the schema changed);
- ``raw``: schema 6's table alone, without any index or search index (what a
  store without search, like the SDK's own, takes);
- ``daemon`` (logs): the file a running daemon wrote itself: the same lines pushed
  by a ``HistoryClient`` in 500-record calls, flushed, then the daemon left alone
  until its writer's paced FTS merge steps are done (the file and the index's
  segment list unchanged for 2 s), then stopped (SIGTERM). No maintenance job ran:
  its daily ``optimize`` (merge, then ``incremental_vacuum``) would only shrink it.

After a checkpoint (the WAL's size before it is reported apart: it is not part of
the file), ``dbstat`` splits the file's pages by table and index; the figures are
bytes per row of the kind, all-in (the file's size over the rows, free pages
included), and the file again after ``PRAGMA incremental_vacuum`` (the
maintenance job's step that gives free pages back).

The built files are merged at the end as the writer merges (``common.fill_table``:
``'merge'`` steps of ``fts_merger.MAX_PAGES`` pages until one changes nothing):
FTS5 frees a merge's input segments at the end of each call, so one call of
thousands of pages grows the file by its whole output first, and leaves the
inputs' pages free (43 B per line here), where the writer's small steps reuse them.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time

import apsw
import common
import query

from linkband_historyd.harness import DaemonProcess
from linkband_historyd.storage import fts_merger, schema

# -- schema 6 (before issue 16), frozen: its tables of logs and metrics -----------
_LOG_LEVELS = "'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'"
PREVIOUS_TABLE = {
    "log": f"""CREATE TABLE system_logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp REAL NOT NULL,
        level TEXT NOT NULL CHECK (level IN ({_LOG_LEVELS})),
        logger_name TEXT NOT NULL,
        message TEXT NOT NULL,
        module TEXT,
        function_name TEXT,
        line_number INTEGER,
        thread_id INTEGER,
        process_id INTEGER,
        extra_data TEXT CHECK (extra_data IS NULL OR json_valid(extra_data))
    ) STRICT""",
    "metric": """CREATE TABLE system_metrics (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp REAL NOT NULL,
        metric_type TEXT NOT NULL,
        metric_name TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT,
        tags TEXT CHECK (tags IS NULL OR json_valid(tags))
    ) STRICT""",
}
PREVIOUS_INDEXES = {
    "log": [
        "CREATE INDEX idx_logs_time ON system_logs(timestamp)",
        "CREATE INDEX idx_logs_level_time ON system_logs(level, timestamp)",
        "CREATE INDEX idx_logs_logger_time ON system_logs(logger_name, timestamp)",
        """CREATE VIRTUAL TABLE logs_fts USING fts5(
            message, content='', contentless_delete=1, tokenize='trigram case_sensitive 0')""",
        "INSERT INTO logs_fts (logs_fts, rank) VALUES ('deletemerge', 0)",
        "INSERT INTO logs_fts (logs_fts, rank) VALUES ('automerge', 0)",
    ],
    "metric": [
        "CREATE INDEX idx_metrics_name_time ON system_metrics(metric_name, timestamp, id, value)",
        "CREATE INDEX idx_metrics_time ON system_metrics(timestamp)",
        """CREATE TABLE metric_latest (
            metric_name TEXT PRIMARY KEY, metric_type TEXT NOT NULL, timestamp REAL NOT NULL,
            value REAL NOT NULL, unit TEXT, tags TEXT) STRICT, WITHOUT ROWID""",
    ],
}
PREVIOUS_INSERT = {
    "log": "INSERT INTO system_logs (timestamp, level, logger_name, message, module, "
           "function_name, line_number, thread_id, process_id, extra_data) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "metric": "INSERT INTO system_metrics (timestamp, metric_type, metric_name, value, unit, "
              "tags) VALUES (?, ?, ?, ?, ?, ?)",
}
PREVIOUS_AFTER = {
    "log": "INSERT INTO logs_fts (rowid, message) SELECT id, message || '\x1f\x1f' "
           "FROM system_logs WHERE id BETWEEN ? AND ?",
    "metric": """INSERT INTO metric_latest (metric_name, metric_type, timestamp, value, unit, tags)
        SELECT metric_name, metric_type, max(timestamp), value, unit, tags
        FROM system_metrics WHERE id BETWEEN ? AND ? GROUP BY metric_name
        ON CONFLICT (metric_name) DO UPDATE SET metric_type = excluded.metric_type,
            timestamp = excluded.timestamp, value = excluded.value, unit = excluded.unit,
            tags = excluded.tags
        WHERE excluded.timestamp >= metric_latest.timestamp""",
}
PREVIOUS_MERGE = "INSERT INTO logs_fts (logs_fts, rank) VALUES ('merge', ?)"
TABLE = {"log": "system_logs", "metric": "system_metrics"}

SIZES = {False: dict(logs=200_000, metrics=1_000_000), True: dict(logs=20_000, metrics=100_000)}
NAMES = 40                   # metrics at 1 Hz, as bench/query.py builds them


MESSAGE_BYTES = []           # UTF-8 bytes of every log message written (of one variant)


def rows_of(kind: str, n: int, t_start: int):
    if kind == "log":
        MESSAGE_BYTES.clear()
        return (MESSAGE_BYTES.append(len(r[3].encode())) or r
                for r in query.log_rows(n, t_start, max(3600, n // 4)))
    return query.metric_rows(NAMES, t_start, n // NAMES)


def open_db(path: str) -> apsw.Connection:
    conn = apsw.Connection(path)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")     # as schema.open_writer
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def fill_previous(conn, kind: str, rows, tx: int, indexed: bool) -> None:
    """Schema 6's way: executemany, then its after-statement over the new ids."""
    with conn:
        conn.execute(PREVIOUS_TABLE[kind])
        for stmt in PREVIOUS_INDEXES[kind] if indexed else ():
            conn.execute(stmt)
    after = PREVIOUS_AFTER[kind] if indexed else None
    table = TABLE[kind]
    while chunk := list(itertools.islice(rows, tx)):
        with conn:
            first = conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchall()[0][0]
            conn.executemany(PREVIOUS_INSERT[kind], chunk)
            if after:
                conn.execute(after, (first, first + len(chunk) - 1))
    if kind == "log" and indexed:
        while True:                       # as fill_table: in steps of the writer's size
            before = conn.totalchanges()
            with conn:
                conn.execute(PREVIOUS_MERGE, (fts_merger.MAX_PAGES,))
            if conn.totalchanges() - before <= 1:
                break


def fill_current(path: str, kind: str, rows, n: int, tx: int) -> apsw.Connection:
    conn = schema.open_writer(path, synchronous="OFF")
    common.fill_table(conn, kind, rows, n, tx)
    return conn


def group(name: str) -> str:
    """FTS5 keeps an index in several shadow tables: one line for them all."""
    for fts in ("logs_fts",):
        if name == fts or name.startswith(fts + "_"):
            return f"{fts} (FTS5 shadow tables)"
    return name


def measure(conn, path: str, n: int) -> dict:
    wal = os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    parts: dict[str, int] = {}
    for name, size in conn.execute("SELECT name, pgsize FROM dbstat WHERE aggregate = TRUE"):
        parts[group(name)] = parts.get(group(name), 0) + size
    size = os.path.getsize(path)
    parts["(free pages)"] = size - sum(parts.values())
    # what the maintenance job's incremental_vacuum step gives back (auto_vacuum=INCREMENTAL)
    conn.execute("PRAGMA incremental_vacuum").fetchall()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return {"rows": n, "file": size, "vacuumed": os.path.getsize(path), "wal": wal, "parts": parts}


def build(kind: str, variant: str, n: int, tx: int, workdir: str) -> dict:
    path = os.path.join(workdir, f"{kind}-{variant}.db")
    rows = rows_of(kind, n, 1_760_000_000)
    t = time.monotonic()
    if variant == "current":
        conn = fill_current(path, kind, rows, n, tx)
    else:
        conn = open_db(path)
        fill_previous(conn, kind, rows, tx, indexed=variant == "previous")
    got = conn.execute(f"SELECT count(*) FROM {TABLE[kind]}").fetchall()[0][0]
    if got != n:
        common.warn(f"{kind} {variant}: {got:,} rows stored, {n:,} written")
    out = measure(conn, path, n)
    conn.close()
    common.note(f"{kind} {variant}: built and measured in {time.monotonic() - t:.0f} s")
    return out


def build_by_daemon(n: int, workdir: str) -> dict:
    """The ``daemon`` variant of the logs (see the module docstring)."""
    span = max(3600, n // 4)         # recent, unlike the built files: retention keeps them
    records = list(query.log_records(n, int(time.time()) - span - 60, span))
    d = DaemonProcess(os.path.join(workdir, "daemon"), log_level="WARNING",
                      env={"LINKBAND_HISTORY_COLLECTOR": "false"})
    t = time.monotonic()
    d.start()
    try:
        c = d.client(max_queue=n)
        for i in range(0, n, 500):
            c.store_logs(records[i:i + 500])
        if not c.flush(timeout=300):
            common.warn(f"log daemon: flush() returned False: {c.stats()}")
        c.close()
        settled = wait_for_merges(str(d.db_path))
        common.note(f"log daemon: {n:,} lines pushed, merges settled in {settled:.0f} s")
    finally:
        common.stop_daemon(d)
        d.close()
    conn = apsw.Connection(str(d.db_path))
    got = conn.execute("SELECT count(*) FROM system_logs").fetchall()[0][0]
    if got != n:
        common.warn(f"log daemon: {got:,} rows stored, {n:,} written")
    out = measure(conn, str(d.db_path), n)
    conn.close()
    common.note(f"log daemon: built and measured in {time.monotonic() - t:.0f} s")
    return out


def wait_for_merges(path: str, quiet_s: float = 2.0, limit_s: float = 300.0) -> float:
    """Seconds until the file's page count and the FTS segment list stay unchanged for
    ``quiet_s`` (read on a read-only connection)."""
    t0 = time.monotonic()
    conn = schema.open_reader(path)
    try:
        last, since = None, time.monotonic()
        while time.monotonic() - t0 < limit_s:
            now = (conn.execute("PRAGMA page_count").fetchall()[0][0],
                   conn.execute("SELECT count(*), sum(pgno) FROM logs_fts_idx").fetchall()[0])
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
            time.sleep(0.25)
    finally:
        conn.close()
    return time.monotonic() - t0


VARIANTS = ("previous", "current", "raw")


def report(kind: str, results: dict) -> None:
    n = results["current"]["rows"]
    mean = f", mean message {sum(MESSAGE_BYTES) / len(MESSAGE_BYTES):.1f} B" if kind == "log" else ""
    print(f"\n{kind}: {n:,} rows{mean}; bytes per row (file pages by dbstat, after a checkpoint)")
    variants = [v for v in VARIANTS + ("daemon",) if v in results]
    names = []
    for v in variants:
        for name in results[v]["parts"]:
            if name not in names:
                names.append(name)
    per = lambda v, x: f"{x / results[v]['rows']:.1f}"     # noqa: E731
    small = [x for x in names if all(results[v]["parts"].get(x, 0) < 0.5 * results[v]["rows"]
                                     for v in variants)]
    lines = []
    for name in sorted(set(names) - set(small), key=lambda x: (x.startswith("("), x)):
        cells = [per(v, results[v]["parts"][name]) if name in results[v]["parts"] else ""
                 for v in variants]
        lines.append((name,) + tuple(cells))
    lines.append((f"{len(small)} other objects (< 0.5 B/row each)",) + tuple(
        per(v, sum(results[v]["parts"].get(x, 0) for x in small)) for v in variants))
    lines.append(("in pages (the file less its free pages)",) + tuple(
        per(v, results[v]["file"] - results[v]["parts"]["(free pages)"]) for v in variants))
    lines.append(("all-in: the database file",) + tuple(per(v, results[v]["file"])
                                                           for v in variants))
    lines.append(("all-in after an incremental_vacuum",) + tuple(
        per(v, results[v]["vacuumed"]) for v in variants))
    lines.append(("WAL at the end of the build (apart; no checkpoint ran)",) + tuple(per(v, results[v]["wal"])
                                                                  for v in variants))
    common.print_table(("object",) + tuple(variants), lines)
    print(f"current / previous: {results['current']['file'] / results['previous']['file']:.2f}; "
          f"current / raw: {results['current']['file'] / results['raw']['file']:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="20,000 log lines, 100,000 metric rows")
    ap.add_argument("--tx", type=int, default=1000, help="rows per transaction (default 1000)")
    ap.add_argument("--kind", choices=("log", "metric"), action="append",
                    help="only this kind (repeatable; default both)")
    ap.add_argument("--no-daemon", action="store_true",
                    help="leave out the log file written by a running daemon")
    a = ap.parse_args()
    started = time.monotonic()
    common.print_machine()
    sizes = SIZES[a.quick]
    counts = {"log": sizes["logs"], "metric": sizes["metrics"]}
    workdir = tempfile.mkdtemp(prefix="lbh-storage-")
    try:
        for kind in a.kind or ("log", "metric"):
            results = {v: build(kind, v, counts[kind], a.tx, workdir) for v in VARIANTS}
            if kind == "log" and not a.no_daemon:
                results["daemon"] = build_by_daemon(counts[kind], workdir)
            report(kind, results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nsearch accuracy: tests/test_search_accuracy.py; search speed: bench/query.py")
    return common.print_summary(started)


if __name__ == "__main__":
    sys.exit(main())
