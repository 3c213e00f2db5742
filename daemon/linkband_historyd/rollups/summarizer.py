"""Summaries: tiers of pre-aggregated history, computed by the scheduler.

Tiers are minute (metrics only), hourly, daily, weekly (Monday 00:00 UTC) and
monthly (calendar months, UTC). Metrics get typed rows in ``metric_rollups``
(per metric *and* tag set: count, sum, min, max, last), which keeps averages
exact at every tier, as Netdata's tiers do, and readable JSON rows per metric in
``data_summaries`` (hourly and up). Performance, log and alert rows get JSON rows
in ``data_summaries`` too (``event_summaries``).

Work is incremental: the job remembers the highest row id it has summarized per
table (the *watermark*) and looks only at the rows above it (new ones, and late
ones landing in old buckets). For metrics those rows mark their minutes dirty, and
a dirty minute is recomputed in full from its detail rows, each higher tier from
the tier below, so recomputing a bucket always gives the same rows. The other kinds
fold the new rows into their hourly rows (``event_summaries``). The new watermark
is written by the writer in the same transaction as the last chunk of summaries,
so a crash never loses or doubles a summary.
"""
from __future__ import annotations

import json
import time

from linkband_historyd.rollups.buckets import TIERS, bucket_end, bucket_start
from linkband_historyd.rollups.event_rollups import EventSummarizer
from linkband_historyd.storage import restored_ranges, schema

__all__ = ["TIERS", "bucket_end", "bucket_start", "Summarizer", "metric_summaries"]

STATE_KEY = "summaries"
MAX_IDS_PER_RUN = 1_000_000       # rows looked at per run: the job catches up over runs
CHUNK = 1_000


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
        return schema.read_state(self.conn, STATE_KEY, {})

    def run(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        state = self.state()
        skip = restored_ranges.load(self.conn)
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
            if kind == "metric":
                minutes = set()
                for a, b in restored_ranges.live_ranges(lo, hi, skip.get(table)):
                    minutes |= {r[0] for r in self.conn.execute(
                        "SELECT DISTINCT CAST(timestamp / 60 AS INTEGER) * 60.0 FROM system_metrics "
                        "WHERE id > ? AND id <= ?", (a, b))}
                fresh = self.metric_rollups(minutes, {bucket_start("hourly", m) for m in minutes})
                rollups += fresh
                summaries += metric_summaries(fresh, now)
            else:
                summaries += EventSummarizer(self.conn, kind, skip.get(table)).run(lo, hi, now)
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
        with self.conn:             # one read transaction: both queries see the same rows
            return self._rollup_from_snapshot(lo, hi)

    def _rollup_from_snapshot(self, lo, hi) -> list:
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
