"""Ingest and query benchmark of linkband-history, each figure beside its raw limit.

Run it with ``make bench`` (which runs ``.venv/bin/python bench/ingest.py``),
or directly: ``.venv/bin/python bench/ingest.py [--quick] [--records N]
[--log-records N] [--clients K] [--repeat R] [--latency-seconds S]
[--query-rows N] [--query-runs N] [--only metrics|logs|latency|query]``. The default run takes
about 2.5 minutes on a 2-core machine; ``--quick`` (one repeat, smaller sizes)
about 25 s. The figures table goes to stdout; progress lines (``..``, with
the CPU seconds used by the clients, the writer and *other* processes of the
machine during each run, so a disturbed run can be recognised) to stderr.

The machine is shared, so each ingest scenario and its raw limit run
``--repeat`` times (default 5, each on a fresh daemon and database); the
table shows the medians, the range of the end-to-end runs and the ratio of
the medians. The exit code is 1 if any WARNING was printed (rows missing,
``flush()`` not confirmed, daemon exit code not 0). Every scenario starts its
own daemon (``python -m linkband_historyd --log-level WARNING``, run by
``linkband_historyd.harness.DaemonProcess``) on a fresh data and runtime
directory (a ``tempfile.mkdtemp()``, removed afterwards), so figures never
mix; the daemon is stopped with SIGTERM and must exit with code 0 (its log,
if not empty, is shown as a progress line).

The record generators, the daemon wrapper (``fresh_daemon``), the CPU
accounting, percentiles and the table printer are in ``bench/common.py``,
shared with the other benchmarks; this file holds the scenarios and main().

What is measured ("ours"), and the raw limit measured in the same run:

1. Metrics end to end, from 1 and from K (default 4) client processes
   (multiprocessing, spawn). Each process builds its records (realistic SDK
   metrics: cpu_percent, memory_percent, eeg_throughput, buffer usage ... with
   tags such as {"host": ..., "sensor": "eeg"}), waits at a barrier, pushes
   its share of the N records with ``HistoryClient.store_metrics`` in chunks
   of 500, and calls ``flush(timeout=120)``. Rate = N / (first push start ..
   last ``flush()`` returned True). The N records are split evenly between
   the processes. Clients use ``max_queue = max(100000, share)`` so that a
   burst faster than the daemon is queued, not dropped. Afterwards the
   ``stats`` command must show ``system_metrics`` == N (else a WARNING line).
   Raw: the writer's own insert (``row_store.RowStore.add``: names to ids, one
   ``executemany``) of the same rows (``protocol.row_from_record``) in 1000-row
   transactions into a fresh ``schema.open_writer`` database.
2. The same for logs (``store_logs``; bracket-tagged mixed Korean/English
   SDK log lines, logger names like ``STREAM.eeg``, extra_data dicts). Raw:
   ``RowStore.add`` of the same rows (their FTS rows over the new id range
   included) in each 1000-row transaction, exactly as ``writer.py`` does.
   Target (issue): >= 30,000 records/s end to end.
3. Send->commit latency at a fixed 5,000 metric records/s: one client process
   (``HistoryClient(batch_interval=0.001)``) sends 5 records every 1 ms with
   a sleep-until-next-tick loop for S seconds (default 10), flushes, and after
   1.5 s the writer's own histogram is read from ``stats``
   (``ingest_latency_ms``: client ``sent_at`` in the message header -> end of
   COMMIT; p50/p99). Raw: the time of a 5-row executemany transaction on a
   ``schema.open_writer`` database (WAL, synchronous=NORMAL), as many
   transactions as the daemon committed, run back to back; a PASSIVE WAL
   checkpoint runs on a second connection, untimed, every 1000
   transactions (the daemon runs them off its commit path too).
   Target: p99 < 2 ms.
4. A 10,000-row ``metrics`` query (``HistoryClient.query("metrics",
   metric_name=X, limit=10000)``) through the REQ/REP socket on a database
   of 200,000 metric rows of 14 names (X has > 10,000), median and p90 of 20
   runs after 2 warm-up runs; beside it the same SELECT (the shape of
   ``commands.list_table``, LIMIT 10001 like the daemon) with ``fetchall`` on
   an APSW read-only connection. The database is filled directly with APSW
   before that daemon starts. Target: median < 25 ms end to end.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

from common import (
    HOSTS,
    MAKERS,
    METRICS,
    STORE,
    TABLE,
    CpuMeter,
    fresh_daemon,
    load_average,
    make_metrics,
    metric_record,
    note,
    pct,
    print_machine,
    print_summary,
    print_table,
    remove_db,
    wait_tick,
    warn,
)

from linkband_history import HistoryClient, protocol
from linkband_historyd.storage import schema
from linkband_historyd.storage.row_store import RowStore

CHUNK = 500
QUERY_METRIC = "cpu_percent"


# -- client processes (spawned) ---------------------------------------------------

def push_worker(kind, ingest, query, n, seed, t0, barrier, results):
    records = MAKERS[kind](n, seed, t0)
    c = HistoryClient(ingest=ingest, query=query, max_queue=max(100_000, n), query_timeout=10.0)
    store = getattr(c, STORE[kind])
    try:
        barrier.wait(120)
        cpu0 = time.process_time()
        start = time.monotonic()
        for i in range(0, n, CHUNK):
            store(records[i:i + CHUNK])
        pushed = time.monotonic()
        ok = c.flush(timeout=120)
        end = time.monotonic()
        results.put({"seed": seed, "n": n, "start": start, "pushed": pushed, "end": end,
                     "ok": ok, "cpu": time.process_time() - cpu0, **c.stats()})
    finally:
        c.close()


def paced_worker(ingest, query, seconds, per_tick, tick, results):
    cpu0 = time.process_time()
    c = HistoryClient(ingest=ingest, query=query, batch_interval=0.001, query_timeout=10.0)
    ticks = int(round(seconds / tick))
    r = random.Random(7)
    names = METRICS[:per_tick] if per_tick <= len(METRICS) else METRICS
    now0 = time.time()
    # build every record up front so the loop only paces and stores
    batches = []
    for k in range(ticks):
        ts = now0 + k * tick
        batches.append([metric_record(names[j % len(names)], r, ts, HOSTS[0])
                        for j in range(per_tick)])
    late = []
    try:
        start = time.monotonic()
        for k in range(ticks):
            late.append(wait_tick(start, k, tick))
            c.store_metrics(batches[k])
        elapsed = time.monotonic() - start
        ok = c.flush(timeout=60)
        results.put({"ok": ok, "records": ticks * per_tick, "elapsed": elapsed,
                     "cpu": time.process_time() - cpu0,
                     "late_p50_ms": pct(late, 0.5) * 1e3, "late_p99_ms": pct(late, 0.99) * 1e3,
                     **c.stats()})
    finally:
        c.close()


# -- raw limits -----------------------------------------------------------------

def raw_insert_rate(kind: str, rows: list, base: str, per_tx: int = 1000) -> float:
    path = os.path.join(base, f"raw-{kind}.db")
    conn = schema.open_writer(path)
    store = RowStore(conn)
    try:
        start = time.perf_counter()
        for i in range(0, len(rows), per_tx):
            with conn:                   # as writer._insert: the rows, then their FTS rows
                store.add(kind, rows[i:i + per_tx])   # (logs) or latest values (metrics)
        elapsed = time.perf_counter() - start
        got = conn.execute(f"SELECT count(*) FROM {TABLE[kind]}").fetchall()[0][0]
        if got != len(rows):
            warn(f"raw {kind}: {got} rows stored of {len(rows)}")
    finally:
        conn.close()
        remove_db(path)
    return len(rows) / elapsed


def rows_of(kind: str, n: int, processes: int, t0: float) -> list:
    """The rows the client processes will send (same seeds, same shares)."""
    now = time.time()
    rows = []
    for seed, share in enumerate(shares(n, processes)):
        rows.extend(protocol.row_from_record(kind, rec, now)
                    for rec in MAKERS[kind](share, seed, t0 + seed * 1e-4))
    return rows


def shares(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


# -- scenarios --------------------------------------------------------------------

def scenario_ingest(kind: str, n: int, processes: int, mp) -> dict:
    t0 = time.time() - 3600
    with fresh_daemon(f"{kind}{processes}") as d:
        barrier = mp.Barrier(processes + 1)
        results = mp.Queue()
        procs = [mp.Process(target=push_worker,
                            args=(kind, d.ingest, d.query, share, seed, t0 + seed * 1e-4,
                                  barrier, results))
                 for seed, share in enumerate(shares(n, processes))]
        for p in procs:
            p.start()
        barrier.wait(300)                   # every process has built its records
        meter = CpuMeter(d)
        got = [results.get(timeout=600) for _ in procs]
        cpu = meter.report(sum(r["cpu"] for r in got))
        for p in procs:
            p.join(60)
            if p.exitcode != 0:
                warn(f"{kind} client process exited with {p.exitcode}")
        start = min(r["start"] for r in got)
        end = max(r["end"] for r in got)
        pushed = max(r["pushed"] for r in got)
        rate = n / (end - start)
        if not all(r["ok"] for r in got):
            warn(f"{kind} x{processes}: flush() returned False in "
                 f"{sum(not r['ok'] for r in got)} client(s)")
        time.sleep(1.2)                     # let the writer publish its latency histogram
        st = d.stats()
        stored = st["tables"].get(TABLE[kind])
        if stored != n:
            warn(f"{kind} x{processes}: stats shows {stored} rows in {TABLE[kind]}, sent {n} "
                 f"(client dropped {st['client_dropped_total']}, lost {st['lost_records_total']}, "
                 f"rejected {st['rejected_records_total']})")
        note(f"{kind} x{processes}: {n} records in {end - start:.2f} s = {rate:,.0f}/s "
             f"(push done after {pushed - start:.2f} s), stored {stored}, "
             f"writer send->commit p50 {st['ingest_latency_ms'].get('p50', float('nan')):.1f} ms "
             f"p99 {st['ingest_latency_ms'].get('p99', float('nan')):.1f} ms "
             f"over {st['ingest_latency_ms'].get('commits')} commits; {cpu}")
        return {"rate": rate, "stored": stored, "seconds": end - start}


def scenario_latency(seconds: float, mp, per_tick: int = 5, tick: float = 0.001) -> dict:
    with fresh_daemon("lat") as d:
        results = mp.Queue()
        p = mp.Process(target=paced_worker, args=(d.ingest, d.query, seconds, per_tick, tick, results))
        p.start()
        meter = CpuMeter(d)
        r = results.get(timeout=seconds + 300)
        cpu = meter.report(r["cpu"])
        p.join(60)
        if not r["ok"]:
            warn("latency: flush() returned False")
        time.sleep(1.5)                    # the writer publishes its histogram when idle 1 s
        st = d.stats()
        lat = st["ingest_latency_ms"]
        stored = st["tables"]["system_metrics"]
        if stored != r["records"]:
            warn(f"latency: stats shows {stored} metric rows, sent {r['records']}")
        note(f"latency: sent {r['records']} records in {r['elapsed']:.2f} s "
             f"= {r['records'] / r['elapsed']:.0f}/s in {r['messages']} messages; pacing lateness "
             f"p50 {r['late_p50_ms']:.3f} ms p99 {r['late_p99_ms']:.3f} ms; writer: "
             f"{lat.get('count')} messages in {lat.get('commits')} commits, "
             f"p90 {lat.get('p90', float('nan')):.3f} ms max {lat.get('max', float('nan')):.2f} ms; "
             f"{cpu} (client CPU includes building its records)")
        return {"p50": lat["p50"], "p99": lat["p99"], "commits": lat.get("commits") or lat["count"],
                "rate": r["records"] / r["elapsed"]}


def raw_latency(transactions: int, base: str, per_tx: int = 5) -> dict:
    path = os.path.join(base, "raw-latency.db")
    conn = schema.open_writer(path)
    ckpt = schema.open_checkpointer(path)
    store = RowStore(conn)
    now = time.time()
    recs = make_metrics(transactions * per_tx, 3, now)
    rows = [protocol.row_from_record("metric", rec, now) for rec in recs]
    times = []
    try:
        pc = time.perf_counter
        for k in range(transactions):
            chunk = rows[k * per_tx:(k + 1) * per_tx]
            t = pc()
            with conn:
                store.insert("metric", chunk)
            times.append(pc() - t)
            if k % 1000 == 999:
                ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        ckpt.close()
        conn.close()
        remove_db(path)
    return {"p50": pct(times, 0.5) * 1e3, "p99": pct(times, 0.99) * 1e3}


def fill_query_db(path: str, rows: int, limit: int) -> None:
    conn = schema.open_writer(path)
    now = time.time()
    t0 = now - 86400
    # X must have more than `limit` rows: use fewer metric names on a small database
    names = max(1, min(len(METRICS), int(rows // (limit * 1.05))))
    recs = make_metrics(rows, 11, t0, step=86400 / rows, names=names)
    data = [protocol.row_from_record("metric", rec, now) for rec in recs]
    store = RowStore(conn)
    for i in range(0, len(data), 10_000):
        with conn:
            store.add("metric", data[i:i + 10_000])
    with conn:
        conn.execute(schema.ADD_COUNT, ("system_metrics", rows))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.close()


def scenario_query(rows: int, runs: int, limit: int = 10_000) -> dict:
    with fresh_daemon("query", prepare=lambda p: fill_query_db(p, rows, limit)) as d:
        c = d.client(query_timeout=30.0)
        try:
            for _ in range(2):
                reply = c.query("metrics", metric_name=QUERY_METRIC, limit=limit)
            if not reply.get("ok") or len(reply["rows"]) != limit:
                warn(f"query returned {len(reply.get('rows') or [])} rows, wanted {limit}: "
                     f"{reply.get('error')}")
            ours = []
            for _ in range(runs):
                t = time.perf_counter()
                reply = c.query("metrics", metric_name=QUERY_METRIC, limit=limit)
                ours.append(time.perf_counter() - t)
        finally:
            c.close()
        conn = schema.open_reader(str(d.db_path))
        try:
            sql = ("SELECT id, timestamp, metric_type, metric_name, value, unit, tags "
                   "FROM system_metrics WHERE metric_name = ? "
                   "ORDER BY timestamp ASC, id ASC LIMIT ?")
            have = conn.execute("SELECT count(*) FROM system_metrics WHERE metric_name = ?",
                                (QUERY_METRIC,)).fetchall()[0][0]
            for _ in range(2):
                conn.execute(sql, (QUERY_METRIC, limit + 1)).fetchall()
            raw = []
            for _ in range(runs):
                t = time.perf_counter()
                conn.execute(sql, (QUERY_METRIC, limit + 1)).fetchall()
                raw.append(time.perf_counter() - t)
        finally:
            conn.close()
        note(f"query: {rows} metric rows, {have} of them {QUERY_METRIC}; "
             f"ours min {min(ours) * 1e3:.1f} max {max(ours) * 1e3:.1f} ms, "
             f"raw min {min(raw) * 1e3:.2f} max {max(raw) * 1e3:.2f} ms")
        return {"p50": statistics.median(ours) * 1e3, "p90": pct(ours, 0.9) * 1e3,
                "raw_p50": statistics.median(raw) * 1e3, "raw_p90": pct(raw, 0.9) * 1e3}


# -- main -------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--records", type=int, default=300_000, help="metric records per ingest run")
    ap.add_argument("--log-records", type=int, default=150_000, help="log records per ingest run")
    ap.add_argument("--clients", type=int, default=4, help="client processes of the multi-client runs")
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--query-rows", type=int, default=200_000)
    ap.add_argument("--query-runs", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5,
                    help="runs of each ingest scenario and its raw limit (median reported); "
                         "the machine is shared, single runs vary")
    ap.add_argument("--quick", action="store_true",
                    help="short run: 60k metrics, 30k logs, 3 s of latency, 100k query rows")
    ap.add_argument("--only", choices=("metrics", "logs", "latency", "query"), action="append",
                    help="run only these parts (repeatable)")
    a = ap.parse_args()
    if a.quick:
        a.records = min(a.records, 60_000)
        a.log_records = min(a.log_records, 30_000)
        a.latency_seconds = min(a.latency_seconds, 3.0)
        a.query_rows = min(a.query_rows, 100_000)
        a.query_runs = min(a.query_runs, 10)
        a.repeat = 1
    parts = set(a.only or ("metrics", "logs", "latency", "query"))
    mp = multiprocessing.get_context("spawn")

    print("linkband-history ingest benchmark")
    print_machine()
    print(f"sizes: metrics {a.records}, logs {a.log_records}, clients 1 and {a.clients}, "
          f"latency {a.latency_seconds:g} s at 5000/s, query db {a.query_rows} rows, "
          f"{a.query_runs} query runs, ingest runs repeated {a.repeat}x (median)", flush=True)
    print(f"load average at start: {load_average()}", flush=True)
    started = time.monotonic()
    lines = []   # (figure, ours, raw, ratio, target, verdict)
    base = tempfile.mkdtemp(prefix="lbh-raw-")

    def rate_line(label, runs, raws, target=None, ratio_target=None):
        ours, raw = statistics.median(runs), statistics.median(raws)
        if target:
            verdict, goal = ("PASS" if ours >= target else "MISS"), f">= {target:,}/s"
        elif ratio_target:
            verdict = "PASS" if ours / raw >= ratio_target else "MISS"
            goal = f">= {ratio_target:.2f} of raw"
        else:
            verdict, goal = "", "-"
        if len(runs) > 1:
            label += f" [runs {min(runs) / 1e3:,.0f}k..{max(runs) / 1e3:,.0f}k]"
        lines.append((label, f"{ours:,.0f}/s", f"{raw:,.0f}/s", f"{ours / raw:.2f}", goal, verdict))

    try:
        for kind, n, part, target in (("metric", a.records, "metrics", None),
                                      ("log", a.log_records, "logs", 30_000)):
            if part not in parts:
                continue
            rows = rows_of(kind, n, 1, time.time() - 3600)
            raws, runs = [], {1: [], a.clients: []}
            for rep in range(a.repeat):
                raws.append(raw_insert_rate(kind, rows, base))
                note(f"raw {kind} insert of {n} rows (run {rep + 1}): {raws[-1]:,.0f} rows/s")
                for k in runs:
                    runs[k].append(scenario_ingest(kind, n, k, mp)["rate"])
            del rows
            for k, rates in runs.items():
                rate_line(f"{part} end-to-end, {k} client{'s' if k > 1 else ''}", rates, raws,
                          target, 0.5 if kind == "metric" else None)
        if "latency" in parts:
            r = scenario_latency(a.latency_seconds, mp)
            raw = raw_latency(int(r["commits"]), base)
            for q in ("p50", "p99"):
                target = 2.0 if q == "p99" else None
                lines.append((f"send->commit {q} @ {r['rate']:,.0f} rec/s (5 rec/1 ms tick)",
                              f"{r[q]:.3f} ms", f"{raw[q]:.3f} ms", f"{r[q] / raw[q]:.1f}",
                              f"< {target:g} ms" if target else "-",
                              ("PASS" if r[q] < target else "MISS") if target else ""))
        if "query" in parts:
            r = scenario_query(a.query_rows, a.query_runs)
            lines.append((f"10k-row metrics query, median of {a.query_runs}",
                          f"{r['p50']:.1f} ms", f"{r['raw_p50']:.1f} ms",
                          f"{r['p50'] / r['raw_p50']:.1f}", "< 25 ms",
                          "PASS" if r["p50"] < 25 else "MISS"))
            lines.append((f"10k-row metrics query, p90 of {a.query_runs}",
                          f"{r['p90']:.1f} ms", f"{r['raw_p90']:.1f} ms",
                          f"{r['p90'] / r['raw_p90']:.1f}", "-", ""))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print()
    print_table(("figure", "ours", "raw limit (same run)", "ours/raw", "target", ""), lines)
    return print_summary(started)

if __name__ == "__main__":
    sys.exit(main())
