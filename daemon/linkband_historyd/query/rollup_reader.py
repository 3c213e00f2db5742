"""Metric aggregates answered from the summary tiers (``metric_rollups``).

``metrics.aggregate`` and ``metrics.summary`` pick their source with ``tier``
(auto, detail, minute, hourly, daily, weekly, monthly). With ``auto``: buckets
of an hour or more, or ranges reaching back before the oldest detail row, are
answered from the coarsest tier whose bucket divides the requested one (the
finest that still covers the range for whole-range summaries); the reply's
``tier`` says which answered. Tiers hold count, sum, min, max and last, so
count/sum/min/max/avg/last are exact; percentiles need detail rows. Ranges are
taken at the tier's granularity: a bucket is in when its start is in
[since, until).
"""
from __future__ import annotations

from linkband_historyd.query import params as P
from linkband_historyd.query.engine import PERCENTILES, Aggregate, group_sql
from linkband_historyd.rollups.buckets import bucket_start
from linkband_historyd.storage import schema

TIER_SECONDS = {"minute": 60, "hourly": 3600, "daily": 86400, "weekly": 604800}
TIERS = ("minute", "hourly", "daily", "weekly", "monthly")
_FN = {"count": "sum(count)", "sum": "sum(sum)", "min": "min(min)", "max": "max(max)",
       "avg": "sum(sum) / sum(count)"}


def tier_param(v):
    s = str(v).lower()
    if s not in ("auto", "detail") + TIERS:
        raise ValueError(f"must be auto, detail or one of {', '.join(TIERS)}")
    return s


tier_param.json_schema = {"enum": ["auto", "detail", *TIERS]}


def summarized_until(conn) -> float | None:
    """Summaries are complete for every bucket before this time: the oldest
    timestamp among metric rows the summarizer has not folded in yet (None:
    all of them are)."""
    mark = schema.read_state(conn, "summaries", {}).get("system_metrics", 0)
    # +timestamp: walk the rowid range above the mark, not the whole time index
    return conn.execute("SELECT min(+timestamp) FROM system_metrics WHERE id > ?",
                        (mark,)).fetchall()[0][0]


def combine(a: list, b: list, n_keys: int, functions: list) -> list:
    """Rows of the same groups from two sources (older: a, newer: b) folded into one.
    Needs count and sum among ``functions`` for avg (callers ask for them)."""
    out = {tuple(r[:n_keys]): list(r) for r in a}
    idx = {f: n_keys + i for i, f in enumerate(functions)}
    for r in b:
        key = tuple(r[:n_keys])
        o = out.get(key)
        if o is None:
            out[key] = list(r)
            continue
        for f, i in idx.items():
            if f in ("count", "sum"):
                o[i] = (o[i] or 0) + (r[i] or 0)
            elif f == "min":
                o[i] = min(x for x in (o[i], r[i]) if x is not None) if (o[i], r[i]) != (None, None) else None
            elif f == "max":
                o[i] = max(x for x in (o[i], r[i]) if x is not None) if (o[i], r[i]) != (None, None) else None
            elif f == "last" and r[i] is not None:
                o[i] = r[i]                          # b is the newer source
        if "avg" in idx and o[idx["count"]]:
            o[idx["avg"]] = o[idx["sum"]] / o[idx["count"]]
    return [out[k] for k in sorted(out, key=lambda k: tuple((x is None, x) for x in k))]


def choose(conn, agg: Aggregate, asked: str) -> str | None:
    """The tier to answer from, or None for detail rows."""
    if agg.kind != "metric" or asked == "detail":
        return None
    if any(f in PERCENTILES for f in agg.functions):
        if asked != "auto":
            raise P.BadParam("tier", "percentiles need detail rows: use tier=detail")
        return None
    fitting = [t for t in TIERS if t != "monthly" and (agg.step is None or agg.step % TIER_SECONDS[t] == 0)]
    if asked != "auto":
        if asked not in fitting and not (asked == "monthly" and agg.step is None):
            raise P.BadParam("tier", f"{asked} buckets do not divide bucket={agg.step}s")
        return asked
    oldest = conn.execute("SELECT min(timestamp) FROM system_metrics").fetchall()[0][0]
    before_detail = oldest is None or (agg.since is not None and agg.since < oldest)
    if agg.step is not None and agg.step >= 60:
        # whole minutes or more: the tiers are exact for these functions, and far
        # cheaper than detail rows (a day of 20 metrics at 1 Hz is 1.7M rows)
        return fitting[-1] if fitting else None
    if not before_detail:
        return None
    if agg.step is None:
        for t in TIERS[:-1]:                       # the finest tier still holding the range
            first = conn.execute("SELECT min(bucket) FROM metric_rollups WHERE tier = ?",
                                 (t,)).fetchall()[0][0]
            if first is not None and (agg.since is None or first <= agg.since):
                return t
        return "hourly"
    return fitting[-1] if fitting else None


