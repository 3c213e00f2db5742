"""Trend analysis over stored metrics: the ``metrics.trends`` and ``analyze``
commands, the trend watch job of the scheduler, and ``reports``.

Series come from ``metrics.aggregate`` machinery (average per bucket), so they
are read from detail rows or from the summary tiers, whichever covers the
range; the analysis itself is ``trends`` (pure functions).
"""
from __future__ import annotations

import time

from linkband_history.protocol import ok
from linkband_historyd import values
from linkband_historyd.commands.base import command
from linkband_historyd.query import engine as Q
from linkband_historyd.query import log_patterns
from linkband_historyd.query import params as P
from linkband_historyd.query.aggregates import analyze_performance
from linkband_historyd.trends import analyzer
from linkband_historyd.trends.anomaly_detector import SCORE_THRESHOLD
from linkband_historyd.trends.watch import series


TRENDS = dict(metric_name=P.text_list, since=P.time_value, until=P.time_value, bucket=Q.bucket,
              horizon=P.positive_int, tz_offset_s=P.non_negative_int,
              threshold=values.score_threshold)


MAX_POINTS = 1_000_000     # buckets of all the series of one request, each held in Python


def _check_points(names, since, until, step) -> None:
    """Every bucket of the range is built in Python (and scored): a range of
    centuries, or a long one in one-second buckets, is refused before it is built."""
    points = (until - since) / step * max(len(names), 1)
    if points > MAX_POINTS:
        raise P.BadParam("bucket", f"{len(names)} series of {(until - since) / step:.3g} buckets of "
                         f"{step} s: at most {MAX_POINTS:,} buckets in all; give a wider bucket, "
                         "a shorter range or fewer metrics")


def _range(p):
    until = p.get("until", time.time())
    since = p.get("since", until - 86400)
    if since >= until:
        raise P.BadParam("since", "must be before until")
    step = p.get("bucket", "auto")
    if step in ("auto", None):
        step = Q.auto_step(since, until)
    return since, until, step


@command("metrics.trends", "trend, anomalies (the online detector over the range, oldest bucket "
         "first; scores 0..1, episodes from threshold), forecast and correlations of metrics over "
         "a range (the SDK's TrendAnalysis)", TRENDS, cached=True, route="GET /metrics/trends")
def cmd_metrics_trends(ctx, p):
    names = p.get("metric_name")
    if not names:
        raise P.BadParam("metric_name", "required: one or more metric names")
    since, until, step = _range(p)
    _check_points(names, since, until, step)
    data = {n: series(ctx.conn, n, since, until, step) for n in names}
    rows = []
    for n, s in data.items():
        others = {m: v for m, v in data.items() if m != n}
        a = analyzer.analyze(s, step, p.get("horizon", 12), name=n, related=others or None,
                           threshold=p.get("threshold", SCORE_THRESHOLD))
        rows.append({"metric_name": n, "bucket_seconds": step, **a})
    corr = analyzer.correlation(data) if len(data) > 1 else []
    return ok(rows, None, correlation=corr)


ANALYZE = dict(TRENDS, top=P.positive_int)


@command("analyze", "metrics.trends over many metrics at once (all with data in the range "
         "when metric_name is not given), with the top correlated pairs", ANALYZE, cached=True,
         route="POST /analyze")
def cmd_analyze(ctx, p):
    since, until, step = _range(p)
    names = p.get("metric_name") or [r[0] for r in ctx.conn.execute(
        "SELECT metric_name FROM metric_latest WHERE timestamp >= ? ORDER BY metric_name LIMIT 50",
        (since,))]
    _check_points(names, since, until, step)
    data = {n: series(ctx.conn, n, since, until, step) for n in names}
    rows = [{"metric_name": n, "bucket_seconds": step,
             **analyzer.analyze(s, step, p.get("horizon", 12),
                              threshold=p.get("threshold", SCORE_THRESHOLD))}
            for n, s in data.items()]
    top = analyzer.correlation(data)[: p.get("top", 10)] if len(data) > 1 else []
    return ok(rows, None, correlation=top)


# -- reports ----------------------------------------------------------------------

REPORT = dict(period=P.text, until=P.time_value)
PERIODS = {"day": 86400, "week": 7 * 86400}


@command("reports", "a daily or weekly report: top error patterns, alert counts and the longest "
         "open alerts, anomalies found, performance p95 changes vs the previous period",
         REPORT, cached=True, route="GET /reports")
def cmd_reports(ctx, p):
    period = p.get("period", "day")
    if period not in PERIODS:
        raise P.BadParam("period", "must be day or week")
    until = p.get("until", time.time())
    span = PERIODS[period]
    since = until - span
    conn = ctx.conn
    distinct = conn.execute(
        "SELECT message, count(*), min(timestamp), max(timestamp), max(id) FROM system_logs "
        "WHERE timestamp >= ? AND timestamp < ? AND level IN ('WARNING', 'ERROR', 'CRITICAL') "
        "GROUP BY message", (since, until))
    alert_counts = [{"level": lv, "category": cat, "count": n} for lv, cat, n in conn.execute(
        "SELECT level, category, count(*) FROM alert_history WHERE timestamp >= ? AND timestamp < ? "
        "GROUP BY level, category ORDER BY 3 DESC", (since, until))]
    cols = ("alert_id", "timestamp", "level", "category", "title", "acknowledged_at")
    longest_open = [dict(zip(cols, r)) for r in conn.execute(
        f"SELECT {', '.join(cols)} FROM alert_history WHERE resolved_at IS NULL AND timestamp < ? "
        "ORDER BY timestamp LIMIT 10", (until,))]
    anomalies = [dict(zip(cols, r)) for r in conn.execute(
        f"SELECT {', '.join(cols)} FROM alert_history WHERE source_component = 'trend_analyzer' "
        "AND timestamp >= ? AND timestamp < ? ORDER BY timestamp", (since, until))]
    now_perf = analyze_performance(conn, {"since": since, "until": until})
    prev_perf = analyze_performance(conn, {"since": since - span, "until": since})
    changes = []
    for key, cur in now_perf.items():
        prev = prev_perf.get(key)
        a, b = (prev or {}).get("duration_p95"), cur.get("duration_p95")
        changes.append({"component": key[0], "operation": key[1], "p95_previous": a, "p95": b,
                        "change_pct": (100.0 * (b - a) / a) if a and b is not None else None})
    changes.sort(key=lambda r: -(r["change_pct"] if r["change_pct"] is not None else float("-inf")))
    return ok([{"period": period, "since": since, "until": until,
                "top_error_patterns": log_patterns.group(distinct)[:10],
                "alert_counts": alert_counts, "longest_open_alerts": longest_open,
                "anomalies": anomalies, "performance_p95_changes": changes}])
