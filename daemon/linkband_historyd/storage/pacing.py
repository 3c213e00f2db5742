"""How the writer keeps maintenance off the commit path: wall-time budgets and a
record of how long each kind of work held it.

Ingest waits for whatever the writer is doing between two batches: a write
operation of another process (a chunk of a delete, an FTS merge, vacuum pages),
its own FTS merge step, a checkpoint. A step sized in rows or pages takes ten
times longer on a machine whose other core is busy with the SDK's signal
processing (and more when the core the writer runs on is shared), so work is
paced on the clock instead: :class:`Pace` lets an operation go on in small steps
until its wall-time budget is spent, or stop at once when an ingest message is
waiting. :class:`StepSize` sizes those steps from what the last ones cost, so
one step stays well under the budget. :class:`HeldTimes` counts, per kind of
work, how often and how long it held the writer (published in the writer's
state for ``bench/maintenance.py``).
"""
from __future__ import annotations

import contextlib
import time

HELD_OVER_S = (0.002, 0.005, 0.010)     # HeldTimes counts the steps longer than these


class Pace:
    """A wall-time budget for one operation; ``waiting()`` says an ingest batch waits."""

    def __init__(self, budget_s: float, waiting=None):
        self.started = time.perf_counter()
        self.deadline = self.started + budget_s
        self.waiting = waiting
        self.steps = 0

    def go_on(self) -> bool:
        """Whether to take another step: always the first, then while time is left
        and no ingest waits."""
        self.steps += 1
        if self.steps == 1:
            return True
        if time.perf_counter() >= self.deadline:
            return False
        return not (self.waiting is not None and self.waiting())


class StepSize:
    """Units (rows, pages) per step so that a step takes about ``target_s``: from the
    cost per unit of the steps before (a moving average), between ``lo`` and ``hi``."""

    def __init__(self, target_s: float, start: int, lo: int = 1, hi: int = 10_000):
        self.target_s = target_s
        self.lo, self.hi = lo, hi
        self.per_unit = target_s / max(start, 1)

    def units(self, left: int | None = None) -> int:
        n = int(self.target_s / self.per_unit) if self.per_unit > 0 else self.hi
        n = max(self.lo, min(self.hi, n))
        return n if left is None else max(1, min(n, left))

    def took(self, units: int, seconds: float) -> None:
        if units > 0:
            self.per_unit = 0.7 * self.per_unit + 0.3 * (seconds / units)


class _Timing:
    ran = True


class HeldTimes:
    """Per kind of work: steps, seconds and the longest step that held the writer,
    and how many were longer than each of :data:`HELD_OVER_S`."""

    def __init__(self):
        self.kinds: dict[str, list] = {}

    @contextlib.contextmanager
    def timing(self, kind: str):
        """Time the block; it may set ``.ran = False`` on what it yields: not counted."""
        t, mark = time.perf_counter(), _Timing()
        try:
            yield mark
        finally:
            if mark.ran:
                self.add(kind, time.perf_counter() - t)

    def add(self, kind: str, seconds: float) -> None:
        k = self.kinds.get(kind)
        if k is None:
            k = self.kinds[kind] = [0, 0.0, 0.0] + [0] * len(HELD_OVER_S)
        k[0] += 1
        k[1] += seconds
        k[2] = max(k[2], seconds)
        for i, bound in enumerate(HELD_OVER_S):
            if seconds > bound:
                k[3 + i] += 1

    def to_dict(self) -> dict:
        return {kind: {"steps": k[0], "seconds": round(k[1], 6), "max_ms": round(k[2] * 1e3, 3),
                       **{f"over_{b * 1e3:g}ms": n for b, n in zip(HELD_OVER_S, k[3:])}}
                for kind, k in self.kinds.items()}
