"""archive_format: rows in, two files out, the same rows back (bit for bit), and the
two commands that read an archive without the daemon.

The rows are shaped like the Link Band SDK's (shared/reference/sdk-data.md):
40 monitoring metrics at 1 Hz with tags, chatty Korean/English logs with
bracket tags and extra_data, performance records and Korean alerts.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import random
import subprocess
import sys
import tracemalloc

import pytest
import sdkdata

from linkband_history.protocol import dumps_json
from linkband_historyd.archive import file_format as af

METRIC_COLS = ["id", "timestamp", "metric_type", "metric_name", "value", "unit", "tags"]
PERF_COLS = ["id", "timestamp", "component", "operation", "duration_ms", "throughput",
             "efficiency_percent", "error_count", "metadata"]
LOG_COLS = ["id", "timestamp", "level", "logger_name", "message", "module", "function_name",
            "line_number", "thread_id", "process_id", "extra_data"]
ALERT_COLS = ["id", "timestamp", "alert_id", "level", "category", "title", "description",
              "source_component", "acknowledged_at", "resolved_at", "metadata"]
T0 = 1_735_689_600.0          # 2025-01-01T00:00:00Z


# -- SDK-shaped rows ---------------------------------------------------------------

def _metric_specs():
    """(type, name, unit, sensor, how, a, b, decimals): 40 metrics of the monitoring loop."""
    s = [("cpu", "cpu_percent", "%", None, "gauss", 15, 4, 1),
         ("cpu", "process_cpu_percent", "%", None, "gauss", 6, 2, 1),
         ("memory", "memory_percent", "%", None, "walk", 76, 0.05, 1),
         ("memory", "memory_used_mb", "MB", None, "walk", 12150, 2, 1),
         ("memory", "memory_available_mb", "MB", None, "walk", 3900, 2, 1),
         ("memory", "process_memory_mb", "MB", None, "walk", 182, 0.2, 1),
         ("disk", "disk_usage_percent", "%", None, "walk", 61.5, 0.001, 2),
         ("disk", "disk_io_read_bytes", "bytes", None, "counter", 5e9, 40000, 0),
         ("disk", "disk_io_write_bytes", "bytes", None, "counter", 9e9, 90000, 0),
         ("network", "network_bytes_sent", "bytes", None, "uniform", 0, 90000, 0),
         ("network", "network_bytes_recv", "bytes", None, "uniform", 0, 120000, 0),
         ("streaming", "total_latency", "ms", None, "gauss", 12.5, 2, 2),
         ("streaming", "battery_level", "%", "battery", "walk", 80, 0.01, 0),
         ("streaming", "data_rate_per_second", "B/s", None, "gauss", 2400, 30, 1),
         ("streaming", "packet_loss_rate", "%", None, "const", 0, 0, 1),
         ("streaming", "error_rate", "%", None, "const", 0, 0, 1),
         ("batch", "eeg_items_processed", "items", "eeg", "const", 50, 0, 0),
         ("batch", "compression_ratio", None, None, "gauss", 2.1, 0.05, 2),
         ("batch", "processing_time", "ms", None, "gauss", 2.0, 0.4, 3),
         ("health", "overall_score", None, None, "walk", 75, 0.1, 1),
         ("health", "data_quality_score", None, None, "walk", 90, 0.1, 1)]
    for sensor, hz, tp in (("eeg", 250, 250), ("ppg", 50, 100), ("acc", 30, 50)):
        s += [("streaming", f"{sensor}_sampling_rate", "Hz", sensor, "gauss", hz, hz * 0.004, 1),
              ("streaming", f"{sensor}_throughput", "samples/s", sensor, "gauss", tp, 1.5, 1)]
    for sensor, size in (("eeg", 2000), ("ppg", 1000), ("acc", 1000), ("battery", 100)):
        s += [("buffer", f"{sensor}_buffer_usage_percent", "%", sensor, "uniform", 5, 60, 1),
              ("buffer", f"{sensor}_buffer_used", "items", sensor, "uniform", 0, size * 0.6, 0),
              ("buffer", f"{sensor}_overflow_count", "count", sensor, "const", 0, 0, 0)]
    return s


def metric_rows(n: int, seed: int = 1, t0: float = T0, host: str = "lab-mac-01"):
    """n rows: one snapshot of every metric per second, sharing a time.time()-like
    timestamp (full float precision); untagged system metrics have tags NULL."""
    r = random.Random(seed)
    specs = _metric_specs()
    state = [sp[5] for sp in specs]
    row_id = 0
    for sec in itertools.count():
        ts = t0 + sec + r.random() * 0.004
        for k, (mtype, name, unit, sensor, how, a, b, nd) in enumerate(specs):
            if how == "gauss":
                v = r.gauss(a, b)
            elif how == "walk":
                state[k] += r.gauss(0, b)
                v = state[k]
            elif how == "counter":
                state[k] += r.randint(0, int(b))
                v = state[k]
            elif how == "uniform":
                v = r.uniform(a, b)
            else:
                v = a
            tags = dumps_json({"host": host, "sensor": sensor}) if sensor else None
            row_id += 1
            yield (row_id, ts, mtype, name, float(round(v, nd)), unit, tags)
            if row_id >= n:
                return


def log_rows(n: int, seed: int = 1, t0: float = T0):
    """n log rows, ~100 lines/s (record.created timestamps), sdkdata's templates
    plus NULL module/function/line now and then and JSON extra_data (with a
    multi-line traceback on errors)."""
    r = random.Random(seed)
    ts = t0
    for i in range(1, n + 1):
        ts += r.expovariate(100)
        level, logger, msg = sdkdata.log_message(r)
        extra = None
        if level == "ERROR":
            extra = {"exception": {"type": "BleakError", "message": "Characteristic not found",
                                   "traceback": "Traceback (most recent call last):\n  File "
                                   "\"stream_manager.py\", line 498, in _notify\n"
                                   "bleak.exc.BleakError: 특성을 찾을 수 없습니다"}}
        elif r.random() < 0.3:
            extra = {"sensor_type": r.choice(["eeg", "ppg", "acc"]), "status": "streaming",
                     "action": r.choice(["start", "stop", "broadcast"])}
        nulls = r.random() < 0.05
        yield (i, ts, level, logger, msg,
               None if nulls else logger.split(".")[1] + "_manager",
               None if nulls else "handle_" + logger.split(".")[0].lower(),
               None if nulls else 100 + len(msg),
               123145300000000 + r.randrange(4), 40001, dumps_json(extra))


def perf_rows(n: int, seed: int = 1, t0: float = T0):
    r = random.Random(seed)
    for i in range(1, n + 1):
        d = sdkdata.performance(r, t0 + i * 0.5)
        yield (i, d["timestamp"], d["component"], d["operation"], d["duration_ms"],
               None if i % 7 == 0 else d["throughput"], d["efficiency_percent"],
               None if i % 5 == 0 else d["error_count"], dumps_json(d["metadata"]))


def alert_rows(n: int, seed: int = 1, t0: float = T0):
    r = random.Random(seed)
    for i in range(1, n + 1):
        d = sdkdata.alert(r, t0 + i * 61.0)
        ack = d["timestamp"] + 30.5 if i % 3 == 0 else None
        yield (i, d["timestamp"], d["alert_id"], d["level"], d["category"], d["title"],
               None if i % 4 == 0 else d["description"], d["source_component"], ack,
               ack + 120.25 if ack and i % 2 == 0 else None, dumps_json(d["metadata"]))


def exact(rows) -> list:
    """Rows with floats as their hex form: equal only if bit for bit equal (-0.0, NaN aside)."""
    return [tuple((type(v), v.hex() if type(v) is float else v) for v in row) for row in rows]


def read_all(path, table=None) -> dict[str, list]:
    out: dict[str, list] = {}
    for name, _, rows in af.read_archive(path, None if table is None else [table]):
        out.setdefault(name, []).extend(rows)
    return out


def jsonl_bytes(columns, rows) -> int:
    return sum(len((json.dumps(dict(zip(columns, r)), ensure_ascii=False) + "\n").encode())
               for r in rows)


@pytest.fixture(scope="module")
def sdk_tables():
    return {"system_metrics": (METRIC_COLS, list(metric_rows(50_000))),
            "performance_data": (PERF_COLS, list(perf_rows(3_000))),
            "system_logs": (LOG_COLS, list(log_rows(30_000))),
            "alert_history": (ALERT_COLS, list(alert_rows(200)))}


@pytest.fixture(scope="module")
def archive(sdk_tables, tmp_path_factory):
    base = tmp_path_factory.mktemp("arch") / "2025-01"
    manifest = af.write_archive(base, sdk_tables, {"month": "2025-01"}, level=3, block_rows=8192)
    return base, manifest


# -- round trip ----------------------------------------------------------------------

def test_round_trip_every_table(archive, sdk_tables):
    base, manifest = archive
    back = read_all(f"{base}.lbha")
    assert list(back) == list(sdk_tables)
    for name, (columns, rows) in sdk_tables.items():
        assert exact(back[name]) == exact(rows), name
        assert manifest["tables"][name]["rows"] == len(rows)
    blocks = manifest["tables"]["system_metrics"]["blocks"]
    assert blocks == math.ceil(50_000 / 8192) and blocks > 5
    assert any(r[6] is None for r in back["system_metrics"])                # NULL tags
    assert any("연결" in r[4] for r in back["system_logs"])                 # Korean text


def test_blocks_come_in_order_with_their_columns(archive):
    base, _ = archive
    names = [(n, cols, len(rows)) for n, cols, rows in af.read_archive(f"{base}.lbha")]
    assert names[0] == ("system_metrics", METRIC_COLS, 8192)
    assert [n for n, _, _ in names].count("system_logs") == math.ceil(30_000 / 8192)
    assert af.archive_tables(f"{base}.lbha") == [
        ("system_metrics", METRIC_COLS), ("performance_data", PERF_COLS),
        ("system_logs", LOG_COLS), ("alert_history", ALERT_COLS)]
    only = read_all(f"{base}.lbha", "alert_history")
    assert list(only) == ["alert_history"] and len(only["alert_history"]) == 200


def test_edge_values_come_back_exactly(tmp_path):
    big = 2 ** 63 - 1
    rows = [
        (1, 0.1 + 0.2, -0.0, "", None, 1, big, "x"),
        (2, 1e-310, float("inf"), "한글 텍스트 🎉", "a\x00b\nc\r\t\"'\\", 2, -big - 1, 1.5),
        (3, -1e300, float("-inf"), "\ud800 lone surrogate", None, None, 0, None),
        (4, 1_735_689_600.123456, 5e-324, "[STREAM:EEG] µV", "{}", 2 ** 70, 7, True),
        (5, math.pi, 1.0, "é" * 1000, None, -(2 ** 64), -7, [1, "둘"]),
    ]
    cols = ["id", "f1", "f2", "s", "maybe", "ints_or_big", "i64", "mixed"]
    base = tmp_path / "edge"
    manifest = af.write_archive(base, {"t": (cols, rows), "empty": (["a"], [])}, level=1)
    back = read_all(f"{base}.lbha")
    assert exact(back["t"]) == exact(rows)
    assert math.copysign(1.0, back["t"][0][2]) == -1.0
    assert "empty" not in back and manifest["tables"]["empty"]["rows"] == 0
    t = manifest["tables"]["t"]
    assert t["types"] == ["INTEGER", "REAL", "REAL", "TEXT", "TEXT", "ANY", "INTEGER", "ANY"]
    assert t["nulls"] == [0, 0, 0, 0, 3, 1, 0, 1]
    assert manifest["tables"]["empty"]["types"] == ["NULL"]


@pytest.mark.parametrize("block_rows", [1, 3, 1000])
def test_tiny_blocks_and_all_null_columns(tmp_path, block_rows):
    rows = [(i, T0 + i / 8, None, None if i % 2 else "INFO", None if i % 3 else i * 0.25)
            for i in range(1, 41)]
    base = tmp_path / "tiny"
    manifest = af.write_archive(base, {"t": (["id", "timestamp", "a", "b", "c"], rows)},
                                level=1, block_rows=block_rows)
    assert exact(read_all(f"{base}.lbha")["t"]) == exact(rows)
    assert manifest["tables"]["t"]["blocks"] == math.ceil(40 / block_rows)
    assert manifest["tables"]["t"]["types"] == ["INTEGER", "REAL", "NULL", "TEXT", "REAL"]


def test_timestamps_in_microseconds_and_decimals(tmp_path):
    """Decimal floats (datetime.timestamp() values, values rounded to 0.1) take the
    DECIMAL path and still come back exactly."""
    r = random.Random(5)
    rows = [(i, round(T0 + i * 0.001 + r.random() * 1e-4, 6), round(r.gauss(15, 4), 1),
             round(r.uniform(-1, 1), 4)) for i in range(20_000)]
    base = tmp_path / "us"
    m = af.write_archive(base, {"t": (["id", "timestamp", "v", "w"], rows)}, level=3)
    assert exact(read_all(f"{base}.lbha")["t"]) == exact(rows)
    assert m["tables"]["t"]["stored_bytes"] / len(rows) < 6


def test_rows_from_a_generator_with_bounded_memory(tmp_path):
    """100k rows pulled from a generator in blocks of 4,000: the peak (~2 MB) stays
    near a few blocks, far below the ~16 MB that materializing the rows takes."""
    tracemalloc.start()
    try:
        m = af.write_archive(tmp_path / "gen", {"system_metrics": (METRIC_COLS, metric_rows(100_000))},
                             level=1, block_rows=4_000, threads=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert m["tables"]["system_metrics"]["rows"] == 100_000
    assert m["tables"]["system_metrics"]["blocks"] == 25
    assert peak < 8e6, peak


def test_bad_rows_raise_and_leave_no_files(tmp_path):
    with pytest.raises(ValueError):
        af.write_archive(tmp_path / "bad", {"t": (["a", "b"], [(1, 2), (3,)])})
    with pytest.raises(TypeError):
        af.write_archive(tmp_path / "bad", {"t": (["a"], [(b"bytes",)])})
    assert os.listdir(tmp_path) == []


# -- manifest and checksum ------------------------------------------------------------

def test_manifest_has_the_documented_fields(archive, sdk_tables):
    base, manifest = archive
    with open(f"{base}.manifest.json", encoding="utf-8") as f:
        on_disk = json.load(f)
    assert on_disk == manifest == af.read_manifest(f"{base}.lbha")
    for key in ("format", "format_version", "created_at", "data_file", "data_sha256", "data_bytes",
                "compression", "rows", "tables", "meta"):
        assert key in manifest, key
    assert manifest["format_version"] == af.FORMAT_VERSION
    assert manifest["data_file"] == "2025-01.lbha"
    assert manifest["meta"] == {"month": "2025-01"}
    assert manifest["compression"]["codec"] == "zstd" and manifest["compression"]["level"] == 3
    assert manifest["compression"]["block_rows"] == 8192
    data = open(f"{base}.lbha", "rb").read()
    assert manifest["data_sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["data_bytes"] == len(data)
    assert manifest["rows"] == sum(len(rows) for _, rows in sdk_tables.values())
    assert manifest["created_at"].endswith("Z")
    for name, (columns, rows) in sdk_tables.items():
        t = manifest["tables"][name]
        assert t["columns"] == columns
        assert t["min_timestamp"] == min(r[1] for r in rows)
        assert t["max_timestamp"] == max(r[1] for r in rows)
        assert t["nulls"] == [sum(r[c] is None for r in rows) for c in range(len(columns))]
        assert 0 < t["stored_bytes"] < t["encoded_bytes"]
    assert manifest["tables"]["system_logs"]["types"] == [
        "INTEGER", "REAL", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "INTEGER", "INTEGER", "INTEGER",
        "TEXT"]
    assert manifest["tables"]["alert_history"]["types"][8:10] == ["REAL", "REAL"]


def test_checksum_detects_a_flipped_byte(archive, tmp_path):
    base, _ = archive
    copy = tmp_path / "copy"
    for ext in (".lbha", ".manifest.json"):
        (tmp_path / f"copy{ext}").write_bytes(open(f"{base}{ext}", "rb").read())
    path = f"{copy}.lbha"
    assert af.verify(path) and af.verify(f"{copy}.manifest.json")
    data = bytearray(open(path, "rb").read())
    for pos in (5, len(data) // 3, len(data) // 2, len(data) - 3):
        data[pos] ^= 0x01
        open(path, "wb").write(data)
        assert not af.verify(path), pos
        data[pos] ^= 0x01
    open(path, "wb").write(data)
    assert af.verify(path)
    # a flipped byte inside compressed data: reading fails too (zstd frame checksums)
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(data)
    with pytest.raises(af.ArchiveError):
        read_all(path)


def test_truncated_or_foreign_files_are_refused(archive, tmp_path):
    base, _ = archive
    data = open(f"{base}.lbha", "rb").read()
    cut = tmp_path / "cut.lbha"
    cut.write_bytes(data[:len(data) - 100])
    with pytest.raises(af.ArchiveError):
        read_all(cut)
    other = tmp_path / "other.lbha"
    other.write_bytes(b"SQLite format 3\x00" + data[16:])
    with pytest.raises(af.ArchiveError):
        read_all(other)
    assert not af.verify(tmp_path / "missing.lbha")


# -- the two commands --------------------------------------------------------------------

def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linkband_historyd.archive.file_format", *map(str, args)],
                          capture_output=True, timeout=120)


def test_cli_dump_jsonl_reproduces_the_rows(archive, sdk_tables):
    base, _ = archive
    for table in ("system_logs", "alert_history"):
        columns, rows = sdk_tables[table]
        p = _cli("dump", f"{base}.lbha", "--table", table)
        assert p.returncode == 0, p.stderr
        expected = "".join(json.dumps(dict(zip(columns, r)), ensure_ascii=False) + "\n" for r in rows)
        assert p.stdout.decode("utf-8") == expected
        back = [tuple(json.loads(line)[c] for c in columns) for line in p.stdout.decode().splitlines()]
        assert exact(back) == exact(rows)


def test_cli_dump_all_tables_and_csv(archive, sdk_tables):
    base, _ = archive
    p = _cli("dump", f"{base}.lbha")
    lines = p.stdout.decode().splitlines()
    assert p.returncode == 0 and len(lines) == sum(len(r) for _, r in sdk_tables.values())
    assert json.loads(lines[0])["_table"] == "system_metrics"
    p = _cli("dump", f"{base}.lbha", "--table", "performance_data", "--format", "csv")
    assert p.returncode == 0, p.stderr
    got = list(csv.reader(io.StringIO(p.stdout.decode())))
    columns, rows = sdk_tables["performance_data"]
    assert got[0] == columns
    assert got[1:] == [["" if v is None else str(v) for v in r] for r in rows]
    assert _cli("dump", f"{base}.lbha", "--format", "csv").returncode == 2    # which table?
    assert _cli("dump", f"{base}.lbha", "--table", "nope").returncode == 2


def test_cli_info_and_verify(archive, tmp_path):
    base, manifest = archive
    p = _cli("info", f"{base}.manifest.json")
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert "system_metrics: 50,000 rows" in out and "system_logs: 30,000 rows" in out
    assert manifest["data_sha256"] in out and "2025-01-01T00:00:00" in out
    p = _cli("info", f"{base}.manifest.json", "--json")
    assert json.loads(p.stdout) == manifest
    assert _cli("verify", f"{base}.lbha").returncode == 0
    bad = tmp_path / "bad"
    (tmp_path / "bad.manifest.json").write_bytes(open(f"{base}.manifest.json", "rb").read())
    data = bytearray(open(f"{base}.lbha", "rb").read())
    data[100] ^= 0x10
    (tmp_path / "bad.lbha").write_bytes(data)
    assert _cli("verify", f"{bad}.lbha").returncode == 1
    assert _cli("dump", tmp_path / "missing.lbha").returncode == 1


def test_reader_needs_only_stdlib_and_zstandard():
    code = ("import sys, linkband_historyd.archive.file_format\n"
            "bad = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'apsw', 'zmq', 'msgpack', 'psutil', 'click', 'platformdirs', 'apscheduler', "
            "'linkband_history'})\n"
            "assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr


# -- with the real tables ------------------------------------------------------------------

def test_rows_read_from_the_database_round_trip(tmp_path):
    """Rows as SQLite gives them back (STRICT tables) archive and return exactly."""
    from linkband_historyd.storage import schema
    conn = schema.open_writer(str(tmp_path / "db" / "history.db"))
    kinds = {"metric": metric_rows(5_000), "log": log_rows(3_000), "performance": perf_rows(500),
             "alert": alert_rows(50)}
    tables = {}
    with conn:
        for kind, rows in kinds.items():
            conn.executemany(schema.INSERT[kind], [row[1:] for row in rows])
    for kind in kinds:
        table = schema.TABLES[kind]
        cols = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
        tables[table] = (cols, list(conn.execute(f"SELECT * FROM {table} ORDER BY id")))
    conn.close()
    af.write_archive(tmp_path / "db-archive", tables, {"source": "history.db"}, level=3)
    back = read_all(tmp_path / "db-archive.lbha")
    for table, (cols, rows) in tables.items():
        assert exact(back[table]) == exact(rows)


# -- size -------------------------------------------------------------------------------------

def test_size_targets_on_realistic_rows(tmp_path):
    """At the default settings the archive is >= 95 % smaller than JSON lines for
    metrics and >= 90 % for logs (one JSON object per row, UTF-8)."""
    sizes = {}
    for name, columns, rows in (("system_metrics", METRIC_COLS, list(metric_rows(131_072, seed=3))),
                                ("system_logs", LOG_COLS, list(log_rows(65_536, seed=3)))):
        m = af.write_archive(tmp_path / name, {name: (columns, rows)})
        assert m["compression"]["level"] == af.LEVEL == 19
        sizes[name] = (m["data_bytes"], jsonl_bytes(columns, rows), len(rows))
    for name, (ours, jsonl, n) in sizes.items():
        print(f"{name}: {ours / n:.2f} B/row vs JSON lines {jsonl / n:.1f} B/row "
              f"({100 * (1 - ours / jsonl):.2f} % smaller)")
    ours, jsonl, _ = sizes["system_metrics"]
    assert ours <= 0.05 * jsonl
    ours, jsonl, _ = sizes["system_logs"]
    assert ours <= 0.10 * jsonl


# -- the format spec (module docstring) is enough to read an archive ---------------------------

def _spec_reader(path):
    """A reader written from the module docstring alone: struct + zstandard."""
    import struct

    import zstandard
    data = open(path, "rb").read()
    assert data[:4] == b"LBHA" and struct.unpack_from("<HH", data, 4) == (1, 0)
    pos, tables, out = 8, [], {}

    def take(n):
        nonlocal pos
        pos += n
        return data[pos - n:pos]

    def stream():
        codec, raw_len, stored = struct.unpack("<BQQ", take(17))
        raw = take(stored)
        return raw if codec == 0 else zstandard.ZstdDecompressor().decompress(raw)

    def ints():
        order, width = take(1)[0], take(1)[0]
        seeds = struct.unpack(f"<{order}q", take(8 * order))
        raw = stream()
        vals = [int.from_bytes(raw[i:i + width], "little", signed=True)
                for i in range(0, len(raw), width)]
        for seed in reversed(seeds):
            vals = list(itertools.accumulate(vals, initial=seed))
        return vals

    while True:
        kind, length = struct.unpack("<BQ", take(9))
        if kind == 0:
            return out, json.loads(take(length))
        if kind == 1:
            tables.append(json.loads(take(length)))
            continue
        tno, nrows = struct.unpack("<HI", take(6))
        cols = []
        for _ in tables[tno]["columns"]:
            enc, flags = take(1)[0], take(1)[0]
            mask = stream() if flags & 1 else bytes(nrows)
            if enc == 0:
                vals, mask = [], bytes([1]) * nrows
            elif enc == 1:
                vals = ints()
            elif enc == 2:
                e = take(1)[0]
                vals = [float(q) / 10.0 ** e for q in ints()]
            elif enc == 3:
                vals = [struct.unpack("<d", struct.pack("<q", b))[0] for b in ints()]
            elif enc == 4:
                lengths, blob = ints(), stream()
                offs = [0, *itertools.accumulate(lengths)]
                values = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip(offs, offs[1:])]
                vals = [values[i] for i in ints()]
            else:
                vals = json.loads(stream().decode("utf-8", "surrogatepass"))
            it = iter(vals)
            cols.append([None if m else next(it) for m in mask])
        out.setdefault(tables[tno]["table"], []).extend(zip(*cols))


def test_an_independent_reader_of_the_spec_gets_the_same_rows(archive, sdk_tables, tmp_path):
    base, manifest = archive
    rows, end = _spec_reader(f"{base}.lbha")
    assert end == {"tables": manifest["tables"]}
    for name, (_, expected) in sdk_tables.items():
        assert exact(rows[name]) == exact(expected), name
    edge = [(1, -0.0, float("inf"), None, 2 ** 70, "한"), (2, 0.1, 12.5, "x", 3, None)]
    af.write_archive(tmp_path / "e", {"t": (["a", "b", "c", "d", "e", "f"], edge)}, level=1)
    assert exact(_spec_reader(tmp_path / "e.lbha")[0]["t"]) == exact(edge)
