"""Writes other processes hand to the writer over its control socket.

The writer is the only process that writes the database. The scheduler (and
the query process, for alert acknowledgements) send it *named* operations,
never SQL: each is a function here that runs in one transaction of its own,
between two ingest batches, and does a bounded amount of work (callers loop
over chunks), so ingestion latency stays low while maintenance runs.

Over the daemon's one request-reply protocol (``linkband_history.rpc``): the
request names the operation and its parameters; the reply's one row is the
operation's result; an :class:`OpError` is an error reply ``op_failed``.
"""
from __future__ import annotations

import json
import time

import apsw

from linkband_history.protocol import FIELDS, row_from_record
from linkband_history.rpc import RpcError
from linkband_historyd.storage import restored_ranges, schema

OPS: dict[str, tuple] = {}               # name -> (function, runs in a transaction)
MAX_CHUNK = 20_000                       # rows one operation may touch
OP_BUDGET_S = 0.0015                     # an operation stops after about this long


class OpError(RpcError):
    def __init__(self, message: str):
        super().__init__("op_failed", message)


def op(name: str, transaction: bool = True):
    """Declare ``fn(w, params)`` as the writer operation ``name``. It runs in one
    transaction unless ``transaction=False`` (what cannot run inside one, such as
    VACUUM and incremental_vacuum, or what touches no rows)."""
    def register(fn):
        if name in OPS:
            raise ValueError(f"operation {name!r} declared twice")
        OPS[name] = (fn, transaction)
        return fn
    return register


def _table(name: str) -> str:
    if name not in schema.TABLES:
        raise OpError(f"unknown kind {name!r}")
    return schema.TABLES[name]


def _chunk(n) -> int:
    if not isinstance(n, int) or n < 1:
        raise OpError("limit must be a positive integer")
    return min(n, MAX_CHUNK)


@op("ping", transaction=False)
def op_ping(w, p):
    return {"pid": w.pid}


@op("delete")
def op_delete(w, p):
    """Delete up to ``limit`` of the oldest rows of ``kind`` with timestamp < ``before``
    (and >= ``after``, and ``min_id`` <= id <= ``max_id`` when given: rows that
    arrived after an archive was read stay), except the id ranges in ``keep``
    (restored rows). Returns how many were deleted; fewer than ``limit``: done."""
    kind = p["kind"]
    table = _table(kind)
    clauses, args = ["timestamp < ?"], [float(p["before"])]
    for key, clause, conv in (("after", "timestamp >= ?", float), ("min_id", "id >= ?", int),
                              ("max_id", "id <= ?", int)):
        if p.get(key) is not None:
            clauses.append(clause)
            args.append(conv(p[key]))
    for lo, hi in p.get("keep") or ():
        clauses.append("id NOT BETWEEN ? AND ?")
        args += [int(lo), int(hi)]
    # Small steps until the time budget is spent: ingestion waits for this operation.
    limit = _chunk(p.get("limit", 5000))
    step = 40 if kind == "log" else 250       # a log line also has its FTS tombstones
    select = f"SELECT id FROM {table} WHERE {' AND '.join(clauses)} ORDER BY timestamp LIMIT ?"
    deleted = 0
    started = time.perf_counter()
    while deleted < limit:
        ids = [r[0] for r in w.conn.execute(select, args + [min(step, limit - deleted)])]
        if not ids:
            return {"deleted": deleted, "done": True}
        marks = ",".join("?" * len(ids))
        w.conn.execute(f"DELETE FROM {table} WHERE id IN ({marks})", ids)
        if kind == "log":
            w.conn.execute(f"DELETE FROM logs_fts WHERE rowid IN ({marks})", ids)
            w.merger.wrote()
        if table in schema.COUNTED_TABLES:
            w.conn.execute(schema.ADD_COUNT, (table, -len(ids)))
        deleted += len(ids)
        if time.perf_counter() - started > OP_BUDGET_S:
            break
    return {"deleted": deleted, "done": False}


