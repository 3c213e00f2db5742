"""CPU cost of the system metrics collector, beside the raw cost of the psutil
calls it makes. Target (issue): < 1 % of one core at a 1 s interval.

    .venv/bin/python bench/collector.py [--seconds 20] [--interval 1.0]
        [--samples 300] [--process-name NAME ...]

Default run: about 30 s. Two parts:

1. Per sample, in this process, back to back (``time.thread_time`` over
   ``--samples`` samples, after 5 warm-up samples): the raw psutil calls alone
   (the same functions on the same mounts, NICs and processes), then
   ``SystemCollector.sample()``, then ``sample()`` plus the client's conversion
   of its records (``protocol.row_from_record``, what ``store_metrics`` does in
   the caller's thread). Shown as µs per sample and as % of one core at 1 s.
2. End to end, over ``--seconds`` of wall time: the collector as it is deployed
   standalone (``python -m linkband_historyd.collector.system_metrics --interval I --pid ...``,
   pushing into a real daemon, ``harness.DaemonProcess`` in a
   ``tempfile.mkdtemp()``) and, at the same time, a plain loop in another
   process making the raw psutil calls on the same schedule (``--raw-loop``).
   Each process's CPU time (all its threads: ZeroMQ's I/O thread and the
   client's sender included) is read from ``/proc/<pid>/task/*/schedstat`` (ns;
   psutil's cpu_times elsewhere) once both are warm, and again ``--seconds``
   later. CPU % of one core = CPU seconds / wall seconds; with ``--interval``
   other than 1 the figure is scaled to 1 s (x interval). The rows the
   collector pushed are counted in the daemon (WARNING if fewer than its
   samples, or if anything was lost or rejected). The CPU the whole daemon used
   in the window (storing these rows, and its own idle work) is shown for scale.

The processes followed are the daemon's own (supervisor and children, by pid),
unless ``--process-name`` is given. Exit code 1 if any WARNING was printed.
"""
from __future__ import annotations

import argparse
import glob
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
from common import daemon_cpu, fresh_daemon, note, print_machine, print_summary, print_table, warn

from linkband_history import protocol
from linkband_historyd.collector.system_metrics import SystemCollector, physical_mounts

TARGET = 1.0            # % of one core at 1 s


def raw_sample(mounts, nics, procs: dict) -> None:
    """The psutil calls SystemCollector.sample() makes, and nothing else."""
    psutil.cpu_times(percpu=True)
    psutil.virtual_memory()
    psutil.swap_memory()
    for m in mounts:
        psutil.disk_usage(m)
    psutil.disk_io_counters(perdisk=False, nowrap=False)
    psutil.net_io_counters(pernic=True, nowrap=False)
    if procs:
        psutil.pids()
    for pid, p in list(procs.items()):
        try:
            with p.oneshot():
                p.cpu_percent(None)
                p.memory_info()
                p.num_threads()
                p.open_files()
        except psutil.NoSuchProcess:
            del procs[pid]


