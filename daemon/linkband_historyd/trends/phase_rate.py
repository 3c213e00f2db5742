"""How often a series has been surprising at this time of day, learned online.

Some metrics burst at the same hour every day (a nightly job's CPU spike at
03:30, a daily batch): each burst is rare against the last thousand points, so
the tails flag it every night. Here the detector counts, per half-hour slot of
the day, the points whose tail probability was at most ``EVENT_P`` (an event)
and all points, both forgetting by ``DECAY`` a day; where the slot and its
neighbours have held events on a few days (``MIN_EVENTS``, decayed), the slot's
event rate (shrunk toward the series' overall rate by ``PRIOR_N`` points) over
the overall rate is how much more ordinary a surprise is at this hour, and the
detector multiplies the point's tail probability by it (never below 1: the
phase only ever makes a point less surprising). State: two lists of 48 numbers.
"""
from __future__ import annotations


class PhaseRate:
    """``factor(t)`` before ``learn(t, p)`` for each point, in time order."""

    SLOTS = 48               # half-hour slots of the day
    NEIGHBOURS = 1           # slots either side counted with the point's (the hour jitters)
    DECAY = 0.8              # per day
    EVENT_P = 10 ** -2.5     # an event: a tail probability at most this
    MIN_EVENTS = 2.5         # decayed events in the slots before they count
    PRIOR_N = 100.0          # points at the overall rate added to the slots' counts
    MIN_RATE = 1e-4          # the overall event rate is taken as at least this

    def __init__(self, state: dict | None = None):
        s = state or {}
        self.events = list(s.get("events") or [0.0] * self.SLOTS)
        self.points = list(s.get("points") or [0.0] * self.SLOTS)
        self.day = s.get("day")

    def state(self) -> dict:
        return {"events": self.events, "points": self.points, "day": self.day}

    def _slot(self, t: float) -> int:
        return int((t % 86_400) // (86_400 / self.SLOTS))

    def _decay(self, t: float) -> None:
        day = t / 86_400
        if self.day is None:
            self.day = day
            return
        if day > self.day + 0.01:
            f = self.DECAY ** (day - self.day)
            self.events = [x * f for x in self.events]
            self.points = [x * f for x in self.points]
            self.day = day

    def factor(self, t: float) -> float:
        """How many times more often than overall this hour has been surprising (>= 1)."""
        self._decay(t)
        k = self._slot(t)
        near = [(k + d) % self.SLOTS for d in range(-self.NEIGHBOURS, self.NEIGHBOURS + 1)]
        ev, pt = sum(self.events[j] for j in near), sum(self.points[j] for j in near)
        total = sum(self.points)
        if total <= 0 or ev < self.MIN_EVENTS:
            return 1.0
        overall = max(sum(self.events) / total, self.MIN_RATE)
        return max(1.0, (ev + overall * self.PRIOR_N) / (pt + self.PRIOR_N) / overall)

    def learn(self, t: float, p: float) -> None:
        k = self._slot(t)
        self.events[k] += 1.0 if p <= self.EVENT_P else 0.0
        self.points[k] += 1.0
