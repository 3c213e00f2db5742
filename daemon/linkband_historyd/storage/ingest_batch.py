"""Batch: the frames received since the last commit, and their accounting.

Decoding happens per *message*, never per record: the rows of each kind are
extended straight from the decoded payload and handed to SQLite as they are.
Per client, the batch tracks the sequence number, the running record count
(``rec0``) and what happened to each record: stored, rejected (by reason),
lost in a gap, or a duplicate message. Client state is copied on first touch,
so a transaction that fails leaves the committed state untouched. Under CURVE
the state is keyed by the client's authenticated key as well as its id
(``curve_keys.peer_state_id``); over ipc:// the peers are the owner's own
processes and the id alone is trusted.

Limits on input (:class:`Limits`, the ``[ingest]`` options, README "Limits")
are checked here, before a row joins the batch, so a refused row never takes an
index in it. No Python code runs per record on the fast path: msgpack itself
checks every string's length while decoding (``max_str_len``); per message and
kind, a few passes of C builtins (``sum``, ``min``, ``max``, ``len``,
``str.count`` over the columns of ``zip(*rows)``) prove that the timestamps are
in range, the numbers finite and the JSON texts too short, or with too few
brackets, to be deep. Only a message that fails that proof (or carries alerts,
which are few) is looked at row by row (:func:`check_row`).
"""
from __future__ import annotations

import bisect
import math
import re
import time
from collections import Counter
from dataclasses import astuple, dataclass, replace
from itertools import accumulate, repeat
from operator import add, itemgetter

from linkband_history.curve_keys import peer_state_id
from linkband_history.protocol import (
    FIELDS,
    JSON_FIELD,
    KINDS,
    TIME_FIELDS,
    ProtocolError,
    StringTooLong,
    decode_message,
    dumps_json,
    row_from_record,
)
from linkband_history.times import to_epoch

TRUNCATED = "truncated_string"         # the one reason of a record that is kept (and stored)


def _default(name: str):
    from linkband_historyd.config import BY_KEY
    return BY_KEY[f"ingest.{name}"].default


@dataclass(frozen=True)
class Limits:
    """What the writer accepts; see the README's "Limits" table for each policy."""
    # defaults: those of the [ingest] options (config.OPTIONS), written there once
    max_records: int = _default("max_records_per_message")  # more: the whole message is refused
    max_string_bytes: int = _default("max_string_bytes")    # longer: cut and marked, record kept
    max_json_bytes: int = _default("max_json_bytes")        # a longer JSON field: record refused
    max_json_depth: int = _default("max_json_depth")        # a deeper JSON field: record refused
    min_timestamp: float = _default("min_timestamp")        # an earlier time: record refused
    max_future_s: float = _default("max_future_s")          # this far past its arrival: refused

    @classmethod
    def from_settings(cls, ingest) -> "Limits":
        """From the ``ingest`` section of the settings."""
        return cls(ingest.max_records_per_message, ingest.max_string_bytes,
                   ingest.max_json_bytes, ingest.max_json_depth,
                   ingest.min_timestamp, ingest.max_future_s)


@dataclass
class ClientState:
    client_id: str
    first_seen: float
    last_seen: float
    last_seq: int = 0
    records_next: int = 0
    stored: int = 0
    rejected: int = 0
    lost_records: int = 0
    lost_messages: int = 0
    duplicates: int = 0
    client_dropped: int = 0

    def row(self) -> tuple:
        return astuple(self)


# -- what each kind's columns are, for the checks -------------------------------
_REQUIRED_REALS = frozenset({"value"})
_OPTIONAL_REALS = frozenset({"duration_ms", "throughput", "efficiency_percent"})
_INTEGERS = frozenset({"error_count", "line_number", "thread_id", "process_id"})
_IG = [itemgetter(i) for i in range(max(map(len, FIELDS.values())))]