def live_procs(pids) -> dict:
    out = {}
    for pid in pids:
        try:
            out[pid] = psutil.Process(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def raw_loop(args) -> int:
    """``--raw-loop``: raw_sample() every interval on a monotonic schedule until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    procs = live_procs(args.pid)
    nics = set(args.nic or ())
    print("ready", flush=True)
    tick = time.monotonic()
    while not stop.is_set():
        raw_sample(args.mount or [], nics, procs)
        tick += args.interval
        stop.wait(max(0.0, tick - time.monotonic()))
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time of all threads of ``pid``: ns-precise schedstat on Linux."""
    total, found = 0, False
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
                found = True
        except (OSError, ValueError, IndexError):
            pass
    if found:
        return total / 1e9
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def per_sample_costs(samples: int, pids, names, mounts, nics) -> list[tuple]:
    procs = live_procs(pids)
    coll = SystemCollector(process_names=names, pids=pids, mounts=mounts, nics=nics)
    convert_now = time.time()

    def with_conversion():
        for r in coll.sample():
            protocol.row_from_record("metric", r, convert_now)

    results = []
    for label, fn in (("raw psutil calls", lambda: raw_sample(mounts, nics, procs)),
                      ("SystemCollector.sample()", coll.sample),
                      ("sample() + client conversion", with_conversion)):
        for _ in range(5):
            fn()
        t0 = time.thread_time()
        for _ in range(samples):
            fn()
        us = (time.thread_time() - t0) / samples * 1e6
        results.append((label, us))
    records = len(coll.sample())
    return results, records, len(coll.followed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="end-to-end window (s)")
    ap.add_argument("--interval", type=float, default=1.0, help="sampling interval (s)")
    ap.add_argument("--samples", type=int, default=300, help="samples per per-sample figure")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before the window")
    ap.add_argument("--process-name", action="append", default=[])
    ap.add_argument("--raw-loop", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pid", action="append", type=int, default=[], help=argparse.SUPPRESS)
    ap.add_argument("--mount", action="append", help=argparse.SUPPRESS)
    ap.add_argument("--nic", action="append", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_loop:
        return raw_loop(args)

    started = time.monotonic()
    print_machine()
    mounts = physical_mounts()
    nics = sorted(n for n, s in psutil.net_if_stats().items() if s.isup)
    scale = args.interval / 1.0
    with fresh_daemon("collector") as d:
        if args.process_name:
            probe = SystemCollector(process_names=args.process_name, mounts=[])
            probe.sample()
            pids, names = sorted(probe.followed), args.process_name
        else:
            pids, names = sorted([d.proc.pid] + [k.pid for k in d.children()]), []
        print(f"mounts {mounts}, NICs {nics}, processes followed: {len(pids)} "
              f"({', '.join(args.process_name) or 'the daemon, by pid'}), {os.cpu_count()} cores")

        # 1. per sample, in this process
        note(f"per-sample costs, {args.samples} samples each")
        costs, records, followed = per_sample_costs(args.samples, pids, [], mounts, nics)
        raw_us = costs[0][1]
        print(f"\nPer sample, back to back in one thread ({records} records per sample, "
              f"{followed} processes):")
        print_table(("", "µs/sample", "% of one core at 1 s", "x raw"),
                    [(label, f"{us:.0f}", f"{us / 1e4:.3f}", f"{us / raw_us:.2f}")
                     for label, us in costs])

        # 2. end to end: the standalone collector into the daemon, and the raw loop
        follow = [a for pid in pids for a in ("--pid", str(pid))] if not names else \
            [a for n in names for a in ("--process-name", n)]
        coll = subprocess.Popen([sys.executable, "-m", "linkband_historyd.collector.system_metrics",
                                 "--ingest", d.ingest, "--query", d.query,
                                 "--interval", str(args.interval), "--log-level", "WARNING",
                                 *follow])
        where = [a for m in mounts for a in ("--mount", m)] + \
            [a for n in nics for a in ("--nic", n)]
        raw = subprocess.Popen([sys.executable, __file__, "--raw-loop", "--interval",
                                str(args.interval), *where,
                                *[a for pid in pids for a in ("--pid", str(pid))]],
                               stdout=subprocess.PIPE, text=True)
        try:
            assert raw.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 60
            while not d.ask("metrics", metric_name="cpu_percent", tags={"pid": coll.pid},
                            limit=1)["rows"]:
                if time.monotonic() > deadline or coll.poll() is not None:
                    raise RuntimeError("the collector pushed nothing")
                time.sleep(0.1)
            time.sleep(args.warmup)
            note(f"end to end: {args.seconds:g} s at interval {args.interval:g} s")
            c0, r0, dc0, w0 = cpu_seconds(coll.pid), cpu_seconds(raw.pid), daemon_cpu(d), \
                time.monotonic()
            t_from = time.time()
            time.sleep(args.seconds)
            c1, r1, dc1, w1 = cpu_seconds(coll.pid), cpu_seconds(raw.pid), daemon_cpu(d), \
                time.monotonic()
            t_to = time.time()
        finally:
            for p in (coll, raw):
                p.send_signal(signal.SIGTERM)
            for p in (coll, raw):
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        if coll.returncode != 0:
            warn(f"collector exited with {coll.returncode}")
        time.sleep(0.5)
        wall = w1 - w0
        ticks = int(wall / args.interval)
        reply = d.ask("metrics", metric_name="cpu_percent", tags={"pid": coll.pid},
                      since=t_from, until=t_to, limit=100_000)
        got = len(reply["rows"]) if reply.get("ok") else 0
        stats = d.stats()
        if got < ticks - 1:
            warn(f"only {got} cpu_percent rows of the collector in the window, "
                 f"expected about {ticks}")
        if stats["lost_records_total"] or stats["rejected_total"]:
            warn(f"daemon lost {stats['lost_records_total']}, "
                 f"rejected {stats['rejected_total']} records")
        daemon_s = sum(dc1.values()) - sum(dc0.values())
        coll_pct, raw_pct = (c1 - c0) / wall * 100, (r1 - r0) / wall * 100
        print(f"\nEnd to end over {wall:.1f} s at interval {args.interval:g} s "
              f"({got} samples stored, {stats['tables']['system_metrics']} rows in total):")
        lines = [("raw psutil loop (process)", f"{(r1 - r0) * 1e3:.1f}", f"{raw_pct:.3f}",
                  f"{raw_pct * scale:.3f}"),
                 ("collector -> daemon (process)", f"{(c1 - c0) * 1e3:.1f}", f"{coll_pct:.3f}",
                  f"{coll_pct * scale:.3f}"),
                 ("whole daemon meanwhile (idle work too)", f"{daemon_s * 1e3:.1f}",
                  f"{daemon_s / wall * 100:.3f}", f"{daemon_s / wall * 100 * scale:.3f}")]
        print_table(("", "CPU ms", "% of one core", "% at 1 s"), lines)
        ratio = (c1 - c0) / (r1 - r0) if r1 > r0 else float("nan")
        verdict = "met" if coll_pct * scale < TARGET else "NOT met"
        print(f"collector / raw = {ratio:.2f}x; target < {TARGET:g} % of one core at 1 s: "
              f"{coll_pct * scale:.3f} % -> {verdict}")
        if coll_pct * scale >= TARGET:
            warn(f"collector uses {coll_pct * scale:.3f} % of one core at 1 s "
                 f"(target < {TARGET:g} %)")
    return print_summary(started)


if __name__ == "__main__":
    sys.exit(main())
