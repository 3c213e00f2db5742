"""Log commands: search (highlighted, counted), stats with error patterns, context."""
from __future__ import annotations

import apsw

from linkband_history.protocol import LOG_LEVELS, ok
from linkband_historyd.commands.base import command
from linkband_historyd.query import budget, log_patterns, search
from linkband_historyd.query import engine as Q
from linkband_historyd.query import params as P
from linkband_historyd.storage.schema import BASE_TABLES

TOTAL_CAP = 10_000          # counting stops here: "10000+" is enough for a person
TOTAL_SURE = 1_000          # counted whatever it takes; past it, within query.search_total_ms
SNIPPET_CHARS = 160


def mark(v):
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or not all(isinstance(x, str) and len(x) <= 16 for x in v)):
        raise ValueError("must be [start, end]: two strings of at most 16 characters")
    return list(v)


mark.json_schema = {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}


SEARCH = dict(Q.filter_spec("log"), q=P.text, limit=P.positive_int, cursor=P.cursor,
              order=P.order, mark=mark, total=P.boolean)


def highlights(message: str, terms: list[str]) -> list[list[int]]:
    """Character ranges of every term in ``message``, merged where they overlap."""
    low = message.lower()
    if len(low) != len(message):          # a rare character changed length when lowered
        return []
    spans = []
    for t in terms:
        start = low.find(t)
        while start >= 0:
            spans.append([start, start + len(t)])
            start = low.find(t, start + 1)
    spans.sort()
    merged: list[list[int]] = []
    for s in spans:
        if merged and s[0] <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], s[1])
        else:
            merged.append(s)
    return merged


