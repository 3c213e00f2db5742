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

A message is at most ``MAX_MESSAGE_BYTES`` long as the client library sends it:
it splits a batch whose encoding is longer (:func:`split_rows`), and refuses a
single record that is longer on its own. The daemon's ``ingest.max_message_bytes``
is that plus headroom.

Rows are positional so the writer can hand them to SQLite without touching
each record in Python. Timestamps are UTC epoch seconds; JSON fields (tags,
metadata, extra_data) travel as compact JSON text.

Queries (REQ -> REP), and every request-reply socket inside the daemon too
(the writer's control socket, the scheduler's; see ``rpc.py``)::

    request = [PROTOCOL_VERSION, command: str, params: map]
    reply   = {"ok": True, "rows": [...], "next": cursor | None, ...}
            | {"ok": False, "error": {"code": str, "message": str}}
"""
from __future__ import annotations

import contextlib
import gc
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
_ALIAS_INDEX = {k: {a: _FIELD_INDEX[k][f] for a, f in ALIASES.get(k, {}).items()} for k in FIELDS}
_DEFAULT_INDEX = {k: [(_FIELD_INDEX[k][f], v) for f, v in DEFAULTS.get(k, {}).items()] for k in FIELDS}
_MORE_TIMES = {k: [i for i, f in enumerate(v) if f in TIME_FIELDS and i > 0] for k, v in FIELDS.items()}
_JSON_INDEX = {k: _FIELD_INDEX[k][JSON_FIELD[k]] for k in FIELDS}
_LEVEL_SET = frozenset(LOG_LEVELS)


MAX_COUNTER = 2 ** 53               # sequence numbers and record counts stay exact integers
MAX_MESSAGE_BYTES = 2 << 20         # the client library never sends a longer message
BYTES_PER_CONTAINER = 4             # a frame may hold one array or map per this many bytes
HOOKED_FRAME_BYTES = 64 << 10       # longer frames are decoded with the count checked as it grows


class ProtocolError(ValueError):
    """A frame or request that does not follow this protocol."""


class StringTooLong(ProtocolError):
    """``decode_message(frame, max_str_len=N)``: the frame holds a string longer
    than N bytes (UTF-8). The frame may be fine otherwise: decode it again
    without the bound and look at its strings."""


class TooComplex(ProtocolError):
    """A frame holding more arrays and maps than its size allows (see
    :func:`decode_message`)."""


_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_json_cache: dict = {}
_SCALARS = (str, int, float, bool, type(None))


def dumps_json(value) -> str | None:
    """Compact JSON text. Flat maps of scalars (tags, mostly the same few) are
    encoded once and cached: the key holds each value's type, so 1, 1.0 and
    True never share an entry."""
    if value is None:
        return None
    if value.__class__ is dict and len(value) <= 16:
        vals = tuple(value.values())
        types = tuple(map(type, vals))
        if all(t in _SCALARS for t in types):
            key = (tuple(value), types, vals)
            text = _json_cache.get(key)
            if text is None:
                if len(_json_cache) >= 4096:
                    _json_cache.clear()
                text = _json_cache[key] = _encode_json(value)
            return text
    return _encode_json(value)


def normalize_level(level) -> str:
    if isinstance(level, int) and not isinstance(level, bool):
        return logging.getLevelName(level)
    s = str(level).strip().upper()
    return _LEVEL_ALIASES.get(s, s)


_INF = float("inf")


def row_from_record(kind: str, record: dict, now: float) -> list:
    """Turn one client record (a dict) into the positional row of ``kind``.

    Keys that are not fields of the kind go into its JSON field (tags,
    metadata or extra_data), so nothing is lost. Raises ValueError on a value
    that cannot be converted (a bad timestamp); missing required fields are
    left as None for the daemon to reject. This runs in the caller's thread
    for every record, so the common path is kept short.
    """
    index = _FIELD_INDEX[kind]
    row = [None] * len(index)
    extra = aliased = None
    for key, value in record.items():
        i = index.get(key)
        if i is not None:
            row[i] = value
        elif key in _ALIAS_INDEX[kind]:
            if aliased is None:
                aliased = []
            aliased.append((_ALIAS_INDEX[kind][key], value))
        else:
            if extra is None:
                extra = {}
            extra[key] = value
    if aliased:
        for i, value in aliased:
            if row[i] is None:
                row[i] = value
    for i, value in _DEFAULT_INDEX[kind]:
        if row[i] is None:
            row[i] = value
    ts = row[0]
    if ts is None:
        row[0] = now
    elif ts.__class__ is not float or ts != ts or ts == _INF or ts == -_INF:
        row[0] = to_epoch(ts)
    for i in _MORE_TIMES[kind]:
        if row[i] is not None:
            row[i] = to_epoch(row[i])
    if kind == "log" or kind == "alert":
        level = row[1 + (kind == "alert")]
        if level is not None and level not in _LEVEL_SET:
            row[1 + (kind == "alert")] = normalize_level(level)
        if kind == "alert" and row[1] is None:
            row[1] = str(uuid.uuid4())
    j = _JSON_INDEX[kind]
    value = row[j]
    if extra:
        if value is None:
            value = extra
        elif isinstance(value, dict):
            value = {**extra, **value}
        else:
            value = {**extra, "value": value}
    if value is not None:
        row[j] = dumps_json(value)       # a bare string is stored as a JSON string
    return row


# -- ingest frames ---------------------------------------------------------

_VERSION = msgpack.packb(PROTOCOL_VERSION)


def encode_message(client_id: str, seq: int, sent_at: float, rec0: int, dropped: int,
                   payload: dict) -> bytes:
    return msgpack.packb([PROTOCOL_VERSION, [client_id, seq, sent_at, rec0, dropped], payload],
                         use_bin_type=True)


def decode_message(frame: bytes, max_str_len: int = 0):
    """Return ``(header, payload)``; raise ProtocolError on a malformed frame.

    ZeroMQ bounds the frame (MAXMSGSIZE) and msgpack every container and string
    by the frame's own length. With ``max_str_len``, msgpack also checks every
    string's length in bytes as it decodes (for free) and :class:`StringTooLong`
    is raised when one is longer.

    Decoding amplifies: an empty array is one byte of msgpack and a 56-byte
    Python list (an empty map a 64-byte dict), so 2 MB of them were ~130 MB. A
    frame may therefore hold at most one array or map per ``BYTES_PER_CONTAINER``
    bytes (a message of the client library holds one per row, and a row is
    longer); more raises :class:`TooComplex`. Per-container length limits would
    not do: many short arrays amplify as much as one long one.
    """
    budget = len(frame) // BYTES_PER_CONTAINER + 16
    try:
        msg = _unpack(frame, max_str_len, budget)
    except TooComplex:
        raise
    except Exception as exc:  # msgpack raises several types
        if max_str_len and isinstance(exc, ValueError) and "max_str_len" in str(exc):
            raise StringTooLong(f"string_too_long: over {max_str_len} bytes") from None
        raise ProtocolError(f"bad_frame: {exc.__class__.__name__}") from None
    if not isinstance(msg, list) or len(msg) != 3:
        raise ProtocolError("bad_frame: not a 3-element array")
    version, header, payload = msg
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"bad_version: {version!r}")
    if (not isinstance(header, list) or len(header) != 5 or not isinstance(header[0], str)
            or not header[0] or len(header[0]) > 64
            or not all(type(x) is int and 0 <= x < MAX_COUNTER for x in (header[1], header[3], header[4]))
            or type(header[2]) not in (int, float) or not -1e11 < header[2] < 1e11):
        raise ProtocolError("bad_header")
    if not isinstance(payload, dict):
        raise ProtocolError("bad_frame: payload is not a map")
    return header, payload


def _unpack(frame: bytes, max_str_len: int, budget: int):
    """msgpack's decoding, with at most ``budget`` arrays and maps.

    A short frame is decoded at once and its containers counted afterwards:
    CPython counts the container objects it allocates (``gc.get_count()[0]``;
    no collection runs inside :func:`gc_paused`), so the count costs nothing
    per record, and the frame, refused at once, never held much. A longer frame
    is decoded with a hook on every array and map that stops the decoding as
    soon as the budget is spent, so it never holds more than its budget either.
    """
    kw = {"max_str_len": max_str_len} if max_str_len else {}
    if len(frame) <= HOOKED_FRAME_BYTES:
        with gc_paused():
            before = gc.get_count()[0]
            msg = msgpack.unpackb(frame, raw=False, strict_map_key=True, **kw)
            made = gc.get_count()[0] - before
        if made > budget:
            raise TooComplex(f"frame_too_complex: over {budget} arrays and maps")
        return msg
    left = [budget]

    def spend(container):
        left[0] -= 1
        if left[0] < 0:
            raise TooComplex(f"frame_too_complex: over {budget} arrays and maps")
        return container
    return msgpack.unpackb(frame, raw=False, strict_map_key=True, list_hook=spend,
                           object_hook=spend, **kw)


def pack_payload(payload: dict) -> bytes:
    """The packed payload map of a message (see :func:`message_from_body`)."""
    return msgpack.packb(payload, use_bin_type=True)


def pack_rows(rows: list) -> list[bytes]:
    """Each row of ``rows`` packed on its own (to split a batch, :func:`split_rows`)."""
    packb = msgpack.Packer(use_bin_type=True).pack
    return [packb(r) for r in rows]


def body_of(kinds: dict) -> bytes:
    """The packed payload map of ``{kind: [packed row, ...]}``: the same bytes
    ``msgpack.packb(payload)`` gives, built from rows packed beforehand."""
    p = msgpack.Packer(use_bin_type=True)
    parts = [p.pack_map_header(len(kinds))]
    for kind, packed in kinds.items():
        parts += [p.pack(kind), p.pack_array_header(len(packed))]
        parts += packed
    return b"".join(parts)


_MAP_HEADER = 5                      # the longest msgpack map header
_KIND_HEADER = 1 + 11 + 5            # a kind's name ("performance") and its array header
HEADER_BYTES = 128                   # an encoded message without its payload is shorter


def split_rows(rows: list, max_body: int) -> tuple[list[tuple[bytes, int]], list[str]]:
    """``rows`` (``(kind, row)`` pairs, in order) as packed payload bodies of at
    most ``max_body`` bytes each: ``([(body, records), ...], kinds_refused)``.
    A row that is longer than ``max_body`` on its own goes into no body; its
    kind is listed in ``kinds_refused``. Order is kept within each body and
    from one body to the next."""
    packed = pack_rows([r for _, r in rows])
    bodies, refused = [], []
    cur: dict = {}
    size = n = 0
    for (kind, _), data in zip(rows, packed):
        if _MAP_HEADER + _KIND_HEADER + len(data) > max_body:
            refused.append(kind)
            continue
        extra = len(data) + (0 if kind in cur else _KIND_HEADER)
        if n and _MAP_HEADER + size + extra > max_body:
            bodies.append((body_of(cur), n))
            cur, size, n = {}, 0, 0
            extra = len(data) + _KIND_HEADER
        cur.setdefault(kind, []).append(data)
        size += extra
        n += 1
    if n:
        bodies.append((body_of(cur), n))
    return bodies, refused


def message_from_body(client_id: str, seq: int, sent_at: float, rec0: int, dropped: int,
                      body: bytes) -> bytes:
    """:func:`encode_message` with the payload packed beforehand (``body``)."""
    return b"\x93" + _VERSION + msgpack.packb([client_id, seq, sent_at, rec0, dropped],
                                             use_bin_type=True) + body


# -- queries ---------------------------------------------------------------

def encode_request(command: str, params: dict | None = None, lenient: bool = False) -> bytes:
    """With ``lenient``, a value of a type msgpack lacks travels as its ``str()``
    (the daemon's own requests) instead of raising TypeError."""
    return msgpack.packb([PROTOCOL_VERSION, command, params or {}], use_bin_type=True,
                         default=_lenient if lenient else _default)


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


def ok(rows=None, next=None, columns=None, **extra) -> dict:
    """A success reply. With ``columns``, ``rows`` are positional (lists) on the
    wire, which packs and unpacks several times faster than maps;
    :func:`decode_reply` turns them back into dicts."""
    reply = {"ok": True, "rows": rows if rows is not None else [], "next": next}
    if columns is not None:
        reply["columns"] = list(columns)
    reply.update(extra)
    return reply


def error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


def encode_reply(reply: dict, lenient: bool = False) -> bytes:
    """``lenient``: as for :func:`encode_request`."""
    return msgpack.packb(reply, use_bin_type=True, default=_lenient if lenient else _default)


@contextlib.contextmanager
def gc_paused():
    """No cyclic-GC passes inside: building a big reply or decoding one makes
    hundreds of thousands of tuples and dicts, none of them in a cycle, and each
    700 of them would start a collection (msgpack's documentation advises the
    same for large messages). Reference counting still frees everything."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def decode_reply(frame: bytes) -> dict:
    """The reply as a dict; positional rows become dicts, JSON columns objects."""
    if len(frame) < 65536:
        return _decode_reply(frame)
    with gc_paused():
        return _decode_reply(frame)


def _decode_reply(frame: bytes) -> dict:
    reply = msgpack.unpackb(frame, raw=False, use_list=False)
    columns = reply.pop("columns", None)
    if columns is None:
        return _lists(reply)
    build = _row_builder(tuple(columns))
    reply["rows"] = [build(r) for r in reply["rows"]]
    return _lists(reply)


_builders: dict = {}
_loads_cache: dict = {}
NESTED_COLUMNS = frozenset({"highlights"})     # row values that are lists (of lists)


def _row_builder(columns: tuple):
    """A function turning one positional row into its dict, JSON columns decoded.

    Generated once per column list: a dict display with constant keys builds
    rows faster than ``dict(zip(columns, row))``, which matters for 10,000-row
    pages. Keys are ``repr()``-quoted literals, so a column name
    cannot inject code.
    """
    fn = _builders.get(columns)
    if fn is None:
        if not all(isinstance(c, str) for c in columns):
            raise ProtocolError("reply columns must be strings")
        items = ", ".join(f"{c!r}: " + (f"_j(r[{i}])" if c in JSON_FIELDS else
                                         f"_l(r[{i}])" if c in NESTED_COLUMNS else f"r[{i}]")
                          for i, c in enumerate(columns))
        fn = eval(f"lambda r: {{{items}}}",  # noqa: S307 - keys are repr()'d
                  {"_j": _loads_column, "_l": _lists})
        if len(_builders) > 64:
            _builders.clear()
        _builders[columns] = fn
    return fn


def _loads_column(text, _get=_loads_cache.get):
    if text is None:
        return None
    v = _get(text)
    if v.__class__ is dict:
        return v.copy()
    return loads_json(text)


def _lists(value):
    """Undo use_list=False outside the row tuples (replies are small maps)."""
    if isinstance(value, dict):
        return {k: (v if k == "rows" and isinstance(v, list) else _lists(v)) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_lists(v) for v in value]
    return value


def loads_json(text: str):
    """json.loads, with short repeated texts (tags) decoded once. Callers get
    their own copy of a cached container."""
    v = _loads_cache.get(text)
    if v is None:
        try:
            v = json.loads(text)
        except ValueError:
            return text
        if len(text) <= 256:
            if len(_loads_cache) >= 4096:
                _loads_cache.clear()
            _loads_cache[text] = v
        else:
            return v
    return v.copy() if isinstance(v, (dict, list)) else v


def _default(obj):
    from datetime import date, datetime
    if isinstance(obj, (datetime, date)):
        return to_epoch(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _lenient(obj):
    try:
        return _default(obj)
    except TypeError:
        return str(obj)
