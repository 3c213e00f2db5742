"""What AUTOINCREMENT (schema migration 6: ids never go back) costs raw inserts.

    .venv/bin/python bench/schema_ids.py [--rows 200000] [--runs 5]

The same SDK-shaped metric and log rows are inserted with plain APSW ``executemany``
in 1000-row transactions (WAL, synchronous=NORMAL) into two fresh databases: one
migrated to schema 5 (``id INTEGER PRIMARY KEY``: a new row gets max(id) + 1) and one
migrated to the current schema (``AUTOINCREMENT``: SQLite also keeps the highest id
ever used in ``sqlite_sequence``). Runs alternate between the two; the median rate
of each and their ratio are printed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import apsw
import common

from linkband_history.protocol import row_from_record
from linkband_historyd.storage import schema


def open_at(path: str, version: int) -> apsw.Connection:
    conn = apsw.Connection(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    with conn:
        for stmts in schema.MIGRATIONS[:version]:
            for stmt in stmts:
                stmt(conn) if callable(stmt) else conn.execute(stmt)
        conn.execute(f"PRAGMA user_version = {version}")
    return conn


def rate(path: str, version: int, kind: str, rows: list, per_tx: int = 1000) -> float:
    conn = open_at(path, version)
    sql = schema.INSERT[kind]
    t = time.perf_counter()
    for i in range(0, len(rows), per_tx):
        with conn:
            conn.executemany(sql, rows[i:i + per_tx])
    elapsed = time.perf_counter() - t
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return len(rows) / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    started = time.monotonic()
    print("linkband-history: the cost of AUTOINCREMENT ids")
    common.print_machine()
    now = time.time()
    data = {"metric": [row_from_record("metric", r, now)
                       for r in common.make_metrics(a.rows, 1, now - 3600)],
            "log": [row_from_record("log", r, now) for r in common.make_logs(a.rows, 2, now - 3600)]}
    base = tempfile.mkdtemp(prefix="lbh-ids-")
    lines = []
    try:
        for kind, rows in data.items():
            got = {5: [], schema.SCHEMA_VERSION: []}
            for run in range(a.runs):
                for version in (5, schema.SCHEMA_VERSION)[:: 1 if run % 2 == 0 else -1]:
                    got[version].append(rate(os.path.join(base, f"v{version}.db"), version, kind, rows))
                    common.note(f"{kind} schema {version}: {got[version][-1]:,.0f} rows/s")
            old, new = (statistics.median(got[v]) for v in (5, schema.SCHEMA_VERSION))
            lines.append((kind, f"{old:,.0f}", f"{new:,.0f}", f"{new / old:.2f}"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{a.rows:,} rows per run, 1000 per transaction, median of {a.runs} runs (rows/s):")
    common.print_table(("kind", "schema 5 (max id + 1)", f"schema {schema.SCHEMA_VERSION} "
                        "(AUTOINCREMENT)", "ratio"), lines)
    return common.print_summary(started)


if __name__ == "__main__":
    sys.exit(main())