@dataclass(frozen=True)
class _Spec:
    n: int
    times: tuple          # indexes of the timestamp columns
    required: tuple       # REAL NOT NULL columns
    optional: tuple       # nullable REAL columns
    json: int             # the JSON column
    strings: tuple        # TEXT columns (not JSON)
    row_by_row: bool      # no fast check: always looked at row by row (alerts: few, with two more times)
    transpose: bool       # the fast check needs most columns: zip(*rows) beats one map per column


def _spec(kind: str) -> _Spec:
    f = FIELDS[kind]
    pick = lambda names: tuple(i for i, x in enumerate(f) if x in names)  # noqa: E731
    json_i = f.index(JSON_FIELD[kind])
    times = pick(TIME_FIELDS)
    other = set(TIME_FIELDS) | _REQUIRED_REALS | _OPTIONAL_REALS | _INTEGERS | {JSON_FIELD[kind]}
    reals = pick(_REQUIRED_REALS | _OPTIONAL_REALS)
    return _Spec(len(f), times, pick(_REQUIRED_REALS), pick(_OPTIONAL_REALS), json_i,
                 tuple(i for i, x in enumerate(f) if x not in other), len(times) > 1,
                 2 * (2 + len(reals)) >= len(f))


SPECS = {k: _spec(k) for k in KINDS}


def _finite(total) -> bool:
    return total - total == 0          # False for NaN and ±inf (inf - inf is NaN)


def _looks_clean(spec: _Spec, rows: list, lo: float, hi: float, short_json: int,
                 depth: int) -> bool:
    """True when no row can break a limit (strings aside: msgpack checked those).

    Only C builtins run per row: ``zip(*rows)`` (or an ``itemgetter`` map per
    column needed) turns the rows into columns, then ``sum`` (NaN and ±inf make
    it non-finite), ``min``, ``max`` and ``len`` go over them. Anything unusual
    (a string timestamp, a None where a number belongs, a short or long row, a dict)
    raises or fails a comparison and gives False: the message is then looked at
    row by row, which decides exactly.
    """
    try:
        if sum(map(len, rows)) != spec.n * len(rows):
            return False                         # some row is short or long
        if spec.transpose:
            cols = list(zip(*rows))              # a short row shortens every column
            if len(cols) != spec.n:
                return False
        else:                                    # a short row raises IndexError
            cols = {i: tuple(map(_IG[i], rows)) for i in (0, spec.json)}
        ts = cols[0]
        if not (_finite(sum(ts)) and min(ts) >= lo and max(ts) <= hi):
            return False
        for i in spec.required:
            if not _finite(sum(cols[i])):
                return False
        for i in spec.optional:                  # None (and 0) are fine: filter(None) drops them
            if not _finite(sum(filter(None, cols[i]))):
                return False
        texts = cols[spec.json]
        try:
            longest = max(map(len, texts))
        except TypeError:                        # some are None
            texts = tuple(filter(None, texts))
            longest = max(map(len, texts), default=0)
        if longest > short_json:
            # the depth is at most the number of opening brackets (str.count raises
            # on a dict or list, which the row-by-row check turns into JSON text)
            texts = tuple(filter(None, texts))
            opens = map(add, map(str.count, texts, repeat("{")), map(str.count, texts, repeat("[")))
            if max(opens) > depth:
                return False
        return True
    except Exception:
        return False


