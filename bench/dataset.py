"""Dataset size: bytes per row of the Parquet dataset's parts beside the ``.lbha``
archives' and JSON lines, for the same metric and log rows.

Run: ``.venv/bin/python bench/dataset.py [--metric-rows N] [--log-rows N]
[--rows-per-part N] [--quick]``. The default run takes well under a minute on a
2-core machine.

Rows: the generators of ``bench/archive_ratio.py`` (1 Hz snapshots of the 14 SDK
metrics with full-precision times and JSON tags; SDK-shaped log lines), ids
1..N. The dataset's parts are written by the daemon's own code
(``linkband_historyd.dataset.part_files.PartFiles``: zstd, dictionary-encoded
strings, delta-encoded ids and times, a row group per 65,536 rows as the export
reads them) in parts of ``--rows-per-part`` rows (the default of
``dataset.rows_per_part``); the archives by ``archive.file_format.write_archive``
at the archive's level (19). Bytes = the files on disk (Parquet: every part's
file, footer and metadata included; archive: the ``.lbha`` data file). Every
part is read back with pyarrow and compared with the rows (a mismatch is a
WARNING and exit code 1). Write speed = rows / wall time (encode + compress +
fsync + rename); the machine is shared: the load average is printed.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time

import archive_ratio
import common
import pyarrow
import pyarrow.parquet as pq

from linkband_historyd.archive import file_format as af
from linkband_historyd.dataset import exporter
from linkband_historyd.dataset.part_files import PartFiles


def write_dataset(root: str, kind: str, rows: list, rows_per_part: int) -> int:
    """The rows as the export writes them: parts of rows_per_part rows, pages of
    exporter.PAGE_ROWS; the bytes of every part file."""
    for start in range(0, len(rows), rows_per_part):
        part = rows[start:start + rows_per_part]
        files = PartFiles(root, kind, "bench", part[0][0], part[-1][0], "bench-token")
        for i in range(0, len(part), exporter.PAGE_ROWS):
            files.write(part[i:i + exporter.PAGE_ROWS])
        files.commit()
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(root, f"kind={kind}", "**",
                                                                  "*.parquet"), recursive=True))


def read_back(root: str, kind: str) -> list[tuple]:
    paths = sorted(glob.glob(os.path.join(root, f"kind={kind}", "**", "*.parquet"), recursive=True))
    out = []
    for p in paths:
        t = pq.read_table(p)
        cols = [c.to_pylist() for c in t.columns]
        ts = [i for i, f in enumerate(t.schema) if pyarrow.types.is_timestamp(f.type)]
        for i in ts:
            cols[i] = [None if v is None else v.timestamp() for v in cols[i]]
        out += list(zip(*cols))
    return sorted(out)


def run(kind: str, table: str, columns, rows, rows_per_part: int, tmp: str) -> list[tuple]:
    n = len(rows)
    text = archive_ratio.jsonl(columns, rows)
    lines = [(kind, "JSON lines", f"{len(text) / n:.1f}", "-", "-")]
    root = os.path.join(tmp, "dataset")
    os.makedirs(root, exist_ok=True)
    t = time.perf_counter()
    size = write_dataset(root, kind, rows, rows_per_part)
    t_w = time.perf_counter() - t
    back = read_back(root, kind)
    # Parquet keeps times in whole microseconds: compare at that precision
    want = sorted(tuple(round(v * 1e6) / 1e6 if c in ("timestamp",) and v is not None else v
                        for c, v in zip(columns, r)) for r in rows)
    if len(back) != n or any(abs(a[1] - b[1]) > 1e-6 or a[:1] + a[2:] != b[:1] + b[2:]
                             for a, b in zip(back, want)):
        common.warn(f"{kind}: rows read back from the dataset differ from the rows written")
    lines.append((kind, f"dataset (Parquet zstd, parts of {rows_per_part:,})", f"{size / n:.2f}",
                  _pct(size, len(text)), f"{n / t_w:,.0f}"))
    base = os.path.join(tmp, f"{kind}-archive")
    t = time.perf_counter()
    m = af.write_archive(base, {table: (list(columns), iter(rows))}, {"bench": kind},
                         level=af.LEVEL, threads=None)
    t_a = time.perf_counter() - t
    lines.append((kind, f"archive .lbha, zstd-{af.LEVEL}", f"{m['data_bytes'] / n:.2f}",
                  _pct(m["data_bytes"], len(text)), f"{n / t_a:,.0f}"))
    common.note(f"{kind}: dataset {size:,} B, archive {m['data_bytes']:,} B for {n:,} rows")
    return lines


def _pct(small: int, big: int) -> str:
    return f"{100 * (1 - small / big):.2f} %"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metric-rows", type=int, default=200_000)
    ap.add_argument("--log-rows", type=int, default=100_000)
    ap.add_argument("--rows-per-part", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="50,000 metric and 30,000 log rows")
    args = ap.parse_args()
    if args.quick:
        args.metric_rows, args.log_rows = 50_000, 30_000
    started = time.monotonic()
    common.print_machine()
    print(f"pyarrow {pyarrow.__version__}, load average before: {common.load_average()}")
    tmp = tempfile.mkdtemp(prefix="lbh-dataset-")
    try:
        lines = run("metric", "system_metrics", archive_ratio.METRIC_COLS,
                    archive_ratio.metric_rows(args.metric_rows), args.rows_per_part, tmp)
        lines += run("log", "system_logs", archive_ratio.LOG_COLS,
                     archive_ratio.log_rows(args.log_rows), args.rows_per_part, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {common.load_average()}")
    common.print_table(("kind", "format", "B/row", "smaller than JSON", "write rows/s"), lines)
    return common.print_summary(started)


if __name__ == "__main__":
    sys.exit(main())
