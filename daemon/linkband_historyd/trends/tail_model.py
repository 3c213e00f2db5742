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
             g_min: float = -0.5, top: float = 0.0, events: float = 0.0) -> float:
    """Survival at excess x of a generalised Pareto with this mean and variance
    (shape bounded to [g_min, g_max] so a few points cannot make it absurd).

    With ``top`` (the largest excess seen) and ``events`` (how many independent
    events it is the largest of), a bounded fit's support ends no nearer than
    where the largest of that many draws from the fitted shape g falls short of
    the end by: the end E sits about E * events ** g past it. Fitted on a few
    events, the method of moments ends the support just past (or before) the
    largest, and the next event, a little larger, had probability 0."""
    fitted = 0.5 * (1 - mean * mean / var)
    g = min(max(fitted, g_min), g_max)
    sig = max(0.5 * mean * (mean * mean / var + 1), 1e-6)
    if g < 0 and top > 0:
        g = max(g, -sig * (1 - events ** fitted) / top) if events > 1 else 0.0
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
        self.q = None                     # the quantile of the last ``tail`` call

    def state(self) -> dict:
        return {"h": self.h, "w": self.w, "top": self.top}

    def events(self) -> float:
        """Independent events above the quantile: not counted here (``EventTail``)."""
        return math.inf

    def tail(self, u: float, bounded: bool = True, young: bool = False) -> float:
        """P(statistic >= u) under the past: 1 below the QT quantile, else QT times
        the fitted tail at u's excess over it. ``bounded=False``: the fit may not be
        lighter than exponential (a bounded fit on the excesses of one or two events
        ends just past the largest and gives probability 0 to the next a little larger).
        ``young``: a bounded fit ends no nearer than the largest of ``events()``
        independent events implies (``gpd_tail``)."""
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
        self.q = q
        if u <= q:
            return 1.0
        mean = max(s1 / need - q, self.BIN / 2)
        var = max(s2 / need - (s1 / need) ** 2, 1e-12)
        top = (self.top + 0.5) * self.BIN - q if young else 0.0
        return self.QT * gpd_tail(u - q, mean, var, self.G_MAX, -0.5 if bounded else 0.0,
                                  top, self.events())

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
            self._rescale()
            self.w = 1.0

    def _rescale(self) -> None:
        """Other counts weighted as h are divided by w with it (``EventTail``)."""


class EventTail(TailHistogram):
    """A tail that also counts its independent events: runs of excesses over the
    quantile apart by at least RUN points are one event each (runs declustering,
    the usual practice before a peaks-over-threshold fit), forgotten as points
    are. The short mean of surprises needs it: one event lifts SHORT neighbouring
    means above the quantile, so its excesses are many points of a few events."""

    RUN = 12                # points at or below the quantile that end an event

    def __init__(self, state: dict | None = None):
        super().__init__(state)
        s = state or {}
        self.runs = s.get("runs", 0.0)        # events, weighted as h
        self.below = s.get("below", self.RUN)  # points since the last excess

    def state(self) -> dict:
        return {**super().state(), "runs": self.runs, "below": self.below}

    def events(self) -> float:
        """Independent events above the quantile in memory (the quantile is the one
        of the point's ``tail`` call: the detector asks before it learns)."""
        return self.runs / self.w

    def learn(self, u: float) -> None:
        if self.q is not None and u > self.q:
            self.runs += self.w if self.below >= self.RUN else 0.0
            self.below = 0
        else:
            self.below += 1
        super().learn(u)

    def _rescale(self) -> None:
        self.runs /= self.w


class RecentTail(TailHistogram):
    """The same statistic's tail over about a day of points (``MEM`` 300), fitted
    above its upper 30 %: the detector takes the larger of this and the long tail's
    probability, so a burst as large as the last few hundred points have shown
    (a busy stretch of a bursty count) is not rare however quiet the days before
    it were. A short memory holds few points above a 1 % quantile; above 30 % the
    fit has about a hundred."""

    MEM = 300.0
    QT = 0.3
