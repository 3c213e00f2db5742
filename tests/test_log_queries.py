"""logs.stats with error patterns, highlighted search with totals, context, dashboard,
pagination while inserts continue, and the result cache."""
from __future__ import annotations

import threading
import time

from conftest import all_rows

T0 = 1_700_000_000.0


def _logs(messages, level="ERROR", start=0):
    return [{"timestamp": T0 + start + i, "level": level, "logger_name": "DEVICE.manager",
             "message": m} for i, m in enumerate(messages)]


def test_error_patterns_group_messages_that_differ_in_numbers_and_ids(daemon):
    c = daemon.client()
    msgs = [f"디바이스 연결이 끊어졌습니다 address={a}, 재연결 시도 {k}/5"
            for k, a in enumerate(["AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02", "11:22:33:44:55:66"], 1)]
    msgs += [f"[STREAM:EEG] buffer overflow: {n} samples dropped (id={u})"
             for n, u in ((12, "6f0a1b88-5a67-4b74-9970-551583b6eab1"),
                          (250, "0d1c2b3a-4f5e-4a6b-9c8d-7e6f5a4b3c2d"))]
    msgs += ["GET /device/status failed: 'timeout'"]
    c.store_logs(_logs(msgs))
    c.store_logs(_logs(["all good"] * 5, level="INFO", start=100))
    assert c.flush()
    r = daemon.ask("logs.stats", since=T0 - 10, until=T0 + 1000)
    assert r["ok"], r
    s = r["rows"][0]
    assert s["by_level"]["ERROR"] == 6 and s["by_level"]["INFO"] == 5 and s["total"] == 11
    top = s["top_patterns"]
    assert [p["count"] for p in top] == [3, 2, 1]
    assert top[0]["pattern"] == "디바이스 연결이 끊어졌습니다 address=<mac>, 재연결 시도 <n>/<n>"
    assert top[0]["example"] == msgs[2] and top[0]["first_seen"] == T0 and top[0]["last_seen"] == T0 + 2
    assert top[1]["pattern"] == "[STREAM:EEG] buffer overflow: <n> samples dropped (id=<uuid>)"
    assert sum(b["ERROR"] + b["INFO"] for b in s["buckets"]) == 11
    assert s["by_logger"] == [{"logger_name": "DEVICE.manager", "count": 11}]


def test_search_highlights_and_counts_and_context(daemon):
    c = daemon.client()
    lines = [f"line {i} [STREAM:EEG] ok" for i in range(30)]
    lines[10] = "디바이스 연결이 끊어졌습니다 (EEG stream stalled)"
    c.store_logs(_logs(lines, level="INFO"))
    assert c.flush()
    r = daemon.ask("logs.search", q="eeg", limit=5)
    assert r["ok"] and r["total"] == 30 and r["total_exact"] is True and len(r["rows"]) == 5
    assert r["rows"][0]["snippet"] == "line 29 [STREAM:«EEG»] ok"
    r = daemon.ask("logs.search", q="연결 stall", mark=["<mark>", "</mark>"])
    row = r["rows"][0]
    assert r["total"] == 1
    assert row["snippet"] == "디바이스 <mark>연결</mark>이 끊어졌습니다 (EEG stream <mark>stall</mark>ed)"
    assert row["highlights"] == [[5, 7], [28, 33]]
    ctx = daemon.ask("logs.context", id=row["id"], before=2, after=3)
    assert [x["message"] for x in ctx["rows"]] == lines[8:14]
    assert [x["match"] for x in ctx["rows"]] == [False, False, True, False, False, False]
    bad = daemon.ask("logs.context", id=10**9)
    assert not bad["ok"] and bad["error"]["code"] == "bad_param"


