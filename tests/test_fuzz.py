"""Fuzzing: 100,000 random and mutated frames to the ingest socket, random parameters
to every query command. The daemon never dies, its memory stays bounded, and the
good records sent between the bad ones are all stored."""
from __future__ import annotations

import random
import time

import msgpack
import psutil
import zmq
from conftest import all_rows, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkband_history import protocol

FRAMES = 100_000


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    how = rng.randrange(6)
    if how == 0 and b:                                    # flip bytes
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif how == 1:                                        # truncate
        b = b[: rng.randrange(len(b) + 1)]
    elif how == 2:                                        # random bytes
        b = bytearray(rng.randbytes(rng.randrange(1, 200)))
    elif how == 3:                                        # valid msgpack, wrong shapes
        b = bytearray(msgpack.packb(rng.choice([
            [1, ["c", 1, 0.0, 0, 0], {"metric": [[None] * rng.randrange(9)]}],
            [1, ["c", -1, 0.0, 0, 0], {}], [1, [None] * 5, []], {"a": [1, 2]}, "x" * 50,
            [1, ["c" * 100, 1, 0.0, 0, 0], {}], [1, ["c", 2 ** 63, 1e308, 0, 0], {"log": 7}],
            [1, ["c", 1, "now", 0, 0], {"alert": [[{"nested": [1] * 10}] * 10]}],
        ])))
    elif how == 4:                                        # a huge string in a good shape
        b = bytearray(protocol.encode_message("f", 1, 0.0, 0, 0, {"log": [[1.0, "INFO", "x" * 70_000,
                                                                          "m", None, None, None,
                                                                          None, None, None]]}))
    else:                                                 # deep nesting
        v = 1
        for _ in range(rng.randint(10, 200)):
            v = [v]
        b = bytearray(msgpack.packb([1, ["c", 1, 0.0, 0, 0], {"metric": v}]))
    return bytes(b)


def test_100k_hostile_frames_leave_the_daemon_and_the_good_records(daemon):
    rng = random.Random(2026)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.connect(daemon.ingest)
    template = protocol.encode_message("t", 1, time.time(), 0, 0,
                                       {"metric": [[1.7e9, "cpu", "cpu_percent", 15.0, "%", None]]})
    writer = psutil.Process(daemon.writer_pid())
    rss_start = writer.memory_info().rss
    seq = rec = good = 0
    for i in range(FRAMES):
        push.send(_mutate(rng, template))
        if i % 100 == 0:
            seq += 1
            push.send(protocol.encode_message("good", seq, time.time(), rec, 0, {
                "metric": [[time.time(), "fuzz", "good", float(good), None, '{"i":1}']]}))
            rec += 1
            good += 1
    wait_for(lambda: (daemon.ask("client.ack", client_id="good")["rows"] or [{}])[0].get("last_seq")
             == seq, timeout=120)
    push.close(0)
    ctx.term()
    values = sorted(r["value"] for r in all_rows(daemon, "metrics", metric_name="good", limit=10_000))
    assert values == [float(i) for i in range(good)]
    assert daemon.proc.poll() is None and writer.is_running()
    assert daemon.writer_pid() == writer.pid                  # never restarted
    assert writer.memory_info().rss - rss_start < 100 * 1024 * 1024
    stats = daemon.stats()
    assert stats["rejected_total"] > FRAMES // 2


QUERY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats(allow_nan=True)
    | st.text(max_size=40) | st.sampled_from(["'; DROP TABLE system_logs; --", '"', "NEAR(", "*",
                                              "1h", "2026-01-01T00:00:00Z", "ERROR", "tag:x", "1m"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_parameters_to_every_command_get_a_reply(daemon, data):
    commands = [c["command"] for c in daemon.ask("commands")["rows"]]
    skip = {"stop", "reload", "vacuum", "optimize", "cleanup", "archive", "restore", "summarize"}
    name = data.draw(st.sampled_from([c for c in commands if c not in skip] + ["nope"]))
    known = next((c["params"] for c in daemon.ask("commands")["rows"] if c["command"] == name), [])
    keys = st.sampled_from(known + ["bogus"]) if known else st.just("bogus")
    params = data.draw(st.dictionaries(keys, QUERY_VALUES, max_size=4))
    reply = daemon.ask(name, **params)
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
    if not reply["ok"]:
        assert reply["error"]["code"] in ("bad_param", "unknown_command", "bad_request"), reply
    assert daemon.ask("ping")["ok"]