_ESCAPE = re.compile(r"\\.", re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """Nesting depth of a JSON text (brackets inside strings do not count).

    Linear and in C whatever the input (no regex that could backtrack): drop
    the escape pairs, so every quote left opens or closes a string; keep what
    lies between strings (the even pieces of a split on quotes), keep its
    brackets, and take the running maximum of +1/-1.
    """
    outside = "".join(_ESCAPE.sub("", text).split('"')[::2])
    brackets = _NOT_BRACKET.sub("", outside)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def json_problem(text: str, limits: Limits) -> str | None:
    """``json_too_large`` or ``json_too_deep`` for a JSON text over the limits, else None."""
    n = len(text)
    if n * 4 > limits.max_json_bytes and len(text.encode("utf-8", "surrogatepass")) > limits.max_json_bytes:
        return "json_too_large"
    depth = limits.max_json_depth
    if n > 2 * depth + 1 and text.count("{") + text.count("[") > depth and json_depth(text) > depth:
        return "json_too_deep"
    return None


def truncate(text: str, limit: int) -> str | None:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (on a character boundary)
    with ``…[truncated N bytes]`` appended; None when it fits."""
    if len(text) * 4 <= limit:
        return None
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return None
    cut = limit
    while cut > 0 and data[cut] & 0xC0 == 0x80:      # not inside a character
        cut -= 1
    return f"{data[:cut].decode('utf-8', 'surrogatepass')}…[truncated {len(data) - cut} bytes]"


def check_row(spec: _Spec, row: list, limits: Limits, lo: float, hi: float,
              strings: bool) -> str | None:
    """Check (and fix in place) one positional row of the right length.

    Returns None (fine), ``TRUNCATED`` (fine, a string was cut) or the reason
    it is refused. ISO-8601 timestamps become epoch seconds and dict/list JSON
    fields JSON text on the way, as ``writer._coerce`` would. Types are left
    to SQLite (STRICT), as on the fast path. ``strings``: check the strings'
    lengths (only when msgpack said the frame holds a long one).
    """
    for i in spec.times:
        v = row[i]
        if v.__class__ is str:
            try:
                v = row[i] = to_epoch(v)
            except ValueError:
                return "bad_timestamp"
        if v.__class__ is float and not math.isfinite(v):
            return "non_finite_value"
        if isinstance(v, (int, float)) and not lo <= v <= hi:
            return "timestamp_out_of_range"
    for i in spec.required + spec.optional:
        v = row[i]
        if v.__class__ is float and not math.isfinite(v):
            return "non_finite_value"
    v = row[spec.json]
    if v.__class__ is dict or v.__class__ is list:
        try:
            v = row[spec.json] = dumps_json(v)
        except RecursionError:
            return "json_too_deep"
        except (TypeError, ValueError):
            return "bad_value"
    if v.__class__ is str:
        problem = json_problem(v, limits)
        if problem:
            return problem
    cut = None
    if strings:
        for i in spec.strings:
            v = row[i]
            if v.__class__ is str:
                short = truncate(v, limits.max_string_bytes)
                if short is not None:
                    row[i] = short
                    cut = TRUNCATED
    return cut


class Batch:
    def __init__(self, clients: dict[str, ClientState], limits: Limits = Limits(),
                 now: float | None = None):
        self._committed = clients
        self.clients: dict[str, ClientState] = {}      # touched in this batch (copies)
        self.rows: dict[str, list] = {k: [] for k in KINDS}
        self.stored: Counter = Counter()                # per kind, after rejects
        self._owners: dict[str, tuple[list, list]] = {k: ([], []) for k in KINDS}
        self.rejects: Counter = Counter()               # reason -> records (or frames)
        self.records = 0
        self.messages = 0
        self.bytes = 0                                  # of the frames added
        self.sent_at: list[float] = []                  # client send times, for latency
        self.new_alerts: list[dict] = []                # alerts stored by this batch
        self.received_at = time.time() if now is None else now   # now: a frozen clock (tests)
        self.limits = limits
        self._lo = limits.min_timestamp
        self._hi = self.received_at + limits.max_future_s
        self._max_str = min(limits.max_string_bytes, limits.max_json_bytes)
        self._short_json = 2 * limits.max_json_depth + 1   # a JSON text this short is never deeper

    def _state(self, client_id: str, now: float) -> ClientState:
        st = self.clients.get(client_id)
        if st is None:
            old = self._committed.get(client_id)
            st = replace(old) if old is not None else ClientState(client_id, now, now)
            self.clients[client_id] = st
        return st

    def add(self, frame: bytes, peer: str | bytes | None = None) -> None:
        """One message; ``peer``: the sender's CURVE key (ZAP User-Id), None over ipc://."""
        self.messages += 1
        self.bytes += len(frame)
        long_strings = False
        try:
            try:
                header, payload = decode_message(frame, self._max_str)
            except StringTooLong:
                header, payload = decode_message(frame)
                long_strings = True
        except ProtocolError as exc:
            self.rejects[str(exc).split(":", 1)[0]] += 1
            return
        client_id, seq, sent_at, rec0, dropped = header
        if peer:                      # under CURVE, one key's clients cannot touch another's state
            client_id = peer_state_id(client_id, peer)
        st = self._state(client_id, self.received_at)
        st.last_seen = self.received_at
        if seq <= st.last_seq:
            st.duplicates += 1
            self.rejects["duplicate_message"] += 1
            return
        if seq > st.last_seq + 1:
            st.lost_messages += seq - st.last_seq - 1
        if rec0 > st.records_next:
            st.lost_records += rec0 - st.records_next
        n = 0
        for rows in payload.values():
            n += len(rows) if isinstance(rows, list) else 1
        if n > self.limits.max_records:
            # the whole message is refused; its records are counted (the client's
            # stored + rejected + lost = sent stays exact) and its sequence is taken
            self.rejects["too_many_records"] += n
            st.rejected += n
            payload = {}
        for kind, rows in payload.items():
            target = self.rows.get(kind)
            if target is None or not isinstance(rows, list):
                bad = len(rows) if isinstance(rows, list) else 1
                self.rejects["unknown_kind"] += bad
                st.rejected += bad
                continue
            spec = SPECS[kind]
            if rows and (long_strings or spec.row_by_row or not _looks_clean(
                    spec, rows, self._lo, self._hi, self._short_json, self.limits.max_json_depth)):
                rows = self._screen(kind, rows, st, long_strings)
            starts, owners = self._owners[kind]
            starts.append(len(target))
            owners.append(st)
            target.extend(rows)
            st.stored += len(rows)
            self.stored[kind] += len(rows)
        self.sent_at.append(sent_at)
        st.last_seq = seq
        st.records_next = rec0 + n
        st.client_dropped = max(st.client_dropped, dropped)
        self.records += n

    def _screen(self, kind: str, rows: list, st: ClientState, strings: bool) -> list:
        """The rows of one message that pass :func:`check_row`; the others are
        counted by reason."""
        spec = SPECS[kind]
        kept = []
        for row in rows:
            if row.__class__ is dict:            # a client that sent records as maps
                try:
                    row = row_from_record(kind, row, self.received_at)
                except (ValueError, TypeError):
                    self.rejects["bad_value"] += 1
                    st.rejected += 1
                    continue
            elif row.__class__ is not list or len(row) != spec.n:
                # refused here rather than by the insert: the batch never holds it
                self.rejects["bad_shape"] += 1
                st.rejected += 1
                continue
            reason = check_row(spec, row, self.limits, self._lo, self._hi, strings)
            if reason is None:
                kept.append(row)
            elif reason is TRUNCATED:
                kept.append(row)
                self.rejects[TRUNCATED] += 1
            else:
                self.rejects[reason] += 1
                st.rejected += 1
        return kept

    def reject(self, kind: str, index: int, reason: str) -> None:
        """Row ``index`` of ``kind`` was refused by the database."""
        starts, owners = self._owners[kind]
        st = owners[bisect.bisect_right(starts, index) - 1]
        st.stored -= 1
        st.rejected += 1
        self.stored[kind] -= 1
        self.rejects[reason] += 1

    def committed(self) -> None:
        """The transaction is durable: make the copies the committed state."""
        self._committed.update(self.clients)
