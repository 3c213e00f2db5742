"""Numbers as people read them: ``74.7 GB``, ``2.4 MB/s``, ``15.5%``, ``1,234``.

The one place where the tool's numbers get their form. The dashboard page
mirrors :func:`format_value` in ``linkband_historyd/http/static/format.js``
(``fmtValue``), and the browser test runs both on the same values, so the page
and the terminal never disagree. Each unit has its fixed number of decimals, so
a column of one unit lines up:

==========================  ==========================================  =========
unit given                  shown as                                    decimals
==========================  ==========================================  =========
B, bytes, KB, MB, GB, TB    B, KB, MB, GB, TB, PB in steps of 1,024      0 for B,
(and the same per second)   (as Windows shows sizes, and as the          else 1
                            collector's MB and GB metrics are)
%                           ``15.5%``                                    1
ms                          ``12.35 ms``; from 1,000 ms on ``1.23 s``    2
Hz                          ``250.0 Hz``                                 1
none, count                 whole numbers ``1,234``; else as below       0
anything else               ``1,234.57 ops/s``; under 0.01 up to three   2
                            significant digits; from 10^15 on
                            ``1.23e+15``
==========================  ==========================================  =========

Rounding is half away from zero on the value's exact binary value (what
JavaScript's ``toFixed`` does), not Python's half-to-even, so both agree.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

BYTE_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
_BYTE_FACTOR = {"b": 1, "byte": 1, "bytes": 1, "kb": 1024, "kib": 1024, "mb": 1024 ** 2,
                "mib": 1024 ** 2, "gb": 1024 ** 3, "gib": 1024 ** 3, "tb": 1024 ** 4,
                "tib": 1024 ** 4}
HUGE = 1e15                    # from here on: exponent notation
MISSING = "–"


def fixed(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` decimals and thousands separators, rounded half away
    from zero (JavaScript's ``toFixed``); a value that rounds to zero loses its minus."""
    d = Decimal(abs(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    text = f"{d:,.{decimals}f}"
    return "-" + text if value < 0 and text.strip("0.,") else text


def format_number(value) -> str:
    """A number without a unit: whole ones ``1,234``, others with 2 decimals."""
    if value is None or isinstance(value, bool):
        return MISSING if value is None else str(value)
    v = float(value)
    if not math.isfinite(v):
        return MISSING
    a = abs(v)
    if a >= HUGE:
        return f"{v:.2e}"
    if v == int(v):
        return fixed(v, 0)
    if a < 0.01:
        return _small(v)
    return fixed(v, 2)


def _small(v: float) -> str:
    """Under 0.01: up to three significant digits, never an exponent (``0.00123``)."""
    if abs(v) < 1e-9:
        return "0"
    decimals = min(12, 2 - math.floor(math.log10(abs(v))))
    return fixed(v, decimals).rstrip("0").rstrip(".")


def format_bytes(n, per_second: bool = False) -> str:
    """``74.7 GB``; ``2.4 MB/s`` with ``per_second``."""
    if n is None or not math.isfinite(float(n)):
        return MISSING
    v, i = float(n), 0
    while abs(v) >= 1024 and i < len(BYTE_UNITS) - 1:
        v /= 1024
        i += 1
    text = fixed(v, 1 if i else 0)
    if i < len(BYTE_UNITS) - 1 and abs(float(text.replace(",", ""))) >= 1024:
        v, i = v / 1024, i + 1                   # 1023.96 KB is shown as 1.0 MB
        text = fixed(v, 1)
    return f"{text} {BYTE_UNITS[i]}" + ("/s" if per_second else "")


def format_value(value, unit: str | None = None) -> str:
    """A measured value with its unit, humanized (the table in the module's docstring)."""
    if value is None or isinstance(value, bool):
        return MISSING if value is None else str(value)
    v = float(value)
    if not math.isfinite(v):
        return MISSING
    u = (unit or "").strip()
    low = u.lower()
    rate = low.endswith("/s")
    base = low[:-2] if rate else low
    if base in _BYTE_FACTOR:
        return format_bytes(v * _BYTE_FACTOR[base], per_second=rate)
    if u == "%":
        return fixed(v, 1) + "%"
    if low == "ms":
        return fixed(v / 1000, 2) + " s" if abs(v) >= 1000 else fixed(v, 2) + " ms"
    if low == "hz":
        return fixed(v, 1) + " Hz"
    if low in ("", "count"):
        return format_number(v)
    return f"{format_number(v)} {u}"


def format_duration(seconds) -> str:
    """A span of time for people: ``42 s``, ``12 min 05 s``, ``3 h 07 min``, ``2 d 04 h``."""
    if seconds is None or not math.isfinite(float(seconds)):
        return MISSING
    s = int(round(float(seconds)))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d} d {h:02d} h"
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"
