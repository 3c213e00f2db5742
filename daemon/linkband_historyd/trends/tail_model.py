"""Calibrated upper tails of one non-negative statistic, learned online.

The anomaly detector turns each point's surprise into a tail probability under
the series' own past. A Gaussian (Numenta's likelihood) is far off on real
metrics, whose surprises are heavy-tailed on some series and light on others, so
one threshold meant very different false-alarm rates from series to series. Here
the statistic feeds an exponentially forgetting histogram (``MEM`` points of
memory, a fixed number of bins: bounded state); below the histogram's upper
``QT`` quantile the probability is 1, above it ``QT`` times a generalised Pareto
tail fitted to the excesses by the method of moments: the peaks-over-threshold
idea of Siffer, Fouque, Termier, Largouet, "Anomaly detection in streams with
extreme value theory", KDD 2017. One probability then means about the same false
rate on every series, which a corpus-wide threshold needs.
"""
from __future__ import annotations

import math


def gpd_tail(x: float, mean: float, var: float, g_max: float = 0.5,
             g_min: float = -0.5) -> float:
    """Survival at excess x of a generalised Pareto with this mean and variance
    (shape bounded to [g_min, g_max] so a few points cannot make it absurd)."""
    g = min(max(0.5 * (1 - mean * mean / var), g_min), g_max)
    sig = max(0.5 * mean * (mean * mean / var + 1), 1e-6)
    if abs(g) < 1e-6:
        return math.exp(-x / sig)
    base = 1 + g * x / sig
    return base ** (-1 / g) if base > 0 else 0.0


class TailHistogram:
    """Forgetting histogram of one statistic in [0, BIN * NB) and its fitted tail."""

    BIN, NB = 0.1, 80
    MEM = 1000.0            # points of memory
    QT = 0.01               # the fitted tail begins at this upper quantile
    G_MAX = 0.5             # the heaviest tail shape allowed

    def __init__(self, state: dict | None = None):
        s = state or {}
        self.h = list(s.get("h") or [0.0] * self.NB)
        self.w = s.get("w", 1.0)          # weight of the next point (grows: forgetting)
        self.top = s.get("top", 0)
        self.total = sum(self.h)

    def state(self) -> dict:
        return {"h": self.h, "w": self.w, "top": self.top}

    def tail(self, u: float, bounded: bool = True) -> float:
        """P(statistic >= u) under the past: 1 below the QT quantile, else QT times
        the fitted tail at u's excess over it. ``bounded=False``: the fit may not be
        lighter than exponential (a bounded fit on the excesses of one or two events
        ends just past the largest and gives probability 0 to the next a little larger)."""
        if self.total <= 0:
            return 1.0
        h = self.h
        while self.top > 0 and h[self.top] < 1e-12 * self.total:
            self.top -= 1
        need = self.QT * self.total
        k, mass, s1, s2 = self.top, 0.0, 0.0, 0.0
        while k >= 0 and mass + h[k] < need:
            c = (k + 0.5) * self.BIN
            mass, s1, s2 = mass + h[k], s1 + h[k] * c, s2 + h[k] * c * c
            k -= 1
        q = 0.0
        if k >= 0:
            frac = (need - mass) / h[k]
            q = (k + 1 - frac) * self.BIN
            c, m = q + 0.5 * frac * self.BIN, need - mass
            s1, s2 = s1 + m * c, s2 + m * c * c
        if u <= q:
            return 1.0
        mean = max(s1 / need - q, self.BIN / 2)
        var = max(s2 / need - (s1 / need) ** 2, 1e-12)
        return self.QT * gpd_tail(u - q, mean, var, self.G_MAX, -0.5 if bounded else 0.0)

    def learn(self, u: float) -> None:
        """Count u; older counts weigh less by raising the weight of new ones
        (rescaled now and then, so the numbers stay finite)."""
        b = min(self.NB - 1, int(u / self.BIN))
        self.h[b] += self.w
        self.total += self.w
        self.top = max(self.top, b)
        self.w /= 1.0 - 1.0 / self.MEM
        if self.w > 1e50:
            self.h = [x / self.w for x in self.h]
            self.total /= self.w
            self.w = 1.0


class RecentTail(TailHistogram):
    """The same statistic's tail over about a day of points (``MEM`` 300), fitted
    above its upper 30 %: the detector takes the larger of this and the long tail's
    probability, so a burst as large as the last few hundred points have shown
    (a busy stretch of a bursty count) is not rare however quiet the days before
    it were. A short memory holds few points above a 1 % quantile; above 30 % the
    fit has about a hundred."""

    MEM = 300.0
    QT = 0.3
