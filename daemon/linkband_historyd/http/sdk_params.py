"""The SDK router's parameters, checked the way FastAPI checks them, without FastAPI.

``sdk_routes`` serves the Link Band SDK's history routes to callers written against
FastAPI: a bad parameter must answer 422 with FastAPI's ``{"detail": [{"type", "loc",
"msg", "input", "ctx"?}, ...]}`` (every error of the request at once), and what
FastAPI accepts must be accepted (``limit=+5``, ``1.0``; datetimes as ISO 8601, a
date, or Unix seconds / milliseconds, which give UTC). Doing it by hand keeps
pydantic out of the daemon: the ``[http]`` extra stays enough to serve these routes.

A field is declared once (:class:`Field`); :func:`query_values` reads the query
string, :func:`body_values` a JSON object.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone

MISSING = object()
MAX_LIST = 1000          # values of one repeated query parameter
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class Invalid(Exception):
    """The request's validation errors, as FastAPI lists them."""

    def __init__(self, detail: list[dict]):
        super().__init__(f"{len(detail)} validation error(s)")
        self.detail = detail


class _Bad(ValueError):
    def __init__(self, type_: str, msg: str, ctx: dict | None = None):
        super().__init__(msg)
        self.type, self.msg, self.ctx = type_, msg, ctx


@dataclass(frozen=True)
class Field:
    """One parameter: ``kind`` is int, bool, str, datetime or enum (``choices``);
    ``many``: a list (a repeated query parameter, a JSON array)."""
    name: str
    kind: str = "str"
    default: object = None
    required: bool = False
    many: bool = False
    ge: int | None = None
    le: int | None = None
    choices: tuple = ()


# -- one value ------------------------------------------------------------------

def _int(v) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if not v.is_integer():
            raise _Bad("int_from_float", "Input should be a valid integer, got a number with a "
                       "fractional part")
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s)
        except ValueError:
            pass
        try:
            f = float(s)
        except ValueError:
            f = math.nan
        if "e" not in s.lower() and math.isfinite(f) and f.is_integer():
            return int(f)
        raise _Bad("int_parsing", "Input should be a valid integer, unable to parse string as an "
                   "integer")
    raise _Bad("int_type", "Input should be a valid integer")


def _bool(v) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise _Bad("bool_parsing", "Input should be a valid boolean, unable to interpret input")


def _str(v) -> str:
    if isinstance(v, str):
        return v
    raise _Bad("string_type", "Input should be a valid string")


