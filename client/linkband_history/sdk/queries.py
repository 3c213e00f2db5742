"""The reading half of the SDK's HistoryDatabaseManager, over the daemon's commands.

Each function takes a :class:`HistoryClient` and returns what the SDK's method
returns. The SDK pages with ``LIMIT ... OFFSET``; the daemon pages by keyset
(timestamp, id), which stays right while rows arrive, so an offset is skipped
by asking for pages of ids only and then continuing from their cursor. Both
ends of the SDK's time range are inclusive; the daemon's ``until`` is not, so
the end is moved to the next representable float. Each row's ``created_at`` (the
second it was stored in) comes from ``sdk.created``, by row id.
"""
from __future__ import annotations

import math
import time
from datetime import datetime

from ..times import to_epoch
from . import models

TABLE_OF = {"metric": "system_metrics", "performance": "performance_data", "log": "system_logs",
            "alert": "alert_history", "summary": "data_summaries"}
SDK_COUNT_NAMES = {"system_metrics": "metrics", "performance_data": "performance",
                   "system_logs": "logs", "alert_history": "alerts", "data_summaries": "summaries"}
SKIP_PAGE = 1000            # ids per page while an offset is skipped
JOB_POLL_S = 0.1


class HistoryError(RuntimeError):
    """The daemon answered with an error (its code and message)."""


def ask(client, command: str, **params) -> dict:
    reply = client.query(command, **params)
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise HistoryError(f"{command}: {err.get('code')}: {err.get('message')}")
    return reply


def _values(items) -> list:
    return [getattr(v, "value", v) for v in items]


def time_range(start, end) -> dict:
    """``since``/``until`` for the SDK's inclusive ``start_time <= t <= end_time``."""
    out = {}
    if start is not None:
        out["since"] = to_epoch(start)
    if end is not None:
        out["until"] = math.nextafter(to_epoch(end), math.inf)
    return out


def newest_first(client, command: str, params: dict, limit: int, offset: int) -> list[dict]:
    """Rows ``offset`` to ``offset + limit`` of ``command``, newest first."""
    params = dict(params, order="desc")
    cursor = {}
    while offset > 0:
        reply = ask(client, command, **params, **cursor, fields=["id"], limit=min(offset, SKIP_PAGE))
        offset -= len(reply["rows"])
        if reply["next"] is None:
            return []
        cursor = {"cursor": reply["next"]}
    rows: list = []
    while len(rows) < limit:
        reply = ask(client, command, **params, **cursor, limit=limit - len(rows))
        rows += reply["rows"]
        if reply["next"] is None:
            break
        cursor = {"cursor": reply["next"]}     # a page cut short by its bytes goes on
    return rows


def with_created_at(client, kind: str, rows: list) -> list:
    """``rows`` with ``created_at`` set (epoch seconds; None where the daemon does not
    know it: rows stored before it kept it, or a daemon without ``sdk.created``)."""
    ids = [r["id"] for r in rows if r.get("id") is not None]
    if not ids:
        return rows
    reply = client.query("sdk.created", kind=kind, ids=ids)
    seconds = {r["id"]: r["created_at"] for r in reply["rows"]} if reply.get("ok") else {}
    for r in rows:
        r["created_at"] = seconds.get(r.get("id"))
    return rows


def query_metrics(client, q) -> list:
    params = time_range(q.start_time, q.end_time)
    if q.metric_types:
        params["metric_type"] = _values(q.metric_types)
    if q.metric_names:
        params["metric_name"] = list(q.metric_names)
    rows = with_created_at(client, "metric", newest_first(client, "metrics", params, q.limit,
                                                          q.offset))
    return [models.from_row("metric", r) for r in rows]


def query_logs(client, q) -> list:
    params = time_range(q.start_time, q.end_time)
    if q.levels:
        params["level"] = [str(v).upper() for v in _values(q.levels)]
    if q.logger_names:
        params["logger_name"] = list(q.logger_names)
    if q.modules:
        params["module"] = list(q.modules)
    if q.search_text:
        params["contains"] = q.search_text
    rows = with_created_at(client, "log", newest_first(client, "logs", params, q.limit, q.offset))
    return [models.from_row("log", r) for r in rows]


