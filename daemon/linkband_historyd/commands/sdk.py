"""The command behind ``linkband_history.sdk``: records handed to the writer whole.

``sdk.store`` carries rows of one kind (the five of the SDK's database:
metric, performance, log, alert, summary) with optional source keys to the
writer's ``sdk.store`` operation, which stores each row or names why it
refused it, and skips rows whose source key it stored before (an SDK
database imported twice). Live records travel the ingest socket as usual;
this is for the SDK's summaries and for imports, where each row's fate must
be reported. ``sdk.created`` gives the second each row was stored in (the
SDK's ``created_at``; ``storage/commit_seconds.py``).
"""
from __future__ import annotations

from linkband_history.protocol import ok
from linkband_historyd.commands.base import CommandError, command
from linkband_historyd.query import params as P
from linkband_historyd.storage import commit_seconds
from linkband_historyd.storage.write_ops import SDK_KINDS
from linkband_historyd.writer_client import WriterClient, WriterError

MAX_ROWS = 2000


def sdk_kind(v):
    if v not in SDK_KINDS:
        raise ValueError(f"must be one of {', '.join(SDK_KINDS)}")
    return v


sdk_kind.json_schema = {"enum": list(SDK_KINDS)}


def records(v):
    if not isinstance(v, (list, tuple)) or not 1 <= len(v) <= MAX_ROWS \
            or not all(isinstance(r, dict) for r in v):
        raise ValueError(f"must be a list of 1 to {MAX_ROWS} records (maps)")
    return list(v)


records.json_schema = {"type": "array", "items": {"type": "object"}, "maxItems": MAX_ROWS}


def source_keys(v):
    if not isinstance(v, (list, tuple)) or len(v) > MAX_ROWS or not all(
            k is None or (type(k) is int and -2 ** 63 <= k < 2 ** 63) for k in v):
        raise ValueError("must be a list of 64-bit integers (or null), one per row")
    return list(v)


source_keys.json_schema = {"type": "array", "items": {"type": ["integer", "null"]}}


def created_seconds(v):
    if not isinstance(v, (list, tuple)) or len(v) > MAX_ROWS or not all(
            x is None or (type(x) in (int, float) and 0 <= x < 1e11) for x in v):
        raise ValueError("must be a list of epoch seconds (or null), one per row")
    return list(v)


created_seconds.json_schema = {"type": "array", "items": {"type": ["number", "null"]}}


def row_ids(v):
    if not isinstance(v, (list, tuple)) or len(v) > MAX_ROWS or not all(
            type(x) is int and 0 <= x < 2 ** 63 for x in v):
        raise ValueError(f"must be a list of at most {MAX_ROWS} row ids")
    return list(v)


row_ids.json_schema = {"type": "array", "items": {"type": "integer"}, "maxItems": MAX_ROWS}


def record_kind(v):
    if v not in SDK_KINDS or v == "summary":
        raise ValueError("must be one of metric, performance, log, alert")
    return v


record_kind.json_schema = {"enum": [k for k in SDK_KINDS if k != "summary"]}


@command("sdk.store", "store records of one kind through the writer, each stored or refused "
         "with its reason; rows whose source key was stored before are skipped",
         kind=sdk_kind, rows=records, keys=source_keys, created=created_seconds, admin=True,
         route=None)
def cmd_sdk_store(ctx, p):
    if "kind" not in p or "rows" not in p:
        raise P.BadParam("rows", "kind and rows are required")
    for name in ("keys", "created"):
        if name in p and len(p[name]) != len(p["rows"]):
            raise P.BadParam(name, "give one per row")
    w = WriterClient(ctx.cfg.daemon.control_endpoint, timeout=30.0)
    try:
        return ok([w.call("sdk.store", kind=p["kind"], rows=p["rows"], keys=p.get("keys"),
                          created=p.get("created"))])
    except WriterError as exc:
        raise CommandError("unavailable" if exc.code == "timeout" else "bad_param", str(exc)) \
            from None
    finally:
        w.close()


@command("sdk.stats", "what the SDK's get_history_stats() reports: rows per table, log lines "
         "per level, performance records per component, the oldest and newest record, size",
         cached=True, route=None)
def cmd_sdk_stats(ctx, p):
    from linkband_historyd.commands.basic import database_size, table_counts
    from linkband_historyd.storage import schema
    conn = ctx.conn
    ends = [conn.execute(f"SELECT min(timestamp), max(timestamp) FROM {t}").fetchall()[0]
            for t in schema.TABLES.values()]
    lows = [lo for lo, _ in ends if lo is not None]
    highs = [hi for _, hi in ends if hi is not None]
    return ok([{
        "tables": table_counts(conn),
        "level_counts": dict(conn.execute("SELECT level, count(*) FROM system_logs GROUP BY level")),
        "component_counts": dict(conn.execute(
            "SELECT component, count(*) FROM performance_data GROUP BY component")),
        "oldest": min(lows) if lows else None,
        "newest": max(highs) if highs else None,
        "database": database_size(ctx.cfg),
    }])


@command("sdk.created", "the second each row was stored in (the SDK's created_at), per row id; "
         "null for rows stored before the daemon kept it", kind=record_kind, ids=row_ids,
         route=None, columns=("id", "created_at"))
def cmd_sdk_created(ctx, p):
    if "kind" not in p or "ids" not in p:
        raise P.BadParam("ids", "kind and ids are required")
    seconds = commit_seconds.seconds_of(ctx.conn, p["kind"], p["ids"])
    return ok([[i, seconds.get(i)] for i in p["ids"]], None, ("id", "created_at"))