@op("import")
def op_import(w, p):
    """Insert rows of ``kind`` (positional, in FIELDS order) given back by a restore."""
    kind = p["kind"]
    table = _table(kind)
    rows = p["rows"]
    if len(rows) > MAX_CHUNK:
        raise OpError(f"at most {MAX_CHUNK} rows per import")
    now = time.time()
    rows = [row_from_record(kind, dict(zip(FIELDS[kind], r)), now) if not isinstance(r, list)
            else r for r in rows]
    before = w.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchall()[0][0]
    w.conn.executemany(schema.INSERT[kind], rows)
    last = w.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchall()[0][0]
    after = w.AFTER_INSERT.get(kind)
    if after and last > before:
        w.conn.execute(after, (before + 1, last))
    if last > before:                     # their summaries exist: the summary job skips them
        skip = restored_ranges.noted(restored_ranges.load(w.conn), table, before + 1, last)
        w.conn.execute(schema.SET_WRITER_STATE, (restored_ranges.KEY, json.dumps(skip)))
    if table in schema.COUNTED_TABLES:
        w.conn.execute(schema.ADD_COUNT, (table, len(rows)))
    if kind == "log":
        w.merger.wrote()
    return {"imported": len(rows), "first_id": before + 1, "last_id": last}


@op("summaries.upsert")
def op_summaries_upsert(w, p):
    """Replace summary rows (idempotent) and move the summarizer's watermark in the
    same transaction, so a crash never loses or doubles a summary."""
    rows = p.get("rows", [])
    if len(rows) > MAX_CHUNK:
        raise OpError(f"at most {MAX_CHUNK} summary rows per call")
    if rows:
        w.conn.executemany(schema.UPSERT_SUMMARY, rows)
    rollups = p.get("rollups", [])
    if rollups:
        w.conn.executemany(schema.UPSERT_ROLLUP, rollups)
    if p.get("state") is not None:
        w.conn.execute(schema.SET_WRITER_STATE, (p["state_key"], json.dumps(p["state"])))
        skip = restored_ranges.load(w.conn)
        if skip:
            w.conn.execute(schema.SET_WRITER_STATE,
                           (restored_ranges.KEY, json.dumps(restored_ranges.pruned(skip, p["state"]))))
    return {"rows": len(rows), "rollups": len(rollups)}


@op("summaries.delete")
def op_summaries_delete(w, p):
    """Delete up to ``limit`` summaries of one tier older than ``before``."""
    before, tier = float(p["before"]), str(p["summary_type"])
    n = _chunk(p.get("limit", 5000))
    w.conn.execute("DELETE FROM data_summaries WHERE id IN (SELECT id FROM data_summaries WHERE "
                   "summary_type = ? AND period_start < ? LIMIT ?)", (tier, before, n))
    deleted = w.conn.changes()
    w.conn.execute("DELETE FROM metric_rollups WHERE (tier, metric_name, tags, bucket) IN ("
                   "SELECT tier, metric_name, tags, bucket FROM metric_rollups "
                   "WHERE tier = ? AND bucket < ? LIMIT ?)", (tier, before, n))
    return {"deleted": deleted + w.conn.changes()}


@op("state.set")
def op_state_set(w, p):
    w.conn.execute(schema.SET_WRITER_STATE, (str(p["key"]), json.dumps(p["value"])))
    return {}


@op("alerts.update")
def op_alerts_update(w, p):
    """Acknowledge or resolve an alert by alert_id (``field``: acknowledged_at|resolved_at)."""
    field = p["field"]
    if field not in ("acknowledged_at", "resolved_at"):
        raise OpError("field must be acknowledged_at or resolved_at")
    w.conn.execute(f"UPDATE alert_history SET {field} = coalesce({field}, ?) WHERE alert_id = ?",
                   (float(p.get("at") or time.time()), str(p["alert_id"])))
    if not w.conn.changes():
        raise OpError(f"no alert with alert_id {p['alert_id']!r}")
    row = w.conn.execute("SELECT acknowledged_at, resolved_at FROM alert_history WHERE alert_id = ?",
                         (str(p["alert_id"]),)).fetchall()[0]
    return {"alert_id": p["alert_id"], "acknowledged_at": row[0], "resolved_at": row[1]}


