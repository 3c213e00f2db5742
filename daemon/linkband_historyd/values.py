"""Value parsers shared by the configuration and the query parameters.

A value comes as TOML, an environment variable or command-line text (``config``),
or as msgpack or URL text (``query.params``); each parser here takes any of
these, returns the value in its one type, and raises ValueError with a reason
the caller puts after the key's name. One parser per kind of value, so a
setting and a parameter of the same kind accept and refuse the same things.
Each carries its JSON schema (``json_schema``), which types a command's
parameter in OpenAPI.
"""
from __future__ import annotations

import math

MAX_INT = 2 ** 53                 # integers beyond this never mean anything here


def _bounds(lo, hi) -> str:
    if hi is not None:
        return f" between {lo} and {hi}"
    return f" >= {lo}"


def _typed(parse, schema: dict):
    parse.json_schema = schema
    return parse


def _range(kind: str, lo, hi) -> dict:
    return {"type": kind, "minimum": lo, **({} if hi is None else {"maximum": hi})}


def integer(lo: int, hi: int | None = None):
    """An integer in lo..hi (hi: at most MAX_INT); a float only if it is whole
    (TOML ``5000.0``), text as written in base 10."""
    what = "a positive integer" if lo == 1 and hi is None else "an integer" + _bounds(lo, hi)
    top = MAX_INT if hi is None else hi

    def parse(v):
        if isinstance(v, bool):
            raise ValueError(f"must be {what}")
        if isinstance(v, float):
            if not v.is_integer():
                raise ValueError(f"must be {what}")
            v = int(v)
        elif not isinstance(v, (int, str)):
            raise ValueError(f"must be {what}")
        try:
            n = int(v)
        except ValueError:
            raise ValueError(f"must be {what}") from None
        if n < lo or n > top:
            raise ValueError(f"must be {what}" + ("" if hi is not None else f" (at most {MAX_INT})"))
        return n
    return _typed(parse, _range("integer", lo, hi))


def number(lo: float, hi: float | None = None):
    """A finite number in lo..hi."""
    what = "a number" + _bounds(lo, hi)

    def parse(v):
        if isinstance(v, bool):
            raise ValueError(f"must be {what}")
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"must be {what}") from None
        if not math.isfinite(x) or x < lo or (hi is not None and x > hi):
            raise ValueError(f"must be {what}")
        return x
    return _typed(parse, _range("number", lo, hi))


# an anomaly score at which a metric alerts: under 0.3 no detector episode is open
score_threshold = number(0.3, 1.0)

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def boolean(v) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in TRUE:
        return True
    if s in FALSE:
        return False
    raise ValueError("must be true or false")


def choice(choices: tuple[str, ...]):
    """One of ``choices``, in any case; returned as the choice is written."""
    by_key = {c.lower(): c for c in choices}
    said = f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]

    def parse(v):
        c = by_key.get(str(v).strip().lower())
        if c is None:
            raise ValueError(f"must be {said}")
        return c
    return _typed(parse, {"enum": list(choices)})


def string(v) -> str:
    """Any string, spaces around it cut (empty allowed: a setting's 'not set')."""
    if not isinstance(v, str):
        raise ValueError("must be a string")
    return v.strip()


def text(v) -> str:
    """A name or a term: a non-empty string, as given, of at most 256 characters."""
    if not isinstance(v, str) or not v or len(v) > 256:
        raise ValueError("must be a non-empty string of at most 256 characters")
    return v


def string_list(v) -> list[str]:
    """A list of strings, or one comma-separated string (environment, URL);
    spaces cut, empty items dropped."""
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise ValueError("must be a list of strings")
    return [x.strip() for x in items if x.strip()]


def integer_list(v) -> list[int]:
    """A list of integers, or one comma-separated string of them."""
    items = string_list(v) if isinstance(v, str) else v
    try:
        return [int(x) for x in items]
    except (TypeError, ValueError):
        raise ValueError("must be a list of integers") from None


def clock(v) -> str:
    """A time of day, HH:MM (24 hours), written back with two digits each."""
    s = string(v)
    try:
        h, m = (int(x) for x in s.split(":"))
    except ValueError:
        raise ValueError("must be HH:MM") from None
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError("must be HH:MM")
    return f"{h:02d}:{m:02d}"


boolean.json_schema = {"type": "boolean"}
string.json_schema = text.json_schema = {"type": "string"}
string_list.json_schema = {"type": "array", "items": {"type": "string"}}
