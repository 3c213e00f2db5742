"""Aggregates and overviews: metric summaries and series, performance analysis and
comparison, and the dashboard."""
from __future__ import annotations

import time

from linkband_history.protocol import LOG_LEVELS, ok
from linkband_historyd.commands.base import command
from linkband_historyd.commands.basic import database_size
from linkband_historyd.query import engine as Q
from linkband_historyd.query import log_patterns, rollup_reader
from linkband_historyd.query import params as P
from linkband_historyd.query.aggregates import MAX_AGGREGATE_ROWS, analyze_performance, metric_aggregate

METRIC_AGGREGATE = dict(Q.aggregate_spec("metric"), tier=rollup_reader.tier_param)


@command("metrics.summary", "per metric over the range: count, min, max, avg, last",
         METRIC_AGGREGATE, cached=True, route="GET /metrics/summary")
def cmd_metrics_summary(ctx, p):
    if "bucket" in p or "group_by" in p:
        raise P.BadParam("bucket" if "bucket" in p else "group_by",
                         "metrics.summary is per metric over the whole range; "
                         "use metrics.aggregate for buckets and other groups")
    agg = Q.describe_aggregate("metric", p, ["count", "min", "max", "avg", "last"], ["metric_name"])
    tier, columns, rows = metric_aggregate(ctx.conn, agg, p, MAX_AGGREGATE_ROWS)
    return ok(rows, None, columns, tier=tier)


@command("metrics.aggregate", "a bucketed series for charts: bucket=1s..1d|auto, functions "
         "count,sum,min,max,avg,last,p50,p95,p99, group_by metric_name|metric_type|unit|tag:KEY, "
         "tier=auto|detail|minute|hourly|daily|weekly", METRIC_AGGREGATE, cached=True,
         route="GET /metrics/aggregate")
def cmd_metrics_aggregate(ctx, p):
    agg = Q.describe_aggregate("metric", {"bucket": "auto", **p}, ["count", "min", "max", "avg"],
                               ["metric_name"])
    tier, columns, rows = metric_aggregate(ctx.conn, agg, p, min(ctx.limit(p, MAX_AGGREGATE_ROWS),
                                                             MAX_AGGREGATE_ROWS))
    return ok(rows, None, columns, bucket_seconds=agg.step, tier=tier)


PERF_FILTERS = Q.filter_spec("performance")


@command("performance.analysis", "per component and operation: count, duration p50/p95/p99/max, "
         "mean throughput, mean efficiency, error rate", PERF_FILTERS, cached=True,
         route="GET /performance/analysis")
def cmd_performance_analysis(ctx, p):
    rows = sorted(analyze_performance(ctx.conn, p).values(),
                  key=lambda r: (r["component"], r["operation"]))
    return ok(rows)


COMPARED = ("duration_p50", "duration_p95", "duration_p99", "duration_max", "throughput_mean",
            "efficiency_mean", "error_rate", "count")
COMPARE = {**{k: v for k, v in PERF_FILTERS.items() if k not in ("since", "until")},
           "a_since": P.time_value, "a_until": P.time_value,
           "b_since": P.time_value, "b_until": P.time_value}


def _change(a, b):
    if a is None or b is None:
        return None, None
    return b - a, ((b - a) / a if a else None)


@command("performance.compare", "two windows side by side (a: baseline, b: the one to judge), "
         "with absolute and relative change; the largest p95 regressions first", COMPARE, cached=True,
         route="GET /performance/compare")
def cmd_performance_compare(ctx, p):
    for k in ("a_since", "a_until", "b_since", "b_until"):
        if k not in p:
            raise P.BadParam(k, "required: the two windows a_since..a_until and b_since..b_until")
    base = {k: v for k, v in p.items() if k not in COMPARE or k in PERF_FILTERS}
    a = analyze_performance(ctx.conn, {**base, "since": p["a_since"], "until": p["a_until"]})
    b = analyze_performance(ctx.conn, {**base, "since": p["b_since"], "until": p["b_until"]})
    rows = []
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key, {}), b.get(key, {})
        row = {"component": key[0], "operation": key[1]}
        for m in COMPARED:
            va, vb = ra.get(m), rb.get(m)
            row[f"{m}_a"], row[f"{m}_b"] = va, vb
            row[f"{m}_change"], row[f"{m}_change_pct"] = _change(va, vb)
            if row[f"{m}_change_pct"] is not None:
                row[f"{m}_change_pct"] *= 100.0
        rows.append(row)
    rows.sort(key=lambda r: -(r["duration_p95_change_pct"]
                              if r["duration_p95_change_pct"] is not None else float("-inf")))
    return ok(rows)


@command("dashboard", "what an overview page needs: the latest value of each metric, log counts "
         "by level for the last hour, open alerts, top error patterns, storage size",
         {"window": P.positive_int, "top": P.positive_int}, cached=True, route="GET /dashboard")
def cmd_dashboard(ctx, p):
    conn = ctx.conn
    now = float(int(time.time()))            # whole seconds: identical calls can share the cache
    since = now - p.get("window", 3600)
    cols = ("metric_name", "metric_type", "timestamp", "value", "unit", "tags")
    latest = ctx.dicts(f"SELECT {', '.join(cols)} FROM metric_latest ORDER BY metric_name", (), cols)
    # the level list lets SQLite search (level, timestamp) instead of scanning all of it
    levels = dict(conn.execute(f"SELECT level, count(*) FROM system_logs WHERE level IN "
                               f"({', '.join('?' * len(LOG_LEVELS))}) AND timestamp >= ? "
                               "GROUP BY level", LOG_LEVELS + (since,)))
    acols = Q.SPECS["alert"].columns
    open_alerts = ctx.dicts(f"SELECT {', '.join(acols)} FROM alert_history WHERE resolved_at IS NULL "
                            "ORDER BY timestamp DESC LIMIT 50", (), acols)
    distinct = conn.execute(
        "SELECT message, count(*), min(timestamp), max(timestamp), max(id) FROM system_logs "
        "WHERE timestamp >= ? AND level IN ('WARNING', 'ERROR', 'CRITICAL') GROUP BY message",
        (since,))
    return ok([{
        "time": now, "window_s": now - since,
        "latest_metrics": latest,
        "log_levels": levels,
        "open_alerts": open_alerts,
        "top_patterns": log_patterns.group(distinct)[: p.get("top", 10)],
        "storage": database_size(ctx.cfg),
    }])
