"""Novelty of a series' recent shape against a bounded set of prototype windows.

The idea behind adaptive-resonance detectors (Carpenter and Grossberg's ART; on
streams, ARTime) and contextual ones (CAD OSE): an anomaly is often not a large
prediction error but a shape the series has not shown before. The last ``W``
values are matched against at most ``P`` prototypes, stored in value units and
compared relative to the range seen so far (no lookahead: the range only grows);
a window farther than ``RHO`` from every prototype becomes a prototype itself and
scores by its distance, then novelty rests ``REST`` points, so one new shape is
one detection. The least recently matched prototype makes room for a new one.
State: at most ``P`` windows of ``W`` numbers.
"""
from __future__ import annotations

import math


class ShapeNovelty:
    """``update(v)`` returns the novelty of the window ending at v, in [0, 1]."""

    W, P = 6, 80            # window length, prototypes kept
    RHO = 0.08              # match radius: mean absolute distance / range seen
    REST = 50               # points without a novelty score after one
    WARM = 300              # points before novelty may score

    def __init__(self, state: dict | None = None):
        s = state or {}
        self.win, self.protos = list(s.get("win", [])), list(s.get("protos", []))
        self.lo, self.hi = s.get("lo"), s.get("hi")
        self.rest, self.n = s.get("rest", 0), s.get("n", 0)

    def state(self) -> dict:
        return {"win": self.win, "protos": self.protos, "lo": self.lo, "hi": self.hi,
                "rest": self.rest, "n": self.n}

    def update(self, v: float, floor: float = 0.0) -> float:
        """`floor`: the least range to compare against (a flat stretch's range is
        about 0, which would make any wiggle a new shape)."""
        self.n += 1
        self.lo = v if self.lo is None else min(self.lo, v)
        self.hi = v if self.hi is None else max(self.hi, v)
        self.win = (self.win + [v])[-self.W:]
        if len(self.win) < self.W:
            return 0.0
        novelty = self._match(max(self.hi - self.lo, floor, 1e-12))
        if self.n < self.WARM:
            return 0.0
        if self.rest > 0:
            self.rest -= 1
            return 0.0
        if novelty > 0:
            self.rest = self.REST
        return novelty

    def _match(self, span: float) -> float:
        """Move the nearest prototype toward the window, or store the window as a
        new one and return how far it was from the nearest."""
        best, bi = self._nearest(self.win, span)
        if bi >= 0 and best <= self.RHO:
            proto, count, _ = self.protos[bi]
            rate = 1.0 / min(count + 1, 20)
            self.protos[bi] = [[a + rate * (b - a) for a, b in zip(proto, self.win)],
                               count + 1, self.n]
            return 0.0
        if len(self.protos) >= self.P:
            self.protos.pop(min(range(len(self.protos)), key=lambda k: self.protos[k][2]))
        self.protos.append([list(self.win), 1, self.n])
        return min(1.0, best / (2 * self.RHO)) if bi >= 0 else 1.0

    def _nearest(self, w: list, span: float) -> tuple[float, int]:
        best, bi, scale = math.inf, -1, self.W * span
        for i, (proto, _, _) in enumerate(self.protos):
            d = 0.0
            for a, b in zip(w, proto):
                d += abs(a - b)
                if d > best * scale:
                    break
            if d / scale < best:
                best, bi = d / scale, i
        return best, bi
