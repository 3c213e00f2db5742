"""Bounds in bytes, with the real daemon: what a frame may cost the writer to
decode, what a client may put into one message, what a listing page may hold.

Run with ``-s`` to see the memory figure of the decoding test."""
from __future__ import annotations

import logging
import time

import msgpack
import psutil
import zmq
from conftest import all_rows, wait_for

from linkband_history import protocol

MiB = 1024 * 1024


def _children_rss(d) -> int:
    """The resident memory of the supervisor's children (writer, query, scheduler)."""
    total = 0
    for child in psutil.Process(d.proc.pid).children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _children_peak(d) -> int | None:
    """The high-water marks of the children's resident memory (Linux: VmHWM), so a
    spike freed before the test looks is seen too; None elsewhere."""
    total = 0
    for child in psutil.Process(d.proc.pid).children(recursive=True):
        try:
            with open(f"/proc/{child.pid}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            return None
    return total


def _log(message: str, **kw) -> dict:
    return {"level": "INFO", "logger_name": "big", "message": message, **kw}


def _rejected(d, reason: str) -> int:
    return d.stats()["rejected"].get(reason, 0)


def test_three_frames_of_two_million_empty_arrays_grow_the_daemon_by_less_than_150_mb(daemon):
    d = daemon
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(d.ingest)
    good = d.client()
    good.store_logs(_log("warm-up"))
    assert good.flush(timeout=20)
    before, peak_before = _children_rss(d), _children_peak(d)
    for seq in (1, 2, 3):
        # one row of 2,000,000 empty arrays: 2 MB of msgpack, ~130 MB of Python lists
        frame = msgpack.packb([1, ["bomb", seq, time.time(), 0, 0], {"log": [[[]] * 2_000_000]}])
        assert 2_000_000 < len(frame) < protocol.MAX_MESSAGE_BYTES   # under the default limit
        push.send(frame)
    wait_for(lambda: _rejected(d, "frame_too_complex") == 3, timeout=60)
    good.store_logs(_log("after the bombs"))
    assert good.flush(timeout=20)
    grown = _children_rss(d) - before
    peak = _children_peak(d)
    peak_grown = peak - peak_before if peak is not None and peak_before is not None else 0
    print(f"\nthree 2 MB frames of 2,000,000 empty arrays: the daemon's children grew by "
          f"{grown / MiB:.1f} MiB (their peaks by {peak_grown / MiB:.1f} MiB)")
    assert grown < 150 * MiB, f"the daemon's children grew by {grown / MiB:.1f} MiB"
    assert peak_grown < 150 * MiB, f"the daemon's children peaked {peak_grown / MiB:.1f} MiB higher"
    assert [r["message"] for r in all_rows(d, "logs")] == ["warm-up", "after the bombs"]
    assert d.proc.poll() is None
    push.close(0)
    ctx.term()


def test_a_burst_of_big_records_is_committed_in_batches_of_at_most_batch_max_bytes(daemon):
    d = daemon
    writer = psutil.Process(d.writer_pid())
    c = d.client(batch_size=25)
    c.store_logs(_log("warm-up"))
    assert c.flush(timeout=20)
    before = writer.memory_info().rss
    commits = d.stats()["writer"]["commits"]
    writer.suspend()                             # everything below waits for the writer at once
    try:
        for i in range(1200):                    # 1,200 x 60 KB: 72 MB in 48 messages
            c.store_logs(_log(f"{i:04d} " + "w" * 60_000))
        time.sleep(2.0)
    finally:
        writer.resume()
    assert c.flush(timeout=120)
    grown = writer.memory_info().rss - before
    print(f"\n72 MB of log lines sent while the writer was stopped: it grew by {grown / MiB:.1f} MiB")
    assert grown < 60 * MiB, f"the writer grew by {grown / MiB:.1f} MiB"
    # each commit took at most 8 MiB and one message more (the state is saved within a second)
    wait_for(lambda: d.stats()["writer"]["commits"] - commits >= 72 // 10)
    assert len(all_rows(d, "logs", fields="id")) == 1201


def test_300_log_lines_of_120_kb_from_the_default_client_are_all_stored(daemon):
    c = daemon.client()
    line = "x" * 120_000
    c.store_logs([_log(f"{i:03d} {line}") for i in range(300)])   # 36 MB in one batch
    assert c.flush(timeout=60)
    stats = c.stats()
    assert stats["too_large"] == 0 and stats["sent_records"] == 300
    assert stats["messages"] > 300 * 120_000 // protocol.MAX_MESSAGE_BYTES     # split by size
    rows = all_rows(daemon, "logs", fields="message")
    assert sorted(r["message"][:3] for r in rows) == [f"{i:03d}" for i in range(300)]
    client = next(x for x in daemon.stats()["clients"] if x["client_id"] == c.client_id)
    assert (client["stored"], client["lost_records"], client["rejected"]) == (300, 0, 0)


def test_a_record_over_the_message_limit_is_refused_locally_counted_and_the_others_stored(
        daemon, caplog):
    c = daemon.client()
    huge = "y" * (protocol.MAX_MESSAGE_BYTES + 1000)
    with caplog.at_level(logging.ERROR, logger="linkband_history"):
        c.store_logs([_log("before"), _log(huge), _log("after")])
        assert c.flush(timeout=30) is False                 # one record was not sent
        c.store_logs([_log("again"), _log(huge)])
        assert c.flush(timeout=30) is False
        c.store_logs(_log("last"))
        assert c.flush(timeout=30) is True                  # nothing refused since
    assert c.stats()["too_large"] == 2
    assert sum("longer than max_message_bytes" in r.getMessage() for r in caplog.records) == 1
    assert sorted(r["message"] for r in all_rows(daemon, "logs")) == ["after", "again", "before",
                                                                     "last"]
    client = next(x for x in daemon.stats()["clients"] if x["client_id"] == c.client_id)
    # sent = stored + rejected + lost, and the refused records are the client's drops
    assert (client["stored"], client["rejected"], client["lost_records"]) == (4, 0, 0)
    assert client["client_dropped"] == 2


def test_a_listing_of_big_lines_stops_at_the_byte_budget_and_the_cursor_brings_every_row_once(
        daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_MAX_PAGE_BYTES": str(MiB)})
    c = d.client()
    c.store_logs([_log(f"{i:03d} " + "z" * 60_000) for i in range(100)])
    c.store_logs([_log(f"small {i}") for i in range(50)])
    assert c.flush(timeout=30)
    first = d.ask("logs", limit=1000)
    assert first["ok"] and first["next"]
    assert 1 <= len(first["rows"]) <= MiB // 60_000         # stopped by bytes, not by the limit
    assert sum(len(r["message"]) for r in first["rows"]) <= MiB
    seen, cursor = [], None
    while True:
        reply = d.ask("logs", limit=1000, **({"cursor": cursor} if cursor else {}))
        assert reply["ok"]
        seen += [r["id"] for r in reply["rows"]]
        cursor = reply["next"]
        if not cursor:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 150
    # a search page is bounded the same way
    found = d.ask("logs.search", q="zzzz", limit=1000)
    assert found["ok"] and found["next"] and len(found["rows"]) <= MiB // 60_000
    ids = [r["id"] for r in found["rows"]]
    while found["next"]:
        found = d.ask("logs.search", q="zzzz", limit=1000, cursor=found["next"])
        ids += [r["id"] for r in found["rows"]]
    assert len(ids) == len(set(ids)) == 100
    # and the lines around one line: each side stops at half the budget, nearest first
    middle = sorted(seen)[50]
    ctx = d.ask("logs.context", id=middle, before=1000, after=1000)
    assert ctx["ok"] and ctx["byte_limited"] is True
    rows = ctx["rows"]
    [hit] = [r for r in rows if r["match"]]
    assert hit["id"] == middle
    assert sum(len(r["message"]) for r in rows if not r["match"]) <= MiB
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and ids == list(range(ids[0], ids[-1] + 1))   # contiguous around it
    assert 2 <= len(rows) < 150
