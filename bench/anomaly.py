"""Online anomaly detection scored on the Numenta Anomaly Benchmark (issue 15).

    .venv/bin/python bench/anomaly.py --nab PATH [--in-process] [--threshold 0.5] [--json FILE]
    .venv/bin/python bench/anomaly.py --healthy DAYS [--per-bucket 30] [--threshold 0.5]

``--nab``: a checkout of github.com/numenta/NAB (nothing of it is in this repository;
see ``nab_scoring``). Every one of NAB's 58 data files is scored, oldest row first.

Daemon mode (the default): one fresh daemon (scheduler and system collector off,
retention off so the 2013-2015 rows stay); each file is pushed with ``HistoryClient``
as metric ``nab.<n>``, then one ``metrics.trends`` over the file's range, its bucket
the file's median row spacing: the online detector reads each bucket once, in time
order, from the past only, and ``anomaly_scores`` give each bucket's score; a row
gets its bucket's score (a bucket of an irregular file may hold two rows: they share
the bucket's average). ``--in-process``: the same detector class fed row by row in
this process, no daemon (a quick second mode).

Prints our normalised scores beside the published detectors' (NAB's
``results/final_results.json``), for the standard, reward_low_FP_rate and
reward_low_FN_rate profiles, after checking that the scoring reproduces one
published detector's score from its raw results; then, at the shipped threshold,
labeled windows detected and episodes starting outside every window per 1,000
hours of data. Exit code 1 when the reproduction check is off by 0.1 or more.

``--healthy DAYS``: the trend watch's alert rate on healthy SDK-shaped streams, no
NAB needed: every metric of ``bench/soak.py`` (``common.METRICS``, the same value
generators), DAYS simulated days of 5-minute buckets (the watch's default bucket),
each bucket the average of ``--per-bucket`` samples, fed to one detector per metric
in this process as the watch feeds it; prints alerts per metric per week at the
threshold (target < 1).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from nab_scoring import PROFILES, Nab

from linkband_historyd.trends.anomaly_detector import SCORE_THRESHOLD, AnomalyDetector, scan

ANCHORS = ("ARTime", "numenta", "contextOSE", "earthgeckoSkyline", "knncad",
           "relativeEntropy", "randomCutForest", "twitterADVec", "windowedGaussian", "random",
           "null")


def in_process(nab: Nab, detector=AnomalyDetector) -> dict:
    out = {}
    for rel in nab.files:
        det = detector()
        out[rel] = [det.update(nab.epoch(t), v)
                    for t, v in zip(nab.timestamps[rel], nab.values[rel])]
    return out


def _step(epochs: list[float]) -> int:
    gaps = [b - a for a, b in zip(epochs, epochs[1:]) if b > a]
    return max(1, int(statistics.median(gaps)))


def through_daemon(nab: Nab) -> dict:
    import shutil
    import tempfile

    from common import note, stop_daemon

    from linkband_historyd.harness import DaemonProcess
    base = tempfile.mkdtemp(prefix="lbh-nab-")
    d = DaemonProcess(base, log_level="WARNING", env={
        "LINKBAND_HISTORY_COLLECTOR": "false", "LINKBAND_HISTORY_SCHEDULER": "false",
        "LINKBAND_HISTORY_METRIC_DAYS": "0"})
    out = {}
    try:
        d.start()
        c = d.client(max_queue=1_000_000, query_timeout=300.0)   # a niced run on a busy
                                                                    # machine can wait
        for k, rel in enumerate(nab.files):
            name = f"nab.{k}"
            epochs = [nab.epoch(t) for t in nab.timestamps[rel]]
            c.store_metrics([{"timestamp": t, "metric_type": "nab", "metric_name": name,
                              "value": v} for t, v in zip(epochs, nab.values[rel])])
            if not c.flush(timeout=120):
                raise RuntimeError("the daemon did not take every row")
            step = _step(epochs)
            since = min(epochs) // step * step
            until = max(epochs) // step * step + step
            r = c.query("metrics.trends", metric_name=[name], since=since, until=until,
                        bucket=f"{step}s", horizon=1)
            if not r.get("ok"):
                raise RuntimeError(f"{rel}: {r}")
            scores = dict((t, s) for t, s in r["rows"][0]["anomaly_scores"])
            out[rel] = [scores.get(t // step * step, 0.0) for t in epochs]
            note(f"{rel}: {len(epochs)} rows, bucket {step} s, "
                 f"{len(r['rows'][0]['anomalies'])} episodes")
        stop_daemon(d)
    finally:
        d.close()
        shutil.rmtree(base, ignore_errors=True)
    return out


def healthy(days: float, per_bucket: int, threshold: float) -> int:
    import random

    from common import METRICS
    step, start = 300, 1_714_521_600
    rng = random.Random(15)
    total = 0
    print(f"healthy SDK streams: {len(METRICS)} metrics, {days:g} simulated days of {step} s "
          f"buckets, {per_bucket} samples a bucket, threshold {threshold}")
    for spec in METRICS:
        series = [(start + i * step, sum(spec[4](rng) for _ in range(per_bucket)) / per_bucket)
                  for i in range(int(days * 86400 / step))]
        n = len(scan(series, threshold=threshold, step=step)["episodes"])
        total += n
        print(f"  {spec[1]:28s} {n:3d} alerts = {7 * n / days:.2f} per week")
    rate = 7 * total / days / len(METRICS)
    print(f"all: {total} alerts = {rate:.2f} per metric per week (target < 1)")
    return 0 if rate < 1 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nab", help="a checkout of numenta/NAB")
    ap.add_argument("--healthy", type=float, metavar="DAYS", help="alert rate on healthy streams")
    ap.add_argument("--per-bucket", type=int, default=30)
    ap.add_argument("--in-process", action="store_true", help="no daemon: the detector here")
    ap.add_argument("--threshold", type=float, default=SCORE_THRESHOLD)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    if args.healthy:
        return healthy(args.healthy, args.per_bucket, args.threshold)
    if not args.nab:
        ap.error("--nab PATH (or --healthy DAYS) is required")
    nab = Nab(args.nab)
    nab.load()
    mine, published = nab.reproduce("numenta")
    print(f"scoring check: numenta standard reproduced {mine:.2f} (published {published:.2f})")
    t0 = time.monotonic()
    if args.in_process:
        scores, mode = in_process(nab), "in-process"
    else:
        scores, mode = through_daemon(nab), "daemon (metrics.trends, online detector)"
    print(f"ran: {mode}, {sum(len(v) for v in scores.values())} rows of {len(nab.files)} "
          f"files in {time.monotonic() - t0:.0f} s")
    ours = {p: nab.score(scores, p) for p in PROFILES}
    pub = nab.published()
    print(f"\n{'detector':22s}" + "".join(f"{p:>20s}" for p in PROFILES))
    print(f"{'linkband (ours)':22s}" + "".join(f"{ours[p]['score']:20.1f}" for p in PROFILES))
    for name in ANCHORS:
        if name in pub:
            print(f"{name:22s}" + "".join(f"{pub[name][p]:20.1f}" for p in PROFILES))
    print("optimised thresholds (NAB sweeper): " +
          ", ".join(f"{p} {ours[p]['threshold']:.3f}" for p in PROFILES))
    c = nab.counts(scores, args.threshold)
    per_k = 1000 * c["outside"] / c["hours"]
    print(f"\nat the shipped threshold {args.threshold}: {c['detected']} of {c['windows']} labeled "
          f"windows detected; {c['outside']} episodes outside windows in {c['hours']:.0f} h "
          f"= {per_k:.1f} per 1,000 hours")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mode": mode, "scores": ours, "counts": c}, f, indent=1)
    return 0 if abs(mine - published) < 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
