"""Archive files of history rows: ``<name>.lbha`` (columnar, zstd) + ``<name>.manifest.json``.

A pure module (no database): :func:`write_archive` takes rows and writes the
two files, :func:`read_archive` gives the rows back exactly (floats bit for
bit, None, 64-bit ints, any str), :func:`verify` checks the manifest's sha256.
It needs only the standard library and ``zstandard``; without the daemon::

    python -m linkband_historyd.archive.file_format dump FILE.lbha [--table T] [--format jsonl|csv]
    python -m linkband_historyd.archive.file_format info FILE.manifest.json [--json]
    python -m linkband_historyd.archive.file_format verify FILE.lbha

Data file, format version 1. All integers are little-endian (u8..u64
unsigned, i64 two's complement); JSON is UTF-8 text::

    File    = "LBHA"  u16 version (=1)  u16 reserved (=0)  Record*
    Record  = u8 kind  u64 length  payload[length]
      kind 1 TABLE: JSON {"table": name, "columns": [name, ...]}; the n-th TABLE
                    record (from 0) defines table number n.
      kind 2 BLOCK: u16 table number, u32 nrows, then one Column per column, in order.
      kind 0 END:   JSON {"tables": {...}}, the manifest's "tables"; always the last
                    record (a file without it is truncated).
    Column  = u8 encoding  u8 flags  [Stream mask, if flags & 1]  body
      The mask has nrows bytes, 1 = NULL, 0 = value; the body holds only the m
      non-NULL values, in row order (m = nrows when there is no mask).
      0 NULL     every row is NULL: no mask, no body
      1 INT      IntStream                                          -> int
      2 DECIMAL  u8 e, IntStream q; value = double(q) / 10.0**e     -> float
                 (written only with |q| <= 2**53 and e <= 15: both operands are
                 exact doubles and the IEEE division yields the value bit for bit)
      3 FLOAT64  IntStream of the IEEE-754 binary64 bit patterns as i64 -> float
      4 STRING   IntStream: UTF-8 byte lengths of the k distinct values (first-seen
                 order); Stream: those values' bytes, concatenated; IntStream:
                 m indexes into the k values. (Lone surrogates are kept as the
                 3-byte sequences of Python's "surrogatepass".)                  -> str
      5 JSON     Stream: a JSON array of the m values (mixed types, ints beyond i64)
    IntStream = u8 order (0, 1, 2)  u8 width (1, 2, 4, 8)  i64 seed * order
                Stream of signed integers of `width` bytes.
      order 0 holds the values; order k holds their k-th differences (1 = delta,
      2 = delta of delta): undo each by a running sum that starts at a seed, the
      last seed first: [s, s + d0, s + d0 + d1, ...]. Every step fits an i64.
    Stream  = u8 codec  u64 raw_length  u64 stored_length  data[stored_length]
      codec 0 = stored as is; codec 1 = one zstd frame (content size and frame
      checksum included) that decompresses to raw_length bytes.

The writer chooses per block and column: DECIMAL when every float is a short
decimal (timestamps in whole microseconds, values rounded to 0.1), else
FLOAT64; the difference order whose bytes a fast zstd level compresses best;
the narrowest width. Streams are compressed at ``level`` (19), on a thread
pool; the very redundant ones (those a fast level already shrinks many times)
at level 9, as good and much faster there. Blocks hold at most ``block_rows`` rows (65,536): memory stays
bounded whatever the number of rows.

Manifest (JSON): format, format_version, created_at (ISO-8601 UTC), data_file,
data_sha256, data_bytes, compression {codec, level, block_rows, zstd_version},
rows, tables {name: {columns, types (INTEGER, REAL, TEXT, ANY or NULL), nulls,
rows, blocks, min_timestamp, max_timestamp, encoded_bytes, stored_bytes}}, meta.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import math
import operator
import os
import struct
import sys
import threading
from array import array
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Iterable, Iterator

import zstandard

__all__ = ["write_archive", "read_archive", "archive_tables", "read_manifest", "verify",
           "ArchiveError", "BLOCK_ROWS", "LEVEL", "FORMAT_VERSION"]

MAGIC = b"LBHA"
FORMAT_VERSION = 1
BLOCK_ROWS = 65536
LEVEL = 19
FAST_LEVEL = 3                      # only to choose a difference order
R_END, R_TABLE, R_BLOCK = 0, 1, 2
E_NULL, E_INT, E_DECIMAL, E_FLOAT64, E_STRING, E_JSON = range(6)
TYPE_OF = {E_INT: "INTEGER", E_DECIMAL: "REAL", E_FLOAT64: "REAL", E_STRING: "TEXT", E_JSON: "ANY"}

_HEAD, _REC, _BLOCK, _STREAM = map(struct.Struct, ("<4sHH", "<BQ", "<HI", "<BQQ"))
_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}          # width -> array typecode
_BIG = sys.byteorder == "big"
_MAX_E, _EXACT, _I64 = 15, 2 ** 53, 1 << 63
assert all(array(c).itemsize == w for w, c in _CODES.items())


class ArchiveError(ValueError):
    """Not a valid archive: bad magic or version, truncated, corrupt."""


# -- encoding -------------------------------------------------------------------
# A column encodes to a list of parts: bytes (final) or [raw bytes] (a Stream
# still to compress, done on the thread pool).

_local = threading.local()


def _zstd(level: int) -> zstandard.ZstdCompressor:
    cache = _local.__dict__.setdefault("c", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=True)
    return cache[level]


def _stream(raw: bytes, level: int) -> bytes:
    data = raw
    if len(raw) >= 64:
        data = _zstd(min(level, FAST_LEVEL)).compress(raw)
        if level > FAST_LEVEL:         # very redundant bytes: high levels are slow there
            data = _zstd(level if len(data) * 20 > len(raw) else min(level, 9)).compress(raw)
    codec = 1 if len(data) < len(raw) else 0
    return _STREAM.pack(codec, len(raw), len(data) if codec else len(raw)) + (data if codec else raw)


def _packed(vals: list[int]):
    """(width, little-endian bytes) in the narrowest signed width; None beyond i64."""
    if not vals:
        return 1, b""
    lo, hi = min(vals), max(vals)
    for w, code in _CODES.items():
        lim = 1 << (8 * w - 1)
        if -lim <= lo and hi < lim:
            a = array(code, vals)
            if _BIG:
                a.byteswap()
            return w, a.tobytes()
    return None


def _int_parts(vals: list[int]) -> list:
    cands, seeds, cur = [], [], vals
    for order in range(3):
        packed = _packed(cur)
        if packed is None:
            break
        cands.append((order, tuple(seeds), packed))
        if len(cur) < 2:
            break
        seeds.append(cur[0])
        cur = [b - a for a, b in zip(cur, itertools.islice(cur, 1, None))]
    if not cands:
        raise OverflowError("integer outside the 64-bit range")
    best = cands[0]
    if len(cands) > 1 and len(vals) > 16:
        fast = _zstd(FAST_LEVEL)
        best = min(cands, key=lambda c: (len(fast.compress(c[2][1])), c[0]))
    order, seeds, (width, raw) = best
    return [struct.pack(f"<BB{order}q", order, width, *seeds), [raw]]


def _decimal(vals: list[float]):
    """(e, q) such that every value == q / 10.0**e exactly, or None."""
    e, p = 0, 1.0
    try:
        for v in vals:
            while round(v * p) / p != v:
                e += 1
                if e > _MAX_E:
                    return None
                p = 10.0 ** e
        q = [round(v * p) for v in vals]
    except (OverflowError, ValueError):          # inf, nan
        return None
    if q and (max(q) > _EXACT or min(q) < -_EXACT) or any(a / p != v for a, v in zip(q, vals)):
        return None
    if 0.0 in vals and any(v == 0.0 and math.copysign(1.0, v) < 0 for v in vals):
        return None                              # -0.0 would come back as 0.0
    return e, q


def _encode_column(col: tuple) -> tuple[int, list, list]:
    """(encoding, parts, the non-NULL values) of one column of a block."""
    kinds = set(map(type, col))
    parts: list = []
    flags, vals = 0, col
    if type(None) in kinds:
        kinds.discard(type(None))
        if not kinds:
            return E_NULL, [bytes((E_NULL, 0))], []
        flags, parts = 1, [[bytes(map(operator.is_, itertools.repeat(None), col))]]
        vals = [v for v in col if v is not None]
    if kinds == {int} and -_I64 <= min(vals) and max(vals) < _I64:
        enc, body = E_INT, _int_parts(list(vals))
    elif kinds == {float}:
        dec = _decimal(vals)
        if dec is not None:
            enc, body = E_DECIMAL, [bytes((dec[0],))] + _int_parts(dec[1])
        else:
            bits = array("q")
            bits.frombytes(array("d", vals).tobytes())
            enc, body = E_FLOAT64, _int_parts(bits.tolist())
    elif kinds == {str}:
        index: dict[str, int] = {}
        idx = [index.setdefault(s, len(index)) for s in vals]
        data = [s.encode("utf-8", "surrogatepass") for s in index]
        enc = E_STRING
        body = _int_parts(list(map(len, data))) + [[b"".join(data)]] + _int_parts(idx)
    else:
        text = json.dumps(list(vals), ensure_ascii=False, separators=(",", ":"))
        enc, body = E_JSON, [[text.encode("utf-8", "surrogatepass")]]
    return enc, [bytes((enc, flags))] + parts + body, vals


# -- writing --------------------------------------------------------------------

class _TableStats:
    def __init__(self, columns, time_column: str):
        self.columns = list(columns)
        self.encodings = [set() for _ in self.columns]
        self.nulls = [0] * len(self.columns)
        self.rows = self.blocks = self.encoded = self.stored = 0
        self.tcol = self.columns.index(time_column) if time_column in self.columns else None
        self.tmin = self.tmax = None

    def encode_block(self, tno: int, block: list) -> list:
        n, ncols = len(block), len(self.columns)
        if any(len(r) != ncols for r in block):
            raise ValueError(f"rows must have {ncols} values ({', '.join(self.columns)})")
        parts: list = [_BLOCK.pack(tno, n)]
        for c, col in enumerate(zip(*block) if ncols else ()):
            enc, col_parts, vals = _encode_column(col)
            parts += col_parts
            self.encodings[c].add(enc)
            self.nulls[c] += n - len(vals)
            if c == self.tcol and vals and enc in (E_INT, E_DECIMAL, E_FLOAT64):
                lo, hi = min(vals), max(vals)
                self.tmin = lo if self.tmin is None else min(self.tmin, lo)
                self.tmax = hi if self.tmax is None else max(self.tmax, hi)
        self.rows += n
        self.blocks += 1
        return parts

    def summary(self) -> dict:
        types = []
        for encs in self.encodings:
            named = {TYPE_OF[e] for e in encs if e != E_NULL}
            types.append(named.pop() if len(named) == 1 else "ANY" if named else "NULL")
        return {"columns": self.columns, "types": types, "nulls": self.nulls, "rows": self.rows,
                "blocks": self.blocks, "min_timestamp": self.tmin, "max_timestamp": self.tmax,
                "encoded_bytes": self.encoded, "stored_bytes": self.stored}


def _write_json(path: str, obj: dict) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def write_archive(path_without_ext, tables: dict, meta: dict | None = None, *,
                  level: int = LEVEL, block_rows: int = BLOCK_ROWS, threads: int | None = None,
                  time_column: str = "timestamp") -> dict:
    """Write ``<path>.lbha`` and ``<path>.manifest.json``; return the manifest.

    ``tables`` maps a table name to ``(columns, rows)``, rows any iterable of
    tuples, consumed once, ``block_rows`` at a time. Values: None, int, float,
    str (anything else JSON holds is kept as JSON). ``threads`` compress
    (default: min(4, CPUs)). Both files go to ``.tmp`` names, are fsynced and
    renamed, the manifest last: a manifest always describes a whole data file.
    """
    base = os.fspath(path_without_ext)
    data_path, man_path = base + ".lbha", base + ".manifest.json"
    workers = threads or min(4, os.cpu_count() or 1)
    stats: dict[str, _TableStats] = {}
    inflight: deque = deque()                    # blocks whose Streams are compressing
    sha, size = hashlib.sha256(), 0

    def emit(data: bytes) -> int:
        nonlocal size
        f.write(data)
        sha.update(data)
        size += len(data)
        return len(data)

    def record(kind: int, payload: bytes) -> int:
        return emit(_REC.pack(kind, len(payload)) + payload)

    def drain(keep: int) -> None:                # write finished blocks, in order
        while len(inflight) > keep:
            st, parts, futures = inflight.popleft()
            done = iter([fu.result() for fu in futures])
            st.stored += record(R_BLOCK, b"".join(
                next(done) if isinstance(p, list) else p for p in parts))

    try:
        with open(data_path + ".tmp", "wb") as f, ThreadPoolExecutor(workers) as pool:
            emit(_HEAD.pack(MAGIC, FORMAT_VERSION, 0))
            for tno, (name, (columns, rows)) in enumerate(tables.items()):
                st = stats[name] = _TableStats(columns, time_column)
                drain(0)
                record(R_TABLE, json.dumps({"table": name, "columns": st.columns},
                                           ensure_ascii=False).encode())
                it = iter(rows)
                while block := list(itertools.islice(it, block_rows)):
                    parts = st.encode_block(tno, block)
                    pending = [p[0] for p in parts if isinstance(p, list)]
                    st.encoded += sum(map(len, pending))
                    inflight.append((st, parts, [pool.submit(_stream, r, level) for r in pending]))
                    del block, parts, pending
                    drain(workers)
            drain(0)
            summary = {n: s.summary() for n, s in stats.items()}
            record(R_END, json.dumps({"tables": summary}, ensure_ascii=False).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(data_path + ".tmp", data_path)
    except BaseException:
        if os.path.exists(data_path + ".tmp"):
            os.unlink(data_path + ".tmp")
        raise
    manifest = {
        "format": "linkband-history-archive", "format_version": FORMAT_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "data_file": os.path.basename(data_path), "data_sha256": sha.hexdigest(),
        "data_bytes": size,
        "compression": {"codec": "zstd", "level": level, "block_rows": block_rows,
                        "zstd_version": ".".join(map(str, zstandard.ZSTD_VERSION))},
        "rows": sum(s.rows for s in stats.values()), "tables": summary, "meta": meta or {},
    }
    _write_json(man_path, manifest)
    return manifest


# -- reading --------------------------------------------------------------------

class _Buf:
    def __init__(self, data: bytes):
        self.data, self.pos = memoryview(data), 0
        self.dctx = zstandard.ZstdDecompressor()

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ArchiveError("block is truncated")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def stream(self) -> bytes:
        codec, raw_len, stored = self.unpack(_STREAM.format)
        data = self.take(stored)
        if codec == 0:
            return bytes(data)
        raw = self.dctx.decompress(data, max_output_size=raw_len) if codec == 1 else b""
        if codec != 1 or len(raw) != raw_len:
            raise ArchiveError(f"bad stream (codec {codec})")
        return raw

    def ints(self) -> list[int]:
        order, width = self.unpack("<BB")
        seeds = self.unpack(f"<{order}q")
        a = array(_CODES[width])
        a.frombytes(self.stream())
        if _BIG:
            a.byteswap()
        vals = a.tolist()
        for seed in reversed(seeds):
            vals = list(itertools.accumulate(vals, initial=seed))
        return vals


def _decode_column(buf: _Buf, nrows: int) -> list:
    enc, flags = buf.unpack("<BB")
    if enc == E_NULL:
        return [None] * nrows
    mask = buf.stream() if flags & 1 else None
    if enc == E_INT:
        vals = buf.ints()
    elif enc == E_DECIMAL:
        p = 10.0 ** buf.unpack("<B")[0]
        vals = [q / p for q in buf.ints()]
    elif enc == E_FLOAT64:
        a = array("d")
        a.frombytes(array("q", buf.ints()).tobytes())
        vals = a.tolist()
    elif enc == E_STRING:
        ends = list(itertools.accumulate(buf.ints()))
        blob = buf.stream()
        strs = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip([0] + ends, ends)]
        vals = list(map(strs.__getitem__, buf.ints()))
    elif enc == E_JSON:
        vals = json.loads(buf.stream().decode("utf-8", "surrogatepass"))
    else:
        raise ArchiveError(f"unknown column encoding {enc}")
    if mask is not None:
        if len(mask) != nrows or len(vals) != nrows - sum(mask):
            raise ArchiveError("NULL mask does not match the values")
        out: list = [None] * nrows
        for i, v in zip(itertools.compress(range(nrows), map(operator.not_, mask)), vals):
            out[i] = v
        vals = out
    if len(vals) != nrows:
        raise ArchiveError("column length mismatch")
    return vals


def _scan(path, wanted) -> Iterator[tuple[str, list, int, _Buf | None]]:
    """(table, columns, 0, None) per TABLE record, (table, columns, nrows, payload)
    per BLOCK record of a table in ``wanted`` (None: all); other blocks are skipped."""
    defs: list[tuple[str, list]] = []
    with open(path, "rb") as f:
        def read(n: int) -> bytes:
            data = f.read(n)
            if len(data) != n:
                raise ArchiveError(f"{path}: truncated")
            return data
        head = f.read(_HEAD.size)
        if len(head) != _HEAD.size or head[:4] != MAGIC:
            raise ArchiveError(f"{path}: not a linkband-history archive")
        if _HEAD.unpack(head)[1] != FORMAT_VERSION:
            raise ArchiveError(f"{path}: format version {_HEAD.unpack(head)[1]} is not supported")
        while True:
            kind, length = _REC.unpack(read(_REC.size))
            if kind == R_END:
                read(length)                     # whole, or the file is truncated
                return
            if kind == R_TABLE:
                d = json.loads(read(length))
                defs.append((d["table"], d["columns"]))
                yield d["table"], d["columns"], 0, None
                continue
            if kind != R_BLOCK:
                raise ArchiveError(f"{path}: unknown record kind {kind}")
            tno, nrows = _BLOCK.unpack(read(_BLOCK.size))
            if tno >= len(defs):
                raise ArchiveError(f"{path}: block of an undefined table {tno}")
            if wanted is not None and defs[tno][0] not in wanted:
                f.seek(length - _BLOCK.size, os.SEEK_CUR)
            else:
                yield *defs[tno], nrows, _Buf(read(length - _BLOCK.size))


def archive_tables(path) -> list[tuple[str, list]]:
    """``[(table, columns), ...]`` of a data file, its blocks skipped."""
    return [(name, columns) for name, columns, _, _ in _scan(path, ())]


def read_archive(path, tables: Iterable[str] | None = None) -> Iterator[tuple[str, list, list]]:
    """Yield ``(table, columns, rows)`` per block, rows a list of tuples, in file order;
    only the blocks of ``tables`` if given (the others are skipped undecoded)."""
    for name, columns, nrows, buf in _scan(path, None if tables is None else set(tables)):
        if buf is None:
            continue
        try:
            cols = [_decode_column(buf, nrows) for _ in columns]
        except (KeyError, ValueError, OverflowError, struct.error, zstandard.ZstdError) as exc:
            raise ArchiveError(f"{path}: corrupt block of {name}: {exc}") from None
        if buf.pos != len(buf.data):
            raise ArchiveError(f"{path}: trailing bytes in a block of {name}")
        yield name, columns, (list(zip(*cols)) if cols else [()] * nrows)


def _paths(path) -> tuple[str, str]:
    """(data file, manifest) from either of the two (or the path without extension)."""
    p = os.fspath(path)
    for ext in (".manifest.json", ".lbha"):
        if p.endswith(ext):
            p = p[:-len(ext)]
            break
    return p + ".lbha", p + ".manifest.json"


def read_manifest(path) -> dict:
    with open(_paths(path)[1], encoding="utf-8") as f:
        return json.load(f)


def verify(path) -> bool:
    """True if the data file has the manifest's size and sha256 (either path works)."""
    try:
        manifest = read_manifest(path)
        sha, size = hashlib.sha256(), 0
        with open(_paths(path)[0], "rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
                size += len(chunk)
    except (OSError, ValueError):
        return False
    return size == manifest.get("data_bytes") and sha.hexdigest() == manifest.get("data_sha256")


# -- command line ---------------------------------------------------------------

def _dump(args, out) -> int:
    names = [t for t, _ in archive_tables(args.file)]
    if args.table and args.table not in names:
        sys.stderr.write(f"no table {args.table!r} (tables: {', '.join(names)})\n")
        return 2
    tagged = not args.table and len(names) > 1
    if args.format == "csv" and tagged:
        sys.stderr.write(f"several tables ({', '.join(names)}): choose one with --table\n")
        return 2
    writer, header = csv.writer(out, lineterminator="\n"), False
    for table, columns, rows in read_archive(args.file, [args.table] if args.table else None):
        if args.format == "csv":
            if not header:
                writer.writerow(columns)
                header = True
            writer.writerows(rows)
            continue
        for row in rows:
            d = dict(zip(columns, row))
            out.write(json.dumps({"_table": table, **d} if tagged else d, ensure_ascii=False) + "\n")
    return 0


def _when(ts) -> str:
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(ts)


def _info(args, out) -> int:
    m = read_manifest(args.file)
    if args.json:
        out.write(json.dumps(m, ensure_ascii=False, indent=1) + "\n")
        return 0
    c = m["compression"]
    lines = [f"archive  {m['data_file']} (format {m['format_version']}), created {m['created_at']}",
             f"data     {m['data_bytes']:,} bytes, sha256 {m['data_sha256']}",
             f"codec    {c['codec']} level {c['level']}, blocks of {c['block_rows']:,} rows",
             f"rows     {m['rows']:,}"]
    for name, t in m["tables"].items():
        per = t["stored_bytes"] / t["rows"] if t["rows"] else 0.0
        lines += [f"{name}: {t['rows']:,} rows, {t['blocks']} blocks, {t['stored_bytes']:,} bytes"
                  f" ({per:.2f} B/row), {_when(t['min_timestamp'])} .. {_when(t['max_timestamp'])}"]
        lines += [f"  {col:<20} {typ}{f' ({nulls:,} NULL)' if nulls else ''}"
                  for col, typ, nulls in zip(t["columns"], t["types"], t["nulls"])]
    if m.get("meta"):
        lines.append("meta     " + json.dumps(m["meta"], ensure_ascii=False))
    out.write("\n".join(lines) + "\n")
    return 0


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    ap = argparse.ArgumentParser(prog="python -m linkband_historyd.archive.file_format",
                                 description="Read linkband-history archives without the daemon.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="print the rows of FILE.lbha")
    d.add_argument("file")
    d.add_argument("--table", help="only this table")
    d.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    i = sub.add_parser("info", help="print the summary of FILE.manifest.json")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="the whole manifest")
    sub.add_parser("verify", help="check FILE.lbha against its manifest's sha256").add_argument("file")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "dump":
            return _dump(args, out)
        if args.cmd == "info":
            return _info(args, out)
        ok = verify(args.file)
        out.write("OK\n" if ok else "FAILED: size or sha256 differs from the manifest\n")
        return 0 if ok else 1
    except BrokenPipeError:                      # dump | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
