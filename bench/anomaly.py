"""Online anomaly detection scored on the Numenta Anomaly Benchmark (issue 15).

    .venv/bin/python bench/anomaly.py --nab PATH [--in-process] [--threshold 0.5]
        [--only SUBSTRING] [--json FILE]

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
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from nab_scoring import PROFILES, Nab
from linkband_historyd.anomaly_detector import SCORE_THRESHOLD, AnomalyDetector

ANCHORS = ("ARTime", "numenta", "contextOSE", "earthgeckoSkyline", "knncad",
           "relativeEntropy", "randomCutForest", "twitterADVec", "windowedGaussian", "random",
           "null")


def in_process(nab: Nab) -> dict:
    out = {}
    for rel in nab.files:
        det = AnomalyDetector()
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
        c = d.client(max_queue=1_000_000)
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
            r = d.ask("metrics.trends", metric_name=[name], since=since, until=until,
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nab", required=True, help="a checkout of numenta/NAB")
    ap.add_argument("--in-process", action="store_true", help="no daemon: the detector here")
    ap.add_argument("--threshold", type=float, default=SCORE_THRESHOLD)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    nab = Nab(args.nab)
    nab.load()
    mine, published = nab.reproduce("numenta")
    print(f"scoring check: numenta standard reproduced {mine:.2f} (published {published:.2f})")
    t0 = time.monotonic()
    scores = in_process(nab) if args.in_process else through_daemon(nab)
    mode = "in-process" if args.in_process else "daemon (metrics.trends, online detector)"
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
