"""Aggregates equal the same aggregation computed in Python from the pushed rows."""
from __future__ import annotations

import itertools
import math
import statistics

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkband_historyd.harness import DaemonProcess

BUCKETS = {"1s": 1, "10s": 10, "1m": 60, "5m": 300, "1h": 3600}
T0 = 1_700_000_000.0
RUNS = itertools.count()


@pytest.fixture(scope="module")
def agg_daemon(tmp_path_factory):
    d = DaemonProcess(tmp_path_factory.mktemp("agg")).start()
    yield d
    d.close()


def py_percentile(values, q):
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def expected(series, step, functions):
    groups = {}
    for name, ts, v in series:
        b = int(ts // step) * step if step else None
        groups.setdefault((b, name), []).append((ts, v))
    out = {}
    for key, pts in groups.items():
        vals = [v for _, v in pts]
        last = max(pts, key=lambda p: p[0])[1]   # ties are avoided by distinct timestamps
        row = {"count": len(vals), "sum": math.fsum(vals), "min": min(vals), "max": max(vals),
               "avg": math.fsum(vals) / len(vals), "last": last,
               "p50": py_percentile(vals, 0.5), "p95": py_percentile(vals, 0.95),
               "p99": py_percentile(vals, 0.99)}
        out[key] = {f: row[f] for f in functions}
    return out


series_strategy = st.lists(
    st.tuples(st.sampled_from(["cpu_percent", "memory_percent", "eeg_throughput"]),
              st.integers(min_value=0, max_value=20_000),
              st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)),
    min_size=1, max_size=300, unique_by=lambda t: t[1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(series=series_strategy, bucket=st.sampled_from(sorted(BUCKETS)),
       functions=st.lists(st.sampled_from(["count", "sum", "min", "max", "avg", "last", "p50",
                                           "p95", "p99"]), min_size=1, max_size=9, unique=True))
def test_metrics_aggregate_equals_python(agg_daemon, series, bucket, functions):
    c = agg_daemon.client()
    run = f"run{next(RUNS)}"           # a fresh metric_type per example keeps examples apart
    pts = [(name, T0 + off / 10.0, float(v)) for name, off, v in series]
    c.store_metrics([{"timestamp": ts, "metric_type": run, "metric_name": name, "value": v}
                     for name, ts, v in pts])
    assert c.flush(timeout=20)
    reply = agg_daemon.ask("metrics.aggregate", metric_type=run, bucket=bucket, functions=functions,
                           group_by=["metric_name"])
    assert reply["ok"], reply
    got = {(r["bucket"], r["metric_name"]): {f: r[f] for f in functions} for r in reply["rows"]}
    want = expected(pts, BUCKETS[bucket], functions)
    assert got.keys() == want.keys()
    for key in want:
        for f in functions:
            assert math.isclose(got[key][f], want[key][f], rel_tol=1e-9, abs_tol=1e-6), (key, f)
    summary = agg_daemon.ask("metrics.summary", metric_type=run)
    want_all = expected(pts, None, ["count", "min", "max", "avg", "last"])
    assert {r["metric_name"]: r["count"] for r in summary["rows"]} == \
        {k[1]: v["count"] for k, v in want_all.items()}
    for r in summary["rows"]:
        w = want_all[(None, r["metric_name"])]
        assert r["last"] == w["last"] and r["min"] == w["min"] and r["max"] == w["max"]


def test_group_by_tag_performance_and_bad_parameters(agg_daemon):
    c = agg_daemon.client()
    c.store_metrics([{"timestamp": T0 + i, "metric_type": "tagged", "metric_name": "buffer_usage",
                      "value": float(i), "tags": {"sensor": "eeg" if i % 2 else "ppg"}}
                     for i in range(10)])
    c.store_performance([{"timestamp": T0 + i, "component": "buffer", "operation": "push",
                          "duration_ms": float(i + 1), "throughput": 100.0, "efficiency_percent": 90.0,
                          "error_count": 1 if i == 0 else 0} for i in range(100)])
    assert c.flush()
    r = agg_daemon.ask("metrics.aggregate", metric_type="tagged", bucket="none",
                       group_by=["tag:sensor"], functions=["count", "sum"])
    assert {x["tag:sensor"]: (x["count"], x["sum"]) for x in r["rows"]} == \
        {"eeg": (5, 25.0), "ppg": (5, 20.0)}
    r = agg_daemon.ask("performance.analysis", component="buffer")
    row = r["rows"][0]
    assert row["count"] == 100 and row["duration_max"] == 100.0
    assert row["duration_p50"] == pytest.approx(50.5) and row["duration_p95"] == pytest.approx(95.05)
    assert row["error_rate"] == 0.01 and row["throughput_mean"] == 100.0
    for params, bad in [({"bucket": "7x"}, "bucket"), ({"bucket": "2d"}, "bucket"),
                        ({"functions": ["median"]}, "functions"), ({"group_by": ["value"]}, "group_by"),
                        ({"group_by": ["tag:a b"]}, "group_by"), ({"value": "tags"}, "value"),
                        ({"bogus": 1}, "bogus")]:
        r = agg_daemon.ask("metrics.aggregate", **params)
        assert not r["ok"] and r["error"]["code"] == "bad_param" and bad in r["error"]["message"], r
    r = agg_daemon.ask("metrics", fields=["timestamp", "nope"])
    assert not r["ok"] and "nope" in r["error"]["message"]


def test_auto_bucket_and_fields(agg_daemon):
    r = agg_daemon.ask("metrics.aggregate", metric_type="tagged", since=T0, until=T0 + 86400)
    assert r["ok"] and r["bucket_seconds"] == 300          # a day in about 300 points
    r = agg_daemon.ask("metrics", metric_type="tagged", fields=["value"], limit=3)
    assert set(r["rows"][0]) == {"id", "timestamp", "value"}


@pytest.fixture(scope="module")
def cut_daemon(tmp_path_factory):
    """A daemon whose workers cut long per-bucket aggregates in three parts, holding
    two metrics with one row every 0.7 s (and a gap) over 4,000 s."""
    d = DaemonProcess(tmp_path_factory.mktemp("cut"),
                      env={"LINKBAND_HISTORY_QUERY_PARALLEL": "3",
                           "LINKBAND_HISTORY_COLLECTOR": "false"}).start()
    pts = [(name, T0 + i * 0.7, float((i * 7919) % 1000) / 7.0 + k)
           for k, name in enumerate(("cpu_percent", "memory_percent"))
           for i in range(5715) if not 2000 <= i < 2400]
    c = d.client()
    c.store_metrics([{"timestamp": ts, "metric_name": name, "value": v} for name, ts, v in pts])
    assert c.flush(timeout=30)
    d.pts = pts
    yield d
    d.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(since=st.floats(min_value=-50, max_value=500), length=st.floats(min_value=1, max_value=4500),
       bucket=st.sampled_from(["1s", "10s"]), both=st.booleans(),
       functions=st.lists(st.sampled_from(["count", "sum", "min", "max", "avg"]), min_size=1,
                          max_size=5, unique=True))
def test_an_aggregate_cut_into_parts_equals_python_bucket_for_bucket(
        cut_daemon, since, length, bucket, both, functions):
    """Per-bucket seeks over a long range run as three parts at once (the parts
    start on bucket boundaries); the joined rows are the whole answer, in order."""
    d, pts = cut_daemon, cut_daemon.pts
    names = ["cpu_percent", "memory_percent"] if both else ["memory_percent"]
    lo, hi = T0 + since, T0 + since + length
    by = {"group_by": ["metric_name"]} if both else {}
    reply = d.ask("metrics.aggregate", metric_name=names, since=lo, until=hi, bucket=bucket,
                  tier="detail", functions=functions, **by)
    assert reply["ok"], reply
    step = BUCKETS[bucket]
    want = expected([p for p in pts if p[0] in names and lo <= p[1] < hi], step, functions)
    keys = [(r["bucket"], r["metric_name"] if both else names[0]) for r in reply["rows"]]
    assert keys == sorted(want)                  # every bucket once, in order
    for r, key in zip(reply["rows"], keys):
        for f in functions:
            assert math.isclose(r[f], want[key][f], rel_tol=1e-9, abs_tol=1e-6), (key, f)
