"""metrics.aggregate by one index seek per bucket (``engine.run_per_bucket``) gives
what the GROUP BY over every row gives, on a real database file."""
from __future__ import annotations

import random

import pytest

from linkband_historyd.query import engine as Q
from linkband_historyd.storage import schema
from linkband_historyd.storage.row_store import RowStore

T0 = 1_790_000_000.0


@pytest.fixture
def conn(tmp_path):
    c = schema.open_writer(str(tmp_path / "h.db"))
    r = random.Random(16)
    rows = [[T0 + s + r.random() * 0.01, "streaming", name, round(r.gauss(250, 2), 3), "Hz",
             '{"sensor": "eeg"}'] for s in range(3 * 3600) for name in ("eeg_rate", "ppg_rate")]
    rows += [[T0 + 600.0, "streaming", "eeg_rate", 1.0, "Hz", None],   # on a bucket's edge
             [T0 + 659.999, "streaming", "eeg_rate", 2.0, "Hz", None]]
    with c:
        RowStore(c).add("metric", rows)
    yield c
    c.close()


@pytest.mark.parametrize("names,group_by", [(["eeg_rate"], ["metric_name"]),
                                            (["eeg_rate", "ppg_rate"], ["metric_name"]),
                                            (["eeg_rate"], [])])
@pytest.mark.parametrize("step", [60, 300, 3600])
def test_seeking_each_bucket_answers_as_the_group_by_over_every_row(conn, names, group_by, step):
    p = {"metric_name": names, "since": T0 + 17.5, "until": T0 + 2.5 * 3600, "bucket": step,
         "functions": ["count", "sum", "min", "max", "avg"], "group_by": group_by}
    agg = Q.describe_aggregate("metric", p, ["count"], ["metric_name"])
    assert Q.seeks_per_bucket(agg)
    columns, seek = Q.run_per_bucket(conn, agg, 100_000)
    agg.filters += ("forced",)                     # no longer eligible: the GROUP BY path
    assert not Q.seeks_per_bucket(agg)
    columns2, grouped = Q.run_aggregate(conn, agg, 100_000)
    assert columns == columns2
    assert seek == [list(r) for r in grouped]
    assert sum(r[columns.index("count")] for r in seek) == conn.execute(
        "SELECT count(*) FROM system_metrics WHERE metric_name IN (%s) AND timestamp >= ? "
        "AND timestamp < ?" % ",".join("?" * len(names)), names + [p["since"], p["until"]]
    ).fetchall()[0][0]


def test_a_range_of_more_buckets_than_the_limit_is_refused_like_the_group_by(conn):
    p = {"metric_name": ["eeg_rate"], "since": T0, "until": T0 + 3600, "bucket": 60,
         "functions": ["avg"]}
    agg = Q.describe_aggregate("metric", p, ["count"], ["metric_name"])
    with pytest.raises(Q.P.BadParam):
        Q.run_per_bucket(conn, agg, 10)
