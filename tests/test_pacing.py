"""Maintenance paced on the clock (issue 16): a write operation's steps are sized from
what the steps before cost, and it gives way to an ingest message that waits; the
writer publishes what held it. A real SQLite file, a real ZeroMQ PULL socket."""
from __future__ import annotations

import contextlib
import types

import zmq
from conftest import wait_for

from linkband_history.protocol import row_from_record
from linkband_historyd.processes.writer import Writer
from linkband_historyd.storage import schema, write_ops
from linkband_historyd.storage.pacing import HeldTimes, Pace, StepSize
from linkband_historyd.storage.row_store import RowStore
from linkband_historyd.writer_client import WriterClient

T0 = 1_700_000_000.0


def test_a_step_size_follows_the_cost_of_the_steps_before_within_its_bounds():
    size = StepSize(0.001, start=100, lo=2, hi=500)
    assert size.units() == 100
    for _ in range(30):                     # 0.1 ms a unit: 10 units make a 1 ms step
        size.took(size.units(), size.units() * 0.0001)
    assert size.units() == 10
    for _ in range(30):                     # very slow units: never fewer than lo
        size.took(size.units(), 1.0)
    assert size.units() == 2
    for _ in range(60):                     # very cheap ones: never more than hi, nor than left
        size.took(size.units(), 0.0)
    assert size.units() == 500 and size.units(left=7) == 7


def test_a_pace_takes_one_step_then_gives_way_to_waiting_ingest():
    pace = Pace(60.0, waiting=lambda: True)
    assert pace.go_on() and not pace.go_on()
    spent = Pace(0.0)
    assert spent.go_on() and not spent.go_on()
    free = Pace(60.0, waiting=lambda: False)
    assert all(free.go_on() for _ in range(100))


def test_held_times_count_steps_seconds_and_the_long_ones_per_kind_of_work():
    held = HeldTimes()
    for s in (0.001, 0.003, 0.006, 0.012):
        held.add("op.delete", s)
    with held.timing("fts_merge") as t:
        t.ran = False                       # nothing done: not counted
    d = held.to_dict()
    assert set(d) == {"op.delete"}
    assert d["op.delete"]["steps"] == 4 and d["op.delete"]["max_ms"] == 12.0
    assert (d["op.delete"]["over_2ms"], d["op.delete"]["over_5ms"],
            d["op.delete"]["over_10ms"]) == (3, 2, 1)


@contextlib.contextmanager
def _writer_on(tmp_path, rows: int):
    """What write_ops needs of the writer: its connection (a real database with
    ``rows`` old metric rows) and its real PULL socket; and a PUSH to it."""
    conn = schema.open_writer(str(tmp_path / "data" / "history.db"))
    with conn:
        conn.executemany(schema.INSERT["metric"], [row_from_record("metric", {
            "timestamp": T0 + i, "metric_type": "cpu", "metric_name": "cpu_percent",
            "value": float(i % 100), "unit": "%"}, T0) for i in range(rows)])
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(f"ipc://{tmp_path}/ingest.sock")
    push.connect(f"ipc://{tmp_path}/ingest.sock")
    w = types.SimpleNamespace(conn=conn, sock=pull, step_sizes={}, store=RowStore(conn))
    w.ingest_waiting = lambda: Writer.ingest_waiting(w)
    try:
        yield w, push
    finally:
        pull.close(0)
        push.close(0)
        ctx.term()
        conn.close()


def _count(conn) -> int:
    return conn.execute("SELECT count(*) FROM system_metrics").fetchall()[0][0]


def test_a_delete_gives_way_after_one_step_when_an_ingest_message_waits(tmp_path):
    with _writer_on(tmp_path, 3000) as (w, push):
        push.send(b"a frame the writer has not taken yet")
        assert w.sock.poll(5000, zmq.POLLIN)
        params = {"kind": "metric", "before": T0 + 10_000, "limit": 3000}
        r = write_ops.run(w, "delete", params)
        first_step = write_ops.STEPS["delete"][0]
        assert r == {"deleted": first_step, "done": False}
        assert _count(w.conn) == 3000 - first_step
        w.sock.recv()                       # taken: the next calls go on to the end
        total = first_step
        while not (r := write_ops.run(w, "delete", params))["done"]:
            total += r["deleted"]
        assert total + r["deleted"] == 3000 and _count(w.conn) == 0


def test_the_writer_publishes_what_held_it_per_kind_of_work(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_SCHEDULER": "false"})
    c = d.client()
    c.store_metrics([{"timestamp": T0 + i, "metric_type": "cpu", "metric_name": "cpu_percent",
                      "value": 1.0} for i in range(500)])
    assert c.flush(timeout=30)
    writer = WriterClient(d.control)
    try:
        while not writer.call("delete", kind="metric", before=T0 + 1000, limit=100)["done"]:
            pass
        writer.call("maintenance", step="incremental_vacuum", pages=10)
    finally:
        writer.close()
    c.store_metrics([{"metric_type": "cpu", "metric_name": "cpu_percent", "value": 2.0}])
    assert c.flush(timeout=30)

    def held():
        with contextlib.closing(schema.open_reader(str(d.db_path))) as conn:
            return (schema.read_state(conn, "writer") or {}).get("held", {})
    wait_for(lambda: {"op.delete", "op.maintenance.incremental_vacuum"} <= set(held()), timeout=20)
    h = held()["op.delete"]
    assert h["steps"] >= 5 and h["seconds"] > 0 and h["max_ms"] > 0