def _from_epoch(x: float) -> datetime:
    if abs(x) > 2e10:                     # milliseconds, as pydantic reads them
        x /= 1000.0
    try:
        return datetime.fromtimestamp(x, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _Bad("datetime_parsing", "Input should be a valid datetime, dates after 9999 are "
                   "not supported as unix timestamps") from None


def _datetime(v) -> datetime:
    """ISO 8601 (a naive one is local time to the manager), a date, or Unix time."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return _from_epoch(float(v))
    if not isinstance(v, str):
        raise _Bad("datetime_type", "Input should be a valid datetime")
    s = v.strip()
    try:
        x = float(s)
    except ValueError:
        x = math.nan
    if math.isfinite(x):
        return _from_epoch(x)
    try:
        return datetime.fromisoformat(s)
    except ValueError as exc:
        reason = "input is too short" if len(s) < 10 else str(exc) or "invalid datetime"
        raise _Bad("datetime_from_date_parsing", f"Input should be a valid datetime or date, "
                   f"{reason}", {"error": reason}) from None


def _expected(choices) -> str:
    quoted = [f"'{c}'" for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _one(field: Field, v):
    if field.kind == "int":
        n = _int(v)
        if field.ge is not None and n < field.ge:
            raise _Bad("greater_than_equal", f"Input should be greater than or equal to "
                       f"{field.ge}", {"ge": field.ge})
        if field.le is not None and n > field.le:
            raise _Bad("less_than_equal", f"Input should be less than or equal to {field.le}",
                       {"le": field.le})
        return n
    if field.kind == "bool":
        return _bool(v)
    if field.kind == "datetime":
        return _datetime(v)
    if field.kind == "enum":
        if v in field.choices:
            return v
        exp = _expected(field.choices)
        raise _Bad("enum", f"Input should be {exp}", {"expected": exp})
    return _str(v)


def _entry(loc: list, v, bad: _Bad) -> dict:
    e = {"type": bad.type, "loc": loc, "msg": bad.msg, "input": v}
    if bad.ctx:
        e["ctx"] = bad.ctx
    return e


def _value(field: Field, where: str, v, errors: list):
    """The field's value from ``v`` (a list of strings for ``many`` in a query)."""
    loc = [where, field.name]
    if field.many:
        if not isinstance(v, list):
            errors.append({"type": "list_type", "loc": loc, "msg": "Input should be a valid list",
                           "input": v})
            return None
        if len(v) > MAX_LIST:
            errors.append({"type": "too_long", "loc": loc, "msg": f"List should have at most "
                           f"{MAX_LIST} items after validation, not {len(v)}", "input": v[:3],
                           "ctx": {"field_type": "List", "max_length": MAX_LIST,
                                   "actual_length": len(v)}})
            return None
        out = []
        for i, x in enumerate(v):
            try:
                out.append(_one(field, x))
            except _Bad as bad:
                errors.append(_entry([*loc, i], x, bad))
        return out
    try:
        return _one(field, v)
    except _Bad as bad:
        errors.append(_entry(loc, v, bad))
        return None


# -- a request --------------------------------------------------------------------

def query_values(items, fields: tuple[Field, ...]) -> dict:
    """``{name: value}`` from the query string's ``(key, value)`` pairs; a scalar given
    twice takes the last, as FastAPI does. Raises :class:`Invalid`."""
    given: dict[str, list[str]] = {}
    for k, v in items:
        given.setdefault(k, []).append(v)
    out, errors = {}, []
    for f in fields:
        if f.name not in given:
            if f.required:
                errors.append({"type": "missing", "loc": ["query", f.name],
                               "msg": "Field required", "input": None})
            out[f.name] = f.default
            continue
        vs = given[f.name]
        out[f.name] = _value(f, "query", vs if f.many else vs[-1], errors)
    if errors:
        raise Invalid(errors)
    return out


def parse_body(raw: bytes, content_type: str, obj_type: str):
    """The JSON body, or MISSING when there is none. A body that is not JSON (or not
    sent as application/json) is refused as FastAPI refuses it; ``obj_type`` is the
    error type FastAPI gives then (``dict_type`` for a dict, ``model_attributes_type``
    for a model)."""
    if not raw.strip():
        return MISSING
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Invalid([_not_object(obj_type, raw.decode("utf-8", "replace")[:200])])
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        pos = getattr(exc, "pos", 0)
        raise Invalid([{"type": "json_invalid", "loc": ["body", pos], "msg": "JSON decode error",
                        "input": {}, "ctx": {"error": getattr(exc, "msg", str(exc))}}]) from None


def _not_object(obj_type: str, v) -> dict:
    msg = ("Input should be a valid dictionary" if obj_type == "dict_type" else
           "Input should be a valid dictionary or object to extract fields from")
    return {"type": obj_type, "loc": ["body"], "msg": msg, "input": v}


def dict_body(body, obj_type: str = "dict_type") -> dict | None:
    """A body that must be a JSON object (None when none was sent)."""
    if body is MISSING or body is None:
        return None
    if not isinstance(body, dict):
        raise Invalid([_not_object(obj_type, body)])
    return body


def body_values(body, fields: tuple[Field, ...]) -> dict:
    """``{name: value}`` of a JSON-object body (MISSING: every default); unknown keys
    are ignored, as the SDK's request models ignore them."""
    obj = dict_body(body, "model_attributes_type") or {}
    out, errors = {}, []
    for f in fields:
        if f.name not in obj or (obj[f.name] is None and f.default is None and not f.required):
            out[f.name] = f.default
            continue
        out[f.name] = _value(f, "body", obj[f.name], errors)
    if errors:
        raise Invalid(errors)
    return out
