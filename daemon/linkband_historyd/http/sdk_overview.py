"""The SDK router's two computed replies, ``/trends/logs`` and ``/dashboard``.

The SDK's service builds them in Python from rows it reads back: the log trend from
at most 10,000 log lines of the window (its ``LogQuery`` refuses a limit over 1,000,
so in the SDK that route answers 500). Here the daemon counts the whole window per
level and hour (``logs.stats``, from its indexes), and the reply is shaped and
judged as the SDK's: the same thresholds, direction, strength, anomalies, summary
text and health score. The dashboard's ``recent_alerts``, always empty in the SDK,
holds the alerts of the last 24 hours.

Both run in a worker thread (they block on the daemon's query socket).
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from linkband_history.protocol import LOG_LEVELS
from linkband_history.sdk.queries import with_created_at

HOUR = 3600
ERROR_LEVELS = ("ERROR", "CRITICAL")
RECENT = 50                         # rows of each kind on the dashboard, as the SDK shows


def _ask(client, command: str, **params) -> dict:
    reply = client.query(command, **params)
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise RuntimeError(f"{command}: {err.get('message') or err.get('code') or 'failed'}")
    return reply


def _direction(error_rate: float) -> tuple[str, float]:
    """The SDK's reading of an error rate: over 10 % is "increasing"."""
    if error_rate > 0.1:
        return "increasing", min(error_rate * 10, 1.0)
    return "stable", 0.1 if error_rate < 0.01 else 0.5


def _anomalies(buckets: list[dict]) -> list[dict]:
    """Hours (newest first, local time) where over 20 % of the lines were errors."""
    out = []
    for b in sorted(buckets, key=lambda b: b["bucket"], reverse=True):
        total = sum(b.get(lv, 0) for lv in LOG_LEVELS)
        rate = sum(b.get(lv, 0) for lv in ERROR_LEVELS) / total if total else 0.0
        if rate > 0.2:
            out.append({"timestamp": datetime.fromtimestamp(b["bucket"]).strftime("%Y-%m-%d %H:%M"),
                        "type": "high_error_rate", "value": rate,
                        "description": f"High error rate: {rate:.1%}"})
    return out


def log_trends(client, hours: int) -> dict:
    """The SDK's ``TrendAnalysis`` of the last ``hours`` hours of logs."""
    now = time.time()
    stats = _ask(client, "logs.stats", since=now - hours * HOUR, until=now, bucket="1h",
                 top=1)["rows"][0]
    by_level = stats.get("by_level") or {}
    total = sum(by_level.values())
    errors = sum(by_level.get(lv, 0) for lv in ERROR_LEVELS)
    error_rate = errors / total if total else 0.0
    direction, strength = _direction(error_rate)
    return {"trend_direction": direction, "trend_strength": strength,
            "anomalies": _anomalies(stats.get("buckets") or []),
            "forecast": None, "correlation": None,
            "summary": f"Log analysis for last {hours} hours: {total} total logs, "
                       f"{error_rate:.1%} error rate"}


def recent_alerts(client, models, since: datetime) -> list:
    """The newest alerts since ``since``, as the SDK's ``AlertHistory`` objects."""
    reply = _ask(client, "alerts", since=since.timestamp(), order="desc", limit=RECENT)
    rows = with_created_at(client, "alert", reply.get("rows", []))
    return [models.from_row("alert", row) for row in rows]


def _hours_since(moment) -> float:
    if not isinstance(moment, datetime):
        return 0.0
    return (datetime.now(moment.tzinfo) - moment).total_seconds() / HOUR


def _iso(moment):
    return moment.isoformat() if isinstance(moment, datetime) else moment


def dashboard(manager, models) -> dict:
    """The SDK's ``DashboardData``: recent logs and metrics, counts, the 24 h log
    trend, and its health score (100, less 50 x the error trend, less up to 30 for
    data that is hours old)."""
    now = datetime.now()
    day_ago = now - timedelta(hours=24)
    logs = manager.query_logs(models.LogQuery(start_time=day_ago, end_time=now, limit=RECENT))
    metrics = manager.query_metrics(models.MetricQuery(start_time=day_ago, end_time=now,
                                                       limit=RECENT))
    stats = manager.get_history_stats()
    trend = log_trends(manager.client, 24)
    alerts = recent_alerts(manager.client, models, day_ago)
    counts, span = stats.data_type_counts, stats.date_range or {}
    overview = {"total_logs": counts.get("logs", 0), "total_metrics": counts.get("metrics", 0),
                "storage_size_mb": stats.storage_size_mb,
                "date_range": {"start": _iso(span.get("start")), "end": _iso(span.get("end"))}}
    summary = {"log_error_rate": trend["trend_strength"]
               if trend["trend_direction"] == "increasing" else 0.0,
               "storage_efficiency": min(stats.storage_size_mb / 100, 1.0),
               "data_freshness": _hours_since(span.get("end"))}
    health = 100.0 - summary["log_error_rate"] * 50 - min(summary["data_freshness"] * 10, 30)
    return {"overview": overview, "recent_metrics": metrics, "recent_logs": logs,
            "recent_alerts": alerts, "performance_summary": summary, "trends": [trend],
            "health_score": max(health, 0.0)}
