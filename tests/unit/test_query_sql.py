"""The query engine's SQL from a description, without a daemon: user values only
ever reach SQLite as bound parameters, names only from the whitelists, and the
SQL runs on an in-memory copy of the schema with the rows it should find."""
from __future__ import annotations

import apsw
import pytest

from linkband_historyd import config
from linkband_historyd.query import engine as Q
from linkband_historyd.query import params as P
from linkband_historyd.storage import schema

HOSTILE = "x'); DROP TABLE system_logs; --"
SETTINGS = config.load(None, environ={}, cli={"daemon.data_dir": "/nonexistent"})


@pytest.fixture
def conn(tmp_path):
    c = schema.open_writer(str(tmp_path / "h.db"))
    rows = [(1_790_000_400.0 + i * 30, "cpu", "cpu_percent" if i % 2 else "memory_percent",
             float(i), "%", '{"core": "%d"}' % (i % 4)) for i in range(240)]
    c.executemany("INSERT INTO system_metrics (timestamp, metric_type, metric_name, value, unit, "
                  "tags) VALUES (?, ?, ?, ?, ?, ?)", rows)
    yield c
    c.close()


def test_a_filter_description_becomes_a_where_clause_with_every_value_bound():
    p = P.parse(Q.filter_spec("log"), {"logger_name": [HOSTILE], "min_level": "WARNING",
                                       "since": 1_790_000_000, "until": 1_790_003_600})
    w = Q.where("log", p)
    assert HOSTILE not in w.sql() and HOSTILE in w.args
    assert "logger_name" in w.sql() and "timestamp" in w.sql()
    assert {"WARNING", "ERROR", "CRITICAL"} <= set(w.args)
    assert "DEBUG" not in w.args and "INFO" not in w.args


def test_an_aggregate_description_groups_by_bucket_and_tag_with_bound_parameters(conn):
    p = P.parse(Q.aggregate_spec("metric"), {"metric_name": ["cpu_percent"], "bucket": "10m",
                                             "functions": ["count", "avg", "max"],
                                             "group_by": ["tag:core"]})
    agg = Q.describe_aggregate("metric", p, ["avg"])
    exprs, args = Q.group_sql(agg)
    assert exprs == ["CAST(timestamp / ? AS INTEGER) * ?", "json_extract(tags, ?)"]
    assert args == [600, 600, '$."core"']
    columns, rows = Q.run_aggregate(conn, agg, 10_000)
    assert columns[-3:] == ["count", "avg", "max"]
    # 120 cpu_percent rows (odd i) over 2 hours from a bucket boundary: 12 buckets of 10 minutes, cores 1 and 3
    assert sum(r[-3] for r in rows) == 120
    assert {r[1] for r in rows} == {"1", "3"}
    assert len(rows) == 12 * 2


@pytest.mark.parametrize("bad", [
    {"group_by": ["value; DROP TABLE x"]},
    {"group_by": [f"tag:{HOSTILE}"]},
    {"value": "timestamp"},
])
def test_names_outside_the_whitelists_are_refused_before_any_sql(bad):
    with pytest.raises(P.BadParam):
        p = P.parse(Q.aggregate_spec("metric"), {"bucket": "1h", **bad})
        Q.describe_aggregate("metric", p, ["avg"])


def test_a_listing_page_is_keyset_paged_and_its_cursor_continues_exactly(conn):
    p = P.parse(Q.list_spec("metric"), {"metric_name": ["memory_percent"], "limit": 50})
    seen, cursor = [], None
    while True:
        q = dict(p, **({"cursor": P.cursor(cursor)} if cursor else {}))
        columns, rows, cursor, _, _ = Q.list_page(conn, "metric", q, 50, SETTINGS.query)
        seen += [r[columns.index("id")] for r in rows]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 120 and seen == sorted(seen)
    with pytest.raises(apsw.SQLError):               # the table really is what the SQL names
        conn.execute("SELECT nope FROM system_metrics").fetchall()
