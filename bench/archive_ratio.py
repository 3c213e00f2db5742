"""Archive size and speed: bytes per row of metric and log rows as JSON lines, JSON
lines + zstd-19 (the reference of shared/reference/measured-limits.md) and the
archive format (``linkband_historyd.archive.file_format``), with the reduction and
the write / read speed in rows per second.

Run: ``.venv/bin/python bench/archive_ratio.py [--metric-rows N] [--log-rows N]
[--levels 19,9] [--threads T] [--quick]``. The default run takes about a
two minutes on a 2-core machine (most of it zstd-19 on the JSON reference).

Rows (the project's shared generators, bench/common.py):
- metrics: 1 Hz snapshots of the 14 SDK metrics of ``common.METRICS`` (each
  value drawn independently: a conservative case), the rows of a snapshot
  sharing one time.time()-like timestamp (full float precision), tags as the
  client sends them (compact JSON text), ids 1..N;
- logs: ``common.make_logs`` (bracket-tagged mixed Korean/English lines,
  extra_data on some), timestamps ~100 lines/s with full float precision.

JSON lines = ``json.dumps(dict(zip(columns, row)), ensure_ascii=False)`` + "\\n"
per row, UTF-8, the id included. "json+zstd-19" compresses all of it as one
zstd stream. Write speed of the archive = rows / wall time of
``write_archive`` (encode + compress on ``--threads`` threads + sha256 +
fsync); read speed = rows / wall time of iterating ``read_archive``. Every
archive is read back and compared with the rows (a mismatch is a WARNING and
exit code 1). The machine is shared: the load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

import common
import zstandard

from linkband_history.protocol import dumps_json
from linkband_historyd.archive import file_format as af

METRIC_COLS = ["id", "timestamp", "metric_type", "metric_name", "value", "unit", "tags"]
LOG_COLS = ["id", "timestamp", "level", "logger_name", "message", "module", "function_name",
            "line_number", "thread_id", "process_id", "extra_data"]
T0 = 1_735_689_600.0


def metric_rows(n: int, seed: int = 7) -> list[tuple]:
    r = random.Random(seed)
    host = common.HOSTS[0]
    rows, ts = [], T0
    while len(rows) < n:
        ts = T0 + len(rows) // len(common.METRICS) + r.random() * 0.004
        for spec in common.METRICS:
            rec = common.metric_record(spec, r, ts, host)
            rows.append((len(rows) + 1, rec["timestamp"], rec["metric_type"], rec["metric_name"],
                         float(rec["value"]), rec["unit"], dumps_json(rec["tags"])))
    return rows[:n]


def log_rows(n: int, seed: int = 7) -> list[tuple]:
    r = random.Random(seed)
    rows, ts = [], T0
    for i, rec in enumerate(common.make_logs(n, seed, T0), 1):
        ts += r.expovariate(100)
        rows.append((i, ts, rec["level"], rec["logger_name"], rec["message"], rec["module"],
                     rec["function_name"], rec["line_number"], rec["thread_id"], rec["process_id"],
                     dumps_json(rec.get("extra_data"))))
    return rows


def jsonl(columns, rows) -> bytes:
    return "".join(json.dumps(dict(zip(columns, r)), ensure_ascii=False) + "\n"
                   for r in rows).encode("utf-8")


def run(kind: str, columns, rows, levels, threads, tmp) -> list[tuple]:
    n = len(rows)
    t = time.perf_counter()
    text = jsonl(columns, rows)
    t_json = time.perf_counter() - t
    common.note(f"{kind}: {n:,} rows, JSON lines {len(text) / n:.1f} B/row; zstd-19 on them ...")
    t = time.perf_counter()
    ref = zstandard.ZstdCompressor(level=19).compress(text)
    t_ref = time.perf_counter() - t + t_json
    t = time.perf_counter()
    back = zstandard.ZstdDecompressor().decompress(ref)
    [json.loads(line) for line in back.splitlines()]
    r_ref = time.perf_counter() - t
    lines = [(kind, "JSON lines", f"{len(text) / n:.1f}", "-", "-", "-"),
             (kind, "JSON lines + zstd-19", f"{len(ref) / n:.2f}", common.saved_pct(len(ref), len(text)),
              f"{n / t_ref:,.0f}", f"{n / r_ref:,.0f}")]
    for level in levels:
        base = os.path.join(tmp, f"{kind}-{level}")
        t = time.perf_counter()
        m = af.write_archive(base, {kind: (columns, iter(rows))}, {"bench": kind},
                             level=level, threads=threads)
        t_w = time.perf_counter() - t
        t = time.perf_counter()
        got = [row for _, _, block in af.read_archive(base + ".lbha") for row in block]
        t_r = time.perf_counter() - t
        if got != rows or not af.verify(base + ".lbha"):
            common.warn(f"{kind} level {level}: rows read back differ from the rows written")
        lines.append((kind, f"archive, zstd-{level}", f"{m['data_bytes'] / n:.2f}",
                      common.saved_pct(m["data_bytes"], len(text)), f"{n / t_w:,.0f}", f"{n / t_r:,.0f}"))
        common.note(f"{kind} zstd-{level}: {m['data_bytes']:,} bytes, {t_w:.1f} s write")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metric-rows", type=int, default=200_000)
    ap.add_argument("--log-rows", type=int, default=100_000)
    ap.add_argument("--levels", default=f"{af.LEVEL},9", help="archive zstd levels, comma-separated")
    ap.add_argument("--threads", type=int, default=None, help="compression threads (default min(4, CPUs))")
    ap.add_argument("--quick", action="store_true", help="50,000 metric and 30,000 log rows")
    args = ap.parse_args()
    if args.quick:
        args.metric_rows, args.log_rows = 50_000, 30_000
    levels = [int(x) for x in args.levels.split(",")]
    started = time.monotonic()
    common.print_machine()
    print(f"zstandard {zstandard.__version__} (libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))}), "
          f"blocks of {af.BLOCK_ROWS:,} rows, threads {args.threads or min(4, os.cpu_count() or 1)}, "
          f"load average before: {common.load_average()}")
    tmp = tempfile.mkdtemp(prefix="lbh-archive-")
    try:
        lines = run("system_metrics", METRIC_COLS, metric_rows(args.metric_rows), levels,
                    args.threads, tmp)
        lines += run("system_logs", LOG_COLS, log_rows(args.log_rows), levels, args.threads, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {common.load_average()}")
    common.print_table(("table", "format", "B/row", "smaller than JSON", "write rows/s", "read rows/s"),
                       lines)
    print("targets: metrics >= 95 % smaller than JSON lines, logs >= 90 %")
    return common.print_summary(started)


if __name__ == "__main__":
    sys.exit(main())