@op("alerts.store")
def op_alerts_store(w, p):
    """Store alerts raised inside the daemon (trend watch), and announce them."""
    now = time.time()
    rows = [row_from_record("alert", r, now) for r in p["alerts"]]
    w.conn.executemany(schema.INSERT["alert"], rows)
    for r in rows:
        w.events.publish("alert_stored", dict(zip(FIELDS["alert"], r)))
    return {"stored": len(rows), "alert_ids": [r[1] for r in rows]}


@op("reconfigure", transaction=False)
def op_reconfigure(w, p):
    """What a reload changes in a running writer: log level, batching, the page cap and
    how often history_data_updated is published (the LIVE options of ingest, storage, events)."""
    import logging
    if "log_level" in p:
        logging.getLogger().setLevel(str(p["log_level"]))
    if "batch_size" in p:
        w.batch_size = int(p["batch_size"])
    if "batch_wait_ms" in p:
        w.batch_wait = float(p["batch_wait_ms"]) / 1000.0
    if "coalesce_ms" in p:
        w.events.coalesce_s = float(p["coalesce_ms"]) / 1000.0
    if "max_page_count" in p:
        n = int(p["max_page_count"])
        w.conn.execute(f"PRAGMA max_page_count = {n if n > 0 else 4294967294}").fetchall()
    return {"batch_size": w.batch_size, "batch_wait_ms": w.batch_wait * 1000.0}


@op("vacuum", transaction=False)
def op_vacuum(w, p):
    """A full VACUUM, only on request. Ingestion waits meanwhile: what arrives stays
    queued in ZeroMQ (and in the clients) and is committed right after, nothing is
    dropped while the queues hold (ingest.receive_hwm messages per client, then the
    client's own bounded queue or spool)."""
    before = w.conn.execute("PRAGMA page_count").fetchall()[0][0]
    w.conn.execute("VACUUM")
    return {"pages_before": before, "pages_after": w.conn.execute("PRAGMA page_count").fetchall()[0][0]}


@op("publish")
def op_publish(w, p):
    w.events.publish(str(p["topic"]), p.get("payload") or {})
    return {}


@op("maintenance", transaction=False)
def op_maintenance(w, p):
    """One bounded maintenance step: ``step`` is one of analyze, fts_merge,
    incremental_vacuum, checkpoint."""
    step = p["step"]
    conn = w.conn
    if step == "analyze":
        # analysis_limit: ANALYZE samples this many rows per index instead of reading
        # whole tables (SQLite's advice for PRAGMA optimize)
        conn.execute("PRAGMA analysis_limit = 400")
        conn.execute("PRAGMA optimize")
    elif step == "fts_merge":
        before = conn.totalchanges()
        conn.execute("INSERT INTO logs_fts (logs_fts, rank) VALUES ('merge', ?)", (int(p.get("pages", 500)),))
        return {"changed": conn.totalchanges() - before}
    elif step == "incremental_vacuum":
        free = conn.execute("PRAGMA freelist_count").fetchall()[0][0]
        conn.execute(f"PRAGMA incremental_vacuum({min(int(p.get('pages', 200)), 1000)})").fetchall()
        return {"free_pages_before": free,
                "free_pages_after": conn.execute("PRAGMA freelist_count").fetchall()[0][0]}
    else:
        raise OpError(f"unknown maintenance step {step!r}")
    return {}


def run(w, name: str, params: dict) -> dict:
    fn, transaction = OPS.get(name, (None, True))
    if fn is None:
        raise OpError(f"unknown operation {name!r}")
    if not isinstance(params, dict):
        raise OpError("params must be a map")
    try:
        if not transaction:
            return fn(w, params)
        with w.conn:
            return fn(w, params)
    except (KeyError, TypeError, ValueError) as exc:
        raise OpError(f"{name}: bad parameters: {exc}") from None
    except apsw.Error as exc:
        raise OpError(f"{name}: {exc.__class__.__name__}: {exc}") from None