def test_pagination_returns_every_row_once_while_inserts_continue(daemon):
    c = daemon.client()
    c.store_metrics([{"timestamp": T0 + i, "metric_name": "paged", "value": i} for i in range(3000)])
    assert c.flush()
    stop = threading.Event()

    def writer():
        w = daemon.client()
        k = 0
        while not stop.is_set():
            # newer rows, and rows inside the range already paged over
            w.store_metrics([{"timestamp": T0 + 5000 + k, "metric_name": "paged", "value": -1},
                             {"timestamp": T0 + (k % 3000) + 0.5, "metric_name": "other", "value": -2}])
            k += 1
            time.sleep(0.001)

    t = threading.Thread(target=writer)
    t.start()
    try:
        seen, cursor = [], None
        while True:
            params = {"metric_name": "paged", "until": T0 + 3000, "limit": 97}
            r = daemon.ask("metrics", cursor=cursor, **params) if cursor else daemon.ask("metrics", **params)
            seen += [x["value"] for x in r["rows"]]
            cursor = r["next"]
            if not cursor:
                break
    finally:
        stop.set()
        t.join()
    assert seen == [float(i) for i in range(3000)]


def test_dashboard_and_cache_never_serve_stale_rows(daemon):
    c = daemon.client()
    now = time.time()
    c.store_metrics([{"timestamp": now - 5, "metric_name": "cpu_percent", "value": 10.0, "unit": "%"},
                     {"timestamp": now - 1, "metric_name": "cpu_percent", "value": 20.0, "unit": "%"},
                     {"timestamp": now - 3, "metric_name": "memory_percent", "value": 76.0}])
    c.store_logs([{"timestamp": now - 2, "level": "ERROR", "logger_name": "X", "message": "boom 1"}])
    c.store_alerts([{"timestamp": now - 2, "level": "WARNING", "title": "open one"},
                    {"timestamp": now - 2, "level": "WARNING", "title": "closed", "resolved_at": now}])
    assert c.flush()
    d = daemon.ask("dashboard")["rows"][0]
    assert {m["metric_name"]: m["value"] for m in d["latest_metrics"]} == \
        {"cpu_percent": 20.0, "memory_percent": 76.0}
    assert d["log_levels"] == {"ERROR": 1}
    assert [a["title"] for a in d["open_alerts"]] == ["open one"]
    assert d["top_patterns"][0]["pattern"] == "boom <n>"
    s1 = daemon.ask("metrics.summary", since=now - 60, until=now + 60)
    assert daemon.ask("metrics.summary", since=now - 60, until=now + 60) == s1
    c.store_metrics([{"timestamp": now, "metric_name": "cpu_percent", "value": 30.0}])
    assert c.flush()
    s2 = daemon.ask("metrics.summary", since=now - 60, until=now + 60)
    cpu = next(r for r in s2["rows"] if r["metric_name"] == "cpu_percent")
    assert cpu["last"] == 30.0 and cpu["count"] == 3
    # an older sample arriving late does not replace the latest value
    c.store_metrics([{"timestamp": now - 100, "metric_name": "cpu_percent", "value": 99.0}])
    assert c.flush()
    latest = {m["metric_name"]: m["value"] for m in daemon.ask("dashboard")["rows"][0]["latest_metrics"]}
    assert latest["cpu_percent"] == 30.0


def test_follow_by_id_sees_rows_committed_later(daemon):
    c = daemon.client()
    c.store_logs(_logs(["first"], level="INFO"))
    assert c.flush()
    last = all_rows(daemon, "logs")[-1]["id"]
    c.store_logs(_logs(["late but old"], level="INFO", start=-500))   # an older timestamp
    assert c.flush()
    r = daemon.ask("logs", after_id=last)
    assert [x["message"] for x in r["rows"]] == ["late but old"]


