"""The dataset's tree and the columns of its files, written once (README: "Datasets
for many machines").

    <dir>/kind=<kind>/host=<host>/date=<YYYY-MM-DD>/part-<n>.parquet

``kind``, ``host`` and ``date`` (the UTC date of the rows' timestamps) live in the
path only, as Hive partitioning has it, so an engine reading with Hive
partitioning gets them as columns and no file repeats them. ``n`` is the first row
id a part may hold (the watermark it started from, plus one), zero-padded: the
name of a part's file is known before it is written, which is what lets a run
find the files of a part that a crash left without its watermark. Every file's
key-value metadata says which rows it holds (``linkband.*``, :func:`metadata`).
A file being written has a name starting with "." (``.part-<n>.parquet.tmp``),
which Spark, DuckDB's ``*.parquet`` globs and pyarrow all leave alone.

Nothing here imports pyarrow: the column types are names, turned into Arrow types
by ``part_files``.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

from linkband_history.protocol import FIELDS

FORMAT_VERSION = 1
KINDS = tuple(FIELDS)                 # metric, performance, log, alert

# column -> type: id and int are int64, float is double, timestamp is
# timestamp[us, tz=UTC], string and json are UTF-8 strings (json: JSON text)
COLUMNS: dict[str, dict[str, str]] = {
    "metric": {"id": "id", "timestamp": "timestamp", "metric_type": "string",
               "metric_name": "string", "value": "float", "unit": "string", "tags": "json"},
    "performance": {"id": "id", "timestamp": "timestamp", "component": "string",
                    "operation": "string", "duration_ms": "float", "throughput": "float",
                    "efficiency_percent": "float", "error_count": "int", "metadata": "json"},
    "log": {"id": "id", "timestamp": "timestamp", "level": "string", "logger_name": "string",
            "message": "string", "module": "string", "function_name": "string",
            "line_number": "int", "thread_id": "int", "process_id": "int", "extra_data": "json"},
    "alert": {"id": "id", "timestamp": "timestamp", "alert_id": "string", "level": "string",
              "category": "string", "title": "string", "description": "string",
              "source_component": "string", "acknowledged_at": "timestamp",
              "resolved_at": "timestamp", "metadata": "json"},
}
# columns whose values repeat (names, levels, units, tag sets): dictionary-encoded;
# the others too when their values repeat enough (Parquet falls back by itself)
REPEATING = {"metric_type", "metric_name", "unit", "tags", "component", "operation", "level",
             "logger_name", "module", "function_name", "category", "source_component", "title",
             "message", "description", "metadata", "extra_data", "alert_id"}
NOT_NULL = {"id", "timestamp", "metric_type", "metric_name", "value", "component", "operation",
            "level", "logger_name", "message", "alert_id", "category", "title"}

META_PREFIX = "linkband."


class DatasetError(RuntimeError):
    """The dataset cannot take this export (said why, and what to do)."""


def check_columns() -> None:
    """The files hold the id and every field of the wire protocol, in its order."""
    for kind, fields in FIELDS.items():
        if tuple(COLUMNS[kind]) != ("id", *fields):
            raise AssertionError(f"dataset columns of {kind} differ from protocol.FIELDS")


check_columns()


def date_of(timestamp: float) -> str:
    """The UTC date (``YYYY-MM-DD``) of an epoch time: a row's ``date=`` partition."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")


def part_dir(root: str, kind: str, host: str, date: str) -> str:
    return os.path.join(root, f"kind={kind}", f"host={host}", f"date={date}")


def part_name(first_id: int) -> str:
    return f"part-{first_id:012d}.parquet"


def temp_name(first_id: int) -> str:
    return f".{part_name(first_id)}.tmp"


def metadata(kind: str, host: str, token: str, first_id: int, last_id: int) -> dict[str, str]:
    """A part file's key-value metadata: its rows are those of ``kind`` with
    first_id <= id <= last_id (as the export selected them) whose date is the
    file's; ``token`` names the export (database and target) that wrote it."""
    return {f"{META_PREFIX}format": str(FORMAT_VERSION), f"{META_PREFIX}kind": kind,
            f"{META_PREFIX}host": host, f"{META_PREFIX}token": token,
            f"{META_PREFIX}first_id": str(first_id), f"{META_PREFIX}last_id": str(last_id)}
