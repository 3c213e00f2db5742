"""The query commands: one table, each entry a name, a parameter spec and a function.

A command receives the parsed parameters and a read-only :class:`QueryContext`
and returns a reply built by ``protocol.ok`` (errors are raised as BadParam or
CommandError and turned into ``protocol.error`` by the query server). Listing
commands page with keyset cursors on (timestamp, id), never OFFSET, so a page
stays right while rows are inserted.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import apsw

from linkband_history.protocol import FIELDS, ok

from . import params as P
from . import schema, search
from .latency import LatencyHistogram


class CommandError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Command:
    name: str
    spec: dict
    run: Callable
    help: str


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, **spec):
    def register(fn):
        COMMANDS[name] = Command(name, spec, fn, help)
        return fn
    return register


class QueryContext:
    def __init__(self, conn: apsw.Connection, cfg: dict, started_at: float):
        self.conn = conn
        self.cfg = cfg
        self.started_at = started_at

    def limit(self, p: dict) -> int:
        n = p.get("limit", self.cfg["query.default_limit"])
        if n > self.cfg["query.max_limit"]:
            raise P.BadParam("limit", f"at most {self.cfg['query.max_limit']}")
        return n

    def dicts(self, sql: str, args, columns) -> list[dict]:
        """Small results as dicts (JSON columns stay text)."""
        return [dict(zip(columns, r)) for r in self.conn.execute(sql, args)]


COLUMNS = {kind: ("id",) + FIELDS[kind] for kind in FIELDS}
RANGE = dict(since=P.time_value, until=P.time_value, limit=P.positive_int, cursor=P.cursor,
             order=P.order)


def list_table(ctx: QueryContext, kind: str, where: P.Where, p: dict) -> dict:
    """One page of a table in (timestamp, id) order, with the cursor of the next."""
    columns = COLUMNS[kind]
    limit = ctx.limit(p)
    desc = p.get("order", "asc") == "desc"
    if "cursor" in p:
        ts, rid = p["cursor"]
        if ts is None:
            raise P.BadParam("cursor", "not a cursor of this command")
        where.add(f"(timestamp, id) {'<' if desc else '>'} (?, ?)", ts, rid)
    direction = "DESC" if desc else "ASC"
    sql = (f"SELECT {', '.join(columns)} FROM {schema.TABLES[kind]}{where.sql()} "
           f"ORDER BY timestamp {direction}, id {direction} LIMIT ?")
    rows = ctx.conn.execute(sql, where.args + [limit + 1]).fetchall()
    nxt = None
    if len(rows) > limit:
        rows.pop()
        nxt = f"{rows[-1][1]!r}:{rows[-1][0]}"       # (timestamp, id) of the last row
    return ok(rows, nxt, columns)


# -- commands -----------------------------------------------------------------

@command("ping", "is the daemon there")
def cmd_ping(ctx, p):
    return ok([{"pong": True, "time": time.time(), "schema_version": schema.SCHEMA_VERSION}])


@command("client.ack", "a client's last committed sequence number (flush() polls it)",
         client_id=P.text)
def cmd_client_ack(ctx, p):
    if "client_id" not in p:
        raise P.BadParam("client_id", "required")
    cols = ("last_seq", "records_next", "stored", "rejected", "lost_records", "lost_messages",
            "duplicates", "client_dropped")
    rows = ctx.dicts(f"SELECT {', '.join(cols)} FROM ingest_clients WHERE client_id = ?",
                    (p["client_id"],), cols)
    return ok(rows)


@command("stats", "row counts, rejected records by reason, lost records per client, size, uptime",
         clients=P.positive_int)
def cmd_stats(ctx, p):
    conn = ctx.conn
    tables = {t: 0 for t in schema.TABLES.values()}
    tables.update(dict(conn.execute("SELECT name, rows FROM table_counts")))
    for t in ("alert_history", "data_summaries"):
        tables[t] = conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
    rejected = dict(conn.execute("SELECT reason, count FROM ingest_rejects ORDER BY reason"))
    cols = schema.CLIENT_COLUMNS
    clients = ctx.dicts(f"SELECT {', '.join(cols)} FROM ingest_clients ORDER BY last_seen DESC "
                       "LIMIT ?", (p.get("clients", 50),), cols)
    totals = conn.execute("SELECT count(*), coalesce(sum(stored), 0), coalesce(sum(rejected), 0), "
                          "coalesce(sum(lost_records), 0), coalesce(sum(client_dropped), 0), "
                          "coalesce(sum(duplicates), 0) FROM ingest_clients").fetchall()[0]
    state = dict(conn.execute("SELECT key, value FROM writer_state"))
    latency = {}
    if "ingest_latency" in state:
        doc = json.loads(state["ingest_latency"])
        latency = {"since": doc.get("since"), "commits": doc.get("commits"),
                   **LatencyHistogram(doc).summary_ms()}
    path = ctx.cfg["daemon.db_path"]
    sizes = {suffix or "db": _size(path + suffix) for suffix in ("", "-wal", "-shm")}
    return ok([{
        "tables": tables,
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "clients": clients,
        "client_count": totals[0],
        "stored_total": totals[1],
        "rejected_records_total": totals[2],
        "lost_records_total": totals[3],
        "client_dropped_total": totals[4],
        "duplicate_messages_total": totals[5],
        "database": {"path": path, "size_bytes": sum(sizes.values()), "files": sizes,
                     "schema_version": schema.SCHEMA_VERSION},
        "ingest_latency_ms": latency,
        "writer": json.loads(state.get("writer", "{}")),
        "uptime_s": time.time() - ctx.started_at,
        "pid": os.getpid(),
    }])


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


@command("metrics", "metric records", metric_type=P.text_list, metric_name=P.text_list,
         tags=P.tags, **RANGE)
def cmd_metrics(ctx, p):
    w = P.Where()
    w.match(p, "metric_name", "metric_type")
    if "tags" in p:
        w.tags(p["tags"])
    w.time_range(p)
    return list_table(ctx, "metric", w, p)


@command("performance", "performance records", component=P.text_list, operation=P.text_list,
         **RANGE)
def cmd_performance(ctx, p):
    w = P.Where()
    w.match(p, "component", "operation")
    w.time_range(p)
    return list_table(ctx, "performance", w, p)


LOG_FILTERS = dict(level=P.log_levels, min_level=P.min_log_level, logger_name=P.text_list,
                   module=P.text_list, **RANGE)


def log_where(p: dict, prefix: str = "") -> P.Where:
    w = P.Where()
    levels = p.get("level")
    if "min_level" in p:
        levels = [lv for lv in (levels or p["min_level"]) if lv in p["min_level"]]
        if not levels:
            levels = ["-"]                       # an empty set: nothing matches
    if levels:
        w.any_of(prefix + "level", levels)
    w.match(p, "logger_name", "module", prefix=prefix)
    w.time_range(p, prefix + "timestamp")
    return w


@command("logs", "log lines", **LOG_FILTERS)
def cmd_logs(ctx, p):
    return list_table(ctx, "log", log_where(p), p)


@command("logs.search", "log lines whose message contains every term of q, newest first",
         q=P.text, **LOG_FILTERS)
def cmd_logs_search(ctx, p):
    if "q" not in p:
        raise P.BadParam("q", "required")
    try:
        plan = search.plan(ctx.conn, p["q"])
    except ValueError as exc:
        raise P.BadParam("q", str(exc).split(": ", 1)[-1]) from None
    if plan.impossible:
        return ok([], None, terms=plan.terms)
    limit = ctx.limit(p)
    if p.get("order", "desc") != "desc":
        raise P.BadParam("order", "search results are newest first")
    columns = COLUMNS["log"]
    w = log_where(p, "l.")
    if "cursor" in p:
        w.add("l.id < ?", p["cursor"][1])
    for t in plan.row_checks:
        w.add("instr(lbh_fold(l.message), ?) > 0", t)
    select = ", ".join("l." + c for c in columns)
    if plan.fts is not None:
        w.clauses.insert(0, "logs_fts MATCH ?")
        w.args.insert(0, plan.fts)
        sql = (f"SELECT {select} FROM logs_fts JOIN system_logs l ON l.id = logs_fts.rowid"
               f"{w.sql()} ORDER BY logs_fts.rowid DESC LIMIT ?")
    else:
        sql = f"SELECT {select} FROM system_logs l{w.sql()} ORDER BY l.id DESC LIMIT ?"
    rows = ctx.conn.execute(sql, w.args + [limit + 1]).fetchall()
    nxt = None
    if len(rows) > limit:
        rows.pop()
        nxt = str(rows[-1][0])
    return ok(rows, nxt, columns, terms=plan.terms)


@command("alerts", "alert history", level=P.alert_levels, category=P.text_list,
         source_component=P.text_list, open=P.boolean, **RANGE)
def cmd_alerts(ctx, p):
    w = P.Where()
    w.match(p, "level", "category", "source_component")
    if p.get("open") is True:
        w.add("resolved_at IS NULL")
    elif p.get("open") is False:
        w.add("resolved_at IS NOT NULL")
    w.time_range(p)
    return list_table(ctx, "alert", w, p)


@command("commands", "the commands this daemon answers, with their parameters")
def cmd_commands(ctx, p):
    return ok([{"command": c.name, "help": c.help, "params": sorted(c.spec)}
               for c in COMMANDS.values()])
