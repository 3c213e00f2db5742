"""The Prometheus text exposition of the gateway (``GET /history/prometheus``).

Each scrape asks the daemon two commands over the query socket, at once:
``counters`` (its own health: ``linkband_history_*`` counters, gauges and two
latency histograms) and ``metrics.latest`` (the newest value of each SDK metric
series of the last ``window_s`` seconds, exposed as the gauge
``linkband_<metric_name>`` with its tags as labels). Written by hand in text format
0.0.4: the exposition is rendered from two replies, so a client library's registry
of live metric objects would add a dependency and nothing else.

Names: a metric name becomes ``linkband_`` + the name with every character
outside ``[a-zA-Z0-9_]`` replaced by ``_``; a tag key becomes a label name the same
way (``_`` before a leading digit, ``tag`` before a leading ``__``, which
Prometheus reserves). A label value is the tag's text (JSON for anything but a
string or a number), cut at :data:`MAX_LABEL_VALUE` characters; a series keeps its
first :data:`MAX_LABELS` tags by key.

Cardinality is bounded: at most ``max_series_per_metric`` series per metric name
and ``max_series`` in all (the daemon leaves out the rest, in name and tags
order, so the same series are kept from one scrape to the next). A series left
out for those bounds, for a name that would start with the daemon's own
``linkband_history_``, or because another series has the same name and labels
after sanitizing (the newest of those is kept), is counted in
``linkband_history_exposition_series_dropped_total{reason}`` (since the gateway
started).

The route is behind the gateway's guard like every other: Prometheus sends the
token with ``authorization: {type: Bearer, credentials_file: .../http.token}``.
If ``counters`` gets no answer the scrape is a 503 (Prometheus records the target
down); if only ``metrics.latest`` fails the daemon's own health is still served,
with ``linkband_history_exposition_sdk_metrics_ok 0``.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from linkband_historyd.config import BY_KEY
from linkband_historyd.http.params import HTTPError
from linkband_historyd.http.responses import error_response

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "linkband_history_"
DROP_REASONS = ("per_metric", "total", "reserved_name", "duplicate")
MAX_LABELS = 16
MAX_LABEL_VALUE = 256
_BAD = re.compile(r"[^a-zA-Z0-9_]")
_DEFAULT = {k.split(".", 1)[1]: BY_KEY[k].default for k in (
    "http.metrics_path", "http.metrics_window_s", "http.metrics_max_series_per_metric",
    "http.metrics_max_series")}


@dataclass(frozen=True)
class Exposition:
    """Where the exposition is served and its bounds (the ``[http] metrics_*`` options)."""
    path: str = _DEFAULT["metrics_path"]
    window_s: float = _DEFAULT["metrics_window_s"]
    max_series_per_metric: int = _DEFAULT["metrics_max_series_per_metric"]
    max_series: int = _DEFAULT["metrics_max_series"]


# -- names, labels and values ----------------------------------------------------------

def metric_name(name: str) -> str:
    """An SDK metric's name as a Prometheus metric name."""
    return "linkband_" + _BAD.sub("_", name)


def label_name(key: str) -> str:
    out = _BAD.sub("_", key)
    if not out or out[0].isdigit():
        out = "_" + out
    return "tag" + out if out.startswith("__") else out


def label_value(v) -> str:
    if isinstance(v, str):
        text = v
    elif isinstance(v, bool) or v is None:
        text = json.dumps(v)
    elif isinstance(v, (int, float)):
        text = repr(v)
    else:
        text = json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text[:MAX_LABEL_VALUE]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def tag_labels(tags) -> tuple:
    """The labels of a series from its tags (JSON text, or None), sorted by name."""
    if tags in (None, "", "{}"):
        return ()
    try:
        obj = json.loads(tags) if isinstance(tags, str) else tags
    except ValueError:
        obj = tags
    if not isinstance(obj, dict):
        return (("tags", label_value(obj)),)
    labels: dict[str, str] = {}
    for key in sorted(obj)[:MAX_LABELS]:
        labels.setdefault(label_name(str(key)), label_value(obj[key]))
    return tuple(sorted(labels.items()))


