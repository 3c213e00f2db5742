"""The trend watch, a scheduler job: each watched metric's new buckets go through
its online anomaly detector (state kept in ``writer_state`` by the writer), and
every new episode becomes one alert and one ``trend_alert`` event. ``series`` is
shared with ``metrics.trends`` and ``analyze``."""
from __future__ import annotations

from linkband_historyd.query import engine as Q
from linkband_historyd.query.aggregates import metric_aggregate
from linkband_historyd.settings import Settings
from linkband_historyd.storage import schema
from linkband_historyd.trends.anomaly_detector import scan

WATCH_KEY = "trend_watch"


def series(conn, name: str, since: float, until: float, step: int) -> list:
    """[(bucket start, avg)] of one metric with every bucket of the range present."""
    p = {"metric_name": [name], "since": since, "until": until}
    agg = Q.describe_aggregate("metric", {**p, "bucket": step, "functions": ["avg"]}, ["avg"], [])
    _, _, rows = metric_aggregate(conn, agg, p, 1_000_000)
    got = {float(b): v for b, v in rows}
    first = int(since // step) * step
    return [(float(t), got.get(float(t))) for t in range(first, int(until), step)]


def watched(cfg: Settings) -> dict:
    """{metric name: its alert threshold} from trends.watch ('name' or 'name:threshold')."""
    out = {}
    for item in cfg.trends.watch:
        name, sep, thr = item.rpartition(":")
        out[name if sep else item] = float(thr) if sep else cfg.trends.threshold
    return out


def watch(conn, writer, cfg: Settings, now: float) -> dict:
    """Score the buckets of each watched metric that arrived since the last run
    with that metric's online detector (restored from, and saved back to,
    writer_state); one alert (alert_history, source_component trend_analyzer)
    and one ``trend_alert`` event per episode, not per bucket. A metric without
    saved state learns from ``trends.history_days`` first; then only an episode
    still open at the newest bucket alerts."""
    names = watched(cfg)
    if not names:
        return {"watched": 0}
    step = cfg.trends.bucket_s
    states = schema.read_state(conn, WATCH_KEY, {})
    until = float(int(now // step) * step)                     # whole buckets only
    alerts = []
    for name, thr in names.items():
        saved = states.get(name) or {}
        last = saved.get("last")
        since = until - cfg.trends.history_days * 86400
        if last is not None:
            since = max(since, last + step)
        if since >= until:
            continue
        s = series(conn, name, since, until, int(step))
        out = scan(s, saved.get("detector"), threshold=thr, after=last, step=step)
        states[name] = {"detector": out["state"], "last": max([last or since - step] +
                                                            [t for t, v in s if v is not None])}
        fresh = out["episodes"]                 # each begins in a bucket not scored before
        if last is None:                         # learning from history: only one still open
            fresh = [e for e in fresh if e["end"] >= until]
        alerts.extend(_alert(name, e, now) for e in fresh)
    if alerts:
        writer.call("alerts.store", alerts=alerts)
        for a in alerts:
            writer.call("publish", topic="trend_alert", payload=a)
    writer.call("state.set", key=WATCH_KEY, value=states)
    return {"watched": len(names), "alerts": len(alerts)}


def _alert(name: str, e: dict, now: float) -> dict:
    direction = "높음" if (e["value"] or 0) >= (e["expected"] or 0) else "낮음"
    return {
        "timestamp": now, "level": "WARNING", "category": "DATA",
        "title": f"{name} 이상 감지 ({e['kind']})",
        "description": (f"{name} 값 {e['value']:.3g}이(가) 예상값 {e['expected']:.3g}보다 {direction} "
                        f"(score {e['score']:.2f}, {e['kind']}) / {name} {e['kind']}: "
                        f"{e['value']:.3g} vs expected {e['expected']:.3g}"),
        "source_component": "trend_analyzer",
        "metadata": {"metric_name": name, **{k: e[k] for k in ("kind", "start", "end", "t", "value",
                                                               "expected", "score", "likelihood")}},
    }