def snippet(message: str, spans: list[list[int]], marks: list[str]) -> str:
    """The message around its first match, with every match marked."""
    if spans and len(message) > SNIPPET_CHARS:
        start = max(0, min(spans[0][0] - SNIPPET_CHARS // 3, len(message) - SNIPPET_CHARS))
    else:
        start = 0
    end = min(len(message), start + SNIPPET_CHARS)
    out, pos = [], start
    for a, b in spans:
        if b <= start or a >= end:
            continue
        a, b = max(a, start), min(b, end)
        out += [message[pos:a], marks[0], message[a:b], marks[1]]
        pos = b
    out.append(message[pos:end])
    return ("…" if start > 0 else "") + "".join(out) + ("…" if end < len(message) else "")


@command("logs.search", "log lines whose message contains every term of q, newest first, "
         "with a highlighted snippet and the total number of matches", SEARCH,
         route="GET /logs/search", columns=("timestamp", "level", "logger_name", "message"))
def cmd_logs_search(ctx, p):
    if "q" not in p:
        raise P.BadParam("q", "required")
    if p.get("order", "desc") != "desc":
        raise P.BadParam("order", "search results are newest first")
    try:
        plan = search.plan(ctx.conn, p["q"])
    except ValueError as exc:
        raise P.BadParam("q", str(exc).split(": ", 1)[-1]) from None
    columns = Q.SPECS["log"].columns
    out_columns = columns + ("snippet", "highlights")
    if plan.impossible:
        return ok([], None, out_columns, terms=plan.terms, total=0, total_exact=True)
    limit = ctx.limit(p, 100)
    w = Q.where("log", p, "l.")
    index_alone = plan.fts is not None and not plan.row_checks and not w.clauses
    for t in plan.row_checks:
        w.add(*search.row_check(t))
    if plan.fts is not None:
        w.clauses.insert(0, "logs_fts MATCH ?")
        w.args.insert(0, plan.fts)
        source = "logs_fts JOIN system_logs l ON l.id = logs_fts.rowid"
        order_col = "logs_fts.rowid"
    else:
        source, order_col = "system_logs l", "l.id"
    extra = {}
    if p.get("total", True) and "cursor" not in p:
        # the index alone when it decides: every indexed id has its line (the writer
        # indexes and unindexes a line in the transaction that stores or deletes it)
        counted = "logs_fts WHERE logs_fts MATCH ?" if index_alone else f"{source}{w.sql()}"
        extra = _count(ctx.conn, f"SELECT count(*) FROM (SELECT 1 FROM {counted} LIMIT ?)",
                       w.args, ctx.cfg.query.search_total_ms / 1e3)
    if "cursor" in p:
        w.add(f"{order_col} < ?", p["cursor"][1])
    select = ", ".join("l." + c for c in columns)
    cursor = ctx.conn.execute(f"SELECT {select} FROM {source}{w.sql()} ORDER BY {order_col} DESC "
                              "LIMIT ?", w.args + [limit + 1])
    try:
        rows, more, cut = Q.bounded_rows(cursor, limit, *Q.page_bounds(ctx.cfg.query, columns))
    finally:
        cursor.close()
    nxt = str(rows[-1][0]) if more else None
    if cut:
        extra["byte_limited"] = True
    marks = p.get("mark", ["«", "»"])
    mi = columns.index("message")
    out = []
    for r in rows:
        spans = highlights(r[mi], plan.terms)
        out.append(r + (snippet(r[mi], spans, marks), spans))
    return ok(out, nxt, out_columns, terms=plan.terms, **extra)


def _count(conn, sql: str, args: list, budget_s: float) -> dict:
    """The number of matches: exact up to TOTAL_SURE; past it, up to TOTAL_CAP while
    the budget lasts (a common two-character term ORs hundreds of trigram lists, whose
    matches cost far more to count than the first page does to find); else
    "TOTAL_SURE+". One count up to TOTAL_CAP within the budget; only when the budget
    stops it, a second one up to TOTAL_SURE, whatever it takes. A budget of 0 (the
    default: the first page comes first) counts to TOTAL_SURE only."""
    if budget_s <= 0:
        return _count_sure(conn, sql, args)
    try:
        with budget.deadline(conn, budget_s):
            n = conn.execute(sql, args + [TOTAL_CAP + 1]).fetchall()[0][0]
    except apsw.InterruptError:
        if budget.over(conn):         # the request's own budget: not ours to answer
            raise
        return _count_sure(conn, sql, args)
    return {"total": min(n, TOTAL_CAP), "total_exact": n <= TOTAL_CAP}


def _count_sure(conn, sql: str, args: list) -> dict:
    """Exact up to TOTAL_SURE, else "TOTAL_SURE+"."""
    n = conn.execute(sql, args + [TOTAL_SURE + 1]).fetchall()[0][0]
    if n <= TOTAL_SURE:
        return {"total": n, "total_exact": True}
    return {"total": TOTAL_SURE, "total_exact": False}


STATS = dict(Q.filter_spec("log"), bucket=Q.bucket, top=P.positive_int,
             pattern_level=P.min_log_level)


@command("logs.stats", "counts by level, by logger and per bucket, and the top error patterns",
         STATS, cached=True, route="GET /logs/stats")
def cmd_logs_stats(ctx, p):
    conn = ctx.conn
    w = Q.where("log", p)
    per_logger = None
    if "since" in p and not set(p) - INDEXED_STATS:
        per_logger = _logger_counts_by_index(conn, p["since"], p.get("until"))
    if per_logger is None:
        per_logger = conn.execute(f"SELECT logger_name, count(*) FROM system_logs{w.sql()} "
                                  "GROUP BY logger_name", w.args).fetchall()
    per_logger.sort(key=lambda r: (-r[1], r[0]))
    by_logger = [{"logger_name": n, "count": c} for n, c in per_logger[:50]]
    agg = Q.describe_aggregate("log", {**p, "bucket": p.get("bucket", "auto")}, ["count"], ["level"])
    rows = None
    if agg.step and "since" in p and "until" in p and not set(p) - INDEXED_STATS:
        rows = _level_counts_by_index(conn, p, agg.step)
    elif agg.step:
        _, rows = Q.run_aggregate(conn, agg, 100_000)
    if rows is None or p.get("level") or p.get("min_level"):
        counts = dict(conn.execute(f"SELECT level, count(*) FROM system_logs{w.sql()} "
                                   "GROUP BY level", w.args))
    else:                                         # the buckets cover the whole range
        counts = {}
        for _, level, n in rows:
            counts[level] = counts.get(level, 0) + n
    by_level = {lv: counts.get(lv, 0) for lv in LOG_LEVELS}
    buckets = []
    if rows is not None:
        per: dict = {}
        for b, level, count in rows:
            per.setdefault(b, {"bucket": b, **{lv: 0 for lv in LOG_LEVELS}})[level] = count
        buckets = list(per.values())
    pw = Q.where("log", {**p, "min_level": p.get("pattern_level", ["WARNING", "ERROR", "CRITICAL"])})
    distinct = conn.execute(
        f"SELECT message, count(*), min(timestamp), max(timestamp), max(id) FROM system_logs"
        f"{pw.sql()} GROUP BY message", pw.args)
    top = log_patterns.group(distinct)[: p.get("top", 10)]
    return ok([{"total": sum(by_level.values()), "by_level": by_level, "by_logger": by_logger,
                "bucket_seconds": agg.step, "buckets": buckets, "top_patterns": top}])


LOG_LINES = BASE_TABLES["log"]             # the stored table behind the system_logs view
INDEXED_STATS = {"since", "until", "bucket", "top", "pattern_level"}
MAX_LOOKUPS = 20_000


def _level_counts_by_index(conn, p: dict, step: int):
    """(bucket, level, count) rows, counted by one range look-up per bucket and
    level on idx_log_lines_level_time: no scan and no sort of the day's rows
    (bench/query.py item 4 times logs.stats over a day). None when there would be
    too many look-ups (then the GROUP BY is cheaper)."""
    since, until = p["since"], p["until"]
    first = int(since // step) * step
    if (until - first) / step * len(LOG_LEVELS) > MAX_LOOKUPS:
        return None
    # on the stored table and its level ids: through the view, whose level is a
    # joined name, SQLite could not use the index
    rows = conn.execute(
        "WITH RECURSIVE b(s) AS (SELECT ? UNION ALL SELECT s + ? FROM b WHERE s + ? < ?) "
        f"SELECT s, v.name, (SELECT count(*) FROM {LOG_LINES} WHERE level = v.id "
        "AND timestamp >= max(s, ?) AND timestamp < min(s + ?, ?)) AS n "
        "FROM b, log_levels v ORDER BY s, v.id",
        (first, step, step, until, since, step, until)).fetchall()
    return [(float(s), lv, n) for s, lv, n in rows if n]


MAX_LOGGERS = 200


def _logger_counts_by_index(conn, since: float, until: float | None):
    """(logger_name, count) of a time window, by one range count per logger on
    idx_log_lines_logger_time, the loggers read from their dictionary table:
    without it SQLite scans that whole index, and the cost follows the table, not
    the window. None past MAX_LOGGERS names (then the GROUP BY is cheaper)."""
    names = conn.execute("SELECT id, name FROM log_loggers LIMIT ?", (MAX_LOGGERS + 1,)).fetchall()
    if len(names) > MAX_LOGGERS:
        return None
    upper = float("inf") if until is None else until
    out = []
    for logger_id, name in names:
        n = conn.execute(f"SELECT count(*) FROM {LOG_LINES} WHERE logger = ? AND timestamp >= ? "
                         "AND timestamp < ?", (logger_id, since, upper)).fetchall()[0][0]
        if n:
            out.append((name, n))
    return out


CONTEXT = dict(id=P.non_negative_int, before=P.non_negative_int, after=P.non_negative_int,
               logger_name=P.text_list, process_id=P.int_list)


@command("logs.context", "the lines before and after one log line (like grep -C)", CONTEXT,
         route="GET /logs/context")
def cmd_logs_context(ctx, p):
    if "id" not in p:
        raise P.BadParam("id", "required: the id of a log line")
    columns = Q.SPECS["log"].columns
    cols = ", ".join(columns)
    conn = ctx.conn
    row = conn.execute(f"SELECT {cols} FROM system_logs WHERE id = ?", (p["id"],)).fetchall()
    if not row:
        raise P.BadParam("id", f"no log line with id {p['id']}")
    row = row[0]

    text, max_bytes = Q.page_bounds(ctx.cfg.query, columns)

    def side(op: str, direction: str, n: int):
        """The nearest lines on one side, up to n and half the page's byte budget."""
        w = Q.where("log", p)
        w.add(f"(timestamp, id) {op} (?, ?)", row[1], row[0])
        n = min(n, 1000)
        cursor = conn.execute(f"SELECT {cols} FROM system_logs{w.sql()} "
                              f"ORDER BY timestamp {direction}, id {direction} LIMIT ?",
                              w.args + [n])
        rows, _, cut = Q.bounded_rows(cursor, n, text, max_bytes // 2)
        return rows, cut

    before, cut_before = side("<", "DESC", p.get("before", 5))
    after, cut_after = side(">", "ASC", p.get("after", 5))
    rows = [r + (False,) for r in reversed(before)] + [row + (True,)] + [r + (False,) for r in after]
    extra = {"byte_limited": True} if cut_before or cut_after else {}
    return ok(rows, None, columns + ("match",), **extra)
