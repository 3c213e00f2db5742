"""A mergeable quantile sketch for durations (the log buckets of DDSketch).

A value x > 0 goes to bucket ceil(log_gamma(x)), with gamma = (1 + a) / (1 - a);
every value of a bucket is within a relative error ``a`` of the bucket's
representative 2 * gamma**k / (gamma + 1). Two sketches merge by adding counts, so
an hour's p95 can be folded from minutes of new rows and a day's from its hours
without keeping the values: the summary job's work and memory per run depend on
the rows that are new, not on how far into the hour it is. Values at or below
``MIN_VALUE`` (zero, and negatives, which durations should not have) share one
bucket represented by 0.0.

A sketch is a ``dict`` bucket -> count; :func:`dump` turns it into a sorted list of
pairs for JSON and :func:`load` back.
"""
from __future__ import annotations

import math

ALPHA = 0.01                      # relative accuracy of every quantile
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LN_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-9
ZERO = -(1 << 30)                 # the bucket of values <= MIN_VALUE


def bucket(x: float) -> int:
    return math.ceil(math.log(x) / _LN_GAMMA) if x > MIN_VALUE else ZERO


def add(sketch: dict, x: float, n: int = 1) -> None:
    k = bucket(x)
    sketch[k] = sketch.get(k, 0) + n


def merge(into: dict, other: dict) -> None:
    for k, n in other.items():
        into[k] = into.get(k, 0) + n


def quantile(sketch: dict, q: float) -> float | None:
    """The value at rank q * (count - 1), within ALPHA of a value between the two
    closest ranks (what linear interpolation would blend); None when empty."""
    total = sum(sketch.values())
    if not total:
        return None
    rank = q * (total - 1)
    seen = 0
    for k in sorted(sketch):
        seen += sketch[k]
        if seen > rank:
            return 0.0 if k == ZERO else 2 * GAMMA ** k / (GAMMA + 1)
    k = max(sketch)
    return 0.0 if k == ZERO else 2 * GAMMA ** k / (GAMMA + 1)


def dump(sketch: dict) -> list:
    return [[k, n] for k, n in sorted(sketch.items())]


def load(pairs) -> dict:
    return {int(k): int(n) for k, n in pairs or ()}
