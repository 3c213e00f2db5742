"""Percentiles of a group in bounded memory: the SQL aggregate ``lbh_quantiles``.

``lbh_quantiles(value, 'p50,p95')`` runs inside the GROUP BY of an aggregate query
(``query_engine.run_aggregate``), so percentiles cost no second scan and never
bring a group's values into a Python list of unbounded size. SQLite feeds a
GROUP BY from its sorter one group after the other, so one accumulator is alive
at a time. An accumulator keeps the values themselves up to ``EXACT_MAX`` and
answers exactly (linear interpolation between closest ranks, numpy's default);
past that it folds them into a DDSketch (``sketch``: log buckets, every quantile
within ``ddsketch.ALPHA``, 1 %, relative error) with a mirrored store for negative
values, whose size depends on the spread of the values, not on their number.

The result is JSON text, one number (or null) per asked percentile, in order.
"""
from __future__ import annotations

import json
import math
import weakref

from linkband_historyd.rollups import ddsketch

EXACT_MAX = 10_000               # values kept as they are; more are folded into a sketch
PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
NAME = "lbh_quantiles"

_registered: "weakref.WeakSet" = weakref.WeakSet()


def percentile(sorted_values: list, q: float):
    """Linear interpolation between closest ranks (numpy's default, and
    ``statistics.quantiles(method='inclusive')``); None for no values."""
    n = len(sorted_values)
    if n == 0:
        return None
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _representative(k: int) -> float:
    return 0.0 if k == ddsketch.ZERO else 2 * ddsketch.GAMMA ** k / (ddsketch.GAMMA + 1)


class SignedSketch:
    """DDSketch over all reals: positive values, negated negative values, zeros."""

    def __init__(self):
        self.pos: dict = {}
        self.neg: dict = {}
        self.zeros = 0
        self.count = 0

    def add(self, x: float) -> None:
        self.count += 1
        if x > ddsketch.MIN_VALUE:
            ddsketch.add(self.pos, x)
        elif x < -ddsketch.MIN_VALUE:
            ddsketch.add(self.neg, -x)
        else:
            self.zeros += 1

    def quantile(self, q: float) -> float | None:
        """The value at rank q * (count - 1), within ALPHA relative error."""
        if not self.count:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for k in sorted(self.neg, reverse=True):          # the most negative first
            seen += self.neg[k]
            if seen > rank:
                return -_representative(k)
        seen += self.zeros
        if seen > rank:
            return 0.0
        for k in sorted(self.pos):
            seen += self.pos[k]
            if seen > rank:
                return _representative(k)
        return _representative(max(self.pos)) if self.pos else 0.0


class Accumulator:
    """One group's state: its values while there are few, then a DDSketch."""

    __slots__ = ("values", "sketch", "wanted")

    def __init__(self):
        self.values: list | None = []
        self.sketch: SignedSketch | None = None
        self.wanted = None

    def step(self, value, wanted) -> None:
        if value is None:
            return
        if self.wanted is None:
            self.wanted = [PERCENTILES[f] for f in wanted.split(",")]
        if self.sketch is not None:
            self.sketch.add(value)
            return
        self.values.append(value)
        if len(self.values) > EXACT_MAX:
            self.sketch = SignedSketch()
            for v in self.values:
                self.sketch.add(v)
            self.values = None

    def final(self) -> str:
        wanted = self.wanted or []
        if self.sketch is not None:
            return json.dumps([self.sketch.quantile(q) for q in wanted])
        values = sorted(self.values)
        return json.dumps([percentile(values, q) for q in wanted])


def _factory():
    acc = Accumulator()
    return acc, Accumulator.step, Accumulator.final


def register(conn) -> None:
    """Make ``lbh_quantiles`` known on ``conn`` (once per connection)."""
    if conn in _registered:
        return
    conn.create_aggregate_function(NAME, _factory, 2)
    _registered.add(conn)


def decode(text) -> list:
    return json.loads(text) if text else []