# -- the text --------------------------------------------------------------------------

class Text:
    """Families in text format 0.0.4, each written whole (its HELP, TYPE and samples)."""

    def __init__(self):
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help: str, samples) -> None:
        """``samples``: (labels: tuple of pairs, value); nothing is written without one."""
        samples = list(samples)
        if not samples:
            return
        self._head(name, kind, help)
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {number(value)}")

    def histogram(self, name: str, help: str, series) -> None:
        """``series``: (labels, {bounds, counts (cumulative), count, sum})."""
        series = list(series)
        if not series:
            return
        self._head(name, "histogram", help)
        for labels, h in series:
            for bound, n in zip(h["bounds"], h["counts"]):
                self.lines.append(f"{name}_bucket{_labels((*labels, ('le', number(bound))))} {n}")
            self.lines.append(f'{name}_bucket{_labels((*labels, ("le", "+Inf")))} {h["count"]}')
            self.lines.append(f"{name}_sum{_labels(labels)} {number(h['sum'])}")
            self.lines.append(f"{name}_count{_labels(labels)} {h['count']}")

    def _head(self, name: str, kind: str, help: str) -> None:
        self.lines.append(f"# HELP {name} {_help(help)}")
        self.lines.append(f"# TYPE {name} {kind}")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _labels(labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def daemon_health(t: Text, c: dict) -> None:
    """The ``counters`` reply as ``linkband_history_*`` families."""
    p = PREFIX
    t.family(p + "records_stored_total", "counter", "records stored per kind (the highest row id "
             "given in its table)", [((("kind", k),), n) for k, n in sorted(c["stored"].items())])
    rejects = {r: n for r, n in c["rejects"].items() if r != "truncated_string"}
    t.family(p + "ingest_rejects_total", "counter", "records refused by reason (messages, for "
             "reasons about a whole message)", [((("reason", r),), n) for r, n in sorted(rejects.items())])
    t.family(p + "strings_truncated_total", "counter", "records stored with a string cut at "
             "ingest.max_string_bytes", [((), c["rejects"].get("truncated_string", 0))])
    clients = c["clients"]
    for name, key, help in (("records_rejected_total", "rejected", "records refused, all clients"),
                            ("records_lost_total", "lost", "records lost on the way (sequence "
                             "gaps, a full disk), all clients"),
                            ("records_dropped_total", "dropped", "records clients dropped before "
                             "sending (queue or spool full, too large)"),
                            ("duplicate_messages_total", "duplicates", "messages received "
                             "twice and stored once")):
        t.family(p + name, "counter", help, [((), clients[key])])
    t.family(p + "clients", "gauge", "client ids the daemon knows", [((), clients["count"])])
    t.histogram(p + "ingest_latency_seconds", "time from a client's send to the commit of the "
                "message (since the writer started)", [((), c["ingest_latency"])])
    t.histogram(p + "query_latency_seconds", "time from a query's arrival to its reply, per lane "
                "(since the query process started)",
                [((("lane", lane),), h) for lane, h in sorted(c["query_latency"].items())])
    q = c.get("query", {})
    for name, key, kind, help in (("query_workers", "workers", "gauge", "query worker processes"),
                                  ("query_workers_busy", "busy", "gauge", "query workers answering"),
                                  ("query_queued", "queued", "gauge", "queries waiting for a worker"),
                                  ("query_workers_replaced_total", "replaced", "counter",
                                   "query workers replaced (died, hung or too large)"),
                                  ("query_busy_replies_total", "busy_replies", "counter",
                                   "queries answered busy")):
        if key in q:
            t.family(p + name, kind, help, [((), q[key])])
    db = c["database"]
    t.family(p + "database_size_bytes", "gauge", "size of the database file", [((), db.get("db", 0))])
    t.family(p + "wal_size_bytes", "gauge", "size of the write-ahead log", [((), db.get("-wal", 0))])
    jobs = c.get("jobs") or {}
    t.family(p + "job_runs_total", "counter", "maintenance job runs finished, done or failed "
             "(since the scheduler started)",
             [((("job", j),), v["done"] + v["failed"]) for j, v in sorted(jobs.items())])
    t.family(p + "job_failures_total", "counter", "maintenance job runs failed",
             [((("job", j),), v["failed"]) for j, v in sorted(jobs.items())])
    t.family(p + "start_time_seconds", "gauge", "when the daemon's processes were started "
             "(epoch seconds)", [((), c["started_at"])])


def sdk_gauges(t: Text, rows: list, window_s: float, dropped: Counter) -> int:
    """The ``metrics.latest`` rows as ``linkband_<name>`` gauges; returns the series written."""
    families: dict[str, dict] = {}
    for r in rows:
        name = metric_name(r["metric_name"])
        if name.startswith(PREFIX):
            dropped["reserved_name"] += 1
            continue
        fam = families.setdefault(name, {"row": r, "series": {}})
        labels = tag_labels(r["tags"])
        old = fam["series"].get(labels)
        if old is not None:
            dropped["duplicate"] += 1
            if old["timestamp"] >= r["timestamp"]:
                continue
        fam["series"][labels] = r
    for name, fam in sorted(families.items()):
        first = fam["row"]
        what = ", ".join(str(x) for x in (first["metric_type"], first["unit"]) if x)
        t.family(name, "gauge", f"{first['metric_name']}{f' ({what})' if what else ''}: the SDK "
                 f"metric's newest value of the last {window_s:g} s",
                 ((labels, r["value"]) for labels, r in sorted(fam["series"].items())))
    return sum(len(f["series"]) for f in families.values())


# -- the route -------------------------------------------------------------------------

class PrometheusEndpoint:
    """``GET <path>``: the exposition, from the gateway's pool of daemon clients."""

    def __init__(self, gateway, exposition: Exposition):
        self.gw, self.x = gateway, exposition
        self.dropped: Counter = Counter(dict.fromkeys(DROP_REASONS, 0))

    async def serve(self, request: Request) -> Response:
        x = self.x
        latest_params = {"since": time.time() - x.window_s, "per_name": x.max_series_per_metric,
                         "limit": x.max_series}
        counters, latest = await asyncio.gather(self.gw.ask("counters", {}),
                                                self.gw.ask("metrics.latest", latest_params),
                                                return_exceptions=True)
        for reply in (counters, latest):
            if isinstance(reply, BaseException) and not isinstance(reply, HTTPError):
                raise reply                        # a bug, not the daemon's answer
        if isinstance(counters, HTTPError) or not counters.get("ok"):
            message = counters.message if isinstance(counters, HTTPError) else \
                str((counters.get("error") or {}).get("message"))
            return error_response(503, "unavailable", f"the daemon's counters: {message}")
        t = Text()
        daemon_health(t, counters["rows"][0])
        ok = isinstance(latest, dict) and latest.get("ok")
        written = 0
        if ok:
            self.dropped["per_metric"] += latest["dropped"]["per_name"]
            self.dropped["total"] += latest["dropped"]["limit"]
            written = sdk_gauges(t, latest["rows"], x.window_s, self.dropped)
        p = PREFIX
        t.family(p + "exposition_sdk_metrics_ok", "gauge", "1 when this scrape holds the SDK's "
                 "metrics, 0 when the daemon did not answer for them", [((), int(bool(ok)))])
        t.family(p + "exposition_sdk_series", "gauge", "SDK metric series in this scrape",
                 [((), written)])
        t.family(p + "exposition_series_dropped_total", "counter", "SDK metric series left out "
                 "of scrapes since the gateway started, by reason (per_metric, total: the "
                 "http.metrics_max_series* bounds; reserved_name; duplicate)",
                 [((("reason", r),), n) for r, n in sorted(self.dropped.items())])
        return Response(t.render(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