def test_counts_per_logger_and_level_of_a_window_equal_the_rows(daemon):
    """logs.stats counts loggers by a skip scan and one range count each (GROUP BY past
    200 loggers), the dashboard levels through a level list: both equal the rows, with
    lines outside the window on both sides."""
    import random
    rng = random.Random(3)
    c = daemon.client()
    now = time.time()
    lines = [{"timestamp": now - rng.uniform(0, 7200), "level": rng.choice(["INFO", "ERROR", "DEBUG"]),
              "logger_name": rng.choice(["DEVICE.manager", "STREAM.eeg", "API.http", "A", "가"]),
              "message": "m"} for _ in range(600)]
    c.store_logs(lines)
    assert c.flush()

    def expect(since, until, field):
        out = {}
        for r in lines:
            if since <= r["timestamp"] < until:
                out[r[field]] = out.get(r[field], 0) + 1
        return out

    for since, until in ((now - 3600, now - 600), (now - 1800, None)):
        params = {"since": since, **({"until": until} if until else {})}
        s = daemon.ask("logs.stats", **params)["rows"][0]
        want = expect(since, until or now + 1, "logger_name")
        assert {x["logger_name"]: x["count"] for x in s["by_logger"]} == want
        assert [x["count"] for x in s["by_logger"]] == sorted(want.values(), reverse=True)
    dash = daemon.ask("dashboard")["rows"][0]
    assert dash["log_levels"] == expect(dash["time"] - dash["window_s"], now + 1, "level")
    # past 200 loggers: the GROUP BY answers, the same way
    many = [{"timestamp": now - 60, "level": "INFO", "logger_name": f"L{i:03d}", "message": "m"}
            for i in range(205)]
    c.store_logs(many)
    assert c.flush()
    lines += many
    s = daemon.ask("logs.stats", since=now - 1800)["rows"][0]
    want = expect(now - 1800, now + 1, "logger_name")
    assert len(s["by_logger"]) == 50 and s["by_logger"][0]["count"] == max(want.values())
    assert all(want[x["logger_name"]] == x["count"] for x in s["by_logger"])


def test_search_counts_exactly_to_1000_and_past_it_within_its_time_budget(daemon_factory):
    lines = [{"timestamp": T0 + i, "level": "INFO", "logger_name": "STREAM.eeg",
              "message": f"[STREAM:EEG] 디바이스 연결 {i}"} for i in range(1500)]
    for budget, want in (("50", (1500, True)), ("0", (1000, False))):
        d = daemon_factory(name=f"budget{budget}", env={"LINKBAND_HISTORY_SEARCH_TOTAL_MS": budget})
        c = d.client()
        c.store_logs(lines)
        assert c.flush()
        for q in ("연결", "stream:eeg"):
            r = d.ask("logs.search", q=q, limit=10)
            assert r["ok"] and (r["total"], r["total_exact"]) == want and len(r["rows"]) == 10
        r = d.ask("logs.search", q="연결 1499")          # few matches: exact whatever the budget
        assert (r["total"], r["total_exact"]) == (1, True)


def test_a_cached_command_is_answered_from_the_cache_until_the_writer_commits(daemon):
    """A query worker's own handler on the daemon's real file: the second identical
    request is a cache hit (the counters say so, and the reply is the same object);
    a commit by the writer empties the cache and the next answer has the new row."""
    from linkband_history import protocol
    from linkband_historyd import config
    from linkband_historyd.commands.dispatch import QueryHandler
    from linkband_historyd.settings import Settings

    c = daemon.client()
    now = time.time()
    c.store_metrics([{"timestamp": now - 5, "metric_name": "cpu_percent", "value": 10.0}])
    assert c.flush()
    cfg = Settings.from_flat({**config.defaults(), "daemon.db_path": str(daemon.db_path)}, config.SECTIONS)
    handler = QueryHandler(cfg, time.time())
    request = protocol.encode_request("metrics.summary", {"since": now - 60, "until": now + 60})
    first = handler.handle(request)
    assert (handler.cache.hits, handler.cache.misses) == (0, 1)
    assert handler.handle(request) is first
    assert (handler.cache.hits, handler.cache.misses) == (1, 1)
    c.store_metrics([{"timestamp": now - 1, "metric_name": "cpu_percent", "value": 30.0}])
    assert c.flush()
    after = handler.handle(request)
    assert after is not first
    rows = [dict(zip(after["columns"], r)) for r in after["rows"]]
    assert next(r for r in rows if r["metric_name"] == "cpu_percent")["count"] == 2
    assert handler.cache.hits == 1
