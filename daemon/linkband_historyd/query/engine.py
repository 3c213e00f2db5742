"""The query engine: a query description in, parameterized SQL out.

A description is a kind (metric, performance, log, alert), filters, a time
range, fields, order, limit and cursor -- or, for aggregates, a bucket, a
value column, functions and group-by columns. Every column and function name
is checked against the whitelist of its kind (``SPECS``); values are always
bound parameters. Pages are keyset-paginated on (timestamp, id) or on id,
never OFFSET, so a page stays right while rows are inserted. SQL text depends
only on the shape of the description, so APSW's statement cache reuses the
prepared statements of repeated queries.

A listing page is bounded in bytes as well as rows: it stops once the text of
its rows passes ``query.max_page_bytes`` (:func:`bounded_rows`), and its cursor
brings the rest.
"""
from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter

from linkband_history.protocol import FIELDS
from linkband_historyd.query import parallel
from linkband_historyd.query import params as P
from linkband_historyd.query import search
from linkband_historyd.rollups import quantiles
from linkband_historyd.rollups.quantiles import PERCENTILES# noqa: F401 - tiers imports it from here


@dataclass(frozen=True)
class KindSpec:
    kind: str
    table: str
    columns: tuple[str, ...]
    filters: dict = field(default_factory=dict)       # param -> parser; the column has its name
    group_by: tuple[str, ...] = ()                     # groupable columns (plus tag:KEY for metrics)
    values: tuple[str, ...] = ()                       # numeric columns that can be aggregated
    default_value: str | None = None


SPECS = {
    "metric": KindSpec("metric", "system_metrics", ("id",) + FIELDS["metric"],
                       dict(metric_type=P.text_list, metric_name=P.text_list, unit=P.text_list),
                       ("metric_name", "metric_type", "unit"), ("value",), "value"),
    "performance": KindSpec("performance", "performance_data", ("id",) + FIELDS["performance"],
                            dict(component=P.text_list, operation=P.text_list),
                            ("component", "operation"),
                            ("duration_ms", "throughput", "efficiency_percent", "error_count"),
                            "duration_ms"),
    "log": KindSpec("log", "system_logs", ("id",) + FIELDS["log"],
                    dict(level=P.log_levels, logger_name=P.text_list, module=P.text_list,
                         function_name=P.text_list, process_id=P.int_list),
                    ("level", "logger_name", "module")),
    "alert": KindSpec("alert", "alert_history", ("id",) + FIELDS["alert"],
                      dict(level=P.alert_levels, category=P.text_list,
                           source_component=P.text_list, alert_id=P.text_list),
                      ("level", "category", "source_component")),
}

# columns that are not text; every other column of a kind is TEXT (or NULL)
NUMBERS = frozenset({"id", "timestamp", "value", "duration_ms", "throughput", "efficiency_percent",
                     "error_count", "line_number", "thread_id", "process_id", "acknowledged_at",
                     "resolved_at"})
CHUNK = 256                         # rows fetched at a time while a page is measured

FUNCTIONS = ("count", "sum", "min", "max", "avg", "last", "p50", "p95", "p99")
_SQL_FUNCTIONS = {"count": "count(*)", "sum": "sum({v})", "min": "min({v})", "max": "max({v})",
                  "avg": "avg({v})"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BUCKET = re.compile(r"^(\d+)([smhd])$")
NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
              43200, 86400)
AUTO_POINTS = 300


# -- parameters -----------------------------------------------------------------

def bucket(v):
    """'1s' .. '1d', 'auto' or 'none' -> seconds, 'auto' or None."""
    s = str(v).strip().lower()
    if s in ("auto", "none"):
        return s if s == "auto" else None
    m = _BUCKET.match(s)
    if not m:
        raise ValueError("must be like 1s, 30s, 5m, 1h, 1d, or auto / none")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if not 1 <= seconds <= 86400:
        raise ValueError("must be between 1s and 1d")
    return seconds


def functions(v):
    items = v if isinstance(v, (list, tuple)) else str(v).split(",")
    out = []
    for f in items:
        f = str(f).strip().lower()
        if f not in FUNCTIONS:
            raise ValueError(f"unknown function {f!r} (known: {', '.join(FUNCTIONS)})")
        if f not in out:
            out.append(f)
    if not out:
        raise ValueError("give at least one function")
    return out


