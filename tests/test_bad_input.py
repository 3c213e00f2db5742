"""Bad frames, bad records and bad requests: counted, answered, and nothing good lost."""
from __future__ import annotations

import time

import msgpack
import zmq
from conftest import all_rows, wait_for

from linkband_history import protocol


def _good(i):
    return [1_700_000_000.0 + i, "test", "good", float(i), None, None]


def test_malformed_frames_and_bad_records_leave_every_good_record(daemon):
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(daemon.ingest)
    cid = "raw-client"
    seq = 0
    good = 0

    def message(payload, rec0):
        nonlocal seq
        seq += 1
        return protocol.encode_message(cid, seq, time.time(), rec0, 0, payload)

    rec = 0
    frames = []
    for i in range(20):
        rows = [_good(good + k) for k in range(5)]
        bad = [
            [1_700_000_000.0, "test", "bad", None, None, None],          # missing value
            [1_700_000_000.0, "test", "bad", "not-a-number", None, None],  # wrong type
            [1_700_000_000.0, "test", "bad", 1.0, None, "{not json"],    # bad JSON tags
            [1_700_000_000.0, "test"],                                    # wrong shape
            [1_700_000_000.0, "test", "bad", {"x": 1}, None, None],      # unbindable
            ["yesterday", "test", "bad", 1.0, None, None],                # bad timestamp
        ]
        mixed = rows[:2] + bad[i % len(bad):i % len(bad) + 1] + rows[2:]
        frames.append(message({"metric": mixed}, rec))
        rec += len(mixed)
        good += 5
        # garbage of every kind between the good messages
        frames.append(b"\x00\xff garbage")
        frames.append(msgpack.packb([99, [cid, 1, 0.0, 0, 0], {}]))             # bad version
        frames.append(msgpack.packb([1, ["x"], {}]))                            # bad header
        frames.append(msgpack.packb({"not": "an array"}))
        frames.append(b"")
        frames.append(message({"no_such_kind": [[1, 2]]}, rec))
        rec += 1
        logs = [[1_700_000_000.0 + i, "INFO", "T", f"good log {i}", None, None, None, None, None, None],
                [1_700_000_000.0 + i, "LOUD", "T", "bad level", None, None, None, None, None, None]]
        frames.append(message({"log": logs}, rec))
        rec += 2
        # ISO-8601 timestamps and dict tags from a third-party client are accepted
        frames.append(message({"metric": [["2023-11-14T22:13:20Z", "test", "iso", 1.0, None, {"a": 1}]]}, rec))
        rec += 1
    for f in frames:
        push.send(f)
    wait_for(lambda: daemon.ask("client.ack", client_id=cid)["rows"]
             and daemon.ask("client.ack", client_id=cid)["rows"][0]["last_seq"] == seq)
    push.close(0)
    ctx.term()

    values = sorted(r["value"] for r in all_rows(daemon, "metrics", metric_name="good"))
    assert values == [float(i) for i in range(good)]
    assert len(all_rows(daemon, "metrics", metric_name="iso")) == 20
    assert all_rows(daemon, "metrics", metric_name="iso")[0]["tags"] == {"a": 1}
    assert all_rows(daemon, "metrics", metric_name="iso")[0]["timestamp"] == 1_700_000_000.0
    assert len(all_rows(daemon, "logs")) == 20
    assert all_rows(daemon, "metrics", metric_name="bad") == []
    stats = daemon.stats()
    r = stats["rejected"]
    assert r["bad_frame"] == 60 and r["bad_version"] == 20 and r["bad_header"] == 20
    assert r["unknown_kind"] == 20
    assert r["missing_field"] == 4 and r["bad_shape"] == 3 and r["bad_timestamp"] == 3
    assert r["wrong_type"] == 4 + 3                           # text value, unbindable dict
    assert r["bad_value"] == 3 + 20                           # bad JSON, bad log level
    client = next(c for c in stats["clients"] if c["client_id"] == cid)
    assert client["lost_records"] == 0
    assert client["stored"] + client["rejected"] == rec


def test_duplicate_message_is_stored_once_and_gaps_are_counted_lost(daemon):
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(daemon.ingest)
    m1 = protocol.encode_message("dup", 1, time.time(), 0, 0, {"metric": [_good(1)]})
    m3 = protocol.encode_message("dup", 3, time.time(), 11, 7, {"metric": [_good(3)]})
    for f in (m1, m1, m3, m1):
        push.send(f)
    wait_for(lambda: (daemon.ask("client.ack", client_id="dup")["rows"] or [{}])[0].get("duplicates") == 2)
    push.close(0)
    ctx.term()
    assert [r["value"] for r in all_rows(daemon, "metrics")] == [1.0, 3.0]
    state = daemon.ask("client.ack", client_id="dup")["rows"][0]
    assert state["lost_messages"] == 1 and state["lost_records"] == 10
    assert state["client_dropped"] == 7 and state["stored"] == 2


def test_bad_requests_get_error_replies(daemon):
    cases = [
        ("no_such_command", {}, "unknown_command"),
        ("metrics", {"bogus": 1}, "bad_param"),
        ("metrics", {"limit": "many"}, "bad_param"),
        ("metrics", {"limit": 10**9}, "bad_param"),
        ("metrics", {"since": "the day before"}, "bad_param"),
        ("metrics", {"cursor": "zz"}, "bad_param"),
        ("metrics", {"tags": {"a'); DROP TABLE x;--": 1}}, "bad_param"),
        ("logs", {"level": "LOUD"}, "bad_param"),
        ("logs.search", {}, "bad_param"),
        ("logs.search", {"q": "   "}, "bad_param"),
        ("client.ack", {}, "bad_param"),
    ]
    for command, params, code in cases:
        reply = daemon.ask(command, **params)
        assert not reply["ok"] and reply["error"]["code"] == code, (command, params, reply)
        assert params == {} or next(iter(params)) in reply["error"]["message"]
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.connect(daemon.query)
    for raw in (b"\xc1", msgpack.packb("ping"), msgpack.packb([2, "ping", {}]),
                msgpack.packb([1, "metrics", {"since": [1, 2]}])):
        req.send(raw)
        assert req.poll(5000)
        reply = msgpack.unpackb(req.recv())
        assert reply["ok"] is False and reply["error"]["code"] in ("bad_request", "bad_param")
    req.close(0)
    ctx.term()
    assert daemon.ask("ping")["ok"]
