"""Query benchmark of linkband-history on a big database, each figure beside its raw SQL.

Run: ``.venv/bin/python bench/query.py [--quick] [--runs N] [--db-dir DIR]``. The
default run takes about 3.5 minutes on a 2-core machine the first time (about 2
building the database, cached in ``--db-dir``, default ``$TMPDIR/lbh-query-bench``)
and under a minute after; ``--quick`` (2M metric rows, 200k log lines) 40 s, then
15 s. Needs ~2 GB in ``--db-dir`` and as much in ``$TMPDIR`` (the daemon's copy).
Stdout: the table, who used the CPU during the runs (the machine is shared:
other processes busy = a disturbed run), the SQL of each figure; progress (``..``)
on stderr. Exit code 1 if any WARNING was printed (a wrong reply, a bad exit).

The database is built with APSW through ``schema.open_writer``, in 50k-row
transactions, as the writer stores rows (then ``schema.UPDATE_LATEST`` or
``schema.INDEX_LOGS`` over the id range, and ``schema.ADD_COUNT``); then the
scheduler's summarize job (``scheduler.Jobs.summarize``, writes through
``write_ops.run``) fills the summary tiers as a daemon running those days would
have. Full size: 40 metrics at 1 Hz for 3 days (10,368,000 rows, tags like
``{"host":"lab-mac-01","sensor":"eeg"}``), 1,000,000 SDK log lines
(``common.make_logs``: mixed Korean/English) over the same days, ~8 lines/s in
streaming hours, <1/s otherwise; a whole UTC day lies inside. The file is reused
while its row counts, summaries and schema version are right. Each daemon gets a
copy (it writes to it) and runs with its collector off
(``LINKBAND_HISTORY_COLLECTOR=0``): nothing is pushed during the runs.

Each figure: median and p90 of ``--runs`` (20) runs after 2 warm-ups of
``HistoryClient.query(command, **params)`` end to end. Raw, timed right after
each of ours: the very statements the command runs for those parameters
(captured, untimed, by running the command here with an APSW exec tracer) on an
APSW read-only connection, ``fetchall``: SQL only, no Python, no socket.

1. ``metrics``: 10,000 rows of one 1 Hz metric (``limit=10000``,
   ``fields=["timestamp", "value"]``: a chart series). Target < 15 ms. Also all fields.
2. ``metrics.aggregate`` of it over a day into 1-minute buckets, count/min/max/avg:
   ``tier=auto`` (the default; the minute rollups answer) and ``tier=detail`` (the
   GROUP BY over detail rows of ``run_aggregate``, also used for the part of a range
   the summarizer has not reached). Target < 25 ms. Replies are cached until the
   writer commits: run i shifts since/until by i s, so every run is computed.
3. ``logs.search``, ``limit=100``: "broadcast" (``make_logs`` has no English
   "buffer"), the Korean stem "연결", the tag "STREAM:EEG", the two-character "버퍼";
   median over all their runs. Target < 20 ms. Raw includes the vocabulary look-up
   and the count of the matches (``total``, up to 10,001); then the same queries
   with ``total=false``: the page alone.
4. ``logs.stats`` over a day (bucket auto), shifted per run as in 2. Target < 200 ms.
6. The counts of a recent window without a full index scan: log lines per logger
   (``logs.stats``) and per level (``dashboard``) over the last 10 minutes of the
   data. Ours: the statements the commands run now (a skip scan for the loggers and a
   range count per logger; the level list); raw: the plain GROUP BY they ran before,
   for which SQLite scans the whole covering index. Both are SQL on the read-only
   connection, checked equal.
5. Item 1 on a 100,000-row database (8 metrics at 1 Hz) and on the big one, each
   behind its own daemon, run by run alternated. Target: big/small <= 1.5.
7. Under load: p50/p99 of ``ping`` and of ``dashboard`` (its ``window`` moved by a
   second per call, so every reply is computed) from one client, idle and then
   while another client runs a heavy aggregate in a loop (``metrics.aggregate``
   bucket=1h, functions=avg,p95, tier=detail over the whole range: what froze every
   other client before the query workers; with the default budget of 10 s it ends in
   an ``over_budget`` reply on the full database). Target: p99 < 20 ms under load.
   ``--load-only`` runs just this item; it adds 1.5 x ``--load-seconds`` (30) to a run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import types

import apsw
from common import (
    HOSTS,
    METRICS,
    daemon_cpu,
    fill_table,
    fresh_daemon,
    load_average,
    make_logs,
    note,
    pct,
    print_machine,
    print_summary,
    print_table,
    remove_db,
    system_busy,
    warn,
)

from linkband_history import protocol
from linkband_historyd.commands import logs# the package registers every command
from linkband_historyd import config
from linkband_historyd.commands.base import COMMANDS, QueryContext
from linkband_historyd.settings import Settings
from linkband_historyd.processes.scheduler import Jobs
from linkband_historyd.query import search
from linkband_historyd.query.params import parse
from linkband_historyd.storage import schema, write_ops

# what a query worker runs with, for running a command here to capture its SQL
BENCH_SETTINGS = Settings.from_flat(
    {**config.defaults(), "query.max_limit": 100_000, "query.default_limit": 1000}, config.SECTIONS)

TX = 50_000                  # rows per build transaction
POOL = 4099                  # pre-drawn values per metric (drawing 10M values would be slow)
METRIC = "eeg_throughput"    # the metric queried and aggregated
PAGE = 10_000                # rows of the range query
WINDOW = 12_000              # its since..until in seconds: more than PAGE rows of 1 Hz data
SEARCHES = ("broadcast", "연결", "STREAM:EEG", "버퍼")
FULL = dict(names=40, seconds=3 * 86400, logs=1_000_000)
QUICK = dict(names=20, seconds=100_000, logs=200_000)
SMALL = dict(names=8, seconds=12_500, logs=0)

# 26 more metrics of the SDK's kind (values uniform in lo..hi): 40 series at 1 Hz in all
EXTRA = tuple((t, n, u, sensor, lambda r, lo=lo, hi=hi: round(r.uniform(lo, hi), 1))
              for t, n, u, sensor, lo, hi in
              [("eeg", f"eeg_ch{k}_impedance_kohm", "kOhm", "eeg", 5, 20) for k in range(1, 9)]
              + [("eeg", f"eeg_ch{k}_rms_uv", "uV", "eeg", 8, 30) for k in range(1, 9)]
              + [("network", "network_bytes_recv", "bytes", None, 0, 120000),
                 ("disk", "disk_read_bytes", "bytes", None, 0, 400000),
                 ("disk", "disk_write_bytes", "bytes", None, 0, 900000),
                 ("websocket", "websocket_clients", "clients", None, 1, 3),
                 ("websocket", "websocket_messages_sent", "messages", None, 240, 260),
                 ("buffer", "ppg_buffer_usage_percent", "%", "ppg", 5, 60),
                 ("buffer", "acc_buffer_usage_percent", "%", "acc", 5, 60),
                 ("batch", "ppg_items_processed", "items", "ppg", 24, 26),
                 ("batch", "acc_items_processed", "items", "acc", 9, 11),
                 ("cpu", "process_threads", "threads", None, 18, 24)])
ALL_METRICS = METRICS + EXTRA
assert len(ALL_METRICS) == 40


# -- the database -------------------------------------------------------------------

def metric_rows(names: int, t_start: int, seconds: int, seed: int = 5):
    """Positional rows in ``schema.INSERT['metric']`` column order: every second,
    one row of each of the first ``names`` metrics, a few ms of sampling jitter."""
    r = random.Random(seed)
    host = HOSTS[0]
    series = []
    for mtype, name, unit, sensor, gen in ALL_METRICS[:names]:
        tags = {"host": host, **({"sensor": sensor} if sensor else {})}
        series.append((mtype, name, unit, protocol.dumps_json(tags), [gen(r) for _ in range(POOL)]))
    jitter = [r.random() * 0.004 for _ in range(POOL)]
    for s in range(seconds):
        base = t_start + s
        for k, (mtype, name, unit, tags, pool) in enumerate(series):
            j = (s * 131 + k * 7919) % POOL
            yield (base + 0.0005 * k + jitter[j], mtype, name, pool[j], unit, tags)


def log_rows(n: int, t_start: int, seconds: int, seed: int = 7):
    """``n`` SDK log lines (``common.make_logs``) over the range: ~40 % of the
    hours are streaming hours (~8 lines/s), the others idle (<1 line/s)."""
    now = time.time()
    for rec in log_records(n, t_start, seconds, seed):
        yield protocol.row_from_record("log", rec, now)


def log_records(n: int, t_start: int, seconds: int, seed: int = 7):
    """The records of :func:`log_rows`, as a client sends them."""
    r = random.Random(seed)
    hours = -(-seconds // 3600)
    spans = [min(3600, seconds - h * 3600) for h in range(hours)]
    w = [(r.uniform(1.5, 2.5) if r.random() < 0.4 else r.uniform(0.05, 0.3)) * sp / 3600
         for sp in spans]
    total, acc, prev, stamps = sum(w), 0.0, 0, []
    for h, (wh, sp) in enumerate(zip(w, spans)):
        acc += wh
        upto = round(n * acc / total)
        stamps.extend(sorted(t_start + h * 3600 + r.random() * sp for _ in range(upto - prev)))
        prev = upto
    for k in range(0, n, TX):                 # a new process (pid, BLE address) every 50k lines
        ts = stamps[k:k + TX]
        for rec, t in zip(make_logs(len(ts), 100 + k // TX, ts[0]), ts):
            rec["timestamp"] = t
            yield rec


def ensure_db(db_dir: str, names: int, seconds: int, logs: int) -> dict:
    """The cached database of this size (built if missing or its counts are wrong)."""
    path = os.path.join(db_dir, f"query-{names}x{seconds}s-{logs}logs.db")
    want = {"system_metrics": names * seconds, "system_logs": logs}
    info = {"path": path, "names": names, "seconds": seconds, "logs": logs, "reused": False}
    if os.path.exists(path):
        try:
            conn = apsw.Connection(path)
            got = dict(conn.execute("SELECT name, rows FROM table_counts"))
            t_min = conn.execute("SELECT min(timestamp) FROM system_metrics").fetchall()[0][0]
            version = conn.execute("PRAGMA user_version").fetchall()[0][0]
            mark = json.loads(conn.execute("SELECT value FROM writer_state WHERE key = "
                                           "'summaries'").fetchall()[0][0])   # the summarizer's
            conn.close()
            if all(got.get(t, 0) == n == mark.get(t, 0) for t, n in want.items()) \
                    and version == schema.SCHEMA_VERSION:
                with open(path + ".json") as f:
                    meta = json.load(f)
                return {**info, "reused": True, "t_start": int(t_min),
                        "build_seconds": meta["build_seconds"]}
        except (apsw.Error, OSError, ValueError, KeyError, IndexError):
            pass
        note(f"{path}: not the wanted row counts {want}, summaries or schema "
             f"version {schema.SCHEMA_VERSION}: rebuilding")
    # one whole UTC day inside, 600 s after the start; the data ends before now
    t_start = (int(time.time()) - seconds + 600) // 86400 * 86400 - 600
    tmp = path + ".part"
    remove_db(tmp)
    started = time.monotonic()
    conn = schema.open_writer(tmp, synchronous="OFF")
    try:
        conn.execute("PRAGMA cache_size = -262144")
        conn.execute("PRAGMA wal_autocheckpoint = 20000")
        fill_table(conn, "metric", metric_rows(names, t_start, seconds), want["system_metrics"], TX)
        if logs:
            fill_table(conn, "log", log_rows(logs, t_start, seconds), logs, TX)
        t = time.monotonic()
        w = types.SimpleNamespace(conn=conn)           # the scheduler's WriterClient, here
        w.call = lambda op, timeout=None, **params: write_ops.run(w, op, params)
        w.bulk = w.call                                # no ingestion to make room for
        Jobs({}).summarize(conn, w, time.time())
        note(f"build: summaries (the scheduler's summarize job) in {time.monotonic() - t:.0f} s")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    os.replace(tmp, path)
    remove_db(tmp)
    build = time.monotonic() - started
    with open(path + ".json", "w") as f:
        json.dump({"build_seconds": build, "t_start": t_start, **want}, f)
    return {**info, "t_start": t_start, "build_seconds": build}


def describe(db: dict) -> str:
    how = (f"reused from {db['path']} (its build took {db['build_seconds']:.0f} s)" if db["reused"]
           else f"built in {db['build_seconds']:.0f} s at {db['path']}")
    logs = f", {db['logs']:,} log lines over the same range" if db["logs"] else ""
    return (f"{db['names'] * db['seconds']:,} metric rows ({db['names']} metrics at 1 Hz over "
            f"{db['seconds'] / 3600:.1f} h){logs}; {os.path.getsize(db['path']) / 1e9:.2f} GB, {how}")


# -- measuring ------------------------------------------------------------------------

def traced(conn, command: str, params: dict) -> list:
    """(sql, bindings) of every statement the daemon's ``command`` runs for ``params``:
    the command is run here, on ``conn``, with an APSW exec tracer."""
    seen = []

    def tracer(cursor, sql, bindings):
        seen.append((sql, bindings))
        return True
    cmd = COMMANDS[command]
    ctx = QueryContext(conn, BENCH_SETTINGS, time.time())
    conn.exec_trace = tracer
    try:
        cmd.run(ctx, parse(cmd.spec, params))
    finally:
        conn.exec_trace = None
    return seen


def measure(c, conn, command: str, params_of, runs: int, check=None) -> dict:
    return measure_sides([(c, conn, params_of)], command, runs, check)[0]


def measure_sides(sides, command: str, runs: int, check=None, warm: int = 2) -> list[dict]:
    """On each side ``(client, raw_conn, params_of)``: ours (``client.query``) and raw (the
    traced statements, fetchall), run i of every side and of ours and raw one after another."""
    out = [{"ours": [], "raw": [], "bad": 0} for _ in sides]
    pc = time.perf_counter
    for i in range(warm + runs):
        for (c, conn, params_of), r in zip(sides, out):
            p = params_of(i)
            stmts = traced(conn, command, p)
            t = pc()
            reply = c.query(command, **p)
            a = pc() - t
            t = pc()
            results = [conn.execute(sql, args).fetchall() for sql, args in stmts]
            b = pc() - t
            msg = reply.get("error") if not reply.get("ok") else check and check(reply, results)
            if msg:
                r["bad"] += 1
                if r["bad"] == 1:
                    warn(f"{command} {p}: {msg}")
            if i >= warm:
                r["ours"].append(a)
                r["raw"].append(b)
            r["stmts"], r["params"] = stmts, p
    for r in out:
        if r["bad"] > 1:
            warn(f"{command}: {r['bad']} of {warm + runs} replies were wrong like the one above")
    return out


def window_counts(conn, since: float, runs: int, by: str, warm: int = 2) -> dict:
    """Item 6: ours and the former GROUP BY, alternated, on the read-only connection."""
    if by == "logger":
        ours = lambda: sorted(logs._logger_counts_by_index(conn, since, None))  # noqa: E731
        before = ("SELECT logger_name, count(*) FROM system_logs WHERE timestamp >= ? "
                  "GROUP BY logger_name", (since,))
    else:
        levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        ours = lambda: conn.execute(  # noqa: E731
            "SELECT level, count(*) FROM system_logs WHERE level IN (?, ?, ?, ?, ?) AND "
            "timestamp >= ? GROUP BY level", levels + (since,)).fetchall()
        before = ("SELECT level, count(*) FROM system_logs WHERE timestamp >= ? GROUP BY level",
                  (since,))
    r = {"ours": [], "raw": []}
    pc = time.perf_counter
    for i in range(warm + runs):
        t = pc()
        a = ours()
        x = pc() - t
        t = pc()
        b = conn.execute(*before).fetchall()
        y = pc() - t
        if sorted(a) != sorted(b) or not a:
            warn(f"item 6 ({by}): {a} != {b}")
        if i >= warm:
            r["ours"].append(x)
            r["raw"].append(y)
    r["stmts"], r["params"] = [before], {"since": since}
    return r


def ms(x: float) -> str:
    return f"{x * 1e3:.2f} ms" if x < 0.01 else f"{x * 1e3:.1f} ms"


def line(label: str, r: dict, target_ms: float | None = None) -> tuple:
    o50, r50 = statistics.median(r["ours"]), statistics.median(r["raw"])
    goal = verdict = ""
    if target_ms is not None:
        goal, verdict = f"< {target_ms:g} ms", ("PASS" if o50 * 1e3 < target_ms else "MISS")
    return (label, ms(o50), ms(pct(r["ours"], 0.9)), ms(r50), ms(pct(r["raw"], 0.9)),
            f"{o50 / r50:.1f}" if o50 >= 0.1 * r50 else f"{o50 / r50:.3f}", goal or "-", verdict)


def check_page(reply, results):
    rows, raw = reply["rows"], results[-1]
    if len(rows) != PAGE or len(raw) != PAGE + 1 or rows[-1]["id"] != raw[PAGE - 1][0]:
        return f"{len(rows)} rows (raw {len(raw)}), wanted a full page of {PAGE}"


def check_aggregate(source: str):
    def check(reply, results):
        raw, same = results[-1], True
        if len(raw) == 1 and isinstance(raw[0][0], str):      # one seek per bucket: a JSON array
            raw = json.loads(raw[0][0])
            same = [list(r.values()) for r in reply["rows"]] == raw   # rows arrive as dicts
        if reply.get("tier") != source or len(reply["rows"]) != len(raw) or not same \
                or not 1440 <= len(reply["rows"]) <= 1441:
            return (f"{len(reply['rows'])} buckets from {reply.get('tier')}, raw "
                    f"{len(raw)}; wanted 1440..1441 from {source}, equal to raw")
    return check


def check_search(reply, results):
    count, page = results[-2][0][0], results[-1]     # the last count the command ran
    cut = not reply.get("total_exact") and reply.get("total") == logs.TOTAL_SURE
    if (reply.get("total") != min(count, logs.TOTAL_CAP) and not cut) or \
            len(reply["rows"]) != min(len(page), 100) or not page:
        return f"total {reply.get('total')} rows {len(reply['rows'])}; raw {count}, {len(page)}"


def check_stats(reply, results):
    if results[0] and len(results[0][0]) == 2 and isinstance(results[0][0][1], int):
        total = sum(n for _, n in results[0])           # the GROUP BY logger_name
    else:                                               # the loggers, then a count per logger
        total = sum(r[0][0] for r in results[1:1 + len(results[0])])
    if reply["rows"][0]["total"] != total or not total:
        return f"total {reply['rows'][0]['total']}, raw {total}"


def listing(db: dict, fields: bool):
    since = db["t_start"] + min(600 + 3600, db["seconds"] - WINDOW - 100)   # inside the data
    p = dict(metric_name=METRIC, since=since, until=since + WINDOW, limit=PAGE)
    return (lambda i: {**p, "fields": ["timestamp", "value"]}) if fields else (lambda i: p)


@contextlib.contextmanager
def serving(db: dict, name: str):
    """``(daemon, client, raw_conn)``: a daemon on a copy of the cached database."""
    def prepare(path):
        t = time.monotonic()
        shutil.copyfile(db["path"], path)
        note(f"copied {db['path']} for the daemon in {time.monotonic() - t:.1f} s")
    os.environ["LINKBAND_HISTORY_COLLECTOR"] = "0"       # nothing is pushed during the runs
    with fresh_daemon(name, prepare=prepare) as d:
        time.sleep(3.0)           # the scheduler's first summarize run (2 s after start) is done
        c = d.client(query_timeout=60.0)
        conn = schema.open_reader(str(d.db_path))           # as the query process opens it
        conn.createscalarfunction("lbh_fold", search.fold, 1, deterministic=True)
        try:
            yield d, c, conn
        finally:
            conn.close()
            c.close()


def cpu_use(daemons, body):
    """``body()``, and who used the CPU meanwhile: a line of text."""
    d0, sys0, me0, wall0 = (sum(sum(daemon_cpu(d).values()) for d in daemons), system_busy(),
                            time.process_time(), time.monotonic())
    out = body()
    wall = time.monotonic() - wall0
    daemon = sum(sum(daemon_cpu(d).values()) for d in daemons) - d0
    me = time.process_time() - me0
    others = max(0.0, system_busy() - sys0 - daemon - me)
    return out, (f"CPU s over {wall:.1f} s wall x {os.cpu_count()} cores: daemons {daemon:.1f}, "
                 f"this script {me:.1f}, other processes {others:.1f} "
                 f"({others / (wall * os.cpu_count()):.0%} of the machine)")


# -- 7: under load ------------------------------------------------------------------

def cheap_latencies(c, seconds: float) -> dict:
    """ping and dashboard, one after the other with a 10 ms pause, for ``seconds``."""
    out = {"ping": [], "dashboard": []}
    bad = 0
    pc = time.perf_counter
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        for name, params in (("ping", {}), ("dashboard", {"window": 3600 + i})):
            t = pc()
            reply = c.query(name, **params)
            out[name].append(pc() - t)
            bad += not reply.get("ok")
            if not reply.get("ok") and bad == 1:
                warn(f"item 7: {name}: {reply.get('error')}")
        time.sleep(0.01)
    return out


def under_load(d, db: dict, seconds: float) -> list:
    """Item 7: rows (label, p50, p99, n, target, verdict), and what the heavy loop did."""
    heavy = {"ok": 0, "over_budget": 0, "other": 0, "took": []}
    stop = threading.Event()

    def loop():
        with d.client(query_timeout=120) as c:
            i = 0
            while not stop.is_set():
                i += 1
                t = time.monotonic()
                reply = c.query("metrics.aggregate", bucket="1h", functions=["avg", "p95"],
                                tier="detail", since=db["t_start"] - i,
                                until=db["t_start"] + db["seconds"] + i)
                heavy["took"].append(time.monotonic() - t)
                code = "ok" if reply.get("ok") else reply["error"]["code"]
                heavy[code if code in heavy else "other"] += 1

    rows = []
    with d.client(query_timeout=10) as c:
        idle = cheap_latencies(c, seconds / 2)
        t = threading.Thread(target=loop)
        t.start()
        time.sleep(0.5)
        try:
            loaded = cheap_latencies(c, seconds)
        finally:
            stop.set()
            t.join(180)
    for name in ("ping", "dashboard"):
        for label, r, target in (("idle", idle[name], None), ("under load", loaded[name], 20)):
            p99 = pct(r, 0.99) * 1e3
            rows.append((f"7. {name}, {label}", ms(statistics.median(r)), ms(pct(r, 0.99)),
                         f"{len(r)}", f"p99 < {target} ms" if target else "-",
                         ("PASS" if p99 < target else "MISS") if target else ""))
    took = heavy["took"]
    note_text = (f"heavy aggregate loop: {len(took)} runs ({heavy['ok']} answered, "
                 f"{heavy['over_budget']} over_budget, {heavy['other']} other errors), "
                 f"median {statistics.median(took):.1f} s each" if took else "no heavy run ended")
    return rows, note_text


# -- main ---------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true",
                    help="2M metric rows and 200k log lines instead of 10.4M and 1M")
    ap.add_argument("--db-dir", default=os.path.join(tempfile.gettempdir(), "lbh-query-bench"),
                    help="where the databases are cached (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per figure (after 2 warm-ups)")
    ap.add_argument("--load-seconds", type=float, default=30.0,
                    help="item 7: seconds of cheap questions under load (half that idle)")
    ap.add_argument("--load-only", action="store_true", help="run item 7 only")
    a = ap.parse_args()
    size = QUICK if a.quick else FULL
    started = time.monotonic()
    print("linkband-history query benchmark" + (" (--quick: smaller database; the targets are "
                                                "for the full sizes)" if a.quick else ""))
    print_machine()
    print(f"load average at start: {load_average()}", flush=True)
    os.makedirs(a.db_dir, exist_ok=True)
    big = ensure_db(a.db_dir, **size)
    if a.load_only:
        print(f"database: {describe(big)}")
        with serving(big, "query") as (d, c, conn):
            load_rows, heavy_text = under_load(d, big, a.load_seconds)
        print_load(load_rows, heavy_text, a.load_seconds)
        return print_summary(started)
    small = ensure_db(a.db_dir, **SMALL)
    day = big["t_start"] + 600
    print(f"database: {describe(big)}")
    print(f"small database: {describe(small)}")
    print(f"runs: median and p90 of {a.runs} after 2 warm-ups; ours = HistoryClient.query end to "
          "end; raw = the statements the command runs, on an APSW read-only connection, "
          "fetchall, timed right after each of ours")
    print("metrics.aggregate and logs.stats replies are cached by the daemon until the writer "
          "commits; nothing is pushed (the daemon's system collector is off), so run i shifts "
          "since/until by i s: every run is computed", flush=True)
    mrows = big["names"] * big["seconds"]
    big_label = f"{mrows / 1e6:.1f}M" if mrows >= 1e6 else f"{mrows / 1e3:.0f}k"
    lines, sql = [], {}

    def add(label, r, target=None, key=None):
        lines.append(line(label, r, target))
        sql[key or label] = r

    def figures(c, conn, c2, conn2):
        n_day = conn.execute("SELECT count(*) FROM system_logs WHERE timestamp >= ? AND "
                             "timestamp < ?", (day, day + 86400)).fetchall()[0][0]
        note(f"the day {time.strftime('%Y-%m-%d', time.gmtime(day))} UTC holds {n_day:,} log lines")
        add(f"1. metrics {PAGE:,} rows, fields timestamp,value",
            measure(c, conn, "metrics", listing(big, True), a.runs, check_page), 15)
        add(f"1. metrics {PAGE:,} rows, all fields",
            measure(c, conn, "metrics", listing(big, False), a.runs, check_page))
        for tier, source in (("auto", "minute"), ("detail", "detail")):
            r = measure(c, conn, "metrics.aggregate",
                        lambda i, tier=tier: dict(metric_name=METRIC, since=day + i,
                                                  until=day + 86400 + i, bucket="1m", tier=tier,
                                                  functions=["count", "min", "max", "avg"]),
                        a.runs, check_aggregate(source))
            add(f"2. metrics.aggregate 1 day, 1m buckets, tier={tier} (from {source})", r, 25)
        pooled = {"ours": [], "raw": []}
        for q in SEARCHES:
            r = measure(c, conn, "logs.search", lambda i, q=q: dict(q=q, limit=100), a.runs,
                        check_search)
            total = conn.execute(r["stmts"][-2][0], r["stmts"][-2][1]).fetchall()[0][0]
            add(f"   logs.search {q!r} (total {min(total, 10000):,}{'+' * (total > 10000)})", r,
                key=f"3. logs.search {q!r}")
            pooled["ours"] += r["ours"]
            pooled["raw"] += r["raw"]
        lines.append(line(f"3. logs.search limit=100, over the {len(SEARCHES)} queries", pooled, 20))
        page = {"ours": [], "raw": []}             # the same without counting the matches
        for q in SEARCHES:
            r = measure(c, conn, "logs.search", lambda i, q=q: dict(q=q, limit=100, total=False),
                        a.runs)
            page["ours"] += r["ours"]
            page["raw"] += r["raw"]
        sql["3. logs.search total=false"] = r
        lines.append(line(f"3. the same with total=false (the page alone), {len(SEARCHES)} queries",
                          page))
        add(f"4. logs.stats over 1 day ({n_day:,} lines)", measure(
            c, conn, "logs.stats", lambda i: dict(since=day + i, until=day + 86400 + i), a.runs,
            check_stats), 200)
        since = big["t_start"] + big["seconds"] - 600
        add("6. log lines per logger, last 10 min (ours: skip scan; raw: GROUP BY)",
            window_counts(conn, since, a.runs, "logger"))
        add("6. log lines per level, last 10 min (ours: level list; raw: GROUP BY)",
            window_counts(conn, since, a.runs, "level"))
        # 5: the two databases, each behind its own daemon, run i of one right after the other's
        small_r, big_r = measure_sides([(c2, conn2, listing(small, True)),
                                        (c, conn, listing(big, True))], "metrics", a.runs, check_page)
        lines.append(line(f"5. item 1 on {SMALL['names'] * SMALL['seconds'] / 1e3:.0f}k-row db", small_r))
        lines.append(line(f"5. item 1 on {big_label}-row db (again, alternated)", big_r))
        return small_r, big_r

    with serving(big, "query") as (d, c, conn), serving(small, "qsmall") as (d2, c2, conn2):
        (small_r, big_r), cpu_text = cpu_use([d, d2], lambda: figures(c, conn, c2, conn2))
        load_rows, heavy_text = under_load(d, big, a.load_seconds)
    o = statistics.median(big_r["ours"]) / statistics.median(small_r["ours"])
    rr = statistics.median(big_r["raw"]) / statistics.median(small_r["raw"])
    lines.append((f"5. ratio {big_label}-row db / 100k-row db (medians)", f"{o:.2f}x", "",
                  f"{rr:.2f}x", "", "", "<= 1.5x", "PASS" if o <= 1.5 else "MISS"))

    print()
    print_table(("figure", "ours p50", "ours p90", "raw p50", "raw p90", "ours/raw", "target", ""),
                lines)
    print_load(load_rows, heavy_text, a.load_seconds)
    print(f"\nmachine use during the runs (other processes > 0: a disturbed run): {cpu_text}")
    print(f"load average at the end: {load_average()}")
    print("\nstatements run by each command (the raw column), with the parameters of the last run:")
    for label, r in sql.items():
        print(f"  {label}: {r['params']}")
        for s, args in r["stmts"]:
            args = list(args or ())
            shown = [x if len(repr(x)) < 60 else repr(x)[:57] + "..." for x in args]
            print(f"    {' '.join(s.split())}  -- {shown}")
    return print_summary(started)


def print_load(rows, heavy_text: str, seconds: float) -> None:
    print(f"\n7. cheap questions from one client, {seconds / 2:g} s idle, then {seconds:g} s while "
          "another client runs a heavy aggregate in a loop:")
    print_table(("figure", "p50", "p99", "n", "target", ""), rows)
    print(heavy_text)


if __name__ == "__main__":
    sys.exit(main())