def names(v):
    items = v if isinstance(v, (list, tuple)) else str(v).split(",")
    out = [str(x).strip() for x in items if str(x).strip()]
    if not out or len(out) > 32:
        raise ValueError("give 1 to 32 names")
    return out


def filter_spec(kind: str) -> dict:
    spec = dict(SPECS[kind].filters, since=P.time_value, until=P.time_value)
    if kind == "log":
        spec["min_level"] = P.min_log_level
        spec["contains"] = P.text
    if kind == "metric":
        spec["tags"] = P.tags
    if kind == "alert":
        spec["open"] = P.boolean
    return spec


def list_spec(kind: str) -> dict:
    return dict(filter_spec(kind), limit=P.positive_int, cursor=P.cursor, order=P.order,
                fields=names, after_id=P.non_negative_int, count=P.boolean)


def aggregate_spec(kind: str) -> dict:
    return dict(filter_spec(kind), bucket=bucket, functions=functions, group_by=names,
                value=P.text, limit=P.positive_int)


# -- WHERE ------------------------------------------------------------------------

def where(kind: str, p: dict, prefix: str = "") -> P.Where:
    """The filters of ``p`` as a WHERE clause over ``kind``'s table."""
    spec = SPECS[kind]
    w = P.Where()
    levels = p.get("level")
    if "min_level" in p:
        levels = [lv for lv in (levels or p["min_level"]) if lv in p["min_level"]] or ["-"]
    for name in spec.filters:
        values = levels if name == "level" else p.get(name)
        if values:
            w.any_of(prefix + name, values)
    if "tags" in p:
        w.tags(p["tags"], prefix + "tags")
    if p.get("open") is True:
        w.add(f"{prefix}resolved_at IS NULL")
    elif p.get("open") is False:
        w.add(f"{prefix}resolved_at IS NOT NULL")
    if "contains" in p:
        contains(w, p["contains"], prefix)
    w.time_range(p, prefix + "timestamp")
    return w


def contains(w: P.Where, text: str, prefix: str = "") -> None:
    """The message holds ``text`` as it is (spaces and all), case-insensitively: the
    SDK's ``LIKE %text%``. The trigram index narrows the rows when the text is
    long enough for it (three characters: the lines holding all its trigrams); the
    row check decides."""
    folded = search.fold(text)
    if len(folded) >= 3:
        w.add(f"{prefix}id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)",
              " AND ".join(search.quote(g) for g in search.trigrams(folded)))
    w.add(*search.row_check(folded, f"{prefix}message"))


def check_fields(kind: str, fields) -> tuple[str, ...]:
    cols = SPECS[kind].columns
    bad = [f for f in fields if f not in cols]
    if bad:
        raise P.BadParam("fields", f"unknown field {bad[0]!r} of {kind} (known: {', '.join(cols)})")
    # id and timestamp always come along: the cursor is made of them
    return tuple(c for c in cols if c in ("id", "timestamp") or c in fields)


# -- listing ---------------------------------------------------------------------

def text_bytes(rows, getters) -> int:
    """The UTF-8 size of the text ``getters`` pick from each row, estimated by C
    builtins: each column's strings joined, their characters counted, times 3
    when any of them is not ASCII (``isascii`` of a joined string costs nothing)."""
    total = 0
    for get in getters:
        text = "".join(filter(None, map(get, rows)))
        total += len(text) if text.isascii() else 3 * len(text)
    return total


