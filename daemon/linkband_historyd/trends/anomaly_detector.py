"""Online anomaly detection of one metric series: a score in [0, 1] per point.

Reads each point once, in time order, and decides from the past only; its state
is a small dict of numbers and short lists (``state()``/``AnomalyDetector(state)``)
that the scheduler keeps in ``writer_state`` between runs.

Three published ideas, put together:

* A robust prediction error per point (exponentially weighted level and mean
  absolute deviation, as in EWMA control charts, Roberts 1959; Hunter 1986, or a
  half-hour daily profile once it predicts better), turned into a surprise.
* Calibrated tails (``tail_model``): the surprise and its short mean get a tail
  probability under the series' own past, a generalised Pareto fitted above the
  1 % quantile (peaks over threshold, Siffer et al., KDD 2017), so one threshold
  means about the same false rate on every series. The point's surprise also has
  a tail over the last ~300 points, and the larger probability counts (a burst
  as large as the recent ones is not rare however quiet the days before were);
  and a surprise at an hour of the day that has been surprising on several
  recent days counts as that much more ordinary (``phase_rate``: a nightly
  job's spike). The score is that probability
  on the log scale of Numenta's likelihood, ``log(p) / log(1e-10)``: 0.5 at
  p = 1e-5, 1.0 at 1e-10, scaled down where the point is off by less than 5 %
  of the range seen so far (on bursty counts a rare surprise of a few units is
  ordinary; the published detectors get this from quantizing the file's range).
* Shape novelty (``shape_novelty``): a window of recent values unlike every
  stored prototype (the idea of adaptive-resonance and contextual detectors) scores
  by its distance, at most 0.5 (a new shape alone is as strong as p = 1e-5);
  the point's score is the larger of the two.

Real series break naive z-scores; each case has a guard:
constant stretches (the spread is floored by a slowly forgetting long-run
spread, by a fraction of the level, and by the series' value quantum, so a
tiny wiggle after a flat stretch is not a 1e5 sigma event); level shifts (the
level follows in a few dozen points and the tails absorb the burst, so a shift
alarms once then becomes normal); gaps (a gap of more than GAP_STEPS steps
widens the spread so the level re-learns); duplicate and out-of-order
timestamps (a point is scored but a non-increasing time does not move the step
estimate); a young tail (in the first two days a tail's fit is not allowed a
finite end: fitted on the excesses of one or two daily rises it ended just past
the largest, and the next day's rise, a little larger, had probability 0; in the
third day the short mean's finite end lies past its largest excess as far as the
largest of its few independent events implies, the events counted by runs
declustering).
"""
from __future__ import annotations

import math

from linkband_historyd.trends.phase_rate import PhaseRate
from linkband_historyd.trends.shape_novelty import ShapeNovelty
from linkband_historyd.trends.tail_model import EventTail, RecentTail, TailHistogram

SCORE_THRESHOLD = 0.4        # the shipped threshold (p = 1e-4): an alert where a score reaches it
P_FLOOR = 1e-10              # score 1.0 at this tail probability (log scale)
NOVELTY_WEIGHT = 0.5         # the most a new shape alone scores
GAP_STEPS = 12               # a gap of more steps than this partly resets the spread