def history_stats(client):
    s = ask(client, "sdk.stats")["rows"][0]
    counts = {SDK_COUNT_NAMES[t]: n for t, n in s["tables"].items() if t in SDK_COUNT_NAMES}
    return models.build(models.HistoryStats, dict(
        total_records=sum(counts.values()),
        date_range={"start": models.local_datetime(s["oldest"]),
                    "end": models.local_datetime(s["newest"])},
        data_type_counts=counts, level_counts=s["level_counts"],
        component_counts=s["component_counts"],
        storage_size_mb=s["database"]["size_bytes"] / 2 ** 20))


def storage_info(client):
    st = ask(client, "storage")["rows"][0]
    counts = ask(client, "sdk.stats")["rows"][0]["tables"]
    objects = st.get("objects") or {}
    sizes = {SDK_COUNT_NAMES[t]: objects.get(t, 0) / 2 ** 20 for t in SDK_COUNT_NAMES}
    ends = [r for r in (st.get("records") or {}).values()]
    lows = [r["oldest"] for r in ends if r.get("oldest") is not None]
    highs = [r["newest"] for r in ends if r.get("newest") is not None]
    return models.build(models.StorageInfo, dict(
        total_size_mb=st["database_bytes"] / 2 ** 20, data_type_sizes=sizes,
        oldest_record=models.local_datetime(min(lows)) if lows else None,
        newest_record=models.local_datetime(max(highs)) if highs else None,
        record_counts={SDK_COUNT_NAMES[t]: n for t, n in counts.items() if t in SDK_COUNT_NAMES},
        compression_ratio=(st["used_bytes"] / st["database_bytes"]) if st["database_bytes"] else None))


def _by_table(result: dict) -> dict:
    """A retention result ({kind: rows, KIND_archived: rows, summaries_TIER: rows}) per
    SDK table: rows moved to an archive file left the table too."""
    out = {TABLE_OF[k]: int(result.get(k) or 0) + int(result.get(f"{k}_archived") or 0)
           for k in ("metric", "performance", "log", "alert")}
    out["data_summaries"] = sum(int(v or 0) for k, v in result.items() if k.startswith("summaries_"))
    return out


def run_job(client, command: str, timeout: float, **params) -> dict:
    """Start a maintenance job and wait for its end; its result."""
    run = ask(client, command, **params)["rows"][0]
    deadline = time.monotonic() + timeout
    while run["state"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise HistoryError(f"{command}: job {run['id']} still {run['state']} after {timeout:g}s")
        time.sleep(JOB_POLL_S)
        run = ask(client, "jobs", id=run["id"])["rows"][0]
    if run["state"] != "done":
        raise HistoryError(f"{command}: job {run['id']} {run['state']}: {run.get('error')}")
    return run.get("result") or {}


def cleanup(client, retention_days: int, dry_run: bool, timeout: float) -> dict:
    """Rows older than ``retention_days`` per table: counted (dry run) or deleted.
    The daemon's own summary tiers keep their configured retention either way."""
    if isinstance(retention_days, bool) or not retention_days or retention_days < 0:
        raise ValueError(f"retention_days must be a positive number, not {retention_days!r}")
    policy = {k: float(retention_days) for k in ("metric", "performance", "log", "alert")}
    if dry_run:
        return _by_table(ask(client, "cleanup", policy=policy, dry_run=True)["rows"][0])
    return _by_table(run_job(client, "cleanup", timeout, policy=policy))


def optimize(client, timeout: float) -> dict:
    started = time.monotonic()
    result = run_job(client, "optimize", timeout)
    return {"duration_seconds": time.monotonic() - started,
            "completed_at": datetime.now().isoformat(),
            "operations": ["ANALYZE", "FTS merge", "incremental vacuum"],
            "details": result}
