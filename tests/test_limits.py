"""Limits on input: each limit's policy (refuse the message, refuse the record, or
keep it cut) and its counter by reason; the per-client accounting stays exact."""
from __future__ import annotations

import json
import math
import random
import time

import msgpack
import pytest
import zmq
from conftest import all_rows, wait_for

from linkband_history import protocol
from linkband_historyd.storage.ingest_batch import Batch, Limits, json_depth, truncate

NOW = time.time()


def _metric(ts=None, value=1.0, tags=None, name="m"):
    return [NOW - 60 if ts is None else ts, "test", name, value, None, tags]


def _log(message, ts=None, extra=None):
    return [NOW - 60 if ts is None else ts, "INFO", "T", message, None, None, None, None, None, extra]


def _batch(limits=Limits(), *payloads, client="c"):
    b = Batch({}, limits, now=NOW)             # a frozen clock: NOW is when it arrived
    rec = 0
    for seq, payload in enumerate(payloads, 1):
        b.add(protocol.encode_message(client, seq, NOW, rec, 0, payload))
        rec += sum(len(v) for v in payload.values())
    return b, rec


def _nested(depth):
    v = 1
    for i in range(depth):
        v = {"k": v} if i % 2 else [v]
    return v


# -- the checks, without a daemon ----------------------------------------------------

def test_too_many_records_refuses_the_whole_message_and_keeps_the_accounting():
    lim = Limits(max_records=10)
    b, rec = _batch(lim, {"metric": [_metric() for _ in range(6)], "log": [_log("x")] * 5},
                    {"metric": [_metric() for _ in range(10)]})
    assert b.rejects == {"too_many_records": 11}
    assert len(b.rows["metric"]) == 10 and not b.rows["log"]
    st = b.clients["c"]
    assert (st.stored, st.rejected, st.lost_records, st.last_seq, st.records_next) == (10, 11, 0, 2, 21)
    assert st.stored + st.rejected + st.lost_records == rec


def test_long_strings_are_cut_on_a_character_boundary_and_marked():
    lim = Limits(max_string_bytes=100)
    korean = "연결" * 40                                      # 240 bytes of UTF-8
    b, _ = _batch(lim, {"log": [_log(korean), _log("short"), _log("x" * 101)]})
    rows = b.rows["log"]
    assert [r[3] for r in rows[1:]] == ["short", "x" * 100 + "…[truncated 1 bytes]"]
    cut = rows[0][3]
    head, marker = cut.split("…")
    assert korean.startswith(head) and len(head.encode()) == 99       # 33 whole characters
    assert marker == "[truncated 141 bytes]"
    assert b.rejects == {"truncated_string": 2} and b.clients["c"].stored == 3
    assert truncate("가" * 10, 100) is None and truncate("x" * 100, 100) is None


def test_names_and_alert_texts_are_cut_too():
    lim = Limits(max_string_bytes=64)
    alert = protocol.row_from_record("alert", {"level": "ERROR", "title": "t" * 70,
                                               "description": "d" * 65}, NOW)
    b, _ = _batch(lim, {"metric": [_metric(name="n" * 80)], "alert": [alert]})
    assert b.rows["metric"][0][2] == "n" * 64 + "…[truncated 16 bytes]"
    assert b.rows["alert"][0][4].endswith("…[truncated 6 bytes]")
    assert b.rows["alert"][0][5].endswith("…[truncated 1 bytes]")
    assert b.rejects == {"truncated_string": 2}                # records, not strings


def test_json_too_large_or_too_deep_refuses_the_record():
    lim = Limits(max_json_bytes=200, max_json_depth=5)
    deep = json.dumps(_nested(6))
    ok_deep = json.dumps(_nested(5))
    brackets_in_strings = json.dumps({"a": "[[[[[[[[{{{{{{{{" * 4, "b": [[1]]})
    b, rec = _batch(lim, {"metric": [
        _metric(tags=json.dumps({"k": "v" * 300})),                   # too large
        _metric(tags=deep),                                            # too deep
        _metric(tags=ok_deep),
        _metric(tags=brackets_in_strings),
        _metric(tags='{"host":"a"}'),
    ]})
    assert b.rejects == {"json_too_large": 1, "json_too_deep": 1}
    assert [r[5] for r in b.rows["metric"]] == [ok_deep, brackets_in_strings, '{"host":"a"}']
    st = b.clients["c"]
    assert st.stored == 3 and st.rejected == 2 and st.stored + st.rejected == rec


