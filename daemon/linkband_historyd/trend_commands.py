"""Trend analysis over stored metrics: the ``metrics.trends`` and ``analyze``
commands, the trend watch job of the scheduler, and ``reports``.

Series come from ``metrics.aggregate`` machinery (average per bucket), so they
are read from detail rows or from the summary tiers, whichever covers the
range; the analysis itself is ``trends`` (pure functions).
"""
from __future__ import annotations

import time

from linkband_history.protocol import ok

from . import params as P
from . import schema
from . import patterns, trends
from .anomaly_detector import SCORE_THRESHOLD, scan
from . import query_engine as Q
from .registry import command

WATCH_KEY = "trend_watch"


def series(conn, name: str, since: float, until: float, step: int) -> list:
    """[(bucket start, avg)] of one metric with every bucket of the range present."""
    from .analysis_commands import metric_aggregate
    p = {"metric_name": [name], "since": since, "until": until}
    agg = Q.describe_aggregate("metric", {**p, "bucket": step, "functions": ["avg"]}, ["avg"], [])
    _, _, rows = metric_aggregate(conn, agg, p, 1_000_000)
    got = {float(b): v for b, v in rows}
    first = int(since // step) * step
    return [(float(t), got.get(float(t))) for t in range(first, int(until), step)]


def threshold(v):
    """An anomaly score threshold, 0.3..1 (below 0.3 no detector episode is open)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise P.BadParam("threshold", "must be a number from 0.3 to 1") from None
    if isinstance(v, bool) or not 0.3 <= x <= 1.0:
        raise P.BadParam("threshold", "must be a number from 0.3 to 1")
    return x


TRENDS = dict(metric_name=P.text_list, since=P.time_value, until=P.time_value, bucket=Q.bucket,
              horizon=P.positive_int, tz_offset_s=P.non_negative_int, threshold=threshold)


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
         "a range (the SDK's TrendAnalysis)", TRENDS, cached=True)
def cmd_metrics_trends(ctx, p):
    names = p.get("metric_name")
    if not names:
        raise P.BadParam("metric_name", "required: one or more metric names")
    since, until, step = _range(p)
    data = {n: series(ctx.conn, n, since, until, step) for n in names}
    rows = []
    for n, s in data.items():
        others = {m: v for m, v in data.items() if m != n}
        a = trends.analyze(s, step, p.get("horizon", 12), name=n, related=others or None,
                           threshold=p.get("threshold", SCORE_THRESHOLD))
        rows.append({"metric_name": n, "bucket_seconds": step, **a})
    corr = trends.correlation(data) if len(data) > 1 else []
    return ok(rows, None, correlation=corr)


ANALYZE = dict(TRENDS, top=P.positive_int)


@command("analyze", "metrics.trends over many metrics at once (all with data in the range "
         "when metric_name is not given), with the top correlated pairs", ANALYZE, cached=True)
def cmd_analyze(ctx, p):
    since, until, step = _range(p)
    names = p.get("metric_name") or [r[0] for r in ctx.conn.execute(
        "SELECT metric_name FROM metric_latest WHERE timestamp >= ? ORDER BY metric_name LIMIT 50",
        (since,))]
    data = {n: series(ctx.conn, n, since, until, step) for n in names}
    rows = [{"metric_name": n, "bucket_seconds": step,
             **trends.analyze(s, step, p.get("horizon", 12),
                              threshold=p.get("threshold", SCORE_THRESHOLD))}
            for n, s in data.items()]
    top = trends.correlation(data)[: p.get("top", 10)] if len(data) > 1 else []
    return ok(rows, None, correlation=top)


# -- the trend watch (a scheduler job) ------------------------------------------------

def watched(cfg: dict) -> dict:
    """{metric name: its alert threshold} from trends.watch ('name' or 'name:threshold')."""
    out = {}
    for item in cfg["trends.watch"]:
        name, sep, thr = item.rpartition(":")
        out[name if sep else item] = float(thr) if sep else cfg["trends.threshold"]
    return out


def watch(conn, writer, cfg: dict, now: float) -> dict:
    """Score the buckets of each watched metric that arrived since the last run
    with that metric's online detector (restored from, and saved back to,
    writer_state); one alert (alert_history, source_component trend_analyzer)
    and one ``trend_alert`` event per episode, not per bucket. A metric without
    saved state learns from ``trends.history_days`` first; then only an episode
    still open at the newest bucket alerts."""
    names = watched(cfg)
    if not names:
        return {"watched": 0}
    step = cfg["trends.bucket_s"]
    states = schema.read_state(conn, WATCH_KEY, {})
    until = float(int(now // step) * step)                     # whole buckets only
    alerts = []
    for name, thr in names.items():
        saved = states.get(name) or {}
        last = saved.get("last")
        since = until - cfg["trends.history_days"] * 86400
        if last is not None:
            since = max(since, last + step)
        if since >= until:
            continue
        s = series(conn, name, since, until, int(step))
        out = scan(s, saved.get("detector"), threshold=thr, after=last, step=step)
        states[name] = {"detector": out["state"], "last": max([last or since - step] +
                                                            [t for t, v in s if v is not None])}
        fresh = out["episodes"]                 # each begins in a bucket not scored before
        if last is None:                         # learning from history: only one still open
            fresh = [e for e in fresh if e["end"] >= until]
        alerts.extend(_alert(name, e, now) for e in fresh)
    if alerts:
        writer.call("alerts.store", alerts=alerts)
        for a in alerts:
            writer.call("publish", topic="trend_alert", payload=a)
    writer.call("state.set", key=WATCH_KEY, value=states)
    return {"watched": len(names), "alerts": len(alerts)}


def _alert(name: str, e: dict, now: float) -> dict:
    direction = "높음" if (e["value"] or 0) >= (e["expected"] or 0) else "낮음"
    return {
        "timestamp": now, "level": "WARNING", "category": "DATA",
        "title": f"{name} 이상 감지 ({e['kind']})",
        "description": (f"{name} 값 {e['value']:.3g}이(가) 예상값 {e['expected']:.3g}보다 {direction} "
                        f"(score {e['score']:.2f}, {e['kind']}) / {name} {e['kind']}: "
                        f"{e['value']:.3g} vs expected {e['expected']:.3g}"),
        "source_component": "trend_analyzer",
        "metadata": {"metric_name": name, **{k: e[k] for k in ("kind", "start", "end", "t", "value",
                                                               "expected", "score", "likelihood")}},
    }


# -- reports ----------------------------------------------------------------------

REPORT = dict(period=P.text, until=P.time_value)
PERIODS = {"day": 86400, "week": 7 * 86400}


@command("reports", "a daily or weekly report: top error patterns, alert counts and the longest "
         "open alerts, anomalies found, performance p95 changes vs the previous period",
         REPORT, cached=True)
def cmd_reports(ctx, p):
    from .analysis_commands import analyze_performance
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
                "top_error_patterns": patterns.group(distinct)[:10],
                "alert_counts": alert_counts, "longest_open_alerts": longest_open,
                "anomalies": anomalies, "performance_p95_changes": changes}])
