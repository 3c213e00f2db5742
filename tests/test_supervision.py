"""Supervision: a hung child (no heartbeat) is killed and restarted; an idle one,
or a writer inside a long statement, is not."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from conftest import all_rows, wait_for

from linkband_historyd.storage import schema

HANG_S = 2.0


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _stop_and_time_the_kill(pid: int) -> float:
    os.kill(pid, signal.SIGSTOP)                  # frozen: alive, but it never beats again
    t0 = time.monotonic()
    wait_for(lambda: _gone(pid), timeout=HANG_S + 15)
    return time.monotonic() - t0


def test_hung_writer_is_killed_and_restarted_and_nothing_flushed_is_lost(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_WRITER_HANG_S": str(HANG_S)})
    c = d.client()
    c.store_metrics([{"metric_name": "before", "value": float(i)} for i in range(500)])
    assert c.flush(timeout=20)
    pid = d.writer_pid()
    time.sleep(HANG_S + 1.5)                      # idle for longer than the limit: still the same
    assert d.writer_pid() == pid

    took = _stop_and_time_the_kill(pid)
    assert HANG_S - 0.5 <= took <= HANG_S + 5, took
    wait_for(lambda: d.writer_pid() not in (None, pid), timeout=20)

    c.store_metrics([{"metric_name": "after", "value": float(i)} for i in range(500)])
    assert c.flush(timeout=20)                   # the new writer stores new records
    for name in ("before", "after"):
        assert sorted(r["value"] for r in all_rows(d, "metrics", metric_name=name)) == \
            [float(i) for i in range(500)]
    log = d.log()
    assert "writer (pid %d) is hung: no heartbeat" % pid in log and "SIGKILL" in log
    assert d.proc.poll() is None


def test_hung_query_process_and_scheduler_are_restarted(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_CHILD_HANG_S": str(HANG_S)})
    query, scheduler = d.stats()["pid"], d.ask("jobs")["pid"]
    time.sleep(HANG_S + 1.5)                      # idle, beating: left alone
    assert (d.stats()["pid"], d.ask("jobs")["pid"]) == (query, scheduler)
    for pid in (query, scheduler):
        took = _stop_and_time_the_kill(pid)
        assert took <= HANG_S + 5, took
    wait_for(lambda: d.ask("ping")["ok"], timeout=30)
    assert d.stats()["pid"] != query
    wait_for(lambda: d.ask("jobs").get("pid") not in (None, scheduler), timeout=30)
    assert "query (pid %d) is hung" % query in d.log()


def test_a_long_statement_in_the_writer_keeps_beating(tmp_path):
    """The writer's SQLite progress handler beats inside one statement (a VACUUM
    here), so a long legitimate operation is never taken for a hang."""
    from linkband_historyd.processes.writer import PROGRESS_STEPS, Writer

    class Recorder:
        times: list = []

        @property
        def value(self):
            return self.times[-1] if self.times else 0.0

        @value.setter
        def value(self, v):
            self.times.append(v)

    conn = schema.open_writer(str(tmp_path / "history.db"))
    with conn:
        conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) "
                     "INSERT INTO system_metrics (timestamp, metric_type, metric_name, value) "
                     "SELECT 1.7e9 + i, 't', 'm' || (i % 50), i FROM n")
    w = Writer.__new__(Writer)                   # only its progress handler is used
    w.heartbeat = Recorder()
    conn.set_progress_handler(w._progress, PROGRESS_STEPS)
    t0 = time.monotonic()
    conn.execute("VACUUM")
    t1 = time.monotonic()
    beats = [t0] + [t for t in Recorder.times if t0 <= t <= t1] + [t1]
    assert len(beats) > 5, (len(beats), t1 - t0)
    assert max(b - a for a, b in zip(beats, beats[1:])) < 0.5, (t1 - t0, len(beats))
    conn.close()


def _finished_unless_hung(d, job) -> list:
    """The job's run once it has ended; fails at once if the supervisor killed the
    writer meanwhile (the job would then wait for the lost reply)."""
    assert "is hung" not in d.log()
    return [r for r in d.ask("jobs", id=job).get("rows", []) if r["state"] in ("done", "failed")]


def test_a_writer_inside_a_long_vacuum_keeps_beating_and_is_not_taken_for_hung(daemon_factory):
    """The writer's SQLite progress handler beats inside one statement: a full VACUUM
    run by the scheduler, longer than the writer's hang limit, under the real
    supervisor, leaves the same writer alive."""
    hang_s = 1.0
    d = daemon_factory(start=False, env={"LINKBAND_HISTORY_WRITER_HANG_S": str(hang_s)})
    # a 300 MB file made before the daemon starts (through the client it would take
    # minutes): the daemon's own schema, big rows of the last hours (older ones would
    # keep the writer busy with retention), so that one VACUUM takes seconds
    d.data_dir.mkdir(parents=True)
    conn = schema.open_writer(str(d.db_path))
    with conn:
        conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000) "
                     "INSERT INTO system_metrics (timestamp, metric_type, metric_name, value, tags) "
                     "SELECT unixepoch() - i / 10.0, 't', 'm' || (i % 50), i, "
                     "'{\"pad\":\"' || hex(randomblob(1000)) || '\"}' FROM n")
    conn.close()
    d.start()
    writer = d.writer_pid()
    longest = 0.0
    for _ in range(3):          # until one VACUUM outlasted the limit: else this proves nothing
        job = d.ask("vacuum")["rows"][0]["id"]
        run = wait_for(lambda: _finished_unless_hung(d, job), timeout=600)[0]
        assert run["state"] == "done", run
        longest = max(longest, run["finished"] - run["started"])
        if longest > hang_s:
            break
    assert longest > hang_s, longest
    assert d.writer_pid() == writer
    assert "is hung" not in d.log()
    reader = schema.open_reader(str(d.db_path))      # the rows were made behind the counters' back
    assert reader.execute("SELECT count(*) FROM metric_points").fetchall()[0][0] == 150_000
    reader.close()


def _niceness(d) -> dict:
    top = psutil.Process(d.proc.pid)
    return {p.pid: p.nice() for p in [top, *top.children(recursive=True)]}


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX nice values")
def test_the_daemon_and_every_child_run_below_the_programs_it_serves(daemon_factory):
    """By default (daemon.nice = 10) the supervisor lowers its priority before it
    starts a child, so the writer and the query process inherit it, and the
    scheduler goes 10 lower still (maintenance yields to ingestion); ``--nice 0``
    leaves the daemon at the priority it was started with."""
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    for args, base in (((), max(mine, 10)), (("--nice", "0"), mine)):
        d = daemon_factory(*args, name=f"nice{len(args)}")
        scheduler = wait_for(lambda: d.ask("jobs").get("pid"), timeout=30)
        levels = _niceness(d)
        assert {d.proc.pid, d.writer_pid(), d.stats()["pid"], scheduler} <= set(levels)
        assert levels.pop(scheduler) == min(19, base + 10)
        assert set(levels.values()) == {base}, (args, levels)
