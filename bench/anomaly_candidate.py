"""A candidate detector for issue 15, kept in bench/ because it is not shippable yet.

It scores better on the Numenta Anomaly Benchmark than the shipped detector
(``linkband_historyd.trends.anomaly_detector``) but fails two of the product's own checks:
it raises episodes on the clean synthetic daily peak at any threshold that keeps
the synthetic anomalies, and its state (two histograms and up to 80 prototype
windows) is about 15 KB of JSON instead of under 4 KB. ``bench/anomaly.py --nab
PATH --in-process --detector candidate`` scores it; nothing in the daemon uses it.

Same surprise as the shipped detector (EWMA level or half-hour daily profile, a
robust spread with floors), then two changes:

* Calibrated tails instead of a Gaussian: the surprise and its short mean each feed
  an exponentially forgetting histogram (``MEM`` points); a point's tail
  probability is 1 below the histogram's upper ``QT`` quantile and, above it, a
  generalised Pareto tail fitted to the excesses by the method of moments (the
  peaks-over-threshold idea of Siffer et al., "Anomaly detection in streams with
  extreme value theory", KDD 2017). One probability means about the same false
  rate on every series, heavy-tailed or not, which one corpus-wide threshold needs.
* Novelty of the recent shape (the idea behind adaptive-resonance detectors such as
  ARTime): the last ``W`` values are matched against at most ``P`` prototype
  windows, stored in value units and compared relative to the range seen so far;
  a window farther than ``RHO`` from every prototype becomes a new prototype and
  scores by its distance, then scores rest ``REST`` points. The point's score is
  the larger of the two.
"""
from __future__ import annotations

import math

from linkband_historyd.trends import anomaly_detector as shipped


def _gpd_tail(x: float, mean: float, var: float) -> float:
    """Survival of a generalised Pareto with this mean and variance, at excess x."""
    g = min(max(0.5 * (1 - mean * mean / var), -0.5), 0.5)
    sig = max(0.5 * mean * (mean * mean / var + 1), 1e-6)
    if abs(g) < 1e-6:
        return math.exp(-x / sig)
    base = 1 + g * x / sig
    return base ** (-1 / g) if base > 0 else 0.0


class TailHistogram:
    """Forgetting histogram of one non-negative statistic and its fitted upper tail."""

    BIN, NB = 0.1, 80
    MEM = 1000.0            # points of memory
    QT = 0.01               # the tail begins at this upper quantile

    def __init__(self, state: dict | None = None):
        s = state or {}
        self.h = list(s.get("h") or [0.0] * self.NB)
        self.w = s.get("w", 1.0)          # weight of the next point (grows: forgetting)
        self.total = sum(self.h)
        self.top = s.get("top", 0)

    def state(self) -> dict:
        return {"h": self.h, "w": self.w, "top": self.top}

    def tail(self, u: float) -> float:
        """P(statistic >= u) under the past: 1 below the QT quantile, else QT times
        the fitted tail at u's excess."""
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
        return self.QT * _gpd_tail(u - q, mean, var)

    def learn(self, u: float) -> None:
        b = min(self.NB - 1, int(u / self.BIN))
        self.h[b] += self.w
        self.total += self.w
        self.top = max(self.top, b)
        self.w /= 1.0 - 1.0 / self.MEM
        if self.w > 1e50:
            self.h = [x / self.w for x in self.h]
            self.total /= self.w
            self.w = 1.0


class ShapeNovelty:
    """Bounded set of prototype windows; a window unlike all of them is novel."""

    W, P = 6, 80            # window length, prototypes kept (least recently used dropped)
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

    def update(self, v: float) -> float:
        self.n += 1
        self.lo = v if self.lo is None else min(self.lo, v)
        self.hi = v if self.hi is None else max(self.hi, v)
        self.win = (self.win + [v])[-self.W:]
        if len(self.win) < self.W:
            return 0.0
        best, bi = self._nearest(self.win, max(self.hi - self.lo, 1e-9))
        if bi >= 0 and best <= self.RHO:
            proto, count, _ = self.protos[bi]
            rate = 1.0 / min(count + 1, 20)
            self.protos[bi] = [[a + rate * (b - a) for a, b in zip(proto, self.win)],
                               count + 1, self.n]
            novelty = 0.0
        else:
            if len(self.protos) >= self.P:
                self.protos.pop(min(range(len(self.protos)), key=lambda k: self.protos[k][2]))
            self.protos.append([list(self.win), 1, self.n])
            novelty = min(1.0, best / (2 * self.RHO)) if bi >= 0 else 1.0
        if self.n < self.WARM:
            return 0.0
        if self.rest > 0:
            self.rest -= 1
            return 0.0
        if novelty > 0:
            self.rest = self.REST
        return novelty

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


class CandidateDetector(shipped.AnomalyDetector):
    """The shipped detector's surprise, scored by calibrated tails and shape novelty."""

    ON = 0.4                # episode open while the score is at least this
    DELTA = 0.05            # in an episode, a score only where it beats the peak by this
    PFLOOR = 1e-5           # score 1 at this tail probability (log scale)
    MINN = 100              # points scored 0 while the histograms form
    HLEARN = 50             # points before the histograms learn (the spread is forming)

    def __init__(self, state: dict | None = None):
        super().__init__(state)
        s = state or {}
        self.tails = [TailHistogram(x) for x in s.get("tails", [None, None])]
        self.shape = ShapeNovelty(s.get("shape"))

    def state(self) -> dict:
        return {**super().state(), "tails": [t.state() for t in self.tails],
                "shape": self.shape.state()}

    def update(self, t: float, v: float) -> float:
        lik = self.likelihood_now = self._likelihood(float(t), v)
        if lik >= self.ON:
            self.quiet = 0
            if lik > self.peak + (self.DELTA if self.peak else 0.0):
                self.peak = lik
                return lik
            self.peak = max(self.peak, lik)
            return 0.0
        self.quiet += 1
        if self.peak and self.quiet > self.HOLD:
            self.peak, self.alerted = 0.0, False
        return 0.0

    def _likelihood(self, t: float, v) -> float:
        if v is None or not math.isfinite(v):
            return 0.0
        self._track_time(t)
        if self.n == 0:
            self.level, self.dev, self.dev_long, self.mag = v, 0.0, 0.0, abs(v)
            self.quantum, self.n, self.expected, self.prev_value = 0.0, 1, v, v
            self.shape.update(v)
            return 0.0
        u = math.log1p(self._z(t, v))
        self._learn_season(t, v)
        self._learn(v)
        self.recent = (self.recent + [u])[-self.SHORT:]
        ubar = sum(self.recent) / len(self.recent)
        p = 1.0
        for hist, x in zip(self.tails, (u, ubar)):
            p = min(p, hist.tail(x))
            if self.n >= self.HLEARN:
                hist.learn(x)
        self.n += 1
        novelty = self.shape.update(v)
        if self.n <= self.MINN:
            return 0.0
        return max(min(1.0, math.log(max(p, 1e-300)) / math.log(self.PFLOOR)), novelty)
