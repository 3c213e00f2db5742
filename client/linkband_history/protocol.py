"""The wire protocol between SDK processes, the daemon and tools (version 1).

Ingest (PUSH -> PULL), one msgpack array per ZeroMQ message::

    [PROTOCOL_VERSION, header, payload]
    header  = [client_id: str, seq: int, sent_at: float, rec0: int, dropped: int]
    payload = {kind: [row, ...], ...}      kind in KINDS, row = list in FIELDS[kind] order

``seq`` increases by one per message of a client; ``rec0`` is the number of
records the client had put into earlier messages, so the daemon counts records
(not only messages) lost in a gap; ``dropped`` is the client's running count of
records it had to drop itself (queue overflow). A message with an empty payload
is a *marker*: :meth:`HistoryClient.flush` sends one and waits for the daemon
to commit it.

Rows are positional so the writer can hand them to SQLite without touching
each record in Python. Timestamps are UTC epoch seconds; JSON fields (tags,
metadata, extra_data) travel as compact JSON text.

Queries (REQ -> REP)::

    request = [PROTOCOL_VERSION, command: str, params: map]
    reply   = {"ok": True, "rows": [...], "next": cursor | None, ...}
            | {"ok": False, "error": {"code": str, "message": str}}
"""
from __future__ import annotations

import json
import logging
import uuid

import msgpack

from .times import to_epoch

PROTOCOL_VERSION = 1

KINDS = ("metric", "performance", "log", "alert")

FIELDS: dict[str, tuple[str, ...]] = {
    "metric": ("timestamp", "metric_type", "metric_name", "value", "unit", "tags"),
    "performance": ("timestamp", "component", "operation", "duration_ms", "throughput",
                    "efficiency_percent", "error_count", "metadata"),
    "log": ("timestamp", "level", "logger_name", "message", "module", "function_name",
            "line_number", "thread_id", "process_id", "extra_data"),
    "alert": ("timestamp", "alert_id", "level", "category", "title", "description",
              "source_component", "acknowledged_at", "resolved_at", "metadata"),
}

# Where keys a record carries beyond its fields end up, so nothing is lost.
JSON_FIELD = {"metric": "tags", "performance": "metadata", "log": "extra_data", "alert": "metadata"}
JSON_FIELDS = frozenset(JSON_FIELD.values())
TIME_FIELDS = frozenset({"timestamp", "acknowledged_at", "resolved_at"})
ALIASES = {"alert": {"message": "description", "source": "source_component"},
           "log": {"logger": "logger_name", "name": "logger_name"}}
DEFAULTS = {"metric": {"metric_type": "custom"}, "log": {"logger_name": "root"},
            "alert": {"category": "SYSTEM"}}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ALERT_LEVELS = ("INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "ERR": "ERROR"}

_FIELD_INDEX = {k: {f: i for i, f in enumerate(v)} for k, v in FIELDS.items()}


class ProtocolError(ValueError):
    """A frame or request that does not follow this protocol."""


def dumps_json(value) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def normalize_level(level) -> str:
    s = str(level).strip().upper()
    if isinstance(level, int) and not isinstance(level, bool):
        s = logging.getLevelName(level)
    return _LEVEL_ALIASES.get(s, s)


def row_from_record(kind: str, record: dict, now: float) -> list:
    """Turn one client record (a dict) into the positional row of ``kind``.

    Raises ValueError on a value that cannot be converted (a bad timestamp);
    missing required fields are left as None for the daemon to reject.
    """
    index = _FIELD_INDEX[kind]
    row = [None] * len(index)
    extra = None
    aliases = ALIASES.get(kind)
    for key, value in record.items():
        if aliases and key in aliases and aliases[key] not in record:
            key = aliases[key]
        i = index.get(key)
        if i is None:
            if extra is None:
                extra = {}
            extra[key] = value
        else:
            row[i] = value
    for key, value in DEFAULTS.get(kind, {}).items():
        if row[index[key]] is None:
            row[index[key]] = value
    for key in TIME_FIELDS:
        i = index.get(key)
        if i is not None and row[i] is not None:
            row[i] = to_epoch(row[i])
    if row[0] is None:
        row[0] = now
    if kind in ("log", "alert") and row[index["level"]] is not None:
        row[index["level"]] = normalize_level(row[index["level"]])
    if kind == "alert" and row[index["alert_id"]] is None:
        row[index["alert_id"]] = str(uuid.uuid4())
    j = index[JSON_FIELD[kind]]
    value = row[j]
    if extra:
        if value is None:
            value = extra
        elif isinstance(value, dict):
            value = {**extra, **value}
        else:
            value = {**extra, "value": value}
    if value is not None and not isinstance(value, str):
        value = dumps_json(value)
    elif isinstance(value, str):
        value = dumps_json(value)  # a bare string is stored as a JSON string
    row[j] = value
    return row


def record_from_row(kind: str, row) -> dict:
    return dict(zip(FIELDS[kind], row))


# -- ingest frames ---------------------------------------------------------

def encode_message(client_id: str, seq: int, sent_at: float, rec0: int, dropped: int,
                   payload: dict) -> bytes:
    return msgpack.packb([PROTOCOL_VERSION, [client_id, seq, sent_at, rec0, dropped], payload],
                         use_bin_type=True)


def decode_message(frame: bytes):
    """Return ``(header, payload)``; raise ProtocolError on a malformed frame.

    msgpack bounds every container and string by the frame's own length, and
    ZeroMQ bounds the frame (MAXMSGSIZE).
    """
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types
        raise ProtocolError(f"bad_frame: {exc.__class__.__name__}") from None
    if not isinstance(msg, list) or len(msg) != 3:
        raise ProtocolError("bad_frame: not a 3-element array")
    version, header, payload = msg
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"bad_version: {version!r}")
    if (not isinstance(header, list) or len(header) != 5 or not isinstance(header[0], str)
            or not header[0] or len(header[0]) > 64
            or not all(type(x) is int and x >= 0 for x in (header[1], header[3], header[4]))
            or not isinstance(header[2], (int, float))):
        raise ProtocolError("bad_header")
    if not isinstance(payload, dict):
        raise ProtocolError("bad_frame: payload is not a map")
    return header, payload


# -- queries ---------------------------------------------------------------

def encode_request(command: str, params: dict | None = None) -> bytes:
    return msgpack.packb([PROTOCOL_VERSION, command, params or {}], use_bin_type=True,
                         default=_default)


def decode_request(frame: bytes):
    try:
        msg = msgpack.unpackb(frame, raw=False)
    except Exception as exc:
        raise ProtocolError(f"request is not msgpack: {exc.__class__.__name__}") from None
    if not isinstance(msg, list) or len(msg) != 3 or not isinstance(msg[1], str) \
            or not isinstance(msg[2], dict):
        raise ProtocolError("request must be [version, command, params]")
    if msg[0] != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {msg[0]!r}")
    return msg[1], msg[2]


def ok(rows=None, next=None, **extra) -> dict:
    reply = {"ok": True, "rows": rows if rows is not None else [], "next": next}
    reply.update(extra)
    return reply


def error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


def encode_reply(reply: dict) -> bytes:
    return msgpack.packb(reply, use_bin_type=True, default=_default)


def decode_reply(frame: bytes) -> dict:
    return msgpack.unpackb(frame, raw=False)


def _default(obj):
    from datetime import date, datetime
    if isinstance(obj, (datetime, date)):
        return to_epoch(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")
