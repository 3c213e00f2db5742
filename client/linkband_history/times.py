"""Time at the edge: everything that reaches the wire or the database is UTC epoch seconds.

Clients may hand us epoch seconds (int/float), ISO-8601 strings or ``datetime``
objects; the tool also accepts relative times such as ``15m``, ``2h`` or ``7d``
("that long ago"). Naive datetimes and ISO strings without an offset are taken
as *local* time, like ``datetime.timestamp()`` does, and converted to UTC here,
so nothing downstream ever sees a naive local datetime.
"""
from __future__ import annotations

import math
import re
import time
from datetime import date, datetime

__all__ = ["to_epoch", "parse_time", "RELATIVE_UNITS"]

RELATIVE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"^\s*-?(\d+(?:\.\d+)?)\s*([smhdw])\s*(?:ago)?\s*$")


def to_epoch(value) -> float:
    """Convert a client timestamp to UTC epoch seconds (float).

    Raises ``ValueError`` with the offending value for anything else, including
    NaN, infinities and booleans.
    """
    if isinstance(value, bool):
        raise ValueError(f"timestamp must be epoch seconds, ISO-8601 or datetime, not {value!r}")
    if isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"timestamp is not finite: {value!r}")
        return v
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day).timestamp()
    if isinstance(value, str):
        s = value.strip()
        try:
            return to_epoch(float(s))
        except ValueError:
            pass
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(s).timestamp()
        except ValueError:
            raise ValueError(f"not a timestamp (epoch seconds or ISO-8601): {value!r}") from None
    raise ValueError(f"timestamp must be epoch seconds, ISO-8601 or datetime, not {type(value).__name__}")


def parse_time(value, now: float | None = None) -> float:
    """Like :func:`to_epoch`, and also relative times: ``15m`` = 15 minutes ago."""
    if isinstance(value, str):
        m = _RELATIVE.match(value)
        if m:
            if now is None:
                now = time.time()
            return now - float(m.group(1)) * RELATIVE_UNITS[m.group(2)]
        if value.strip().lower() == "now":
            return time.time() if now is None else now
    return to_epoch(value)
