"""The basic commands: ping, stats, client acknowledgements and the listings.

Listings (``metrics``, ``performance``, ``logs``, ``alerts``) take the filters
of their kind, ``since``/``until``, ``fields``, ``order``, ``limit``,
``cursor`` (the ``next`` of the previous page), ``after_id`` (rows committed
after that id, in id order: what ``--follow`` uses) and ``count`` (also
return the total number of matching rows). A page also stops at
``query.max_page_bytes`` of text (then ``byte_limited`` is true); ``next``
brings the rest either way. See ``query_engine``.
"""
from __future__ import annotations

import json
import os
import time

from linkband_history.protocol import ALERT_LEVELS, ok
from linkband_historyd.commands.base import COMMANDS, command
from linkband_historyd.query import engine as Q
from linkband_historyd.query import params as P
from linkband_historyd.security import curve_auth
from linkband_historyd.storage import schema
from linkband_historyd.storage.ingest_latency import LatencyHistogram


@command("ping", "is the daemon there", route="GET /health")
def cmd_ping(ctx, p):
    return ok([{"pong": True, "time": time.time(), "schema_version": schema.SCHEMA_VERSION}])


@command("client.ack", "a client's last committed sequence number (flush() polls it)",
         route=None, client_id=P.text)
def cmd_client_ack(ctx, p):
    if "client_id" not in p:
        raise P.BadParam("client_id", "required")
    cols = ("last_seq", "records_next", "stored", "rejected", "lost_records", "lost_messages",
            "duplicates", "client_dropped")
    rows = ctx.dicts(f"SELECT {', '.join(cols)} FROM ingest_clients WHERE client_id = ?",
                     (p["client_id"],), cols)
    return ok(rows)


def table_counts(conn) -> dict:
    tables = {t: 0 for t in schema.TABLES.values()}
    tables.update(dict(conn.execute("SELECT name, rows FROM table_counts")))
    for t in ("alert_history", "data_summaries"):
        tables[t] = conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
    return tables


def database_size(cfg) -> dict:
    path = cfg.daemon.db_path
    sizes = {suffix or "db": _size(path + suffix) for suffix in ("", "-wal", "-shm")}
    return {"path": path, "size_bytes": sum(sizes.values()), "files": sizes,
            "schema_version": schema.SCHEMA_VERSION}


@command("stats", "row counts, rejected records by reason, lost records per client, size, uptime",
         route="GET /stats", clients=P.positive_int)
def cmd_stats(ctx, p):
    conn = ctx.conn
    rejected = dict(conn.execute("SELECT reason, count FROM ingest_rejects ORDER BY reason"))
    cols = schema.CLIENT_COLUMNS
    clients = ctx.dicts(f"SELECT {', '.join(cols)} FROM ingest_clients ORDER BY last_seen DESC "
                        "LIMIT ?", (p.get("clients", 50),), cols)
    totals = conn.execute("SELECT count(*), coalesce(sum(stored), 0), coalesce(sum(rejected), 0), "
                          "coalesce(sum(lost_records), 0), coalesce(sum(client_dropped), 0), "
                          "coalesce(sum(duplicates), 0) FROM ingest_clients").fetchall()[0]
    state = dict(conn.execute("SELECT key, value FROM writer_state"))
    latency = {}
    if "ingest_latency" in state:
        doc = json.loads(state["ingest_latency"])
        latency = {"since": doc.get("since"), "commits": doc.get("commits"),
                   **LatencyHistogram(doc).summary_ms()}
    return ok([{
        "tables": table_counts(conn),
        "rejected": rejected,
        # truncated_string counts records that were kept (cut short), not refused
        "rejected_total": sum(n for reason, n in rejected.items() if reason != "truncated_string"),
        "clients": clients,
        "client_count": totals[0],
        "stored_total": totals[1],
        "rejected_records_total": totals[2],
        "lost_records_total": totals[3],
        "client_dropped_total": totals[4],
        "duplicate_messages_total": totals[5],
        "database": database_size(ctx.cfg),
        "ingest_latency_ms": latency,
        "writer": json.loads(state.get("writer", "{}")),
        "uptime_s": time.time() - ctx.started_at,
        "pid": ctx.query_pid,                     # the query process (its workers' parent)
        "supervisor_pid": ctx.supervisor_pid,     # the daemon (linkband_history.embed stops it)
        "query_worker_pid": os.getpid(),
        "security": {"curve": bool(ctx.cfg.security.curve_server_key),
                     "admin_endpoint": bool(ctx.cfg.security.admin_endpoint),
                     # connections refused by the query process's ZAP handler (the
                     # writer's, for ingest and events, are in the daemon's log)
                     "zap_refused": {"query": ctx.broker.get("zap_refused",
                                                             sum(curve_auth.denied.values()))}},
        "query": {k: ctx.broker[k] for k in ("workers", "busy", "queued", "replaced") if k in ctx.broker},
    }])


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _listing(kind: str):
    def run(ctx, p):
        columns, rows, nxt, total, cut = Q.list_page(ctx.conn, kind, p, ctx.limit(p), ctx.cfg.query)
        extra = {"total": total} if total is not None else {}
        if cut:
            extra["byte_limited"] = True         # shorter than limit, not the end: next goes on
        return ok(rows, nxt, columns, **extra)
    return run


LISTINGS = (
    ("metrics", "metric", "metric records",
     ("timestamp", "metric_type", "metric_name", "value", "unit", "tags")),
    ("performance", "performance", "performance records",
     ("timestamp", "component", "operation", "duration_ms", "throughput", "efficiency_percent",
      "error_count")),
    ("logs", "log", "log lines", ("timestamp", "level", "logger_name", "message")),
    ("alerts", "alert", "alert history (open=true: unresolved)",
     ("timestamp", "level", "category", "title", "resolved_at")),
)
for _name, _kind, _help, _columns in LISTINGS:
    command(_name, _help, Q.list_spec(_kind), route=f"GET /{_name}",
            columns=_columns)(_listing(_kind))


@command("alerts.open_count", "open (unresolved) alerts per level, most severe first, and how "
         "many of them are acknowledged", {"category": P.text_list}, cached=True,
         route="GET /alerts/open_count", columns=("level", "open", "acknowledged"))
def cmd_alerts_open_count(ctx, p):
    where = P.Where()
    where.add("resolved_at IS NULL")
    if "category" in p:
        where.any_of("category", p["category"])
    counts = {level: (n, acked) for level, n, acked in ctx.conn.execute(
        f"SELECT level, count(*), count(acknowledged_at) FROM alert_history{where.sql()} "
        "GROUP BY level", where.args)}
    return ok([{"level": level, "open": counts.get(level, (0, 0))[0],
                "acknowledged": counts.get(level, (0, 0))[1]} for level in reversed(ALERT_LEVELS)])


@command("commands", "the commands this daemon answers, with their parameters, HTTP route "
         "and table columns", route="GET /commands")
def cmd_commands(ctx, p):
    return ok([c.describe() for c in COMMANDS.values()])