# -- rows of the Link Band SDK's own history (linkband_history.sdk) ----------------

SDK_KEYS = ("CREATE TABLE IF NOT EXISTS sdk_import_keys (key INTEGER PRIMARY KEY) STRICT")
SDK_SUMMARY_KEY = "sdk"              # data_summaries.summary_key of the SDK's summaries
SDK_PERIODS = {"hourly": 3600.0, "daily": 86400.0, "weekly": 7 * 86400.0, "monthly": 30 * 86400.0}
SDK_KINDS = ("metric", "performance", "log", "alert", "summary")


@op("sdk.store")
def op_sdk_store(w, p):
    """Store records of one ``kind`` handed over whole (an SDK database being
    imported, the SDK's summaries): each row in a savepoint of its own, so a
    refused row is named with its reason and the others are kept. ``keys`` (one
    64-bit integer or None per row) are source keys: a row whose key was stored
    before is skipped as a duplicate, and the key is kept in the same transaction
    as the row, so importing the same file again stores nothing."""
    kind, records = p["kind"], p["rows"]
    if kind not in SDK_KINDS:
        raise OpError(f"kind must be one of {', '.join(SDK_KINDS)}")
    if len(records) > MAX_CHUNK:
        raise OpError(f"at most {MAX_CHUNK} rows per call")
    keys = p.get("keys") or [None] * len(records)
    if len(keys) != len(records):
        raise OpError("keys: one per row")
    conn = w.conn
    if any(k is not None for k in keys):
        conn.execute(SDK_KEYS)
    table = schema.TABLES.get(kind, "data_summaries")
    first = conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchall()[0][0]
    now = time.time()
    stored, duplicates, refused = 0, 0, []
    for i, (record, key) in enumerate(zip(records, keys)):
        try:
            with conn:                                  # a savepoint per row
                if key is not None:
                    conn.execute("INSERT OR IGNORE INTO sdk_import_keys (key) VALUES (?)", (int(key),))
                    if not conn.changes():
                        duplicates += 1
                        continue
                _sdk_insert(conn, kind, record, now)
            stored += 1
        except (apsw.ConstraintError, ValueError, TypeError, KeyError) as exc:
            refused.append([i, _sdk_reason(exc)])
    last = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchall()[0][0]
    after = w.AFTER_INSERT.get(kind)
    if after and last >= first:
        conn.execute(after, (first, last))
    if table in schema.COUNTED_TABLES and last >= first:
        conn.execute(schema.ADD_COUNT, (table, stored))
    if kind == "log" and stored:
        w.merger.wrote()
    return {"stored": stored, "duplicates": duplicates, "refused": refused}


def _sdk_insert(conn, kind: str, record: dict, now: float) -> None:
    if kind != "summary":
        conn.execute(schema.INSERT[kind], row_from_record(kind, record, now))
        return
    period = SDK_PERIODS.get(record["summary_type"])
    if period is None:
        raise ValueError(f"summary_type must be one of {', '.join(SDK_PERIODS)}")
    start = float(record.get("timestamp") or now)
    data = record["summary_data"]
    conn.execute(schema.UPSERT_SUMMARY, (record["summary_type"], str(record["data_type"]),
                                         SDK_SUMMARY_KEY, start, start + period,
                                         data if isinstance(data, str) else json.dumps(data),
                                         now))


def _sdk_reason(exc: Exception) -> str:
    """A refusal as a short reason: ``duration_ms is required``, ``alert_id is taken``."""
    text = str(exc)
    if "NOT NULL constraint failed" in text:
        return f"{text.rsplit('.', 1)[-1]} is required"
    if "UNIQUE constraint failed" in text:
        return f"{text.rsplit('.', 1)[-1]} is taken"
    if isinstance(exc, KeyError):
        return f"{exc.args[0]} is required"
    return text