def test_json_sent_as_a_map_is_checked_after_encoding():
    # a map passes the batch's cheap check; it becomes JSON text (and is checked)
    # where SQLite refused to bind it, or where its message is looked at row by row
    from linkband_historyd.processes.writer import _coerce, _Refused
    lim = Limits(max_json_depth=5)
    fields = protocol.FIELDS["log"]
    assert _coerce("log", fields, _log("b", extra={"x": [1, 2]}), NOW, lim)[9] == '{"x":[1,2]}'
    for extra, reason in ((_nested(6), "json_too_deep"), ({"x": "y" * 70_000}, "json_too_large")):
        try:
            _coerce("log", fields, _log("a", extra=extra), NOW, lim)
            raise AssertionError("not refused")
        except _Refused as exc:
            assert exc.reason == reason
    b, _ = _batch(lim, {"log": [_log("a", ts="2026-01-01T00:00:00Z", extra=_nested(6)),
                                _log("b", ts="2026-01-01T00:00:00Z", extra={"x": [1, 2]})]})
    assert b.rejects == {"json_too_deep": 1} and b.rows["log"][0][9] == '{"x":[1,2]}'


def test_json_depth_matches_the_json_module():
    rng = random.Random(7)

    def gen(d):
        if d == 0 or rng.random() < 0.2:
            return rng.choice([1, "s[{", None, 'q"]}\\'])
        if rng.random() < 0.5:
            return [gen(d - 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}{'{' * i}": gen(d - 1) for i in range(rng.randint(0, 3))}

    def depth(v):
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0

    for _ in range(500):
        v = gen(rng.randint(0, 12))
        assert json_depth(json.dumps(v)) == depth(v), v


def test_json_depth_is_linear_on_hostile_text():
    # an unterminated string full of escaped quotes: a regex skipping strings by
    # backtracking would take seconds here (quadratic)
    for text in ('"' + '\\"' * 21_000, '"\\' * 32_000 + "[[[", "[" * 65_000, '[{"' * 20_000):
        t0 = time.perf_counter()
        json_depth(text)
        assert time.perf_counter() - t0 < 0.5


def test_non_finite_numbers_refuse_the_record():
    perf = lambda **kw: [NOW - 1, "c", "o", kw.get("d", 1.0), kw.get("t"), kw.get("e"), 0, None]  # noqa: E731
    b, rec = _batch(Limits(), {
        "metric": [_metric(value=math.nan), _metric(value=math.inf), _metric(value=-math.inf),
                   _metric(), _metric(ts=math.nan)],
        "performance": [perf(), perf(t=math.inf), perf(e=math.nan), perf(d=math.nan), perf(t=0.0, e=None)],
    })
    assert b.rejects == {"non_finite_value": 7}
    assert len(b.rows["metric"]) == 1 and len(b.rows["performance"]) == 2
    st = b.clients["c"]
    assert st.rejected == 7 and st.stored + st.rejected == rec


def test_timestamps_out_of_range_are_refused_not_moved():
    lim = Limits(max_future_s=3600)
    alert = lambda **kw: protocol.row_from_record("alert", {"level": "INFO", "title": "t", **kw}, NOW)  # noqa: E731
    b, rec = _batch(lim, {
        "metric": [_metric(ts=946_684_799.0), _metric(ts=0), _metric(ts=NOW + 3700),
                   _metric(ts=NOW * 1000), _metric(ts=NOW + 3500), _metric(ts=946_684_800.0),
                   _metric(ts="1999-12-31T23:59:59Z"), _metric(ts="2000-01-01T00:00:00Z")],
        "alert": [alert(), alert(resolved_at=NOW + 7200), alert(acknowledged_at=1.0)],
    })
    assert b.rejects == {"timestamp_out_of_range": 7}
    assert sorted(r[0] for r in b.rows["metric"]) == [946_684_800.0, 946_684_800.0, NOW + 3500]
    assert len(b.rows["alert"]) == 1
    assert b.clients["c"].stored + b.clients["c"].rejected == rec


def test_good_messages_pass_untouched():
    rows = [_metric(ts=NOW - i, value=float(i), tags='{"host":"a","sensor":"eeg"}') for i in range(500)]
    logs = [_log(f"line {i}", extra=json.dumps({"i": i, "nested": {"a": [1, {"b": 2}]}, "pad": "p" * 80}))
            for i in range(300)]
    b, rec = _batch(Limits(), {"metric": rows, "log": logs})
    assert not b.rejects and b.rows["metric"] == rows and b.rows["log"] == logs
    assert b.clients["c"].stored == rec


def _frame(payload, seq=1, client="c"):
    return msgpack.packb([1, [client, seq, NOW, 0, 0], payload])


@pytest.mark.parametrize("payload", [
    {"log": [[[]] * 10_000]},                    # short frame: counted after decoding
    {"log": [[[]] * 300_000]},                   # long frame: stopped while decoding
    {"metric": [{}] * 50_000},                   # maps too
    {"log": [[[None]] * 1_000] * 100},           # many short arrays, none long
])
def test_a_frame_with_more_arrays_and_maps_than_its_size_allows_is_refused_whole(payload):
    b = Batch({}, Limits(), now=NOW)
    b.add(_frame(payload))
    assert b.rejects == {"frame_too_complex": 1} and not b.clients and b.records == 0
    b.add(protocol.encode_message("c", 1, NOW, 0, 0, {"metric": [_metric()]}))
    assert len(b.rows["metric"]) == 1 and b.clients["c"].stored == 1


def test_rows_and_json_sent_as_maps_stay_within_the_frames_budget():
    rows = [{"timestamp": NOW - i, "metric_name": "m", "value": 1.0, "tags": {"k": [i, {"j": 1}]}}
            for i in range(2_000)]
    b = Batch({}, Limits(), now=NOW)
    b.add(_frame({"metric": rows}))
    assert not b.rejects and len(b.rows["metric"]) == 2_000


def test_a_row_of_the_wrong_length_is_refused_before_the_batch_holds_it():
    long_row = _log("x") + [None] * 100_000
    b, _ = _batch(Limits(), {"log": [_log("a"), long_row, _log("b")], "metric": [_metric()[:3]]})
    assert b.rejects == {"bad_shape": 2}
    assert [r[3] for r in b.rows["log"]] == ["a", "b"] and b.rows["metric"] == []
    assert b.clients["c"].rejected == 2 and b.clients["c"].stored == 2


# -- the daemon: counters by reason in stats -----------------------------------------

def test_daemon_applies_the_limits_and_counts_them_by_reason(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_MAX_RECORDS_PER_MESSAGE": "50",
                            "LINKBAND_HISTORY_MAX_STRING_BYTES": "1000",
                            "LINKBAND_HISTORY_MAX_JSON_BYTES": "500",
                            "LINKBAND_HISTORY_MAX_JSON_DEPTH": "8",
                            "LINKBAND_HISTORY_MAX_FUTURE_S": "600"})
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(d.ingest)
    cid, seq, rec, good = "limits", 0, 0, 0
    now = time.time()

    def send(payload):
        nonlocal seq, rec
        seq += 1
        push.send(protocol.encode_message(cid, seq, time.time(), rec, 0, payload))
        rec += sum(len(v) for v in payload.values())

    for i in range(10):
        ok = [[now - 100 + i, "t", "good", float(good + k), None, '{"a":1}'] for k in range(3)]
        good += 3
        send({"metric": ok + [[now, "t", "bad", math.nan, None, None],
                              [now + 3600, "t", "bad", 1.0, None, None],
                              [100.0, "t", "bad", 1.0, None, None],
                              [now, "t", "bad", 1.0, None, json.dumps(_nested(9))],
                              [now, "t", "bad", 1.0, None, json.dumps({"x": "y" * 600})]]})
        send({"metric": [[now, "t", "bad", 1.0, None, None]] * 51})
        send({"log": [[now - 100 + i, "INFO", "T", "연" * 500, None, None, None, None, None, None],
                      [now, "INFO", "T", "deep map", None, None, None, None, None, _nested(9)]]})
    wait_for(lambda: (d.ask("client.ack", client_id=cid)["rows"] or [{}])[0].get("last_seq") == seq)
    push.close(0)
    ctx.term()
    r = d.stats()["rejected"]
    assert r["non_finite_value"] == 10 and r["timestamp_out_of_range"] == 20
    assert r["json_too_deep"] == 20 and r["json_too_large"] == 10
    assert r["too_many_records"] == 510 and r["truncated_string"] == 10
    client = next(c for c in d.stats()["clients"] if c["client_id"] == cid)
    assert client["lost_records"] == 0 and client["rejected"] == 60 + 510
    assert client["stored"] + client["rejected"] == rec
    assert sorted(x["value"] for x in all_rows(d, "metrics", metric_name="good")) == \
        [float(i) for i in range(good)]
    assert all_rows(d, "metrics", metric_name="bad") == []
    logs = all_rows(d, "logs")
    assert len(logs) == 10
    assert logs[0]["message"] == "연" * 333 + "…[truncated 501 bytes]"      # 999 bytes kept


def test_client_library_log_lines_over_the_limit_are_kept_cut(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_MAX_STRING_BYTES": "2048"})
    c = d.client()
    c.store_logs([{"level": "ERROR", "message": "trace " + "x" * 5000},
                  {"level": "INFO", "message": "fine"}])
    assert c.flush(timeout=20)                         # kept, so nothing was lost or rejected
    rows = {r["message"][:5]: r["message"] for r in all_rows(d, "logs")}
    assert rows["fine"] == "fine"
    assert rows["trace"] == "trace " + "x" * 2042 + "…[truncated 2958 bytes]"
    assert d.stats()["rejected"] == {"truncated_string": 1}