def bounded_rows(cursor, limit: int, text: tuple[int, ...], max_bytes: int):
    """``(rows, more, cut)``: the first rows of ``cursor`` (which yields up to
    ``limit + 1``) while the text of columns ``text`` stays within ``max_bytes``
    (one row at least); ``more``: rows follow, ``cut``: the bytes stopped it.

    Rows are fetched CHUNK at a time, so no more than ``max_bytes`` plus one
    chunk is ever held. Each chunk is measured by :func:`text_bytes` as a whole
    (a few C calls per text column and chunk, so chunks are not small); only
    the chunk that crosses the budget is measured row by row.
    """
    if not text:                        # numbers only: the row count bounds the page
        rows = cursor.fetchall()
        more = len(rows) > limit
        if more:
            rows.pop()
        return rows, more, False
    getters = [itemgetter(i) for i in text]
    rows: list = []
    used = 0
    while True:
        chunk = list(islice(cursor, min(limit + 1 - len(rows), CHUNK)))
        if not chunk:
            return rows, False, False
        size = text_bytes(chunk, getters)
        if used + size <= max_bytes:
            rows += chunk
            used += size
        else:
            for row in chunk:
                size = text_bytes((row,), getters)
                if rows and used + size > max_bytes:
                    return rows, True, True
                rows.append(row)
                used += size
        if len(rows) > limit:
            del rows[limit:]
            return rows, True, False


def page_bounds(query, columns) -> tuple[tuple[int, ...], int]:
    """``(text column positions, max_page_bytes)`` of a page of ``columns``, under the
    ``query`` settings."""
    return (tuple(i for i, c in enumerate(columns) if c not in NUMBERS), query.max_page_bytes)


def list_page(conn, kind: str, p: dict, limit: int, query):
    """One page: ``(columns, rows, next_cursor, total_or_None, cut)``; ``cut``:
    the page stopped at ``max_page_bytes`` of the ``query`` settings before ``limit``.

    Order is (timestamp, id), ascending unless ``order=desc``; with ``after_id``
    it is id order instead (what was committed after a given row: ``--follow``).
    """
    spec = SPECS[kind]
    columns = check_fields(kind, p["fields"]) if "fields" in p else spec.columns
    w = where(kind, p)
    total = None
    if p.get("count"):
        total = conn.execute(f"SELECT count(*) FROM {spec.table}{w.sql()}", w.args).fetchall()[0][0]
    desc = p.get("order", "asc") == "desc"
    direction = "DESC" if desc else "ASC"
    if "after_id" in p:
        if desc:
            raise P.BadParam("order", "after_id pages forward in id order")
        w.add("id > ?", p["after_id"])
        order = "id ASC"
    else:
        if "cursor" in p:
            ts, rid = p["cursor"]
            if ts is None:
                raise P.BadParam("cursor", "not a cursor of this command")
            w.add(f"(timestamp, id) {'<' if desc else '>'} (?, ?)", ts, rid)
        order = f"timestamp {direction}, id {direction}"
    sql = f"SELECT {', '.join(columns)} FROM {spec.table}{w.sql()} ORDER BY {order} LIMIT ?"
    cursor = conn.execute(sql, w.args + [limit + 1])
    try:
        rows, more, cut = bounded_rows(cursor, limit, *page_bounds(query, columns))
    finally:
        cursor.close()
    nxt = None
    if more:
        last = rows[-1]
        nxt = str(last[0]) if "after_id" in p else f"{last[1]!r}:{last[0]}"
    return columns, rows, nxt, total, cut


# -- aggregation -----------------------------------------------------------------

def auto_step(since: float, until: float, points: int = AUTO_POINTS) -> int:
    span = max(until - since, 1.0)
    for step in NICE_STEPS:
        if span / step <= points:
            return step
    return NICE_STEPS[-1]


@dataclass
class Aggregate:
    kind: str
    step: int | None                 # bucket width in seconds, None: the whole range
    value: str | None
    functions: list[str]
    group_by: list[str]
    where: P.Where
    since: float | None = None
    until: float | None = None
    names: list | None = None        # the metric_name filter, if any
    filters: tuple = ()              # every filter given (since and until included)


