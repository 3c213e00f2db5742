"""Summaries: tiers of pre-aggregated history, computed by the scheduler.

Tiers are minute (metrics only), hourly, daily, weekly (Monday 00:00 UTC) and
monthly (calendar months, UTC). Metrics get typed rows in ``metric_rollups``
(per metric *and* tag set: count, sum, min, max, last), which keeps averages
exact at every tier, as Netdata's tiers do; every kind also gets readable JSON
rows in ``data_summaries`` (hourly and up):

- metric: per metric_name: count, sum, min, max, avg, last, unit, metric_type;
- performance: per component/operation: count, duration sum/min/max, p95 (exact
  per hour; higher tiers take the count-weighted mean of the hourly p95: an
  estimate), error count, mean throughput;
- log: counts per level and per logger;
- alert: counts per level and per category.

Work is incremental and idempotent: the job remembers the highest row id it has
summarized per table (the *watermark*); rows above it (new ones, and late ones
landing in old buckets) mark their buckets dirty, and dirty buckets are
recomputed in full -- the minute tier from detail rows, each higher tier from
the tier below -- so recomputing a bucket always gives the same rows. The new
watermark is written by the writer in the same transaction as the last chunk of
summaries, so a crash never loses or doubles a summary.
"""
from __future__ import annotations

import calendar
import json
import time
from datetime import datetime, timezone

from . import query_engine as Q
from . import schema

TIERS = ("minute", "hourly", "daily", "weekly", "monthly")
STATE_KEY = "summaries"
MAX_IDS_PER_RUN = 1_000_000       # rows looked at per run: the job catches up over runs
CHUNK = 1_000
_WEEK_ORIGIN = 4 * 86400          # 1970-01-05 was a Monday


