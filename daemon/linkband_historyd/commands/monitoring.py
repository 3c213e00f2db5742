"""What a monitoring system reads: the daemon's own counters, and the latest value
of each SDK metric series.

``counters`` answers with numbers that only go up while the daemon runs (records
stored per kind, refused by reason, lost and dropped by clients, job runs and
failures), the send->commit and query latency histograms as cumulative counts at
:data:`LATENCY_BOUNDS`, and the database and WAL sizes. Records stored per kind
are the highest row id SQLite ever gave in the table that stores the kind (``sqlite_sequence``:
the tables are AUTOINCREMENT, so retention and archiving never make it go back).
Lost and dropped records are known per client only: a lost message never arrived,
and a client counts what it drops without saying its kind.

``metrics.latest`` is the newest value of every (metric name, tags) series seen
since ``since`` (default: the last 10 minutes), one window query over the time index;
``per_name`` and ``limit`` bound how many series come back (in name and tags
order, so the same ones each time), and the reply says how many were left out.
The HTTP gateway's Prometheus exposition (``http/prometheus.py``) reads both.
"""
from __future__ import annotations

import time

from linkband_history.protocol import ok
from linkband_historyd.commands.admin import _scheduler as ask_scheduler
from linkband_historyd.commands.base import CommandError, command
from linkband_historyd.commands.basic import database_size
from linkband_historyd.query import params as P
from linkband_historyd.storage import schema
from linkband_historyd.storage.ingest_latency import LatencyHistogram

# seconds: from a tenth of a millisecond (a quiet commit) to 10 s (the query budget)
LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATEST_WINDOW_S = 600.0
DEFAULT_PER_NAME = 100
SCHEDULER_TIMEOUT_S = 2.0


def histogram(doc: dict | None) -> dict:
    """A latency histogram document as ``{bounds, counts (cumulative), count, sum}``."""
    h = LatencyHistogram(doc or {})
    return {"bounds": list(LATENCY_BOUNDS), "counts": h.cumulative(LATENCY_BOUNDS),
            "count": h.total, "sum": h.sum}


def stored_per_kind(conn) -> dict:
    seq = dict(conn.execute("SELECT name, seq FROM sqlite_sequence"))
    return {kind: seq.get(table, 0) for kind, table in schema.BASE_TABLES.items()}


def job_totals(ctx) -> dict | None:
    """Runs done and failed per job since the scheduler started; None when it does not
    answer (it may be restarting) or is off."""
    if not ctx.cfg.scheduler.enabled:
        return None
    try:
        return ask_scheduler(ctx, "jobs", {"id": "-"}, SCHEDULER_TIMEOUT_S).get("totals")
    except CommandError:
        return None


@command("counters", "the daemon's own counters for monitoring: records stored per kind, "
         "refused by reason, lost and dropped, send->commit and query latency histograms, "
         "database and WAL size, job runs and failures", route="GET /counters")
def cmd_counters(ctx, p):
    conn = ctx.conn
    clients = conn.execute(
        "SELECT count(*), coalesce(sum(rejected), 0), coalesce(sum(lost_records), 0), "
        "coalesce(sum(client_dropped), 0), coalesce(sum(duplicates), 0) "
        "FROM ingest_clients").fetchall()[0]
    ingest_latency = schema.read_state(conn, "ingest_latency", {})
    broker = ctx.broker
    return ok([{
        "time": time.time(),
        "started_at": ctx.started_at,
        "stored": stored_per_kind(conn),
        "rejects": dict(conn.execute("SELECT reason, count FROM ingest_rejects")),
        "clients": dict(zip(("count", "rejected", "lost", "dropped", "duplicates"), clients)),
        "ingest_latency": histogram(ingest_latency),
        "query_latency": {lane: histogram(doc) for lane, doc in broker.get("latency", {}).items()},
        "query": {k: broker[k] for k in ("workers", "busy", "queued", "replaced", "busy_replies")
                  if k in broker},
        "database": database_size(ctx.cfg)["files"],
        "jobs": job_totals(ctx),
    }])


@command("metrics.latest", "the newest value of each metric series (name and tags) seen since "
         "`since` (default: the last 10 minutes); per_name and limit bound the series, "
         "`dropped` counts the rest", route="GET /metrics/latest",
         columns=("metric_name", "tags", "value", "unit", "timestamp"),
         since=P.time_value, metric_name=P.text_list, per_name=P.positive_int,
         limit=P.positive_int)
def cmd_metrics_latest(ctx, p):
    since = p.get("since", time.time() - LATEST_WINDOW_S)
    per_name, limit = p.get("per_name", DEFAULT_PER_NAME), ctx.limit(p)
    where = P.Where()
    where.add("timestamp >= ?", since)
    if "metric_name" in p:
        where.any_of("metric_name", p["metric_name"])
    # the newest row of each series; of rows with the same time, the last one stored
    cursor = ctx.conn.execute(
        "SELECT metric_name, tags, timestamp, value, metric_type, unit FROM ("
        "SELECT metric_name, tags, timestamp, value, metric_type, unit, row_number() OVER ("
        "PARTITION BY metric_name, tags ORDER BY timestamp DESC, id DESC) AS newest "
        f"FROM system_metrics{where.sql()}) WHERE newest = 1 ORDER BY metric_name, tags",
        where.args)
    rows, dropped, name, in_name = [], {"per_name": 0, "limit": 0}, None, 0
    for metric_name, tags, ts, value, metric_type, unit in cursor:
        in_name = in_name + 1 if metric_name == name else 1
        name = metric_name
        if in_name > per_name:
            dropped["per_name"] += 1
        elif len(rows) >= limit:
            dropped["limit"] += 1
        else:
            rows.append({"metric_name": metric_name, "tags": tags, "value": value,
                         "metric_type": metric_type, "unit": unit, "timestamp": ts})
    return ok(rows, None, since=since, dropped=dropped)