def describe_aggregate(kind: str, p: dict, default_functions, default_group=()) -> Aggregate:
    spec = SPECS[kind]
    funcs = p.get("functions", list(default_functions))
    value = p.get("value", spec.default_value)
    if value is not None and value not in spec.values:
        raise P.BadParam("value", f"{value!r} cannot be aggregated for {kind} "
                                  f"(known: {', '.join(spec.values) or 'none: count only'})")
    if value is None and any(f != "count" for f in funcs):
        raise P.BadParam("functions", f"{kind} records have no value: only count")
    groups = p.get("group_by", list(default_group))
    for g in groups:
        if g in spec.group_by:
            continue
        if kind == "metric" and g.startswith("tag:") and P.TAG_KEY.match(g[4:]):
            continue
        allowed = list(spec.group_by) + (["tag:KEY"] if kind == "metric" else [])
        raise P.BadParam("group_by", f"cannot group {kind} by {g!r} (known: {', '.join(allowed)})")
    step = p.get("bucket")
    since, until = p.get("since"), p.get("until")
    if step == "auto":
        until = until if until is not None else time.time()
        since = since if since is not None else until - 3600
        step = auto_step(since, until)
    return Aggregate(kind, step, value, funcs, groups, where(kind, p), since, until,
                     p.get("metric_name"), tuple(k for k in filter_spec(kind) if k in p))


def group_sql(agg: Aggregate, time_column: str = "timestamp", tags: str = "tags",
              native_step: int | None = None):
    """SELECT expressions and args of the bucket and the group columns. When the
    bucket is the source's own (``native_step``), the time column is grouped on
    as it is: the index order, no sort."""
    exprs, args = [], []
    if agg.step and agg.step == native_step:
        exprs.append(time_column)
    elif agg.step:
        exprs.append(f"CAST({time_column} / ? AS INTEGER) * ?")
        args += [agg.step, agg.step]
    for g in agg.group_by:
        if g.startswith("tag:"):
            exprs.append(f"json_extract({tags}, ?)")
            args.append(f'$."{g[4:]}"')
        else:
            exprs.append(g)
    return exprs, args


SEEK_FUNCTIONS = frozenset({"count", "sum", "min", "max", "avg"})
MAX_SEEK_BUCKETS = 20_000


def seeks_per_bucket(agg: Aggregate) -> bool:
    """Whether :func:`run_per_bucket` can answer ``agg``: buckets of given metrics (per
    metric, or of one metric) over a bounded range, functions SQLite computes, no
    other filter or group."""
    return (agg.kind == "metric" and bool(agg.step) and bool(agg.names) and agg.value == "value"
            and (agg.group_by == ["metric_name"] or len(agg.names) == 1)
            and agg.since is not None and agg.until is not None
            and set(agg.filters) <= {"metric_name", "since", "until"}
            and agg.group_by in ([], ["metric_name"]) and set(agg.functions) <= SEEK_FUNCTIONS
            and 0 < (agg.until - agg.since) / agg.step <= MAX_SEEK_BUCKETS)


