"""Export a listing to CSV, JSON lines or Parquet, page by page.

Memory stays bounded by one page: each page of the ``metrics``, ``performance``,
``logs`` or ``alerts`` command is written before the next is asked for, using
the keyset cursor the daemon returns. JSON columns (tags, metadata,
extra_data) are written as JSON text in CSV and Parquet and as objects in JSON
lines. Parquet needs pyarrow (``pip install 'linkband-history[parquet]'``).

A CSV cell whose text a spreadsheet would take for a formula (it starts with
``= + - @``, a tab or a CR: OWASP's list) gets a leading ``'``; numbers stay
numbers. ``read_back`` undoes it exactly: a text that already starts with
``'`` before such a character gets one more, so every cell reads back as sent.
"""
from __future__ import annotations

import csv
import json

from .protocol import FIELDS, JSON_FIELDS

COMMANDS = {"metric": "metrics", "performance": "performance", "log": "logs", "alert": "alerts"}
KIND_NAMES = {"metrics": "metric", "metric": "metric", "performance": "performance",
              "logs": "log", "log": "log", "alerts": "alert", "alert": "alert"}
FORMATS = ("csv", "jsonl", "parquet")
PAGE = 10_000
INT_COLUMNS = frozenset({"id", "error_count", "line_number", "thread_id", "process_id"})
FLOAT_COLUMNS = frozenset({"timestamp", "value", "duration_ms", "throughput", "efficiency_percent",
                           "acknowledged_at", "resolved_at"})
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(column: str, value):
    """One CSV cell: empty for None, JSON text for the JSON columns, a formula-looking
    text escaped with a leading ``'``, anything else (numbers) as it is."""
    if value is None:
        return ""
    if column in JSON_FIELDS:
        return json.dumps(value, ensure_ascii=False)      # starts with { [ " or a digit
    if isinstance(value, str) and value.lstrip("'").startswith(FORMULA_START):
        return "'" + value
    return value


def csv_unescape(text: str) -> str:
    """The text ``csv_cell`` was given for a text cell."""
    if text.startswith("'") and text.lstrip("'").startswith(FORMULA_START):
        return text[1:]
    return text


def pages(client, kind: str, params: dict, page_size: int = PAGE):
    """Yield ``(rows, total)`` page by page (total: of the first page, else None)."""
    command = COMMANDS[kind]
    params = dict(params, limit=page_size)
    first = True
    while True:
        reply = client.query(command, **params, **({"count": True} if first else {}))
        if not reply.get("ok"):
            err = reply.get("error", {})
            raise RuntimeError(f"{err.get('code')}: {err.get('message')}")
        yield reply["rows"], reply.get("total")
        first = False
        if not reply.get("next"):
            return
        params["cursor"] = reply["next"]


class _Csv:
    def __init__(self, f, columns):
        self.columns = columns
        self.w = csv.writer(f)
        self.w.writerow(columns)

    def write(self, rows):
        for r in rows:
            self.w.writerow([csv_cell(c, r.get(c)) for c in self.columns])

    def close(self):
        pass


class _Jsonl:
    def __init__(self, f, columns):
        self.f = f

    def write(self, rows):
        for r in rows:
            self.f.write(json.dumps(r, ensure_ascii=False) + "\n")

    def close(self):
        pass


class _Parquet:
    def __init__(self, path, columns):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise RuntimeError("parquet export needs pyarrow: pip install 'linkband-history[parquet]'") from None
        self.pa = pa
        self.columns = columns
        self.schema = pa.schema([(c, pa.int64() if c in INT_COLUMNS else
                                  pa.float64() if c in FLOAT_COLUMNS else pa.string())
                                 for c in columns])
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, rows):
        data = {c: [(json.dumps(r[c], ensure_ascii=False) if c in JSON_FIELDS and r.get(c) is not None
                     else r.get(c)) for r in rows] for c in self.columns}
        self.writer.write_table(self.pa.table(data, schema=self.schema))

    def close(self):
        self.writer.close()


def export(client, kind: str, params: dict, fmt: str, path: str, progress=None) -> int:
    """Write every matching row of ``kind`` to ``path``; return the row count.

    ``progress(done, total)`` is called after each page when given.
    """
    kind = KIND_NAMES[kind]
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    columns = ["id", *FIELDS[kind]]
    done = 0
    if fmt == "parquet":
        out, f = _Parquet(path, columns), None
    else:
        f = open(path, "w", newline="", encoding="utf-8")
        out = (_Csv if fmt == "csv" else _Jsonl)(f, columns)
    total = None
    try:
        for rows, page_total in pages(client, kind, params):
            total = page_total if page_total is not None else total
            out.write(rows)
            done += len(rows)
            if progress:
                progress(done, total)
    finally:
        out.close()
        if f is not None:
            f.close()
    return done


def read_back(path: str, fmt: str, kind: str) -> list[dict]:
    """Rows of an exported file, typed as the daemon returns them (for checks)."""
    kind = KIND_NAMES[kind]
    columns = ["id", *FIELDS[kind]]
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    if fmt == "parquet":
        import pyarrow.parquet as pq
        rows = pq.read_table(path).to_pylist()
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        d = {}
        for c in columns:
            v = r.get(c)
            if v == "" or v is None:
                d[c] = None
            elif c in JSON_FIELDS:
                d[c] = json.loads(v)
            elif isinstance(v, str) and c in INT_COLUMNS:
                d[c] = int(v)
            elif isinstance(v, str) and c in FLOAT_COLUMNS:
                d[c] = float(v)
            elif isinstance(v, str) and fmt == "csv":
                d[c] = csv_unescape(v)
            else:
                d[c] = v
        out.append(d)
    return out
