"""Soak run (issue 7): N minutes at a steady rate with a query load beside it; the RSS
and open file descriptors of every process must stay flat and no record may go missing.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 3000] [--sample-s 30]
        [--warmup-s 60] [--json FILE]

One fresh daemon (``common.fresh_daemon``, system collector off: every row is ours).
Two pusher processes (spawn) each send half of ``--rate`` records/s in 100 ms ticks
with ``HistoryClient``: 62 % metrics (streaming ones weighted by the sensor rates of
sdk-data.md, EEG 250 : PPG 50 : ACC 30, plus system metrics), 35 % logs
(``common.make_logs`` and ``tests/sdkdata.py``: Korean/English, bracket tags), 3 %
performance records, and one alert every 2 s each. Beside them a thread issues a query
every ~100 ms, round robin: a metrics range, two ``metrics.aggregate``, ``logs.search``
(Korean and English terms), ``logs.stats``, ``dashboard``, ``stats``; the time windows
are at most 2 minutes, so the query work is steady after the warm-up.

Every ``--sample-s`` seconds (also at each minute, after the warm-up and at the end)
psutil samples RSS and open fds (``num_fds``; ``num_handles`` on Windows) of the
supervisor, its children (roles from ``stats``/``jobs``) and the pushers, and the
database and WAL sizes. Figures start at the sample taken after ``--warmup-s``: RSS and
private memory (RSS minus file-backed pages: the readers mmap up to 256 MiB of the
database, which is not a leak) start -> end and max, least-squares slope of private
(MB/min), fds start -> end (max). "flat": at the end, private memory is < 10 % or < 20 MB
above its highest value in the first half after the warm-up (caches and allocator arenas
fill up and stay; a leak keeps growing), and the floor of the open fds in the last third
of the samples is <= their floor in the first third + 5 (a job running when a sample is
taken holds its database files and socket); else "GROWING". At the end the pushers flush and ``stats`` must show, per
client, stored == sent, nothing lost, rejected or dropped. Exit code 1 on any WARNING
(growing, missing records, failed queries, daemon exit code).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import threading
import time
from pathlib import Path

import psutil
from common import (
    HOSTS,
    METRICS,
    fresh_daemon,
    load_average,
    make_logs,
    metric_record,
    pct,
    print_machine,
    print_summary,
    print_table,
    wait_tick,
    warn,
)

from linkband_history import HistoryClient
from linkband_historyd.storage import schema

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import sdkdata  # noqa: E402  (tests/sdkdata.py: performance, alert, more log lines)

TICK = 0.1
MIX = (("metric", 0.62), ("log", 0.35), ("performance", 0.03))
ALERTS_PER_S = 0.5                          # per pusher, on top of --rate
SENSOR_RATE = {"eeg": 250, "ppg": 50, "acc": 30, "battery": 1, None: 20}
WEIGHTS = [SENSOR_RATE[s[3]] / sum(1 for t in METRICS if t[3] == s[3]) for s in METRICS]
STORE = {"metric": "store_metrics", "log": "store_logs", "performance": "store_performance",
         "alert": "store_alerts"}
QUERIES = (
    ("metrics range", "metrics", {"metric_name": "eeg_throughput", "since": "1m", "limit": 1000}),
    ("aggregate 10s", "metrics.aggregate", {"metric_name": "eeg_throughput", "since": "2m",
                                            "bucket": "10s", "functions": ["avg", "p95", "max"]}),
    ("aggregate by name", "metrics.aggregate", {"metric_type": "streaming", "since": "2m",
                                                "bucket": "1m", "group_by": "metric_name",
                                                "functions": ["count", "avg"]}),
    ("search ko, 1 term", "logs.search", {"q": "연결", "limit": 50}),
    ("search ko, 2 terms", "logs.search", {"q": "끊어졌 재연결", "limit": 50}),
    ("search en word", "logs.search", {"q": "BleakError", "limit": 50}),
    ("search en phrase", "logs.search", {"q": "\"broadcast eeg\"", "limit": 50}),
    ("logs.stats", "logs.stats", {"since": "2m", "bucket": "10s"}),
    ("dashboard", "dashboard", {}),
    ("stats", "stats", {}),
)
RSS_PCT, RSS_MB, FD_SLACK = 10.0, 20.0, 5
MB = 1 << 20


# -- pushers (spawned processes) --------------------------------------------------

def make(kind: str, n: int, r: random.Random, now: float, who: int, k: int) -> list[dict]:
    step = TICK / n
    if kind == "metric":
        return [metric_record(spec, r, now + i * step, HOSTS[who % len(HOSTS)])
                for i, spec in enumerate(r.choices(METRICS, weights=WEIGHTS, k=n))]
    if kind == "log":
        m = n // 5                                 # a fifth from tests/sdkdata.py
        return (make_logs(n - m, 1000 * who + k % 1000, now, step)
                + [sdkdata.log(r, now + i * step) for i in range(m)])
    if kind == "performance":
        return [sdkdata.performance(r, now + i * step) for i in range(n)]
    return [sdkdata.alert(r, now + i * step) for i in range(n)]


def pusher(who, ingest, query, rate, barrier, stop, results):
    c = HistoryClient(ingest=ingest, query=query, query_timeout=10.0)
    r = random.Random(who)
    share = dict(MIX, alert=ALERTS_PER_S / rate if rate else 0)
    owed, sent, late = dict.fromkeys(share, 0.0), dict.fromkeys(share, 0), []
    try:
        barrier.wait(120)
        cpu0, start, k = time.process_time(), time.monotonic(), 0
        while not stop.is_set():
            late.append(wait_tick(start, k, TICK))
            now = time.time()
            for kind, s in share.items():
                owed[kind] += rate * s * TICK
                n = int(owed[kind])
                if n:
                    owed[kind] -= n
                    getattr(c, STORE[kind])(make(kind, n, r, now, who, k))
                    sent[kind] += n
            k += 1
        elapsed = time.monotonic() - start
        ok = c.flush(timeout=60)
        results.put({"who": who, "ok": ok, "sent": sent, "elapsed": elapsed,
                     "cpu": time.process_time() - cpu0, "late_p99_ms": pct(late, 0.99) * 1e3,
                     "late_max_ms": max(late, default=0) * 1e3, **c.stats()})
    finally:
        c.close()


# -- query load (a thread of this process) ----------------------------------------

def query_load(c: HistoryClient, t0: float, stop: threading.Event, out: list) -> None:
    nxt, i = time.monotonic(), 0
    while not stop.is_set():
        label, cmd, params = QUERIES[i % len(QUERIES)]
        t = time.perf_counter()
        try:
            ok = bool(c.query(cmd, **params).get("ok"))
        except TimeoutError:
            ok = False
        out.append((time.monotonic() - t0, label, (time.perf_counter() - t) * 1e3, ok))
        i += 1
        nxt = max(nxt + TICK, time.monotonic())
        stop.wait(nxt - time.monotonic())


# -- sampling ---------------------------------------------------------------------

def usage(p: psutil.Process) -> dict:
    with p.oneshot():
        m = p.memory_info()
        fds = (p.num_fds() if hasattr(p, "num_fds")
               else p.num_handles() if hasattr(p, "num_handles") else None)
    # private = RSS minus file-backed and shared pages (Linux; elsewhere = RSS)
    return {"pid": p.pid, "rss": round(m.rss / MB, 2),
            "private": round((m.rss - getattr(m, "shared", 0)) / MB, 2), "fds": fds}


def sample(d, c: HistoryClient, pushers: dict, t: float) -> dict:
    procs, roles = {}, {d.proc.pid: "supervisor"}
    st = c.query("stats")["rows"][0]
    roles[st["writer"]["pid"]] = "writer"
    roles[st["pid"]] = "query"
    roles.setdefault(c.query("jobs").get("pid"), "scheduler")
    sup = psutil.Process(d.proc.pid)
    for pid in [sup.pid] + [k.pid for k in sup.children(recursive=True)] + list(pushers):
        try:
            p = psutil.Process(pid)
            name = roles.get(pid) or pushers.get(pid) or (
                "tracker" if "resource_tracker" in " ".join(p.cmdline()) else f"child {pid}")
            procs[name] = usage(p)
        except psutil.Error:
            pass
    size = {x: os.path.getsize(f"{d.db_path}{x}") / MB if os.path.exists(f"{d.db_path}{x}")
            else 0.0 for x in ("", "-wal")}
    return {"t": round(t, 1), "procs": procs, "db_mb": round(size[""], 2),
            "wal_mb": round(size["-wal"], 2), "stored": st["stored_total"]}


def slope(points) -> float:
    """Least-squares slope of (x, y) points; 0 for fewer than two."""
    mx, my = (sum(v) / max(1, len(points)) for v in zip(*points)) if points else (0, 0)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def summarize(samples: list[dict], warmup: float) -> list[dict]:
    after = [s for s in samples if s["t"] >= warmup]
    out = []
    for name in samples[0]["procs"] | after[-1]["procs"]:
        ser = [(s["t"] / 60, s["procs"][name]) for s in after if name in s["procs"]]
        if len(ser) < 2:
            warn(f"{name}: not sampled through the run")
            continue
        first, last = ser[0][1], ser[-1][1]
        if first["pid"] != last["pid"]:
            warn(f"{name} was restarted during the run (pid {first['pid']} -> {last['pid']})")
        # A leak keeps growing: the end is judged against the highest value of the
        # first half after warm-up (caches and allocator arenas fill up, then stay),
        # and open fds by their floor (a job running at a sample holds its database
        # files and socket for that moment).
        half = ser[: max(1, len(ser) // 2)]
        grow = last["private"] - max(u["private"] for _, u in half)
        fds = [u["fds"] for _, u in ser if u["fds"] is not None]
        third = max(1, len(fds) // 3)
        mem_ok = grow < max(RSS_MB, first["private"] * RSS_PCT / 100)
        fds_ok = not fds or min(fds[-third:]) <= min(fds[:third]) + FD_SLACK
        out.append({"process": name, "pid": last["pid"], "rss_start": first["rss"],
                    "rss_end": last["rss"], "rss_max": max(u["rss"] for _, u in ser),
                    "private_start": first["private"], "private_end": last["private"],
                    "private_max": max(u["private"] for _, u in ser),
                    "slope_mb_min": slope([(x, u["private"]) for x, u in ser]),
                    "fds_start": fds[0] if fds else None, "fds_end": fds[-1] if fds else None,
                    "fds_max": max(fds) if fds else None,
                    "verdict": "flat" if mem_ok and fds_ok else "GROWING"})
    return out


def minute_queries(queries: list, m: int) -> dict:
    """Count, p50, p99 (ms) and failures of the queries started in minute ``m`` (1-based)."""
    got = [(ms, ok) for t, _, ms, ok in queries if (m - 1) * 60 <= t < m * 60]
    lat = [ms for ms, _ in got]
    return {"minute": m, "n": len(lat), "p50": round(pct(lat, 0.5), 2),
            "p99": round(pct(lat, 0.99), 2), "failed": sum(1 for _, ok in got if not ok)}


def minute_line(m: int, s: dict, prev: dict, queries: list) -> str:
    q = minute_queries(queries, m)
    rate = (s["stored"] - prev["stored"]) / max(1e-9, s["t"] - prev["t"])
    rss = ", ".join(f"{n} {u['rss']:.0f}/{u['private']:.0f}" for n, u in s["procs"].items())
    fds = sum(u["fds"] or 0 for u in s["procs"].values())
    return (f"min {m:2d}: stored {s['stored']:>9,} ({rate:,.0f}/s); queries {q['n']} "
            f"p50 {q['p50']:.1f} p99 {q['p99']:.1f} ms, {q['failed']} failed; "
            f"RSS/private MB {rss}; fds {fds}; db {s['db_mb']:.1f} MB wal {s['wal_mb']:.1f} MB")


# -- main -------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=3000, help="records/s of the two pushers together "
                    "(metrics, logs, performance; plus 1 alert/s)")
    ap.add_argument("--sample-s", type=float, default=30.0)
    ap.add_argument("--warmup-s", type=float, default=60.0,
                    help="the 'start' figures are the sample taken after this warm-up")
    ap.add_argument("--json", metavar="FILE", help="write the samples and the verdicts here")
    a = ap.parse_args()
    duration = a.minutes * 60
    if not 0 <= a.warmup_s < duration or a.sample_s <= 0 or a.rate <= 0:
        ap.error("need 0 <= --warmup-s < --minutes*60, --sample-s > 0, --rate > 0")
    times = sorted({round(x, 3) for x in [0.0, a.warmup_s, duration]
                    + [i * a.sample_s for i in range(int(duration // a.sample_s) + 1)]
                    + [m * 60.0 for m in range(1, int(duration // 60) + 1)] if x <= duration})
    mp = multiprocessing.get_context("spawn")
    print("linkband-history soak run")
    print_machine()
    print(f"{a.minutes:g} min at {a.rate:,} records/s from 2 pushers (+{2 * ALERTS_PER_S:g} "
          f"alert/s), a query every {TICK * 1e3:.0f} ms, samples every {a.sample_s:g} s, "
          f"warm-up {a.warmup_s:g} s; load average at start: {load_average()}", flush=True)
    started = time.monotonic()
    queries: list = []
    with fresh_daemon("soak") as d:
        barrier, stop, results = mp.Barrier(3), mp.Event(), mp.Queue()
        procs = [mp.Process(target=pusher, args=(w, d.ingest, d.query, a.rate / 2, barrier,
                                                  stop, results), daemon=True)
                 for w in range(2)]
        for p in procs:
            p.start()
        names = {p.pid: f"pusher{w}" for w, p in enumerate(procs)}
        sampler, qclient = d.client(query_timeout=30.0), d.client(query_timeout=30.0)
        barrier.wait(120)
        t0 = time.monotonic()
        qstop = threading.Event()
        qthread = threading.Thread(target=query_load, args=(qclient, t0, qstop, queries),
                                   daemon=True)
        qthread.start()
        samples = []
        try:
            for t in times:
                wait_tick(t0, t, 1.0)
                samples.append(sample(d, sampler, names, time.monotonic() - t0))
                if t == 0:
                    print("\nat start (t = 0):")
                    print_table(("process", "pid", "RSS MB", "private MB", "fds"),
                                [(n, u["pid"], f"{u['rss']:.1f}", f"{u['private']:.1f}", u["fds"])
                                 for n, u in samples[0]["procs"].items()])
                    print(flush=True)
                elif t % 60 == 0:
                    prev = next(s for s in reversed(samples) if s["t"] <= t - 59)
                    print(minute_line(int(t // 60), samples[-1], prev, queries), flush=True)
        finally:
            stop.set()
            qstop.set()
        got = sorted((results.get(timeout=300) for _ in procs), key=lambda r: r["who"])
        for p in procs:
            p.join(60)
            if p.exitcode != 0:
                warn(f"pusher exited with {p.exitcode}")
        qthread.join(60)
        time.sleep(1.5)
        st = sampler.query("stats")["rows"][0]

    # -- memory and fds ---------------------------------------------------------------
    rows = summarize(samples, a.warmup_s)
    s0 = next(s for s in samples if s["t"] >= a.warmup_s)
    print(f"\nRSS and fds: start = the sample at t = {s0['t']:g} s (after {a.warmup_s:g} s of "
          f"warm-up), end = t = {samples[-1]['t']:g} s; "
          f"{sum(s['t'] >= s0['t'] for s in samples)} samples")
    print_table(("process", "pid", "RSS MB start -> end", "max", "private MB start -> end",
                 "max", "slope MB/min", "fds start -> end", "max", "verdict"),
                [(r["process"], r["pid"], f"{r['rss_start']:.1f} -> {r['rss_end']:.1f}",
                  f"{r['rss_max']:.1f}", f"{r['private_start']:.1f} -> {r['private_end']:.1f}",
                  f"{r['private_max']:.1f}", f"{r['slope_mb_min']:+.2f}",
                  f"{r['fds_start']} -> {r['fds_end']}", r["fds_max"], r["verdict"]) for r in rows])
    print(f"database {s0['db_mb']:.1f} -> {samples[-1]['db_mb']:.1f} MB, "
          f"WAL {s0['wal_mb']:.1f} -> {samples[-1]['wal_mb']:.1f} MB (max "
          f"{max(s['wal_mb'] for s in samples):.1f})")
    for r in rows:
        if r["verdict"] != "flat":
            warn(f"{r['process']} GROWING: private {r['private_start']:.1f} -> "
                 f"{r['private_end']:.1f} MB "
                 f"({r['slope_mb_min']:+.2f} MB/min), fds {r['fds_start']} -> {r['fds_end']}")
    verdict = "flat" if rows and all(r["verdict"] == "flat" for r in rows) else "GROWING"
    print(f"verdict: {verdict} (private memory at the end < {RSS_PCT:g} % or < {RSS_MB:g} MB "
          f"above the first half's highest, fds floor <= first floor + {FD_SLACK}, "
          f"for every process)")

    # -- queries --------------------------------------------------------------------
    print(f"\nqueries: {len(queries)} in {duration:g} s")
    qrows = []
    for label, _, _ in QUERIES:
        ms = [x for _, lb, x, _ in queries if lb == label]
        bad = sum(1 for _, lb, _, ok in queries if lb == label and not ok)
        qrows.append((label, len(ms), f"{pct(ms, 0.5):.1f}", f"{pct(ms, 0.99):.1f}",
                      f"{max(ms, default=0):.1f}", bad))
        if bad:
            warn(f"query {label}: {bad} of {len(ms)} failed (error reply or timeout)")
    print_table(("query", "n", "p50 ms", "p99 ms", "max ms", "failed"), qrows)

    # -- records ----------------------------------------------------------------------
    clients = {c["client_id"]: c for c in st["clients"]}
    stored_total = sum(clients.get(r["client_id"], {}).get("stored", 0) for r in got)
    print(f"\nrecords: sent {sum(r['sent_records'] for r in got):,}, stored {stored_total:,}")
    for r in got:
        c = clients.get(r["client_id"], {})
        print(f"  pusher{r['who']}: sent {r['sent_records']:,} in {r['elapsed']:.0f} s "
              f"({r['sent_records'] / r['elapsed']:,.0f}/s), stored {c.get('stored', 0):,}, lost "
              f"{c.get('lost_records')}, rejected {c.get('rejected')}, dropped {r['dropped']}, "
              f"queued {r['queued']}, flush {r['ok']}; tick lateness p99 {r['late_p99_ms']:.1f} ms "
              f"max {r['late_max_ms']:.0f} ms; CPU {r['cpu']:.1f} s")
        if (not r["ok"] or c.get("stored") != r["sent_records"] or r["dropped"] or r["queued"]
                or c.get("lost_records") or c.get("rejected")):
            warn(f"pusher{r['who']}: records missing or flush() failed (see above)")
    for kind in STORE:
        sent = sum(r["sent"][kind] for r in got)
        stored = st["tables"].get(schema.TABLES[kind])
        print(f"  {schema.TABLES[kind]}: sent {sent:,}, in the table {stored:,}")
        if stored < sent:
            warn(f"{schema.TABLES[kind]}: {stored} rows, sent {sent}")
    print(f"daemon totals: lost {st['lost_records_total']}, "
          f"rejected {st['rejected_records_total']}, dropped by clients "
          f"{st['client_dropped_total']}; load average at end: {load_average()}")

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "samples": samples, "processes": rows, "verdict": verdict,
                       "queries": [dict(zip(("query", "n", "p50", "p99", "max", "failed"), q))
                                   for q in qrows],
                       "minutes": [minute_queries(queries, m)
                                   for m in range(1, int(duration // 60) + 1)],
                       "pushers": got, "stats": st}, f, ensure_ascii=False, indent=1)
        print(f"wrote {a.json}")
    return print_summary(started)


if __name__ == "__main__":
    sys.exit(main())