class AnomalyDetector:
    """One series' online detector: ``update(t, v)`` returns the point's score.

    After each update, ``likelihood_now`` is the point's raw score (before the
    episode logic), ``expected`` the value the chosen predictor expected, and
    ``episode_open`` whether an episode is open. Episodes: one opens where the raw
    score reaches ON and closes after HOLD_S seconds of points below it (at least
    HOLD_MIN points; a count of points would hold an hourly series for days and
    swallow its next anomaly). The *score* is the raw
    score at the points that raise the open episode's peak (its first point, or
    one stronger by DELTA) and 0 elsewhere, so one threshold turns an episode
    into one alert, early, and a long disturbance is not counted again and again.
    """

    FIELDS = ("n", "t", "step", "level", "dev", "dev_long", "mag", "quantum", "prev_value",
              "recent", "peak", "quiet", "slots", "err", "alerted")
    LEVEL_ALPHA = 0.1        # level: ~10 points of memory
    DEV_ALPHA = 0.02         # mean absolute deviation: ~50 points
    LONG_ALPHA = 0.002       # long-run spread and magnitude: ~500 points
    SHORT = 6                # surprises averaged for the sustained test
    REL_FLOOR = 1e-3         # spread floor: this fraction of the typical magnitude
    LONG_FLOOR = 0.25        # spread floor: this fraction of the long-run spread
    SLOTS = 48               # the daily profile: half-hour slots
    SLOT_ALPHA = 0.05        # each slot's mean and deviation
    SEASON_DAYS = 3          # days seen before the profile may be used
    ERR_ALPHA = 0.005        # which predictor has been better lately
    MINN = 100               # points scored 0 while the tails form,
    WARM_S = 86_400          # ... and a day: the tails have seen a daily cycle's surprises
    BOUND_S = 2 * 86_400     # the point's tails may claim a largest surprise (a bounded fit)
                             # only after this long: before, they have seen one daily cycle
    SHORT_BOUND_S = 2.5 * 86_400  # ... the short mean's after this: its excesses are runs
                             # of one or two events (the mean of SHORT neighbours)
    MARGIN_S = 3 * 86_400    # ... and until this long its end is put past the largest excess
                             # as far as the number of independent events implies
    HLEARN = 50              # points before the tails learn (the spread is forming)
    ON = 0.25                # an episode is open while the raw score is at least this
    HOLD_S = 12 * 3600       # ... and until this long in a row falls below it
    HOLD_MIN = 24            # ... and at least this many points
    DELTA = 0.04             # in an episode, a score only where it beats the peak by this
    SHORT_P_SCALE = 100      # the short mean is a second look at the same surprises: on
                             # bursty counts it alone fired as often as the point
    RANGE_SHARE = 0.05       # a tail score is scaled down where the point is off the expected
                             # value by less than this share of the range seen so far
    RECENT_MIN_N = 300       # points before the recent tail may lower a surprise
    SHAPE_FLOOR = 20         # shapes are compared on a range of at least this many spread
                             # floors (not the quantum: after a flat stretch, that is the jump)

    def __init__(self, state: dict | None = None):
        s = state or {}
        for f in self.FIELDS:
            setattr(self, f, s.get(f))
        self.n = int(self.n or 0)
        self.recent = list(self.recent or [])
        self.peak = self.peak or 0.0
        self.quiet = self.quiet or 0
        self.err = list(self.err or [0.0, 0.0])
        self.alerted = bool(self.alerted)
        tails = list(s.get("tails") or []) + [None] * 3
        self.tails = [TailHistogram(tails[0]), EventTail(tails[1]), RecentTail(tails[2])]
        self.phase = PhaseRate(s.get("phase"))
        self.shape = ShapeNovelty(s.get("shape"))
        self.likelihood_now, self.expected = 0.0, None

    def state(self) -> dict:
        """The whole state, JSON-safe: numbers and lists (at most about 18 KB)."""
        return {**{f: getattr(self, f) for f in self.FIELDS},
                "tails": [h.state() for h in self.tails], "shape": self.shape.state(),
                "phase": self.phase.state()}

    @property
    def episode_open(self) -> bool:
        return self.peak > 0

    # -- one point ----------------------------------------------------------------
    def update(self, t: float, v: float) -> float:
        """The point's score in [0, 1] (see the class docstring)."""
        lik = self.likelihood_now = self._likelihood(float(t), v)
        if lik >= self.ON:
            self.quiet = 0
            if lik > self.peak + (self.DELTA if self.peak else 0.0):
                self.peak = lik
                return lik
            self.peak = max(self.peak, lik)
            return 0.0
        self.quiet += 1
        if self.peak and self.quiet > max(self.HOLD_MIN, self.HOLD_S / (self.step or 1.0)):
            self.peak, self.alerted = 0.0, False
        return 0.0

    def _likelihood(self, t: float, v) -> float:
        """The raw score: the larger of the surprise's calibrated tail (log scale)
        and the shape novelty."""
        if v is None or not math.isfinite(v):
            return 0.0
        self._track_time(t)
        if self.n == 0:
            self.level, self.dev, self.dev_long, self.mag = v, 0.0, 0.0, abs(v)
            self.quantum, self.n, self.expected, self.prev_value = 0.0, 1, v, v
            self.shape.update(v)
            return 0.0
        u = math.log1p(self._z(t, v))
        share = self._share_of_range(v)
        self._learn_season(t, v)
        self._learn(v)
        self.recent = (self.recent + [u])[-self.SHORT:]
        p = self._tail_probability(u, sum(self.recent) / len(self.recent))
        self.n += 1
        novelty = self.shape.update(v, self.SHAPE_FLOOR * max(
            self.LONG_FLOOR * self.dev_long, self.REL_FLOOR * self.mag))
        ordinary = self.phase.factor(t)
        if self.n > self.HLEARN:
            self.phase.learn(t, p)
        if self.n <= self.MINN or self.n * (self.step or 0) < self.WARM_S:
            return 0.0
        p = min(1.0, p * ordinary)
        tail = min(1.0, math.log(max(p, 1e-300)) / math.log(P_FLOOR))
        return max(tail * min(1.0, share / self.RANGE_SHARE), NOVELTY_WEIGHT * novelty)

    def _share_of_range(self, v: float) -> float:
        """How far v is from the expected value, as a share of the range seen so far."""
        lo, hi = self.shape.lo, self.shape.hi
        if lo is None or hi <= lo:
            return 1.0
        return abs(v - (self.expected if self.expected is not None else v)) / (hi - lo)

    def _tail_probability(self, u: float, ubar: float) -> float:
        """The smaller tail probability of the point's surprise (the larger of its
        probability over ~1,000 points and over the last ~300, once that many are
        seen) and of its short mean (counted SHORT_P_SCALE times as likely), each
        under its own past; then all are learned."""
        p = []
        seen = self.n * (self.step or 0)
        bounded = (seen >= self.BOUND_S, seen >= self.SHORT_BOUND_S, seen >= self.BOUND_S)
        young = (False, seen < self.MARGIN_S, False)
        for hist, x, b, y in zip(self.tails, (u, ubar, u), bounded, young):
            p.append(hist.tail(x, b, y))
            if self.n >= self.HLEARN:
                hist.learn(x)
        recent = p[2] if self.n >= self.RECENT_MIN_N else 0.0
        return min(1.0, max(p[0], recent), self.SHORT_P_SCALE * p[1])

    def _track_time(self, t: float) -> None:
        """Step estimate from increasing times only; a long gap widens the spread."""
        if self.t is not None and t > self.t:
            gap = t - self.t
            if self.step is None:
                self.step = gap
            elif gap > GAP_STEPS * self.step and self.n:
                self.dev = max(self.dev, self.dev_long)
            else:
                self.step += 0.05 * (gap - self.step)
        if self.t is None or t > self.t:
            self.t = t

    # -- predictors ---------------------------------------------------------------
    def _floor(self) -> float:
        """No spread below a share of the long-run spread, of the magnitude, or the
        value's resolution: a flat stretch does not make a wiggle infinite."""
        return max(self.LONG_FLOOR * self.dev_long, self.REL_FLOOR * self.mag, self.quantum,
                   1e-12)

    def _slot(self, t: float) -> int:
        return int((t % 86_400) // (86_400 / self.SLOTS))

    def _z(self, t: float, v: float) -> float:
        """Surprise of v: against the recent level, or against the daily profile's
        slot when the profile has predicted better than the level lately."""
        self.expected = self.level
        z = abs(v - self.level) / (1.25 * max(self.dev, self._floor()))
        if not self.slots or self.n * (self.step or 0) < self.SEASON_DAYS * 86_400:
            return z
        mean, dev = self.slots[0][self._slot(t)], self.slots[1][self._slot(t)]
        if mean is None or self.err[1] >= self.err[0]:
            return z
        self.expected = mean
        return abs(v - mean) / (1.25 * max(dev, self._floor()))

    def _learn_season(self, t: float, v: float) -> None:
        if not self.slots:
            self.slots = [[None] * self.SLOTS, [0.0] * self.SLOTS]
        k = self._slot(t)
        mean, dev = self.slots[0][k], self.slots[1][k]
        if mean is None:
            self.slots[0][k] = v
            return
        e_season, e_level = abs(v - mean), abs(v - self.level)
        self.err[0] += self.ERR_ALPHA * (e_level - self.err[0])
        self.err[1] += self.ERR_ALPHA * (e_season - self.err[1])
        self.slots[1][k] = dev + self.SLOT_ALPHA * (e_season - dev)
        self.slots[0][k] = mean + self.SLOT_ALPHA * (v - mean)

    def _learn(self, v: float) -> None:
        err = abs(v - self.level)
        if self.prev_value is not None:
            change = abs(v - self.prev_value)
            if change > 0 and (not self.quantum or change < self.quantum):
                self.quantum = change            # the smallest change seen: the resolution
        spread = 1.25 * max(self.dev, self._floor())
        self.dev += self.DEV_ALPHA * (min(err, 5 * spread) - self.dev)
        self.dev_long += self.LONG_ALPHA * (err - self.dev_long)
        self.mag += self.LONG_ALPHA * (abs(v) - self.mag)
        self.level += self.LEVEL_ALPHA * (v - self.level)
        self.prev_value = v


# -- a series through one detector --------------------------------------------------
def scan(series, state: dict | None = None, *, threshold: float = SCORE_THRESHOLD,
         after: float | None = None, step: float | None = None) -> dict:
    """Feed the buckets of `series` (``[(t, v or None)]``, oldest first; those at or
    before `after` skipped) to a detector restored from `state`.

    Returns ``{"scores": [[t, score]] (non-zero scores only), "episodes": [...],
    "state": the detector's new state}``. An episode begins at the first point of
    a detector episode whose score reaches `threshold` and lasts while that
    detector episode is open: ``{"t", "value", "expected", "score", "likelihood",
    "kind" (spike, dip, level_shift), "start", "end", "n", "baseline": "online"}``
    with t/value/expected at its first point and score the highest in it.
    """
    det = AnomalyDetector(state)
    scores, episodes = [], []
    current = None
    for t, v in series:
        if v is None or (after is not None and t <= after):
            continue
        t, v = float(t), float(v)
        score = det.update(t, v)
        if score:
            scores.append([t, score])
        if score >= threshold and not det.alerted:
            det.alerted = True
            current = {"t": t, "value": v, "expected": det.expected, "score": score,
                       "likelihood": det.likelihood_now,
                       "kind": "spike" if v >= (det.expected or 0.0) else "dip",
                       "start": t, "end": t + (step or det.step or 0.0), "n": 1,
                       "baseline": "online"}
            episodes.append(current)
        elif current is not None and det.alerted:
            current["end"] = t + (step or det.step or 0.0)
            current["score"] = max(current["score"], score)
            if det.likelihood_now >= det.ON:
                current["n"] += 1
                if current["n"] > det.SHORT:
                    current["kind"] = "level_shift"
        else:
            current = None
    return {"scores": scores, "episodes": episodes, "state": det.state()}
