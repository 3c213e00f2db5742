"""Send->commit latency of ingest messages, as a log-bucketed histogram.

The writer adds, for every message it commits, the time from the client's
``sent_at`` (header) to the end of the COMMIT; ``stats`` reports count, p50,
p90, p99 and max. Buckets grow by 5 %, so a percentile is within 5 % of the
truth; adding a sample is one bisect. The query process keeps one per lane for
the time from a request's arrival to its reply. :meth:`LatencyHistogram.cumulative`
gives the counts at or under coarser bounds (Prometheus' ``le`` buckets), and the
sum of the samples is kept for their ``_sum``.
"""
from __future__ import annotations

import bisect
import math

_LO = 1e-6           # 1 µs
_RATIO = 1.05
_N = int(math.log(100.0 / _LO, _RATIO)) + 2      # up to 100 s
BOUNDS = [_LO * _RATIO ** i for i in range(_N)]


class LatencyHistogram:
    def __init__(self, counts: dict | None = None):
        self.counts = [0] * (_N + 1)
        self.total = 0
        self.max = 0.0
        self.sum = 0.0
        if counts:
            for i, n in counts.get("buckets", {}).items():
                self.counts[int(i)] = n
            self.total = sum(self.counts)
            self.max = counts.get("max", 0.0)
            self.sum = counts.get("sum", 0.0)

    def add(self, seconds: float) -> None:
        if seconds < 0:
            seconds = 0.0
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.total += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds

    def percentile(self, q: float) -> float:
        if not self.total:
            return 0.0
        rank = q * self.total
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                return min(BOUNDS[min(i, _N - 1)], self.max)
        return self.max

    def summary_ms(self) -> dict:
        return {"count": self.total,
                "p50": self.percentile(0.50) * 1e3,
                "p90": self.percentile(0.90) * 1e3,
                "p99": self.percentile(0.99) * 1e3,
                "max": self.max * 1e3}

    def cumulative(self, bounds) -> list[int]:
        """For each of ``bounds`` (ascending, seconds), the samples at or under it. A
        sample counts under a bound when its whole 5 % bucket does, so one within 5 %
        under a bound may be counted under the next one instead (never under a smaller
        one)."""
        out, seen, i = [], 0, 0
        for bound in bounds:
            while i < _N and BOUNDS[i] <= bound * (1 + 1e-9):
                seen += self.counts[i]
                i += 1
            out.append(seen)
        return out

    def to_dict(self) -> dict:
        return {"buckets": {str(i): n for i, n in enumerate(self.counts) if n}, "max": self.max,
                "sum": self.sum}
