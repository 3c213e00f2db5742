"""Query parameters: parsing, validation and the SQL filters they become.

Every parameter of every command is declared with a parser here (the kinds of
value a setting has too, numbers, booleans, names, come from ``values``); a parameter
that is not declared, or a value that does not parse, is a ``BadParam`` and
the reply names it. Values only ever reach SQL as bound parameters; the only
names that reach SQL text are column names from these declarations and tag
keys that match ``TAG_KEY``.
"""
from __future__ import annotations

import math
import re

from linkband_history.protocol import ALERT_LEVELS, LOG_LEVELS, normalize_level
from linkband_history.times import parse_time
from linkband_historyd import values
from linkband_historyd.values import MAX_INT

TAG_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_LIST = 100


class BadParam(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


def time_value(v):
    try:
        return parse_time(v)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def text_list(v):
    """One string, or a list of them (matched with IN)."""
    items = v if isinstance(v, (list, tuple)) else [v]
    if not items or len(items) > MAX_LIST:
        raise ValueError(f"give 1 to {MAX_LIST} values")
    return [text(x) for x in items]


def _levels(allowed):
    def parse(v):
        items = v if isinstance(v, (list, tuple)) else str(v).split(",")
        out = []
        for x in items:
            lv = normalize_level(x)
            if lv not in allowed:
                raise ValueError(f"{x!r} is not one of {', '.join(allowed)}")
            out.append(lv)
        if not out:
            raise ValueError("give at least one level")
        return out
    return parse


log_levels = _levels(LOG_LEVELS)
alert_levels = _levels(ALERT_LEVELS)


def min_log_level(v):
    lv = normalize_level(v)
    if lv not in LOG_LEVELS:
        raise ValueError(f"{v!r} is not one of {', '.join(LOG_LEVELS)}")
    return list(LOG_LEVELS[LOG_LEVELS.index(lv):])


# kinds of value the settings have too
boolean, text = values.boolean, values.text
positive_int = values.integer(1)
non_negative_int = values.integer(0)


def int_list(v):
    items = v if isinstance(v, (list, tuple)) else [v]
    if not items or len(items) > MAX_LIST:
        raise ValueError(f"give 1 to {MAX_LIST} values")
    return [non_negative_int(x) for x in items]


order = values.choice(("asc", "desc"))


def tags(v):
    if not isinstance(v, dict) or not v or len(v) > 16:
        raise ValueError("must be a map of 1 to 16 tag keys to values")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or not TAG_KEY.match(k):
            raise ValueError(f"bad tag key {k!r}: letters, digits, '_', '.', '-' only")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise ValueError(f"tag {k!r}: value must be a string or a number")
        if isinstance(val, float) and not math.isfinite(val):
            raise ValueError(f"tag {k!r}: value must be finite")
        out[k] = val
    return out


def cursor(v):
    """Opaque to clients: ``<timestamp>:<id>`` (or ``<id>`` for search)."""
    if not isinstance(v, str) or len(v) > 64:
        raise ValueError("not a cursor returned by this daemon")
    try:
        if ":" in v:
            ts, rid = v.split(":", 1)
            out = (float(ts), int(rid))
        else:
            out = (None, int(v))
        if not 0 <= out[1] <= MAX_INT or (out[0] is not None and not math.isfinite(out[0])):
            raise ValueError
        return out
    except ValueError:
        raise ValueError("not a cursor returned by this daemon") from None


def parse(spec: dict, params: dict) -> dict:
    out = {}
    for name, value in params.items():
        parser = spec.get(name) if isinstance(name, str) else None
        if parser is None:
            raise BadParam(str(name), f"unknown parameter (known: {', '.join(sorted(spec)) or 'none'})")
        if value is None:
            continue
        try:
            out[name] = parser(value)
        except (ValueError, TypeError) as exc:
            raise BadParam(name, str(exc)) from None
    return out


class Where:
    """WHERE clauses and their bound arguments, built from parsed parameters."""

    def __init__(self):
        self.clauses: list[str] = []
        self.args: list = []

    def add(self, clause: str, *args) -> None:
        self.clauses.append(clause)
        self.args.extend(args)

    def any_of(self, column: str, values) -> None:
        if len(values) == 1:
            self.add(f"{column} = ?", values[0])
        else:
            self.add(f"{column} IN ({', '.join('?' * len(values))})", *values)

    def time_range(self, p: dict, column: str = "timestamp") -> None:
        if "since" in p:
            self.add(f"{column} >= ?", p["since"])
        if "until" in p:
            self.add(f"{column} < ?", p["until"])

    def tags(self, tag_filter: dict, column: str = "tags") -> None:
        for key, value in tag_filter.items():
            self.add(f"json_extract({column}, ?) = ?", f'$."{key}"', value)

    def sql(self) -> str:
        return (" WHERE " + " AND ".join(self.clauses)) if self.clauses else ""


# The JSON schema of each parser: commands' parameters are typed by it in OpenAPI.
_STRING, _INTEGER = {"type": "string"}, {"type": "integer"}
_TIME = {**_STRING, "description": "epoch seconds, ISO-8601 or relative (15m, 7d)"}
# (the parsers from ``values`` carry theirs)
for _parser, _schema in (
        (cursor, _STRING), (time_value, _TIME),
        (text_list, {"type": "array", "items": _STRING}),
        (int_list, {"type": "array", "items": _INTEGER}),
        (log_levels, {"type": "array", "items": {"enum": list(LOG_LEVELS)}}),
        (alert_levels, {"type": "array", "items": {"enum": list(ALERT_LEVELS)}}),
        (min_log_level, {"enum": list(LOG_LEVELS)}),
        (tags, {"type": "object", "description": "as tag.KEY=VALUE or tags=<JSON object>"})):
    _parser.json_schema = _schema
