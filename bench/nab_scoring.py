"""The Numenta Anomaly Benchmark's data, labels and scoring, read from a NAB checkout.

Nothing of NAB is copied here: ``--nab PATH`` names a checkout and this module reads
its ``data/``, ``labels/combined_windows.json``, ``config/profiles.json`` and
``results/`` there, and scores with NAB's own ``nab.sweeper.Sweeper`` (imported from
the checkout; it needs only the standard library). NAB's runner needs pandas only to
read CSVs and to hold the same numbers, so the steps it takes around the sweeper are
done here as it does them:

* optimise (``nab/optimizer.py``): one threshold per profile for the whole corpus, the
  one with the highest sum of sweep scores over every file;
* score (``nab/scorer.py``): the corpus score at that threshold;
* normalise (``nab/runner.py``): ``100 * (score - null) / (perfect - null)``, where
  null is the null detector's score (every window missed) and perfect is the number
  of windows times the profile's TP weight.

``reproduce`` scores a published detector from its raw results in ``results/`` so a
run shows the scoring matches ``results/final_results.json``.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from datetime import datetime, timezone

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PROBATION = 0.15                     # NAB runner's probationaryPercent


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


class Nab:
    """One NAB checkout: files, their rows and windows, the profiles, the sweeper."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        if self.root not in sys.path:
            sys.path.insert(0, self.root)
        from nab.sweeper import Sweeper  # NAB's own scoring rules
        self.Sweeper = Sweeper
        with open(os.path.join(self.root, "labels", "combined_windows.json")) as f:
            raw = json.load(f)
        self.windows = {k: [[_when(a), _when(b)] for a, b in w] for k, w in raw.items()}
        with open(os.path.join(self.root, "config", "profiles.json")) as f:
            self.profiles = {k: v["CostMatrix"] for k, v in json.load(f).items()}
        self.files = sorted(self.windows)

    def rows(self, rel: str) -> tuple[list[datetime], list[float]]:
        """(timestamps, values) of one data file, in file order."""
        with open(os.path.join(self.root, "data", rel), newline="") as f:
            reader = csv.reader(f)
            next(reader)
            pairs = [(_when(r[0]), float(r[1])) for r in reader]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    @staticmethod
    def epoch(ts: datetime) -> float:
        return ts.replace(tzinfo=timezone.utc).timestamp()

    def published(self) -> dict:
        with open(os.path.join(self.root, "results", "final_results.json")) as f:
            return json.load(f)

    def published_scores(self, detector: str, rel: str) -> list[float]:
        folder, name = os.path.split(rel)
        path = os.path.join(self.root, "results", detector, folder, f"{detector}_{name}")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            return [float(r["anomaly_score"]) for r in reader]

    # -- scoring ------------------------------------------------------------------
    def score(self, scores_by_file: dict, profile: str) -> dict:
        """Normalised NAB score of one detector's per-row scores for one profile,
        with the optimised threshold and the raw corpus score."""
        sweeper = self.Sweeper(probationPercent=PROBATION, costMatrix=self.profiles[profile])
        rows, null_rows = [], []
        for rel in self.files:
            ts = self.timestamps[rel]
            rows.extend(sweeper.calcSweepScore(ts, scores_by_file[rel], self.windows[rel], rel))
            null_rows.extend(sweeper.calcSweepScore(ts, [0.0] * len(ts), self.windows[rel], rel))
        best = max(sweeper.calcScoreByThreshold(rows), key=lambda r: r.score)
        null = max(sweeper.calcScoreByThreshold(null_rows), key=lambda r: r.threshold).score
        perfect = sum(len(w) for w in self.windows.values()) * self.profiles[profile]["tpWeight"]
        return {"score": 100 * (best.score - null) / (perfect - null), "threshold": best.threshold,
                "raw": best.score}

    def load(self) -> None:
        """Read every file's timestamps and values once."""
        self.timestamps, self.values = {}, {}
        for rel in self.files:
            self.timestamps[rel], self.values[rel] = self.rows(rel)

    def reproduce(self, detector: str, profile: str = "standard") -> tuple[float, float]:
        """(our scoring of a published detector's raw results, its published score)."""
        scores = {rel: self.published_scores(detector, rel) for rel in self.files}
        return self.score(scores, profile)["score"], self.published()[detector][profile]

    # -- plain counts at one threshold ----------------------------------------------
    def counts(self, scores_by_file: dict, threshold: float) -> dict:
        """Labeled windows with a point >= threshold inside; episodes (runs of points
        >= threshold) starting outside every window, and the hours of data."""
        detected = total = outside = 0
        hours = 0.0
        for rel in self.files:
            ts, sc, wins = self.timestamps[rel], scores_by_file[rel], self.windows[rel]
            hours += (ts[-1] - ts[0]).total_seconds() / 3600
            inside = [any(a <= t <= b for a, b in wins) for t in ts]
            total += len(wins)
            for a, b in wins:
                detected += any(s >= threshold for t, s in zip(ts, sc) if a <= t <= b)
            prev = False
            for s, ins in zip(sc, inside):
                on = s >= threshold
                outside += on and not prev and not ins
                prev = on
        return {"windows": total, "detected": detected, "outside": outside, "hours": hours}