def run_per_bucket(conn, agg: Aggregate, max_rows: int):
    """``(columns, rows)`` as :func:`run_aggregate`, by one range seek per bucket and
    metric on ``idx_metric_points_name_time`` (covering): the rows come in index order
    and are never sorted, where a GROUP BY of ``CAST(timestamp / step)`` sorts them all.
    Each bucket's reply row is built by SQLite as a JSON array (it writes its reals so
    that they read back exactly; an empty bucket gives none), and the rows come back
    as one JSON array, parsed once: no Python work per bucket. A long range is cut
    into parts that the worker's side readers run at once (``query.parallel``)."""
    step = agg.step
    first = int(agg.since // step) * step
    readers = parallel.readers_of(conn)
    pieces = parallel.cut(first, agg.until, step, readers.parts if readers else 1)
    pieces = [(max(a, agg.since), a, b) for a, b in pieces]
    if len(pieces) > 1:
        rows = [r for part in readers.run(conn, lambda c, pc: _bucket_rows(c, agg, *pc), pieces)
                for r in part]
    else:
        rows = _bucket_rows(conn, agg, *pieces[0])
    if len(rows) > max_rows:
        raise P.BadParam("bucket", f"more than {max_rows} result rows: use a larger bucket "
                                   "or a shorter range")
    return ["bucket"] + list(agg.group_by) + agg.functions, rows


def _bucket_rows(conn, agg: Aggregate, since: float, first: float, until: float) -> list:
    """The rows of :func:`run_per_bucket` for the buckets from ``first`` (a bucket
    start, ``since`` rounded down) to ``until``, over rows in ``[since, until)``."""
    step = agg.step
    by_name = agg.group_by == ["metric_name"]
    values = ", ".join(["b.s"] + (["n.name"] if by_name else [])
                       + ["count(*)" if f == "count" else _SQL_FUNCTIONS[f].format(v="value")
                          for f in agg.functions])
    marks = ", ".join("?" * len(agg.names))
    sql = ("WITH RECURSIVE b(s) AS (SELECT ? UNION ALL SELECT s + ? FROM b WHERE s + ? < ?) "
           "SELECT '[' || group_concat(r, ',' ORDER BY s, name) || ']' FROM ("
           f"SELECT b.s AS s, n.name AS name, (SELECT json_array({values}) FROM metric_points "
           "WHERE name = n.id AND timestamp >= max(b.s, ?) AND timestamp < min(b.s + ?, ?) "
           "HAVING count(*) > 0) AS r "
           f"FROM b, metric_names n WHERE n.name IN ({marks}))")
    args = [first, step, step, until, since, step, until, *agg.names]
    packed = conn.execute(sql, args).fetchall()[0][0]
    return json.loads(packed) if packed else []        # group_concat skips empty buckets


def run_aggregate(conn, agg: Aggregate, max_rows: int):
    """``(columns, rows)``: one row per bucket and group, ordered by them."""
    if seeks_per_bucket(agg):
        return run_per_bucket(conn, agg, max_rows)
    table = SPECS[agg.kind].table
    if (agg.kind == "metric" and set(agg.filters) <= {"metric_name", "since", "until"}
            and set(agg.group_by) <= {"metric_name"}):
        table = "metric_values"              # no join to the series per row
    keys, key_args = group_sql(agg)
    n = len(keys)
    aliases = [f"k{i}" for i in range(n)]
    key_cols = (["bucket"] if agg.step else []) + list(agg.group_by)
    sql_funcs = [f for f in agg.functions if f in _SQL_FUNCTIONS]
    select = [f"{e} AS {a}" for e, a in zip(keys, aliases)]
    select += [_SQL_FUNCTIONS[f].format(v=agg.value) for f in sql_funcs] or ["count(*)"]
    wanted = [f for f in agg.functions if f in PERCENTILES]
    q_args = []
    if wanted:                 # in the same GROUP BY: no second scan, bounded memory
        quantiles.register(conn)
        select.append(f"{quantiles.NAME}({agg.value}, ?)")
        q_args.append(",".join(wanted))
    group = f" GROUP BY {', '.join(aliases)} ORDER BY {', '.join(aliases)}" if n else ""
    w = agg.where
    sql = f"SELECT {', '.join(select)} FROM {table}{w.sql()}{group} LIMIT ?"
    base = conn.execute(sql, key_args + q_args + w.args + [max_rows + 1]).fetchall()
    if len(base) > max_rows:
        raise P.BadParam("bucket", f"more than {max_rows} result rows: use a larger bucket "
                                   "or a shorter range")
    extra: dict[str, dict] = {}
    if "last" in agg.functions:
        # SQLite: with exactly one max() aggregate, a bare column comes from its row
        sel = select[:n] + [agg.value, "max(timestamp)"]
        gsql = f" GROUP BY {', '.join(aliases)}" if n else ""
        extra["last"] = {tuple(r[:n]): r[n] for r in conn.execute(
            f"SELECT {', '.join(sel)} FROM {table}{w.sql()}{gsql}", key_args + w.args)
            if r[n + 1] is not None}
    columns = key_cols + agg.functions
    out = []
    for r in base:
        key = tuple(r[:n])
        computed = dict(zip(sql_funcs, r[n:]))
        if wanted:
            computed.update(itertools.zip_longest(wanted, quantiles.decode(r[-1])[:len(wanted)]))
        out.append(list(key) + [computed[f] if f in computed else extra[f].get(key)
                                for f in agg.functions])
    return columns, out


bucket.json_schema = {"type": "string", "description": "1s .. 1d, auto or none"}
functions.json_schema = {"type": "array", "items": {"enum": list(FUNCTIONS)}}
names.json_schema = {"type": "array", "items": {"type": "string"}}