def run(conn, agg: Aggregate, tier: str, p: dict, max_rows: int):
    """``(columns, rows)`` like query_engine.run_aggregate, from ``tier``."""
    w = P.Where()
    w.add("tier = ?", tier)
    for name in ("metric_name", "metric_type", "unit"):
        if p.get(name):
            w.any_of(name, p[name])
    if "tags" in p:
        w.tags(p["tags"], "nullif(tags, '')")
    if agg.since is not None or "since" in p:
        w.add("bucket >= ?", bucket_start(tier, p.get("since", agg.since)))
    if agg.until is not None or "until" in p:
        w.add("bucket < ?", p.get("until", agg.until))
    if agg.step == TIER_SECONDS.get(tier) and agg.group_by == ["metric_name"] \
            and one_series_per_name(conn, tier):
        return _rows_as_stored(conn, agg, w, max_rows)
    keys, args = group_sql(agg, "bucket", "nullif(tags, '')", TIER_SECONDS.get(tier))
    n = len(keys)
    aliases = [f"k{i}" for i in range(n)]
    select = [f"{e} AS {a}" for e, a in zip(keys, aliases)]
    funcs = [f for f in agg.functions if f in _FN]
    group = f" GROUP BY {', '.join(aliases)} ORDER BY {', '.join(aliases)}" if n else ""
    base = conn.execute(f"SELECT {', '.join(select + [_FN[f] for f in funcs] or ['sum(count)'])} "
                        f"FROM metric_rollups{w.sql()}{group} LIMIT ?",
                        args + w.args + [max_rows + 1]).fetchall()
    if len(base) > max_rows:
        raise P.BadParam("bucket", f"more than {max_rows} result rows: use a larger bucket")
    last = {}
    if "last" in agg.functions:
        gsql = f" GROUP BY {', '.join(aliases)}" if n else ""
        last = {tuple(r[:n]): r[n] for r in conn.execute(
            f"SELECT {', '.join(select + ['last', 'max(last_ts)'])} FROM metric_rollups{w.sql()}{gsql}",
            args + w.args) if r[n + 1] is not None}
    columns = (["bucket"] if agg.step else []) + list(agg.group_by) + agg.functions
    if funcs == agg.functions and n:
        return columns, base                      # nothing to add: rows as SQLite gave them
    rows = []
    for r in base:
        if not n and r[n] is None:                 # no rows at all
            continue
        computed = dict(zip(funcs, r[n:]))
        rows.append(list(r[:n]) + [computed[f] if f in computed else last.get(tuple(r[:n]))
                                   for f in agg.functions])
    return columns, rows


MAX_SERIES_WALK = 256
_AS_STORED = {"count": "count", "sum": "sum", "min": "min", "max": "max", "avg": "sum / count",
              "last": "last"}


def one_series_per_name(conn, tier: str) -> bool:
    """Whether every metric name of ``tier`` has one tag set: then a bucket of the
    tier's own width holds one row per name, and grouping by (bucket, name) is the
    identity. Walks the distinct (name, tags) pairs along the primary key, one index
    seek each; more than MAX_SERIES_WALK pairs counts as "no" (grouping is right
    either way, this only skips work)."""
    row = conn.execute("SELECT metric_name, tags FROM metric_rollups WHERE tier = ? "
                       "ORDER BY metric_name, tags LIMIT 1", (tier,)).fetchall()
    for _ in range(MAX_SERIES_WALK):
        if not row:
            return True
        name, tags = row[0]
        # with the bucket in the key, SQLite seeks past the series instead of
        # stepping through its buckets
        row = conn.execute("SELECT metric_name, tags FROM metric_rollups WHERE tier = ? AND "
                           "(metric_name, tags, bucket) > (?, ?, ?) ORDER BY metric_name, tags "
                           "LIMIT 1", (tier, name, tags, float("inf"))).fetchall()
        if row and row[0][0] == name:
            return False
    return False


def _rows_as_stored(conn, agg: Aggregate, w, max_rows: int):
    """The tier's rows as they are, in (bucket, name) order: the covering index
    (tier, bucket, metric_name, count, sum, min, max) gives them sorted, and no
    GROUP BY runs: for a chart's usual query, one bucket per row of the tier, the
    aggregate machinery was most of SQLite's own time."""
    exprs = [_AS_STORED[f] for f in agg.functions]
    rows = conn.execute(f"SELECT bucket, metric_name, {', '.join(exprs)} FROM metric_rollups"
                        f"{w.sql()} ORDER BY bucket, metric_name LIMIT ?",
                        w.args + [max_rows + 1]).fetchall()
    if len(rows) > max_rows:
        raise P.BadParam("bucket", f"more than {max_rows} result rows: use a larger bucket")
    return ["bucket", "metric_name"] + list(agg.functions), rows
