"""Import the SDK's own ``history.db`` into the running daemon, through its writer.

The SDK wrote five tables with ``datetime.isoformat()`` timestamps, in practice
naive local time: they are read in ``tz`` (a zoneinfo name; None: this
machine's zone), aware ones as they are, and stored as UTC epoch seconds.
Enum values and JSON columns are kept as they are.

Every row travels with a *source key*: a 64-bit hash of its table, its id
(AUTOINCREMENT: never reused in that file), its timestamp text and its
``created_at`` text. The writer keeps the keys of the rows it stored in the
same transaction as the rows and skips a row whose key it has seen, so a second
import of the same file (or of a copy of it, wherever it lies) stores nothing,
and an import cut short goes on where it stopped. No state is kept beside the
file. Each row's ``created_at`` (SQLite's ``CURRENT_TIMESTAMP``: UTC, whatever
``tz`` says) travels too, and stays the row's ``created_at`` here.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from datetime import datetime, timezone, tzinfo

import msgpack

from . import models
from .queries import ask

__all__ = ["import_sdk_db", "TABLES"]

TABLES = {"system_metrics": "metric", "performance_data": "performance",
          "system_logs": "log", "alert_history": "alert", "data_summaries": "summary"}
JSON_COLUMNS = frozenset({"tags", "metadata", "extra_data", "summary_data"})
TIME_COLUMNS = ("timestamp", "acknowledged_at", "resolved_at")
CHUNK_ROWS = 500
CHUNK_BYTES = 512 << 10          # under the query socket's request bound, with room


def source_key(table: str, row: dict) -> int:
    text = "\0".join(str(row.get(c)) for c in ("id", "timestamp", "created_at"))
    digest = hashlib.blake2b(f"{table}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def zone(name: str | None) -> tzinfo | None:
    """The zone ``name`` (``Asia/Seoul``), or None for this machine's local zone."""
    if not name:
        return None
    from zoneinfo import ZoneInfo
    return ZoneInfo(name)


def epoch(value, tz: tzinfo | None) -> float | None:
    """An SDK timestamp (ISO text) as UTC epoch seconds; naive text is in ``tz``."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO timestamp: {value!r}") from None
    if dt.tzinfo is None and tz is not None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()                  # naive without tz: local time


def record(kind: str, row: dict, tz: tzinfo | None) -> dict:
    """One SDK row as the record :func:`models.to_wire` would make of it."""
    out = {}
    for field in models.FIELDS_OF[kind]:
        value = row.get(field)
        if field in TIME_COLUMNS:
            value = epoch(value, tz)
        elif field in JSON_COLUMNS and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass                        # not JSON: kept as the text it is
        out[field] = value
    return out


def _columns(conn, table: str) -> list[str] | None:
    cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    return cols or None


def import_sdk_db(path, *, tz=None, client=None, progress=None) -> dict:
    """Import the SDK database at ``path``; per table ``{read, stored, duplicates,
    refused, reasons: {reason: rows}}``. ``tz``: the zone of its naive timestamps
    (a name or a tzinfo; None: local). ``client``: a :class:`HistoryClient`
    (default: one on the default endpoints). ``progress(table, done, total)`` is
    called after each chunk."""
    zone_info = zone(tz) if isinstance(tz, str) else tz
    own = client is None
    if own:
        from ..client import HistoryClient
        client = HistoryClient(query_timeout=60.0)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return {table: _import_table(conn, client, table, kind, zone_info, progress)
                for table, kind in TABLES.items()}
    finally:
        conn.close()
        if own:
            client.close()


def _import_table(conn, client, table: str, kind: str, tz, progress) -> dict:
    result = {"read": 0, "stored": 0, "duplicates": 0, "refused": 0, "reasons": Counter()}
    if _columns(conn, table) is None:
        result["missing"] = True
        return _plain(result)
    total = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    batch: list = []
    size = 0
    for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY id'):
        row = dict(row)
        result["read"] += 1
        try:
            rec = record(kind, row, tz)
        except ValueError as exc:
            _refuse(result, str(exc))
            continue
        try:
            created = epoch(row.get("created_at"), timezone.utc)
        except ValueError:
            created = None
        if created is not None and not 0 <= created < 1e11:
            created = None                  # not a usable time: stored now, as a new row
        batch.append((rec, source_key(table, row), created))
        size += len(msgpack.packb(rec, use_bin_type=True, default=str))
        if len(batch) >= CHUNK_ROWS or size >= CHUNK_BYTES:
            _send(client, kind, batch, result)
            batch, size = [], 0
            if progress:
                progress(table, result["read"], total)
    if batch:
        _send(client, kind, batch, result)
    if progress:
        progress(table, result["read"], total)
    return _plain(result)


def _send(client, kind: str, batch: list, result: dict) -> None:
    reply = ask(client, "sdk.store", kind=kind, rows=[r for r, _, _ in batch],
                keys=[k for _, k, _ in batch], created=[c for _, _, c in batch])["rows"][0]
    result["stored"] += reply["stored"]
    result["duplicates"] += reply["duplicates"]
    for _, reason in reply["refused"]:
        _refuse(result, reason)


def _refuse(result: dict, reason: str) -> None:
    result["refused"] += 1
    result["reasons"][reason] += 1


def _plain(result: dict) -> dict:
    result["reasons"] = dict(result["reasons"])
    return result
