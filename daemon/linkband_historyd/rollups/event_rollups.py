"""Summaries of performance, log and alert rows, folded in as rows arrive.

One JSON row per bucket in ``data_summaries`` (hourly, daily, weekly, monthly):

- performance, per ``component/operation``: count, duration sum/min/max, p95,
  error count, mean throughput. A record without a duration (NULL) is counted
  in ``count`` and left out of the duration figures (``duration_count``: the
  records that have one; min, max and p95 are None when none has). The p95
  comes from a mergeable sketch (``sketch``): within 1 % of the value at that
  rank, at every tier;
- log: counts per level and per logger; alert: counts per level and per category.

Each row keeps what it takes to merge it (``_sketch``, ``_thr_sum``, ``_thr_n``),
and an hourly row remembers the highest row id folded into it (``_upto``). A run
reads only the rows above the job's watermark, groups them by hour and folds them
into the stored hourly rows; so a run's time and memory follow the rows that are
new, not the size of the hour. A row whose ``_upto`` is already past the run's
start (a crash between two chunks) gets only the rows above its own ``_upto``: a
run repeated after a crash never counts a row twice. Rows ingested by a restore are
skipped (``summaries.skip`` in ``writer_state``): their summaries were never deleted.
Daily rows are merged from hourly ones, weekly and monthly from daily ones, in full.
"""
from __future__ import annotations

import json

from linkband_historyd.rollups import ddsketch
from linkband_historyd.rollups.buckets import bucket_end, bucket_start
from linkband_historyd.storage.restored_ranges import live_ranges

COUNTED = {"log": ("system_logs", "level", "logger_name"),
           "alert": ("alert_history", "level", "category")}
_HOUR = "CAST(timestamp / 3600 AS INTEGER) * 3600.0"


def load(kind: str, data: str) -> dict:
    """A stored row as a mergeable dict (rows written before sketches: a sketch of
    their p95, and their mean throughput, stand in)."""
    d = json.loads(data)
    if kind == "performance" and d.get("count"):
        d.setdefault("duration_count", d["count"])      # rows from before NULL durations
        if "_sketch" in d:
            d["_sketch"] = ddsketch.load(d["_sketch"])
        else:
            d["_sketch"] = {}
            if d.get("duration_p95") is not None:
                ddsketch.add(d["_sketch"], d["duration_p95"], d["count"])
            if d.get("throughput_mean") is not None:
                d["_thr_sum"], d["_thr_n"] = d["throughput_mean"] * d["count"], d["count"]
    return d


def merge(kind: str, into: dict, d: dict) -> None:
    """Fold one partial (in :func:`load`'s form) into another."""
    n = d.get("count", 0)
    if not n:
        return
    if kind == "performance":
        if not into.get("count"):
            into.update(count=0, duration_count=0, duration_sum=0.0, duration_min=None,
                        duration_max=None, error_count=0, _thr_sum=0.0, _thr_n=0, _sketch={})
        into["count"] += n
        if d["duration_count"]:
            into["duration_count"] += d["duration_count"]
            into["duration_sum"] += d["duration_sum"]
            lo, hi = into["duration_min"], into["duration_max"]
            into["duration_min"] = d["duration_min"] if lo is None else min(lo, d["duration_min"])
            into["duration_max"] = d["duration_max"] if hi is None else max(hi, d["duration_max"])
        into["error_count"] += d["error_count"]
        into["_thr_sum"] += d.get("_thr_sum", 0.0)
        into["_thr_n"] += d.get("_thr_n", 0)
        ddsketch.merge(into["_sketch"], d["_sketch"])
        return
    into["count"] = into.get("count", 0) + n
    for k, v in d.items():
        if k.startswith("by_"):
            agg = into.setdefault(k, {})
            for name, c in v.items():
                agg[name] = agg.get(name, 0) + c


def dump(kind: str, m: dict, upto: int | None = None) -> str:
    out = dict(m)
    if kind == "performance" and m.get("count"):
        out["duration_p95"] = ddsketch.quantile(m["_sketch"], 0.95)
        out["throughput_mean"] = m["_thr_sum"] / m["_thr_n"] if m.get("_thr_n") else None
        out["_sketch"] = ddsketch.dump(m["_sketch"])
    if upto is not None:
        out["_upto"] = upto
    else:
        out.pop("_upto", None)
    return json.dumps(out)


