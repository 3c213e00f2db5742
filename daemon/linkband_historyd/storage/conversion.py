"""Converting schema 6's rows into the lean tables, in paced steps, with ingestion running.

Migration 7 only renames the old tables (``lean_schema.py``). Their rows move
here, a bounded chunk per step: each step is the writer operation ``convert``
(``write_ops.py``), one transaction of its own between two ingest batches, run
by the writer's loop (:class:`Converter`) while it used less than ``DUTY`` of the
wall time since the previous step. A step copies the oldest rows of a legacy
table into the lean tables (``RowStore``, ids kept), indexes the log lines for
search, and deletes them from the legacy table, all in one transaction: a kill
at any point leaves every row in exactly one of the two tables, and the next
writer resumes where the last commit stopped. The first step drops what no
reader uses any more (the old search index and the old tables' indexes), the
last one the emptied tables.

Until a row is converted, it is not seen by queries (the views read the lean
tables): the summary job waits for the conversion to end (:func:`pending`), so
no watermark passes rows that are not there yet.
"""
from __future__ import annotations

import time

from linkband_history.protocol import FIELDS
from linkband_historyd.storage import schema

DUTY = 0.5                 # at most this share of the writer's time goes to converting
STEP_BUDGET_S = 0.004      # a step stops after about this long
CHUNK = {"log": 200, "metric": 1000}    # rows per statement inside a step
OLD_INDEXES = ("idx_logs_time", "idx_logs_level_time", "idx_logs_logger_time",
               "idx_metrics_name_time", "idx_metrics_time")


def _exists(conn, name: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM sqlite_schema WHERE name = ?", (name,)).fetchall())


def pending(conn) -> bool:
    """Whether rows of schema 6 are still waiting to be converted."""
    return any(_exists(conn, t) for t in schema.LEGACY_TABLES.values())


def _drop_unused(conn) -> bool:
    """Drop the old search index and the old tables' indexes; whether there were any."""
    dropped = False
    if _exists(conn, "legacy_logs_fts"):
        conn.execute("DROP TABLE legacy_logs_fts")
        dropped = True
    for name in OLD_INDEXES:
        if _exists(conn, name):
            conn.execute(f"DROP INDEX {name}")
            dropped = True
    return dropped


def _move(store, kind: str, legacy: str, limit: int) -> int:
    """Move the (up to) ``limit`` oldest rows of ``legacy``; how many moved (0: it is empty)."""
    conn = store.conn
    rows = conn.execute(f"SELECT {', '.join(('id',) + FIELDS[kind])} FROM {legacy} "
                        "ORDER BY id LIMIT ?", (limit,)).fetchall()
    if not rows:
        return 0
    lo, hi = rows[0][0], rows[-1][0]
    store.insert(kind, [r[1:] for r in rows], [r[0] for r in rows])
    if kind == "log":
        conn.execute(schema.INDEX_LOGS, (lo, hi))
    conn.execute(f"DELETE FROM {legacy} WHERE id BETWEEN ? AND ?", (lo, hi))
    return len(rows)


def step(store, budget_s: float = STEP_BUDGET_S) -> dict:
    """One bounded step (inside the caller's transaction) with ``store`` (the writer's
    ``RowStore``): ``{"converted": n, "done": b}``."""
    conn = store.conn
    if _drop_unused(conn):
        return {"converted": 0, "done": False}
    started = time.perf_counter()
    moved = 0
    for kind, legacy in schema.LEGACY_TABLES.items():
        if not _exists(conn, legacy):
            continue
        while True:
            n = _move(store, kind, legacy, CHUNK[kind])
            moved += n
            if n == 0:
                conn.execute(f"DROP TABLE {legacy}")
                break
            if time.perf_counter() - started > budget_s:
                return {"converted": moved, "done": False}
    return {"converted": moved, "done": not pending(conn)}


class Converter:
    """Runs ``convert`` steps from the writer's loop while any are left, paced;
    ``run``: ``write_ops.run``, which runs a named operation in its transaction."""

    def __init__(self, w, run, duty: float = DUTY):
        self.w = w
        self.run = run
        self.duty = duty
        self.pending = pending(w.conn)
        self.next_at = 0.0
        self.converted = 0

    def step(self) -> bool:
        """One step if one is due; whether it ran."""
        if not self.pending:
            return False
        now = time.perf_counter()
        if now < self.next_at:
            return False
        result = self.run(self.w, "convert", {})
        self.converted += result["converted"]
        if result["converted"]:
            self.w.merger.wrote()
        self.next_at = now + (time.perf_counter() - now) / self.duty
        if result["done"]:
            self.pending = False
            self.w.log.info("conversion to lean rows (schema 7) done: %d rows converted",
                            self.converted)
        return True
