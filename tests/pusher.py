"""Client processes for tests: deterministic records from a seed, pushed and flushed."""
from __future__ import annotations

import random

import sdkdata

from linkband_history import HistoryClient


def records(seed: int, n: int, base_ts: float) -> dict:
    rng = random.Random(seed)
    ts = [base_ts + seed * 0.001 + i * 0.01 for i in range(n)]
    return {
        "metric": [sdkdata.metric(rng, t, i) for i, t in enumerate(ts)],
        "performance": [sdkdata.performance(rng, t) for t in ts[: n // 4]],
        "log": [sdkdata.log(rng, t) for t in ts[: n // 2]],
        "alert": [sdkdata.alert(rng, t) for t in ts[: max(1, n // 50)]],
    }


def push(ingest: str, query: str, seed: int, n: int, base_ts: float) -> bool:
    recs = records(seed, n, base_ts)
    with HistoryClient(ingest=ingest, query=query) as c:
        c.store_metrics(recs["metric"])
        c.store_performance(recs["performance"])
        c.store_logs(recs["log"])
        c.store_alerts(recs["alert"])
        return c.flush(timeout=30)


def push_numbered(ingest: str, query: str, who: int, stop_event, counter) -> None:
    """Push metrics numbered 0, 1, 2, ... (value = number) until told to stop."""
    with HistoryClient(ingest=ingest, query=query, max_queue=10_000_000, linger=0) as c:
        i = 0
        while not stop_event.is_set():
            c.store_metrics([{"metric_type": "test", "metric_name": f"client{who}", "value": i + k}
                             for k in range(100)])
            i += 100
            counter.value = i
        c.flush(timeout=0.5)          # the daemon may be gone by now
