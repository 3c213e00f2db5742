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
from linkband_historyd.commands.dispatch import COMMANDS

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


WARM_UP = 20_000          # frames before the writer's memory is measured the first time
LEAK_BOUND_MB = 16        # growth allowed over the other 80,000 frames: 0.2 MB per 1,000


def test_100k_hostile_frames_leave_the_daemon_and_the_good_records(daemon):
    rng = random.Random(2026)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.connect(daemon.ingest)
    template = protocol.encode_message("t", 1, time.time(), 0, 0,
                                       {"metric": [[1.7e9, "cpu", "cpu_percent", 15.0, "%", None]]})
    writer = psutil.Process(daemon.writer_pid())
    seq = rec = good = 0
    rss = []                                       # the writer's RSS after each 20,000 frames

    def caught_up():
        wait_for(lambda: (daemon.ask("client.ack", client_id="good")["rows"] or [{}])[0]
                 .get("last_seq") == seq, timeout=120)
        wait_for(lambda: daemon.stats()["rejected_total"] >= i // 2, timeout=120)

    for i in range(1, FRAMES + 1):
        push.send(_mutate(rng, template))
        if i % 100 == 0:
            seq += 1
            push.send(protocol.encode_message("good", seq, time.time(), rec, 0, {
                "metric": [[time.time(), "fuzz", "good", float(good), None, '{"i":1}']]}))
            rec += 1
            good += 1
        if i % WARM_UP == 0:
            caught_up()
            rss.append(writer.memory_info().rss)
    push.close(0)
    ctx.term()
    values = sorted(r["value"] for r in all_rows(daemon, "metrics", metric_name="good", limit=10_000))
    assert values == [float(i) for i in range(good)]
    assert daemon.proc.poll() is None and writer.is_running()
    assert daemon.writer_pid() == writer.pid                  # never restarted
    print("writer RSS after each 20,000 frames, MiB:", [round(r / 2 ** 20, 1) for r in rss])
    assert len(rss) == FRAMES // WARM_UP
    assert max(rss) - rss[0] < LEAK_BOUND_MB * 2 ** 20, rss
    stats = daemon.stats()
    assert stats["rejected_total"] > FRAMES // 2


def _nested(depth: int):
    v = 1
    for _ in range(depth):
        v = [v]
    return v


# Every parameter of every command gets each of these, alone.
HOSTILE = [None, True, False, 0, -1, 1, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1, 1e308, -1e308,
           float("nan"), float("inf"), 0.5, "", " ", "x" * 10_000, "'; DROP TABLE system_logs; --",
           '"', "NEAR(", "*", "%", "\x00", "1h", "1m", "-1h", "2026-01-01T00:00:00Z", "ERROR", "tag:x",
           "a,b", "연결", b"\xff\xfe", [], [1, "a"], [None] * 50, {}, {"a": {"b": [None]}},
           {"": 1}, _nested(60)]
FORBIDDEN_CODES = ("internal", "query_failed")       # a bug or an SQL error: never for any input
BUDGET_PARAM = "max_seconds"                          # taken by the dispatcher from any command


def _registry(d) -> dict[str, dict]:
    return {c["command"]: c for c in d.ask("commands")["rows"]}


def _pairs(commands) -> list[tuple[str, str]]:
    return [(c["command"], p) for c in commands
            for p in c["params"] + [BUDGET_PARAM, "bogus"]]


def _assert_answered(d, name, params):
    reply = d.ask(name, **params)
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), (name, params, reply)
    if not reply["ok"]:
        assert reply["error"]["code"] not in FORBIDDEN_CODES, (name, params, reply)
    return reply


def _pids(d):
    """The writer's, the query process's and the scheduler's (once it answers)."""
    scheduler = wait_for(lambda: d.ask("jobs").get("pid"), timeout=60)
    return d.writer_pid(), d.stats()["pid"], scheduler


def _seed(d):
    c = d.client()
    c.store_metrics([{"metric_name": "cpu_percent", "value": float(i), "tags": {"core": i % 2}}
                     for i in range(50)])
    c.store_logs([{"level": "ERROR", "message": f"디바이스 연결 {i}", "logger_name": "DEVICE.manager"}
                  for i in range(50)])
    c.store_performance([{"component": "buffer", "operation": "push", "duration_ms": 1.5}])
    c.store_alerts([{"level": "WARNING", "title": "t", "message": "m"}])
    assert c.flush(timeout=30)
    c.close()


def test_every_parameter_of_every_read_command_gets_each_hostile_value(daemon):
    _seed(daemon)
    registry = _registry(daemon)
    reads = [c for c in registry.values() if not c["admin"]]
    pids = _pids(daemon)
    asked = 0
    for name, param in _pairs(reads):
        for value in HOSTILE:
            _assert_answered(daemon, name, {param: value})
            asked += 1
        assert daemon.ask("ping")["ok"], (name, param)
    assert asked == len(_pairs(reads)) * len(HOSTILE)
    assert set(registry) == set(COMMANDS)          # the daemon lists every declared command
    assert _pids(daemon) == pids                   # no process died or was restarted


def test_every_parameter_of_every_admin_command_on_a_throwaway_daemon(daemon_factory):
    """Admin commands change or stop the daemon: they get the same values on their own
    daemon, and ``stop`` (which has no parameter to spoil) goes last."""
    d = daemon_factory(name="throwaway")
    _seed(d)
    admin = [c for c in _registry(d).values() if c["admin"]]
    assert {"cleanup", "archive", "restore", "vacuum", "reload", "stop", "sdk.store"} <= \
        {c["command"] for c in admin}
    pids = _pids(d)
    asked = 0
    for name, param in _pairs(admin):
        for value in HOSTILE:
            if name == "stop" and param == BUDGET_PARAM and _valid_budget(value):
                continue                           # a valid budget: the daemon would stop
            _assert_answered(d, name, {param: value})
            asked += 1
        assert d.ask("ping")["ok"], (name, param)
    skipped = sum(1 for v in HOSTILE if _valid_budget(v))
    assert asked == len(_pairs(admin)) * len(HOSTILE) - skipped
    assert _pids(d) == pids
    assert _assert_answered(d, "stop", {})["ok"]
    assert d.proc.wait(60) == 0


def _valid_budget(v) -> bool:
    return (not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0
            and v <= 3600 and v == v)


QUERY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats(allow_nan=True)
    | st.text(max_size=40) | st.sampled_from(["'; DROP TABLE system_logs; --", '"', "NEAR(", "*",
                                              "1h", "2026-01-01T00:00:00Z", "ERROR", "tag:x", "1m"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_combinations_of_parameters_to_the_read_commands_get_a_reply(daemon, data):
    reads = [c for c in _registry(daemon).values() if not c["admin"]]
    cmd = data.draw(st.sampled_from(reads + [{"command": "nope", "params": []}]))
    keys = st.sampled_from(cmd["params"] + ["bogus"])
    params = data.draw(st.dictionaries(keys, QUERY_VALUES, max_size=4))
    reply = _assert_answered(daemon, cmd["command"], params)
    if not reply["ok"]:
        assert reply["error"]["code"] in ("bad_param", "unknown_command", "bad_request"), reply
    assert daemon.ask("ping")["ok"]
