"""Aggregates that commands and scheduler jobs share: a metric series from the
summary tiers and detail rows (``metrics.aggregate``, the trend watch, ``analyze``),
and the per-operation performance analysis (``performance.analysis``, reports)."""
from __future__ import annotations

from dataclasses import replace

from linkband_historyd.query import engine as Q
from linkband_historyd.query import rollup_reader

MAX_AGGREGATE_ROWS = 100_000


def metric_aggregate(conn, agg, p, max_rows):
    """From the summary tiers or from detail rows; the reply says which answered.

    Summaries lag the newest rows by up to one summarizer run: the part of the
    range they do not cover yet comes from detail rows, and the two are folded
    together (reply tier "<tier>+detail")."""
    tier = rollup_reader.choose(conn, agg, p.get("tier", "auto"))
    if tier is None:
        return "detail", *Q.run_aggregate(conn, agg, max_rows)
    split = rollup_reader.summarized_until(conn)
    if split is None or (agg.until is not None and agg.until <= split):
        return tier, *rollup_reader.run(conn, agg, tier, p, max_rows)
    size = agg.step or rollup_reader.TIER_SECONDS.get(tier, 86400)
    split = float(int(split // size) * size) if tier != "monthly" else rollup_reader.bucket_start(tier, split)
    if agg.since is not None and split <= agg.since:
        return "detail", *Q.run_aggregate(conn, agg, max_rows)
    needed = list(agg.functions) + [f for f in ("count", "sum") if f not in agg.functions]
    old = replace(agg, until=split, functions=needed)
    _, rows_a = rollup_reader.run(conn, old, tier, {**p, "until": split}, max_rows)
    new = Q.describe_aggregate("metric", {**p, "bucket": agg.step, "since": split,
                                          "functions": needed}, needed, agg.group_by)
    columns, rows_b = Q.run_aggregate(conn, new, max_rows)
    n = len(columns) - len(needed)
    rows = rollup_reader.combine(rows_a, rows_b, n, needed)
    keep = n + len(agg.functions)
    return f"{tier}+detail", columns[:keep], [r[:keep] for r in rows]


def analyze_performance(conn, p: dict) -> dict:
    """Per (component, operation): count, duration p50/p95/p99/max, means, error rate.
    ``count`` is every record; the duration figures are over the ``duration_count``
    records that have a duration (NULL: none measured)."""
    w = Q.where("performance", p)
    means = {}
    for comp, op, n, n_dur, mx, thr, eff, errs, with_err in conn.execute(
            "SELECT component, operation, count(*), count(duration_ms), max(duration_ms), "
            "avg(throughput), "
            "avg(efficiency_percent), coalesce(sum(error_count), 0), "
            f"sum(coalesce(error_count, 0) > 0) FROM performance_data{w.sql()} "
            "GROUP BY component, operation", w.args):
        means[(comp, op)] = {"component": comp, "operation": op, "count": n,
                             "duration_count": n_dur, "duration_max": mx,
                             "throughput_mean": thr, "efficiency_mean": eff, "errors": errs,
                             "error_rate": with_err / n if n else None}
    agg = Q.describe_aggregate("performance", {**p, "functions": ["p50", "p95", "p99"],
                                               "group_by": ["component", "operation"]}, [])
    _, rows = Q.run_aggregate(conn, agg, MAX_AGGREGATE_ROWS)
    for comp, op, p50, p95, p99 in rows:
        means[(comp, op)].update(duration_p50=p50, duration_p95=p95, duration_p99=p99)
    return means
