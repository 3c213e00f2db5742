"""Writes other processes hand to the writer over its control socket.

The writer is the only process that writes the database. The scheduler (and
the query process, for alert acknowledgements) send it *named* operations,
never SQL: each is a function here that runs in one transaction of its own,
between two ingest batches, and does a bounded amount of work (callers loop
over chunks), so ingestion latency stays low while maintenance runs. The long
ones (delete, FTS merge, incremental vacuum) are paced on the clock
(``storage.pacing``): small steps, sized from what the steps before cost,
until ``OP_BUDGET_S`` is spent or an ingest message waits, whichever comes
first; the rows or pages asked for only bound them from above.

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
from linkband_historyd.storage import conversion, restored_ranges, schema
from linkband_historyd.storage.pacing import Pace, StepSize

OPS: dict[str, tuple] = {}               # name -> (function, runs in a transaction)
MAX_CHUNK = 20_000                       # rows one operation may touch
OP_BUDGET_S = 0.0015                     # an operation stops after about this long
STEP_S = 0.0004                          # ... in steps of about this long
# (first guess of units per step, most per step) of the paced steps
STEPS = {"delete.log": (40, 2000), "delete": (250, 5000), "fts_merge": (4, 64),
         "incremental_vacuum": (4, 200)}


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


def _pace(w) -> Pace:
    """The wall-time budget of one operation: it also ends when ingest waits."""
    return Pace(OP_BUDGET_S, getattr(w, "ingest_waiting", None))


def _step_size(w, key: str) -> StepSize:
    """The writer's step size for ``key`` (kept between operations: it learns)."""
    sizes = w.step_sizes
    if key not in sizes:
        start, hi = STEPS[key]
        # a floor: a step's fixed cost (its SELECT) must not shrink steps to one row,
        # which would turn a delete of a million rows into hours of round trips
        sizes[key] = StepSize(STEP_S, start, lo=max(1, start // 4), hi=hi)
    return sizes[key]


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
    # Small steps until the time budget is spent or ingest waits: ingestion waits
    # for this operation. A log line also deletes its FTS entries: its own step size.
    limit = _chunk(p.get("limit", 5000))
    size = _step_size(w, "delete.log" if kind == "log" else "delete")
    # the stored table itself: its time index covers (timestamp, id), the view's would not
    select = (f"SELECT id FROM {schema.BASE_TABLES[kind]} WHERE {' AND '.join(clauses)} "
              "ORDER BY timestamp LIMIT ?")
    deleted = 0
    pace = _pace(w)
    while deleted < limit and pace.go_on():
        t = time.perf_counter()
        ids = [r[0] for r in w.conn.execute(select, args + [size.units(limit - deleted)])]
        if not ids:
            w.store.seconds.prune(kind, schema.BASE_TABLES[kind])
            return {"deleted": deleted, "done": True}
        marks = ",".join("?" * len(ids))
        if kind == "log":                     # out of the index first: it needs the text
            w.conn.execute(schema.UNINDEX_LOGS, (json.dumps(ids),))
            w.merger.wrote()
        w.conn.execute(f"DELETE FROM {schema.BASE_TABLES[kind]} WHERE id IN ({marks})", ids)
        if table in schema.COUNTED_TABLES:
            w.conn.execute(schema.ADD_COUNT, (table, -len(ids)))
        deleted += len(ids)
        size.took(len(ids), time.perf_counter() - t)
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
    first, last = w.store.add(kind, rows)
    before = first - 1
    if last > before:                     # their summaries exist: the summary job skips them
        skip = restored_ranges.noted(restored_ranges.load(w.conn), table, before + 1, last)
        w.conn.execute(schema.SET_WRITER_STATE, (restored_ranges.KEY, json.dumps(skip)))
    if table in schema.COUNTED_TABLES:
        w.conn.execute(schema.ADD_COUNT, (table, len(rows)))
    if kind == "log":
        w.merger.wrote()
    return {"imported": len(rows), "first_id": before + 1, "last_id": last}


@op("convert")
def op_convert(w, p):
    """One paced step of the conversion of schema 6's rows (conversion.py)."""
    return conversion.step(w.store)


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
    with w.busy():                  # its copy back and commit run no statement steps
        w.conn.execute("VACUUM")
    return {"pages_before": before, "pages_after": w.conn.execute("PRAGMA page_count").fetchall()[0][0]}


@op("publish")
def op_publish(w, p):
    w.events.publish(str(p["topic"]), p.get("payload") or {})
    return {}


@op("maintenance", transaction=False)
def op_maintenance(w, p):
    """One bounded maintenance step: ``step`` is one of analyze_plan, analyze,
    fts_merge, incremental_vacuum. analyze_plan names what ``PRAGMA optimize`` would
    analyze, one index (or index-less table) at a time; analyze with ``target``
    analyzes that one (without: all of it at once, as ``PRAGMA optimize``).
    fts_merge and incremental_vacuum are paced: up to ``pages`` pages in steps of a
    few, each in its own transaction, until the time budget is spent or ingest waits."""
    step = p["step"]
    conn = w.conn
    # analysis_limit: ANALYZE samples this many rows per index instead of reading
    # whole tables (SQLite's advice for PRAGMA optimize)
    if step == "analyze_plan":
        return {"targets": _analyze_targets(conn)}
    if step == "analyze":
        conn.execute("PRAGMA analysis_limit = 400")
        target = p.get("target")
        if target is None:
            conn.execute("PRAGMA optimize")
        elif conn.execute("SELECT count(*) FROM sqlite_master WHERE name = ? AND type IN "
                          "('table', 'index')", (str(target),)).fetchall()[0][0]:
            conn.execute(f'ANALYZE "main"."{target}"')
        else:
            raise OpError(f"no table or index {target!r}")
    elif step == "fts_merge":
        return _fts_merge(w, int(p.get("pages", 500)))
    elif step == "incremental_vacuum":
        return _incremental_vacuum(w, min(int(p.get("pages", 200)), 1000))
    else:
        raise OpError(f"unknown maintenance step {step!r}")
    return {}


def _analyze_targets(conn) -> list[str]:
    """What ``PRAGMA optimize`` would analyze now (its debug mask lists it): each
    table's indexes, or the table itself when it has none. One ANALYZE of a whole
    table reads every index of it in one go: ingestion would wait for all of them."""
    tables = [row[0].rsplit(".", 1)[-1].strip('"')
              for row in conn.execute("PRAGMA optimize(0xffff)")
              if row[0].startswith("ANALYZE ")]
    out = []
    for table in tables:
        indexes = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL ORDER BY name", (table,))]
        out += indexes or [table]
    return out


def _fts_merge(w, pages: int) -> dict:
    """'merge' commands of a few pages each, until one changes nothing but itself
    (``changed`` <= 1 then means nothing was left to merge)."""
    conn, size, pace = w.conn, _step_size(w, "fts_merge"), _pace(w)
    changed = done = 0
    while done < pages and pace.go_on():
        n = size.units(pages - done)
        t, before = time.perf_counter(), conn.totalchanges()
        with conn:
            conn.execute("INSERT INTO logs_fts (logs_fts, rank) VALUES ('merge', ?)", (n,))
        step_changed = conn.totalchanges() - before
        size.took(n, time.perf_counter() - t)
        changed += step_changed
        done += n
        if step_changed <= 1:
            break
    return {"changed": changed}


def _incremental_vacuum(w, pages: int) -> dict:
    """Free pages handed back to the disk, a few per step (each its own transaction:
    a moved page rewrites its parent and pointer-map pages, so a step costs far more
    than its page count says)."""
    conn, size, pace = w.conn, _step_size(w, "incremental_vacuum"), _pace(w)
    free = first = conn.execute("PRAGMA freelist_count").fetchall()[0][0]
    done = 0
    while free and done < pages and pace.go_on():
        n = size.units(pages - done)
        t = time.perf_counter()
        conn.execute(f"PRAGMA incremental_vacuum({n})").fetchall()
        size.took(n, time.perf_counter() - t)
        done += n
        free = conn.execute("PRAGMA freelist_count").fetchall()[0][0]
    return {"free_pages_before": first, "free_pages_after": free}


def run(w, name: str, params: dict) -> dict:
    fn, transaction = OPS.get(name, (None, True))
    if fn is None:
        raise OpError(f"unknown operation {name!r}")
    if not isinstance(params, dict):
        raise OpError("params must be a map")
    try:
        if not transaction:
            return fn(w, params)
        try:
            with w.conn:
                return fn(w, params)
        except BaseException:
            store = getattr(w, "store", None)
            if store is not None:                # names it added are rolled back too
                store.rolled_back()
            raise
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
    as the row, so importing the same file again stores nothing. ``created`` (one
    epoch second or None per row): when the row was first stored (an SDK database's
    ``created_at``), kept as its second in ``commit_seconds``; None: now."""
    kind, records = p["kind"], p["rows"]
    if kind not in SDK_KINDS:
        raise OpError(f"kind must be one of {', '.join(SDK_KINDS)}")
    if len(records) > MAX_CHUNK:
        raise OpError(f"at most {MAX_CHUNK} rows per call")
    keys = p.get("keys") or [None] * len(records)
    if len(keys) != len(records):
        raise OpError("keys: one per row")
    created = p.get("created") or [None] * len(records)
    if len(created) != len(records):
        raise OpError("created: one per row")
    conn = w.conn
    if any(k is not None for k in keys):
        conn.execute(SDK_KEYS)
    table = schema.TABLES.get(kind, "data_summaries")
    stored_in = schema.BASE_TABLES.get(kind, "data_summaries")
    first = conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {stored_in}").fetchall()[0][0]
    top = first - 1
    now = time.time()
    stored, duplicates, refused = 0, 0, []
    for i, (record, key, second) in enumerate(zip(records, keys, created)):
        try:
            with conn:                                  # a savepoint per row
                if key is not None:
                    conn.execute("INSERT OR IGNORE INTO sdk_import_keys (key) VALUES (?)", (int(key),))
                    if not conn.changes():
                        duplicates += 1
                        continue
                _sdk_insert(conn, kind, record, now)
                if kind != "summary":
                    top = _note_second(w, kind, top, second if second is not None else now)
            stored += 1
        except (apsw.ConstraintError, ValueError, TypeError, KeyError) as exc:
            refused.append([i, _sdk_reason(exc)])
    last = conn.execute(f"SELECT coalesce(max(id), 0) FROM {stored_in}").fetchall()[0][0]
    if kind != "summary":
        w.store.after(kind, first, last, stamp=False)    # FTS rows, latest values
    if table in schema.COUNTED_TABLES and last >= first:
        conn.execute(schema.ADD_COUNT, (table, stored))
    if kind == "log" and stored:
        w.merger.wrote()
    return {"stored": stored, "duplicates": duplicates, "refused": refused}


def _note_second(w, kind: str, top: int, second) -> int:
    """A row of ``kind`` was stored (or an alert updated): when its id is new, note
    its second; the highest id now."""
    last = w.store.last_id(kind)
    if last > top:
        w.store.seconds.note(kind, top + 1, float(second))
    return last


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
    """A refusal as a short reason: ``title is required``, ``alert_id is taken``."""
    text = str(exc)
    if "NOT NULL constraint failed" in text:
        return f"{text.rsplit('.', 1)[-1]} is required"
    if "UNIQUE constraint failed" in text:
        return f"{text.rsplit('.', 1)[-1]} is taken"
    if isinstance(exc, KeyError):
        return f"{exc.args[0]} is required"
    return text
