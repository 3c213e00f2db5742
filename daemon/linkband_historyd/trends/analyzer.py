"""Trend analysis of metric series: robust trend, seasonal baseline, anomaly
episodes, Holt forecast, correlation, and a one-alert-per-episode helper.

``analyze`` (what ``metrics.trends`` answers) takes its anomalies from the online
detector (``anomaly_detector``), as the trend watch does; ``anomalies`` and
``check_newest`` here are the whole-range batch detector (a baseline fitted on the
whole range, later buckets included), kept for offline looks at a finished range.

Pure computation, standard library only: functions take series and return plain
dicts and lists; nothing here touches the database or the sockets.

A *series* is a list of ``(t, v)`` pairs: ``t`` is the UTC epoch second at which
a bucket starts, ``v`` its value (a number) or ``None`` for an empty bucket.
Buckets are evenly spaced by ``step`` seconds; missing ``t`` are treated as empty
buckets. Robust statistics throughout: medians and MADs, not means and standard
deviations, so a few wild values do not move the answers.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter, deque
from datetime import datetime, timezone

from linkband_historyd.trends import anomaly_detector

MAD_SIGMA = 1.4826       # normal sigma per unit of median absolute deviation
PERIODS = {"day": 86_400, "week": 604_800}
WEEK_ALIGN = 3 * 86_400  # epoch 0 was a Thursday: shift so week slot 0 is Monday 00:00
MAX_PAIRS = 20_000       # Theil-Sen slopes computed at most (deterministic subsample)
HOLT_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
HOLT_BETAS = (0.01, 0.05, 0.1, 0.2, 0.3)
MEDIAN_TARGET = 12      # values wanted per seasonal median (neighbour slots pooled)
SCALE_TARGET = 100      # residuals wanted per seasonal scale

_median = statistics.median


# --- series helpers ---------------------------------------------------------
def _points(series) -> list[tuple[float, float]]:
    """The non-empty buckets as (t, v) floats, sorted by t; None and NaN dropped."""
    return sorted((float(t), float(v)) for t, v in series
                  if v is not None and math.isfinite(float(v)))


def infer_step(series) -> float | None:
    """The bucket width: the median gap between consecutive distinct t."""
    ts = sorted({float(t) for t, _ in series})
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    return _median(gaps) if gaps else None


def _regularize(series, step: float) -> tuple[float, list[float | None]]:
    """(t0, values) with values[i] the bucket at t0 + i*step (None when empty)."""
    ts = [float(t) for t, _ in series]
    if not ts:
        return 0.0, []
    t0 = min(ts)
    vals: list[float | None] = [None] * (round((max(ts) - t0) / step) + 1)
    for t, v in _points(series):
        vals[round((t - t0) / step)] = v
    return t0, vals


def robust_sigma(values) -> float:
    """A normal-consistent spread: 1.4826 * MAD; when the MAD is 0 (over half the
    values equal the median, e.g. counts that are mostly 0) the root mean square
    deviation from the median, so recurring small departures are not outliers
    while a rare large one still is; 0 for no values."""
    if not values:
        return 0.0
    med = _median(values)
    dev = [abs(x - med) for x in values]
    mad = _median(dev)
    return MAD_SIGMA * mad if mad > 0 else math.sqrt(sum(d * d for d in dev) / len(dev))


# --- trend ------------------------------------------------------------------
def theil_sen_slope(ts, vs) -> float:
    """Median of pairwise slopes. Up to MAX_PAIRS pairs: all of them; beyond that
    every point is paired with K partners at offsets spread evenly over half the
    series (wrapping around), a deterministic subsample with long baselines."""
    n = len(ts)
    if n * (n - 1) // 2 <= MAX_PAIRS:
        pairs = ((i, j) for i in range(n) for j in range(i + 1, n))
    else:
        k = -(-MAX_PAIRS // n)
        offsets = sorted({max(1, round(n / 2 * m / k)) for m in range(1, k + 1)})
        pairs = ((i, (i + o) % n) for o in offsets for i in range(n))
    slopes = [(vs[j] - vs[i]) / (ts[j] - ts[i]) for i, j in pairs if ts[j] != ts[i]]
    return _median(slopes) if slopes else 0.0


def trend(series, *, min_change_sigmas: float = 1.0, min_z: float = 3.0) -> dict:
    """Robust linear trend: Theil-Sen slope, median intercept.

    Returns ``{"direction", "slope_per_hour", "strength", "change", "noise", "z",
    "start_value", "end_value", "n"}``:

    * ``noise``: robust sigma of the residuals around the line.
    * ``change``: the fitted change over the series' span (slope * span).
    * ``strength`` in 0..1, a robust R^2: ``1 - (noise / spread)^2`` where spread
      is the robust sigma of the values themselves (0 when nothing varies).
    * ``z``: slope over its approximate standard error, ``1.05 * noise /
      sqrt(sum (t - mean t)^2)`` (Theil-Sen is ~91 % as efficient as OLS); None
      when the noise is 0 (an exact line).
    * ``direction`` is "increasing"/"decreasing" only when the slope is
      significant relative to the noise: ``|change| >= min_change_sigmas * noise``
      AND ``|z| >= min_z``; otherwise "stable" (also with fewer than 3 values).
    """
    pts = _points(series)
    n = len(pts)
    if n < 3:
        return {"direction": "stable", "slope_per_hour": 0.0, "strength": 0.0, "change": 0.0,
                "noise": 0.0, "z": 0.0, "start_value": pts[0][1] if pts else None,
                "end_value": pts[-1][1] if pts else None, "n": n}
    ts = [t - pts[0][0] for t, _ in pts]
    vs = [v for _, v in pts]
    slope = theil_sen_slope(ts, vs)
    intercept = _median([v - slope * t for t, v in zip(ts, vs)])
    noise = robust_sigma([v - intercept - slope * t for t, v in zip(ts, vs)])
    spread = robust_sigma(vs)
    t_mean = sum(ts) / n
    se = 1.05 * noise / math.sqrt(sum((t - t_mean) ** 2 for t in ts) or math.inf)
    z = slope / se if se > 0 else None
    change = slope * ts[-1]
    significant = (slope != 0 and abs(change) >= min_change_sigmas * noise
                   and (z is None or abs(z) >= min_z))
    return {"direction": ("increasing" if slope > 0 else "decreasing") if significant
            else "stable", "slope_per_hour": slope * 3600,
            "strength": min(1.0, max(0.0, 1.0 - (noise / spread) ** 2)) if spread else 0.0,
            "change": change, "noise": noise, "z": z, "start_value": intercept,
            "end_value": intercept + change, "n": n}


# --- seasonal profile -------------------------------------------------------
def _period_seconds(period: str) -> int:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {sorted(PERIODS)}, not {period!r}")
    return PERIODS[period]


def slot_of(t: float, step: float, period_s: int, tz_offset_s: float = 0) -> int:
    """Bucket position within the (local) day or week; week slot 0 is Monday 00:00."""
    shift = tz_offset_s + (WEEK_ALIGN if period_s == PERIODS["week"] else 0)
    return int(((t + shift) % period_s) // step)


def seasonal_profile(series, period: str = "day", tz_offset_s: float = 0,
                     step: float | None = None) -> dict:
    """Time-of-day (``period="day"``) or day-of-week-and-time (``"week"``) baseline.

    Returns ``{"period", "period_s", "step", "tz_offset_s", "slots": [...]}`` with
    one entry per slot: ``{"slot", "offset_s", "time" ("HH:MM" local), "weekday"
    (week only, 0 = Monday), "n", "median", "mad"}``; ``mad`` is the raw median
    absolute deviation (multiply by 1.4826 for a normal sigma); None when empty.
    """
    period_s = _period_seconds(period)
    step = step or infer_step(series) or period_s
    groups: list[list[float]] = [[] for _ in range(math.ceil(period_s / step))]
    for t, v in _points(series):
        groups[slot_of(t, step, period_s, tz_offset_s)].append(v)
    slots = []
    for s, vals in enumerate(groups):
        offset = s * step
        med = _median(vals) if vals else None
        entry = {"slot": s, "offset_s": offset,
                 "time": "%02d:%02d" % divmod(int(offset % 86_400) // 60, 60),
                 "n": len(vals), "median": med,
                 "mad": _median([abs(v - med) for v in vals]) if vals else None}
        if period == "week":
            entry["weekday"] = int(offset // 86_400)
        slots.append(entry)
    return {"period": period, "period_s": period_s, "step": step, "tz_offset_s": tz_offset_s,
            "slots": slots}


# --- anomaly baselines ------------------------------------------------------
def _pooled(groups, s, pool):
    """Values of slot s and its +-pool neighbours (wrapping around the period)."""
    n = len(groups)
    pool = min(pool, (n - 1) // 2)
    return [v for d in range(-pool, pool + 1) for v in groups[(s + d) % n]]


def _slot_medians(slots, vals, n_slots, pool):
    """Median of each slot's values and its +-pool neighbours' (None if none)."""
    groups: list[list[float]] = [[] for _ in range(n_slots)]
    for s, v in zip(slots, vals):
        if v is not None:
            groups[s].append(v)
    return [_median(p) if (p := _pooled(groups, s, pool)) else None for s in range(n_slots)]


def _seasonal_baseline(t0, vals, step, period_s, tz_offset_s, skip=frozenset()):
    """Expected value and scale per bucket from a season + linear trend fit:
    slot medians across all periods, the Theil-Sen slope of the values minus them,
    slot medians again on the detrended values; expected = slot median + trend.
    Scale: robust sigma of the residuals of the same slot and its neighbours.
    Pools of neighbour slots widen when there are few periods, to >= MEDIAN_TARGET
    values per median and >= SCALE_TARGET residuals per scale. `skip`: bucket
    indices left out of the fit (a first pass's episodes)."""
    periods = max(1.0, len(vals) * step / period_s)
    pool = max(1, math.ceil((MEDIAN_TARGET / periods - 1) / 2))
    scale_pool = max(3, math.ceil((SCALE_TARGET / periods - 1) / 2))
    n_slots = math.ceil(period_s / step)
    slots = [slot_of(t0 + i * step, step, period_s, tz_offset_s) for i in range(len(vals))]
    kept = [None if i in skip else v for i, v in enumerate(vals)]
    med = _slot_medians(slots, kept, n_slots, pool)
    idx = [i for i, v in enumerate(kept) if v is not None and med[slots[i]] is not None]
    slope = theil_sen_slope(idx, [kept[i] - med[slots[i]] for i in idx]) if idx else 0.0
    kept = [None if v is None else v - slope * i for i, v in enumerate(kept)]
    med = _slot_medians(slots, kept, n_slots, pool)
    resid: list[list[float]] = [[] for _ in range(n_slots)]
    for s, v in zip(slots, kept):
        if v is not None and med[s] is not None:
            resid[s].append(v - med[s])
    scale = [robust_sigma(_pooled(resid, s, scale_pool)) for s in range(n_slots)]
    return ([None if med[s] is None else med[s] + slope * i for i, s in enumerate(slots)],
            [scale[s] for s in slots])


def _rolling_baseline(vals, window, min_history=5):
    """Expected value and scale per bucket from the `window` previous values."""
    expected: list[float | None] = [None] * len(vals)
    scale: list[float | None] = [None] * len(vals)
    hist: deque[float] = deque(maxlen=window)
    for i, v in enumerate(vals):
        if len(hist) >= min_history:
            expected[i], scale[i] = _median(hist), robust_sigma(hist)
        if v is not None:
            hist.append(v)
    return expected, scale


def _floor_scales(scale, vals):
    """No scale below 0.3 * the typical scale, nor below a tiny absolute floor."""
    known = [s for s in scale if s]
    level = _median([abs(v) for v in vals if v is not None] or [1.0])
    floor = max(0.3 * _median(known) if known else 0.0, 1e-9 * max(1.0, level))
    return [None if s is None else max(s, floor) for s in scale]


def _choose_period(period, span_s, min_periods):
    """"day"/"week" when the history covers min_periods of it, else None (rolling)."""
    if period in (None, "none", "rolling"):
        return None
    names = ("week", "day") if period == "auto" else (period,)
    for name in names:
        if span_s >= min_periods * _period_seconds(name):
            return name
    return None


# --- anomalies --------------------------------------------------------------
def _flags(z, spike_z, sustained_z, window):
    """(spike flags, sustained flags): |z| >= spike_z on the bucket itself, or
    |median z| >= sustained_z over the centred window around it."""
    half = window // 2
    spike = [x is not None and abs(x) >= spike_z for x in z]
    sustained = [False] * len(z)
    for i, x in enumerate(z):
        if x is None:
            continue
        w = [y for y in z[max(0, i - half):i + half + 1] if y is not None]
        sustained[i] = len(w) >= 3 and abs(_median(w)) >= sustained_z
    return spike, sustained


def _runs(flags, max_gap):
    """[first, last] index of each run of set flags; runs separated by at most
    max_gap unset flags merge."""
    runs: list[list[int]] = []
    for i in (i for i, f in enumerate(flags) if f):
        if runs and i - runs[-1][1] <= max_gap + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs


def _classify(resid, scale, sustained, drift_rise):
    """spike/dip when no bucket is sustained; else drift when the deviation keeps
    growing through the episode (median residual of its last quarter exceeds its
    first quarter's by >= max(drift_rise * scale, 0.3 * last)); else level_shift.
    Residuals in value units, so a constant shift stays constant where the noise
    changes across the day."""
    if not sustained:
        return "spike" if max(resid, key=abs) > 0 else "dip"
    sign = 1 if _median(resid) >= 0 else -1
    k = max(2, len(resid) // 4)
    early, late = sign * _median(resid[:k]), sign * _median(resid[-k:])
    return "drift" if late - early >= max(drift_rise * _median(scale), 0.3 * late) \
        else "level_shift"


def _scores(t0, vals, step, period, tz_offset_s, skip=frozenset()):
    """(expected, scale, z) per bucket against the seasonal baseline of `period`,
    or a rolling one (previous max(24, 6 h) buckets) when period is None."""
    if period:
        expected, scale = _seasonal_baseline(t0, vals, step, PERIODS[period], tz_offset_s, skip)
    else:
        expected, scale = _rolling_baseline(vals, max(24, round(6 * 3600 / step)))
    scale = _floor_scales(scale, vals)
    z = [None if v is None or e is None else (v - e) / s
         for v, e, s in zip(vals, expected, scale)]
    return expected, scale, z


def anomalies(series, step: float | None = None, *, period: str | None = "auto",
              tz_offset_s: float = 0, min_periods: int = 3, spike_z: float = 6.0,
              sustained_z: float = 2.5, window: int | None = None, max_gap: int = 2,
              drift_rise: float = 1.5) -> list[dict]:
    """Anomaly episodes, oldest first.

    Each bucket gets a robust z-score ``(v - expected) / scale``. With at least
    ``min_periods`` days (weeks) of history the baseline is seasonal: the median
    of the same time-of-day slot across days (time-of-week with ``period="week"``;
    "auto" picks week when 3 weeks exist, else day) plus a robust linear trend,
    and the MAD of that slot's residuals, so a daily peak is normal; it is fitted
    twice, the second time without the first pass's episodes (+- half a window),
    so that long anomalies do not distort it. With less history the baseline is
    a rolling median/MAD of the previous ``max(24, 6 h)`` buckets.
    A bucket is anomalous when ``|z| >= spike_z``, or when the median z of the
    centred ``window`` (default ~1 h, 5..25 buckets) is ``>= sustained_z`` in size
    (level shifts, drifts). Anomalous buckets at most ``max_gap`` apart form one
    episode:

    ``{"t", "value", "expected", "score", "kind", "start", "end", "n", "baseline"}``
    with t/value/expected/score (signed z) at the peak (largest |z|), ``start``
    the first bucket's t, ``end`` the end of the last bucket (its t + step),
    ``n`` the anomalous buckets, ``kind`` spike/dip/level_shift/drift.
    """
    step = step or infer_step(series)
    t0, vals = _regularize(series, step) if step else (0.0, [])
    if len(vals) < 5:
        return []
    name = _choose_period(period, len(vals) * step, min_periods)
    window = window or min(25, max(5, round(3600 / step) | 1))
    skip: set[int] = set()
    for _ in range(2 if name else 1):   # the second pass refits without the first's episodes
        expected, scale, z = _scores(t0, vals, step, name, tz_offset_s, skip)
        spike, sustained = _flags(z, spike_z, sustained_z, window)
        runs = _runs([p or q for p, q in zip(spike, sustained)], max_gap)
        if not runs:
            break
        skip = {i for a, b in runs for i in range(a - window // 2, b + window // 2 + 1)}
    episodes = []
    for a, b in runs:
        idx = [i for i in range(a, b + 1) if z[i] is not None]
        peak = max(idx, key=lambda i: abs(z[i]))
        kind = _classify([vals[i] - expected[i] for i in idx], [scale[i] for i in idx],
                         any(sustained[a:b + 1]), drift_rise)
        episodes.append({"t": t0 + peak * step, "value": vals[peak], "expected": expected[peak],
                         "score": z[peak], "kind": kind, "start": t0 + a * step,
                         "end": t0 + (b + 1) * step,
                         "n": sum(1 for i in idx if spike[i] or sustained[i]),
                         "baseline": f"seasonal-{name}" if name else "rolling"})
    return episodes


# --- forecast ---------------------------------------------------------------
def _holt(obs, alpha, beta, b0):
    """Holt's linear method over (position, value) observations; empty buckets
    advance level by trend without correction. Returns (one-step residuals,
    level, trend, position of the last observation)."""
    pos, level = obs[0]
    b, res = b0, []
    for p, x in obs[1:]:
        d = p - pos
        pred = level + d * b
        if d == 1:
            res.append(x - pred)
        new_level = alpha * x + (1 - alpha) * pred
        b = beta * (new_level - level) / d + (1 - beta) * b
        level, pos = new_level, p
    return res, level, b, pos


def forecast(series, step: float | None = None, horizon: int = 12, *, level: float = 0.95,
             max_fit: int = 2016) -> list[dict]:
    """The next `horizon` buckets after the series' last bucket:
    ``[{"t", "value", "lower", "upper"}]`` ([] with fewer than 3 values).

    Holt's linear method (level + trend) on the last `max_fit` values, with
    alpha in HOLT_ALPHAS and beta in HOLT_BETAS chosen by the least sum of squared
    one-step-ahead errors; the initial trend is the Theil-Sen slope of the first 10.
    Interval (ETS(A,A,N) form, beta' = alpha * beta): for h steps ahead of the
    last value, ``value +- z * sigma * sqrt(1 + sum_{j=1}^{h-1} (alpha + beta'
    j)^2)``, sigma = sqrt(SSE / (m - 2)) over the m one-step residuals, z the
    normal quantile of `level` (1.96 for 95 %).
    """
    step = step or infer_step(series)
    t0, vals = _regularize(series, step) if step else (0.0, [])
    obs = [(i, v) for i, v in enumerate(vals) if v is not None][-max_fit:]
    if len(obs) < 3:
        return []
    head = obs[:10]
    b0 = theil_sen_slope([p for p, _ in head], [x for _, x in head])
    best = None
    for alpha in HOLT_ALPHAS:
        for beta in HOLT_BETAS:
            res, lvl, b, pos = _holt(obs, alpha, beta, b0)
            sse = sum(e * e for e in res)
            if best is None or sse < best[0]:
                best = (sse, len(res), alpha, beta, lvl, b, pos)
    sse, m, alpha, beta, lvl, b, pos = best
    sigma = math.sqrt(sse / max(1, m - 2))
    zq = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    out = []
    for k in range(1, horizon + 1):
        h = len(vals) - 1 + k - pos
        half = zq * sigma * math.sqrt(1 + sum((alpha + alpha * beta * j) ** 2
                                              for j in range(1, h)))
        value = lvl + h * b
        out.append({"t": t0 + (len(vals) - 1 + k) * step, "value": value,
                    "lower": value - half, "upper": value + half})
    return out


# --- correlation ------------------------------------------------------------
def _pearson(xs, ys) -> float | None:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def _ranks(xs) -> list[float]:
    """Ranks from 1, tied values sharing their average rank."""
    first: dict[float, int] = {}
    last: dict[float, int] = {}
    for r, x in enumerate(sorted(xs), 1):
        first.setdefault(x, r)
        last[x] = r
    return [(first[x] + last[x]) / 2 for x in xs]


def correlation(series_by_name: dict, *, min_n: int = 3) -> list[dict]:
    """Pearson and Spearman correlation of every pair of series on their aligned
    buckets (t present in both with values): ``[{"a", "b", "pearson", "spearman",
    "n"}]``, highest |spearman| first (then |pearson|); pairs with fewer than
    `min_n` aligned buckets are left out; a constant side gives None."""
    maps = {name: dict(_points(s)) for name, s in series_by_name.items()}
    names = list(maps)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(maps[a].keys() & maps[b].keys())
            if len(common) < min_n:
                continue
            xa = [maps[a][t] for t in common]
            xb = [maps[b][t] for t in common]
            out.append({"a": a, "b": b, "pearson": _pearson(xa, xb),
                        "spearman": _pearson(_ranks(xa), _ranks(xb)), "n": len(common)})
    out.sort(key=lambda r: ([-abs(r[k]) if r[k] is not None else 1.0
                             for k in ("spearman", "pearson")], r["a"], r["b"]))
    return out


# --- analysis ---------------------------------------------------------------
def summarize(tr: dict, episodes: list[dict], fc: list[dict], span_s: float,
              name: str | None = None) -> str:
    """One English line: direction and slope per hour, span, anomaly count by kind
    and the latest start, and the last forecast point with its interval."""
    def when(t):
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = f"{name}: " if name else ""
    if not tr["n"]:
        return head + "no data"
    slope = f"{tr['slope_per_hour']:+.3g}/h"
    text = head + (f"stable (slope {slope})" if tr["direction"] == "stable" else
                   f"{tr['direction']} by {slope} (strength {tr['strength']:.2f})")
    span = f"{span_s / 86_400:.1f} d" if span_s >= 2 * 86_400 else f"{span_s / 3600:.1f} h"
    text += f" over {span}, {tr['n']} bucket{'s' if tr['n'] != 1 else ''}"
    if episodes:
        kinds = Counter(e["kind"].replace("_", " ") for e in episodes)
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        text += (f"; {len(episodes)} anomal{'y' if len(episodes) == 1 else 'ies'} ({detail}),"
                 f" latest {when(episodes[-1]['start'])}")
    else:
        text += "; no anomalies"
    if fc:
        f = fc[-1]
        text += f"; forecast {when(f['t'])}: {f['value']:.3g} [{f['lower']:.3g}, {f['upper']:.3g}]"
    return text


def analyze(series, step: float | None = None, horizon: int = 12, *, name: str | None = None,
            related: dict | None = None, threshold: float = anomaly_detector.SCORE_THRESHOLD,
            state: dict | None = None) -> dict:
    """Everything about one series, the SDK's TrendAnalysis shape:
    ``{"trend_direction", "trend_strength", "slope_per_hour", "trend" (the
    trend() dict), "anomalies", "anomaly_scores", "forecast", "correlation",
    "summary"}``.
    Anomalies come from the online detector (``anomaly_detector.scan``): every
    bucket once, oldest first, from `state` (a fresh detector by default), so a
    bucket is judged on the buckets before it only; ``anomaly_scores`` are its
    non-zero scores ``[[t, score]]`` and ``anomalies`` the episodes whose score
    reaches `threshold`.
    ``related``: other series by name; ``correlation`` then lists this series'
    (called `name`, default "value") pairs with them, strongest first."""
    step = step or infer_step(series) or 1.0
    tr = trend(series)
    online = anomaly_detector.scan(sorted(series, key=lambda p: p[0]), state,
                                   threshold=threshold, step=step)
    episodes = online["episodes"]
    fc = forecast(series, step, horizon)
    corr = []
    if related:
        me = name or "value"
        corr = [r for r in correlation({me: series, **related}) if me in (r["a"], r["b"])]
    pts = _points(series)
    span = pts[-1][0] - pts[0][0] + step if pts else 0.0
    return {"trend_direction": tr["direction"], "trend_strength": tr["strength"],
            "slope_per_hour": tr["slope_per_hour"], "trend": tr, "anomalies": episodes,
            "anomaly_scores": online["scores"], "forecast": fc, "correlation": corr,
            "summary": summarize(tr, episodes, fc, span, name)}


# --- alerting: one alert per episode -----------------------------------------
def episode_state(prev_state: dict | None, recent: list[dict], *,
                  gap_s: float = 0.0) -> tuple[dict, bool]:
    """Decide whether anomalies seen in the newest buckets are a *new* episode.

    `recent`: episodes from anomalies() that touch the newest buckets. An episode
    continues the remembered one when it starts no later than the remembered
    end + gap_s (re-detections of one episode, whose bounds move as data
    arrives, are the same episode); otherwise it is new and should alert.
    Returns ``(state, should_alert)``; state is ``{"active", "start", "end",
    "kind", "score", "alerts"}`` (a new dict; prev_state is not changed)."""
    state = dict(prev_state) if prev_state else {
        "active": False, "start": None, "end": None, "kind": None, "score": None, "alerts": 0}
    alert = False
    for ep in sorted(recent, key=lambda e: e["start"]):
        if state["end"] is not None and ep["start"] <= state["end"] + gap_s:
            state["end"] = max(state["end"], ep["end"])
            if abs(ep["score"]) >= abs(state["score"] or 0):
                state.update(kind=ep["kind"], score=ep["score"])
        else:
            state.update(start=ep["start"], end=ep["end"], kind=ep["kind"], score=ep["score"],
                         alerts=state["alerts"] + 1)
            alert = True
    state["active"] = bool(recent)
    return state, alert


def check_newest(prev_state: dict | None, series, step: float | None = None, newest: int = 1,
                 *, gap_s: float = 0.0, **anomaly_options) -> tuple[dict, dict | None]:
    """For a scheduled job: detect anomalies over the whole series (history +
    newest buckets), keep the episodes touching the `newest` last buckets, and
    return ``(state, episode to alert on or None)``; pass state back next time."""
    step = step or infer_step(series)
    if not series or not step:
        return episode_state(prev_state, [], gap_s=gap_s)[0], None
    since = max(float(t) for t, _ in series) - (newest - 1) * step
    recent = [e for e in anomalies(series, step, **anomaly_options) if e["end"] > since]
    state, alert = episode_state(prev_state, recent, gap_s=gap_s)
    return state, (max(recent, key=lambda e: e["start"]) if alert else None)