def bucket_start(tier: str, t: float) -> float:
    if tier == "minute":
        return float(int(t // 60) * 60)
    if tier == "hourly":
        return float(int(t // 3600) * 3600)
    if tier == "daily":
        return float(int(t // 86400) * 86400)
    if tier == "weekly":
        return float(int((t - _WEEK_ORIGIN) // 604800) * 604800 + _WEEK_ORIGIN)
    d = datetime.fromtimestamp(t, timezone.utc)
    return float(calendar.timegm((d.year, d.month, 1, 0, 0, 0)))


def bucket_end(tier: str, start: float) -> float:
    if tier == "monthly":
        d = datetime.fromtimestamp(start, timezone.utc)
        y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return float(calendar.timegm((y, m, 1, 0, 0, 0)))
    return start + {"minute": 60, "hourly": 3600, "daily": 86400, "weekly": 604800}[tier]


def _ranges(starts, tier):
    """Contiguous runs of bucket starts as (from, to) time ranges."""
    out = []
    for s in sorted(starts):
        e = bucket_end(tier, s)
        if out and out[-1][1] == s:
            out[-1][1] = e
        else:
            out.append([s, e])
    return out


class Summarizer:
    """One run of the summary job: ``run(now)``. ``conn`` reads; ``writer`` writes."""

    def __init__(self, conn, writer):
        self.conn = conn
        self.writer = writer

    def state(self) -> dict:
        row = self.conn.execute("SELECT value FROM writer_state WHERE key = ?", (STATE_KEY,)).fetchall()
        return json.loads(row[0][0]) if row else {}

    def run(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        state = self.state()
        new_state = dict(state)
        summaries, rollups = [], []
        done = {}
        for kind in ("metric", "performance", "log", "alert"):
            table = schema.TABLES[kind]
            lo = state.get(table, 0)
            hi = self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchall()[0][0]
            hi = min(hi, lo + MAX_IDS_PER_RUN)
            if hi <= lo:
                continue
            hours = {r[0] for r in self.conn.execute(
                f"SELECT DISTINCT CAST(timestamp / 3600 AS INTEGER) * 3600.0 FROM {table} "
                "WHERE id > ? AND id <= ?", (lo, hi))}
            if kind == "metric":
                minutes = {r[0] for r in self.conn.execute(
                    "SELECT DISTINCT CAST(timestamp / 60 AS INTEGER) * 60.0 FROM system_metrics "
                    "WHERE id > ? AND id <= ?", (lo, hi))}
                fresh = self.metric_rollups(minutes, hours)
                rollups += fresh
                summaries += metric_summaries(fresh, now)
            else:
                summaries += self.kind_summaries(kind, hours, now)
            new_state[table] = hi
            done[kind] = hi - lo
        self.send(summaries, rollups, new_state)
        return {"rows_seen": done, "summaries": len(summaries), "rollups": len(rollups)}

    def send(self, summaries, rollups, new_state) -> None:
        """Chunks to the writer; the watermark travels with the last one."""
        chunks = max(1, -(-max(len(summaries), len(rollups)) // CHUNK))
        for i in range(chunks):
            last = i == chunks - 1
            self.writer.bulk("summaries.upsert",
                             rows=summaries[i * CHUNK:(i + 1) * CHUNK],
                             rollups=rollups[i * CHUNK:(i + 1) * CHUNK],
                             state=new_state if last else None, state_key=STATE_KEY)

    # -- metrics ---------------------------------------------------------------
    def metric_rollups(self, minutes, hours) -> list:
        """Rows of every tier for the dirty buckets: minutes from detail, each higher
        tier from the one below (the rows just computed win over the stored ones)."""
        rows = []
        for lo, hi in _ranges(minutes, "minute"):
            rows += self._rollup_from_detail(lo, hi)
        dirty = {"hourly": set(hours)}
        for tier in ("daily", "weekly", "monthly"):
            dirty[tier] = {bucket_start(tier, h) for h in hours}
        for tier, below in (("hourly", "minute"), ("daily", "hourly"), ("weekly", "daily"),
                            ("monthly", "daily")):
            for start in sorted(dirty[tier]):
                rows += self._rollup_from_tier(tier, below, start, rows)
        return rows

    def _rollup_from_detail(self, lo, hi) -> list:
        agg = {}
        for b, name, tags, mtype, unit, n, s, mn, mx in self.conn.execute(
                "SELECT CAST(timestamp / 60 AS INTEGER) * 60.0 AS b, metric_name, "
                "coalesce(tags, ''), metric_type, unit, count(*), sum(value), min(value), max(value) "
                "FROM system_metrics WHERE timestamp >= ? AND timestamp < ? "
                "GROUP BY b, metric_name, tags", (lo, hi)):
            agg[(b, name, tags)] = ["minute", name, tags, b, mtype, unit, n, s, mn, mx, None, None]
        for b, name, tags, v, ts in self.conn.execute(
                "SELECT CAST(timestamp / 60 AS INTEGER) * 60.0 AS b, metric_name, "
                "coalesce(tags, ''), value, max(timestamp) FROM system_metrics "
                "WHERE timestamp >= ? AND timestamp < ? GROUP BY b, metric_name, tags", (lo, hi)):
            agg[(b, name, tags)][10:12] = [v, ts]
        return list(agg.values())

    def _rollup_from_tier(self, tier, below, start, fresh) -> list:
        """One bucket of ``tier`` from the rows of ``below`` (fresh ones win over the DB's)."""
        end = bucket_end(tier, start)
        parts = {}
        for r in self.conn.execute(
                f"SELECT {', '.join(schema.ROLLUP_COLUMNS)} FROM metric_rollups "
                "WHERE tier = ? AND bucket >= ? AND bucket < ?", (below, start, end)):
            parts[(r[1], r[2], r[3])] = list(r)
        for r in fresh:
            if r[0] == below and start <= r[3] < end:
                parts[(r[1], r[2], r[3])] = r
        out = {}
        for (name, tags, _), r in sorted(parts.items(), key=lambda kv: kv[0][2]):
            o = out.get((name, tags))
            if o is None:
                out[(name, tags)] = [tier, name, tags, start, r[4], r[5], r[6], r[7], r[8], r[9],
                                     r[10], r[11]]
            else:
                o[6] += r[6]
                o[7] += r[7]
                o[8] = min(o[8], r[8])
                o[9] = max(o[9], r[9])
                if r[11] >= o[11]:
                    o[10], o[11] = r[10], r[11]
        return list(out.values())

    # -- other kinds -----------------------------------------------------------
    def kind_summaries(self, kind, hours, now) -> list:
        rows = []
        for h in sorted(hours):
            rows += self._hour(kind, h, now)
        for tier in ("daily", "weekly", "monthly"):
            for start in sorted({bucket_start(tier, h) for h in hours}):
                rows += self._from_hours(kind, tier, start, now, rows)
        return rows

    def _hour(self, kind, start, now) -> list:
        end = start + 3600
        args = (start, end)
        if kind == "performance":
            out = []
            agg = Q.describe_aggregate("performance", {"since": start, "until": end,
                                                       "functions": ["p95"],
                                                       "group_by": ["component", "operation"]}, [])
            _, p95 = Q.run_aggregate(self.conn, agg, 100_000)
            p95 = {(c, o): v for c, o, v in p95}
            for c, o, n, s, mn, mx, errs, thr in self.conn.execute(
                    "SELECT component, operation, count(*), sum(duration_ms), min(duration_ms), "
                    "max(duration_ms), coalesce(sum(error_count), 0), avg(throughput) "
                    "FROM performance_data WHERE timestamp >= ? AND timestamp < ? "
                    "GROUP BY component, operation", args):
                d = {"count": n, "duration_sum": s, "duration_min": mn, "duration_max": mx,
                     "duration_p95": p95.get((c, o)), "error_count": errs, "throughput_mean": thr}
                out.append(("hourly", "performance", f"{c}/{o}", start, end, json.dumps(d), now))
            return out
        table, a, b = (("system_logs", "level", "logger_name") if kind == "log"
                       else ("alert_history", "level", "category"))
        first = dict(self.conn.execute(f"SELECT {a}, count(*) FROM {table} WHERE timestamp >= ? "
                                       f"AND timestamp < ? GROUP BY {a}", args))
        second = dict(self.conn.execute(f"SELECT {b}, count(*) FROM {table} WHERE timestamp >= ? "
                                        f"AND timestamp < ? GROUP BY {b}", args))
        if not first:
            return [("hourly", kind, "all", start, end, json.dumps({"count": 0}), now)]
        d = {"count": sum(first.values()), f"by_{a}": first, f"by_{b}": second}
        return [("hourly", kind, "all", start, end, json.dumps(d), now)]

    def _from_hours(self, kind, tier, start, now, fresh) -> list:
        end = bucket_end(tier, start)
        parts = {}
        for key, ps, data in self.conn.execute(
                "SELECT summary_key, period_start, summary_data FROM data_summaries "
                "WHERE summary_type = 'hourly' AND data_type = ? AND period_start >= ? "
                "AND period_start < ?", (kind, start, end)):
            parts[(key, ps)] = json.loads(data)
        for r in fresh:
            if r[0] == "hourly" and r[1] == kind and start <= r[3] < end:
                parts[(r[2], r[3])] = json.loads(r[5])
        merged = {}
        for (key, _), d in parts.items():
            m = merged.setdefault(key, {})
            merge(kind, m, d)
        return [(tier, kind, key, start, end, json.dumps(finish(kind, m)), now)
                for key, m in merged.items()]


def metric_summaries(rollups: list, now: float) -> list:
    """Readable per-metric JSON rows (across tag sets) of the hourly and higher tiers."""
    acc: dict = {}
    for tier, name, _tags, start, mtype, unit, n, s, mn, mx, last, last_ts in rollups:
        if tier == "minute":
            continue
        a = acc.get((tier, name, start))
        if a is None:
            acc[(tier, name, start)] = {"count": n, "sum": s, "min": mn, "max": mx, "last": last,
                                       "last_ts": last_ts, "metric_type": mtype, "unit": unit}
        else:
            a["count"] += n
            a["sum"] += s
            a["min"] = min(a["min"], mn)
            a["max"] = max(a["max"], mx)
            if last_ts >= a["last_ts"]:
                a["last"], a["last_ts"] = last, last_ts
    out = []
    for (tier, name, start), a in acc.items():
        a["avg"] = a["sum"] / a["count"] if a["count"] else None
        out.append((tier, "metric", name, start, bucket_end(tier, start), json.dumps(a), now))
    return out


def merge(kind: str, into: dict, d: dict) -> None:
    """Fold one hourly summary into a higher tier's (exact but for the p95 estimate)."""
    n = d.get("count", 0)
    if kind == "performance":
        if not n:
            return
        into["count"] = into.get("count", 0) + n
        into["duration_sum"] = into.get("duration_sum", 0.0) + d["duration_sum"]
        into["duration_min"] = min(into.get("duration_min", d["duration_min"]), d["duration_min"])
        into["duration_max"] = max(into.get("duration_max", d["duration_max"]), d["duration_max"])
        into["error_count"] = into.get("error_count", 0) + d["error_count"]
        into["_p95w"] = into.get("_p95w", 0.0) + (d.get("duration_p95") or 0.0) * n
        if d.get("throughput_mean") is not None:
            into["_thr"] = into.get("_thr", 0.0) + d["throughput_mean"] * n
            into["_thrn"] = into.get("_thrn", 0) + n
        return
    into["count"] = into.get("count", 0) + n
    for k, v in d.items():
        if k.startswith("by_"):
            agg = into.setdefault(k, {})
            for name, c in v.items():
                agg[name] = agg.get(name, 0) + c


def finish(kind: str, m: dict) -> dict:
    if kind != "performance" or not m.get("count"):
        return m
    out = {k: v for k, v in m.items() if not k.startswith("_")}
    out["duration_p95"] = m["_p95w"] / m["count"]
    out["throughput_mean"] = m["_thr"] / m["_thrn"] if m.get("_thrn") else None
    return out