class EventSummarizer:
    """The summaries of one kind for one run over ids (lo, hi]."""

    def __init__(self, conn, kind: str, skip: list):
        self.conn = conn
        self.kind = kind
        self.skip = skip

    def run(self, lo: int, hi: int, now: float) -> list:
        kind = self.kind
        rows, hours = [], set()
        for (h, key), part in sorted(self.deltas(lo, hi).items()):
            hours.add(h)
            stored = self.stored("hourly", key, h)
            if stored is None:
                base = {}
            elif "_upto" not in stored:           # written before incremental summaries
                base, part = {}, self.deltas(0, hi, hour=h).get((h, key), {})
            elif stored["_upto"] >= hi:
                continue                          # folded in already (a run cut short)
            else:
                base = stored
                if stored["_upto"] > lo:
                    part = self.deltas(stored["_upto"], hi, hour=h).get((h, key), {})
            merge(kind, base, part)
            if base.get("count"):
                rows.append(("hourly", kind, key, h, h + 3600, dump(kind, base, hi), now))
        days = {bucket_start("daily", h) for h in hours}
        for tier, below, starts in (("daily", "hourly", days),
                                    ("weekly", "daily", {bucket_start("weekly", d) for d in days}),
                                    ("monthly", "daily", {bucket_start("monthly", d) for d in days})):
            for start in sorted(starts):
                rows += self.from_tier(tier, below, start, now, rows)
        return rows

    def deltas(self, lo: int, hi: int, hour: float | None = None) -> dict:
        """Partials per (hour, key) of the rows lo < id <= hi (but restored ones)."""
        out: dict = {}
        where, extra = "id > ? AND id <= ?", []
        if hour is not None:
            if lo == 0:                           # a whole hour: through the time index
                where = "+id > ? AND +id <= ?"
            where += " AND timestamp >= ? AND timestamp < ?"
            extra = [hour, hour + 3600]
        for a, b in live_ranges(lo, hi, self.skip):
            if self.kind == "performance":
                self._perf(out, where, [a, b] + extra)
            else:
                self._counts(out, where, [a, b] + extra)
        return out

    def _perf(self, out, where, args) -> None:
        for h, c, o, dur, errs, thr in self.conn.execute(
                f"SELECT {_HOUR}, component, operation, duration_ms, error_count, throughput "
                f"FROM performance_data WHERE {where}", args):
            p = out.get((h, f"{c}/{o}"))
            if p is None:
                p = out[(h, f"{c}/{o}")] = {"count": 0, "duration_count": 0, "duration_sum": 0.0,
                                            "duration_min": None, "duration_max": None,
                                            "error_count": 0, "_thr_sum": 0.0, "_thr_n": 0,
                                            "_sketch": {}}
            p["count"] += 1
            p["error_count"] += errs or 0
            if thr is not None:
                p["_thr_sum"] += thr
                p["_thr_n"] += 1
            if dur is None:
                continue
            p["duration_count"] += 1
            p["duration_sum"] += dur
            if p["duration_min"] is None or dur < p["duration_min"]:
                p["duration_min"] = dur
            if p["duration_max"] is None or dur > p["duration_max"]:
                p["duration_max"] = dur
            ddsketch.add(p["_sketch"], dur)

    def _counts(self, out, where, args) -> None:
        table, a, b = COUNTED[self.kind]
        for h, x, y, n in self.conn.execute(
                f"SELECT {_HOUR} AS h, {a}, {b}, count(*) FROM {table} WHERE {where} "
                f"GROUP BY h, {a}, {b}", args):
            p = out.setdefault((h, "all"), {"count": 0, f"by_{a}": {}, f"by_{b}": {}})
            p["count"] += n
            p[f"by_{a}"][x] = p[f"by_{a}"].get(x, 0) + n
            p[f"by_{b}"][y] = p[f"by_{b}"].get(y, 0) + n

    def stored(self, tier: str, key: str, start: float) -> dict | None:
        r = self.conn.execute(
            "SELECT summary_data FROM data_summaries WHERE summary_type = ? AND data_type = ? "
            "AND summary_key = ? AND period_start = ?", (tier, self.kind, key, start)).fetchall()
        return load(self.kind, r[0][0]) if r else None

    def from_tier(self, tier: str, below: str, start: float, now: float, fresh: list) -> list:
        """One bucket of ``tier`` merged from the rows of ``below`` (fresh ones win)."""
        kind = self.kind
        end = bucket_end(tier, start)
        parts = {}
        for key, ps, data in self.conn.execute(
                "SELECT summary_key, period_start, summary_data FROM data_summaries "
                "WHERE summary_type = ? AND data_type = ? AND period_start >= ? "
                "AND period_start < ?", (below, kind, start, end)):
            parts[(key, ps)] = data
        for r in fresh:
            if r[0] == below and start <= r[3] < end:
                parts[(r[2], r[3])] = r[5]
        merged: dict = {}
        for (key, _), data in parts.items():
            merge(kind, merged.setdefault(key, {}), load(kind, data))
        return [(tier, kind, key, start, end, dump(kind, m), now) for key, m in merged.items()]
