"""linkband_history.embed: a program starts the daemon of its data directory, or
reuses the one running, shares it between callers, and never leaves it behind.

Each test has its own XDG_RUNTIME_DIR, so the daemons are found where any client
finds them (endpoints.runtime_dir_for) without touching the user's own."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from conftest import wait_for
from linkband_history import embed
from linkband_history.endpoints import runtime_dir_for
from linkband_historyd import config
from linkband_historyd.harness import DaemonProcess

QUIET = {"collector_enabled": False, "query_workers": 1}    # two cores, many helpers


@pytest.fixture(autouse=True)
def private_runtime(monkeypatch):
    # short: a unix socket path has at most 103 bytes, tmp_path is long
    xdg = tempfile.mkdtemp(prefix="lbh-embed-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    yield xdg
    embed._stop_all()                    # whatever a failed test left running
    shutil.rmtree(xdg, ignore_errors=True)


def tree(pid: int) -> list[psutil.Process]:
    """A daemon's supervisor and every process under it."""
    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def gone(procs) -> bool:
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def logs(n: int, tag: str = "embed") -> list[dict]:
    return [{"level": "INFO", "logger_name": "sdk.test", "message": f"{tag} {i}"} for i in range(n)]


def count_logs(d: embed.EmbeddedDaemon) -> int:
    with d.client() as c:
        return c.query("logs", count=True, limit=1)["total"]


def test_ensure_daemon_starts_one_serving_the_named_file_and_stop_ends_it(tmp_path):
    d = embed.ensure_daemon(tmp_path / "database", database_file="sdk_history.db", **QUIET)
    assert d.started and d.database_path == str(tmp_path / "database" / "sdk_history.db")
    assert d.runtime_dir == runtime_dir_for(str(tmp_path / "database"))
    procs = tree(d.pid)
    assert len(procs) >= 3                           # supervisor, writer, query (+ workers)
    with d.client() as c:
        c.store_logs(logs(50))
        assert c.flush(timeout=30)
        assert c.query("logs", count=True, limit=1)["total"] == 50
        stats = c.query("stats")["rows"][0]
    assert stats["database"]["path"] == d.database_path
    assert stats["supervisor_pid"] == d.pid
    assert os.path.exists(d.database_path)
    assert not os.path.exists(tmp_path / "database" / "history.db")
    d.stop()
    wait_for(lambda: gone(procs), timeout=30)   # the resource tracker ends just after
    assert embed.daemon_status(tmp_path / "database")["running"] is False


def test_two_callers_in_one_process_share_one_daemon_until_the_last_stops(tmp_path):
    a = embed.ensure_daemon(tmp_path / "data", **QUIET)
    b = embed.ensure_daemon(tmp_path / "data")
    assert a.started and b.started and a.pid == b.pid and a.endpoints == b.endpoints
    procs = tree(a.pid)
    a.stop()
    a.stop()                                         # idempotent: releases once
    assert b.status()["running"] is True
    with b.client() as c:
        c.store_logs(logs(5))
        assert c.flush(timeout=30)
    assert count_logs(b) == 5
    b.stop()
    wait_for(lambda: gone(procs), timeout=30)   # the resource tracker ends just after


def test_a_daemon_already_running_is_reused_and_left_running(tmp_path, daemon_factory):
    running = daemon_factory()
    d = embed.ensure_daemon(running.data_dir, runtime_dir=running.run_dir)
    assert not d.started and d.pid is None
    assert d.endpoints["query"] == running.query
    with d.client() as c:
        c.store_logs(logs(3))
        assert c.flush(timeout=30)
    d.stop()
    assert running.proc.poll() is None
    assert running.stats()["tables"]["system_logs"] == 3


def test_a_daemon_serving_another_file_of_that_directory_is_refused_by_name(tmp_path):
    d = embed.ensure_daemon(tmp_path / "data", database_file="one.db", **QUIET)
    with pytest.raises(embed.DaemonError, match="one.db"):
        embed.ensure_daemon(tmp_path / "data", database_file="two.db")
    d.stop()
    with pytest.raises(ValueError, match="file name"):
        embed.ensure_daemon(tmp_path / "data", database_file="sub/two.db")


def test_daemon_options_reach_a_daemon_started_here(tmp_path):
    d = embed.ensure_daemon(tmp_path / "data", collector_enabled=False,
                            **{"query.workers": 1, "scheduler.enabled": False})
    with d.client() as c:
        assert c.query("stats")["rows"][0]["query"]["workers"] == 1
    children = [p for p in tree(d.pid)[1:] if "resource_tracker" not in " ".join(p.cmdline())]
    assert len(children) == 3                       # writer, query, one worker: no scheduler
    d.stop()
    with pytest.raises(embed.DaemonError, match="no_such"):
        embed.ensure_daemon(tmp_path / "data2", daemon_no_such_option=1)


def test_the_status_of_a_down_daemon_comes_at_once_and_of_a_mute_one_within_its_timeout(tmp_path):
    status = embed.daemon_status(tmp_path / "data")
    assert status["running"] is False and "absent" in status["reason"]
    # a socket that accepts and never answers (a hung daemon): the timeout, not 15 s
    run = runtime_dir_for(str(tmp_path / "data"))
    os.makedirs(run, mode=0o700)
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(os.path.join(run, "query.sock"))
    mute.listen(8)
    try:
        t0 = time.monotonic()
        status = embed.daemon_status(tmp_path / "data", timeout=1.0)
        waited = time.monotonic() - t0
    finally:
        mute.close()
    assert status["running"] is False and "no reply within 1s" in status["reason"]
    assert waited < 5                                # the contract: never the 15 s hang
    status = embed.daemon_status(tmp_path / "data")  # the socket file of a dead daemon
    assert status["running"] is False and "stale" in status["reason"]


HOLDER = """
import json, sys
from linkband_history.embed import ensure_daemon
d = ensure_daemon(sys.argv[1], timeout=90, collector_enabled=False, query_workers=1)
with d.client() as c:
    c.store_logs([{"level": "INFO", "logger_name": "holder", "message": f"m {i}"}
                  for i in range(int(sys.argv[2]))])
    assert c.flush(timeout=60)
print(json.dumps({"started": d.started, "pid": d.status()["pid"]}), flush=True)
sys.stdin.readline()
"""


def holder(data_dir, n=0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(data_dir), str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_two_processes_calling_ensure_daemon_at_once_end_with_one_daemon(tmp_path):
    a, b = holder(tmp_path / "data", 10), holder(tmp_path / "data", 10)
    try:
        got = [json.loads(p.stdout.readline()) for p in (a, b)]
        assert got[0]["pid"] == got[1]["pid"]
        assert sorted(g["started"] for g in got) == [False, True]
        procs = tree(got[0]["pid"])
        starter, other = (a, b) if got[0]["started"] else (b, a)
        other.communicate("\n", timeout=60)          # the one that reused it leaves: still up
        status = embed.daemon_status(tmp_path / "data")
        assert status["running"] and status["tables"]["system_logs"] == 20
        starter.communicate("\n", timeout=120)       # the one that started it: it stops
        wait_for(lambda: gone(procs), timeout=30)   # the resource tracker ends just after
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()


def test_a_sigkilled_parent_leaves_no_daemon_process_and_loses_nothing(tmp_path):
    p = holder(tmp_path / "data", 200)
    try:
        got = json.loads(p.stdout.readline())
        assert got["started"]
        procs = tree(got["pid"])
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        wait_for(lambda: gone(procs), timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
    d = embed.ensure_daemon(tmp_path / "data", **QUIET)
    assert d.started and count_logs(d) == 200
    d.stop()


def test_a_database_file_name_with_a_directory_is_a_configuration_error():
    assert config.load(None, environ={}).daemon.database_file == "history.db"
    cfg = config.load(None, environ={}, cli={"daemon.database_file": "sdk.db",
                                             "daemon.data_dir": "/srv/x"})
    assert cfg.daemon.db_path == os.path.join("/srv/x", "sdk.db")
    for bad in ("a/b.db", "..", ""):
        with pytest.raises(config.ConfigError, match="daemon.database_file"):
            config.load(None, environ={"LINKBAND_HISTORY_DATABASE_FILE": bad})


def test_freeze_support_does_nothing_in_an_ordinary_program():
    code = ("import sys; from linkband_history.embed import freeze_support; freeze_support(); "
            "print('after'); print([m for m in sys.modules if m.startswith('linkband_historyd')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["after", "[]"], out.stderr


def test_the_daemon_of_a_data_directory_stops_when_its_standard_input_ends(tmp_path):
    d = DaemonProcess(tmp_path / "d", "--stop-with-parent")
    d.base.mkdir(parents=True)
    d.proc = subprocess.Popen(d.argv(), stdin=subprocess.PIPE, stdout=open(d.log_path, "ab"),
                              stderr=subprocess.STDOUT)
    try:
        d.wait_ready(60)
        procs = tree(d.proc.pid)
        d.proc.stdin.close()
        assert d.proc.wait(60) == 0
        wait_for(lambda: gone(procs), timeout=30)   # the resource tracker ends just after
        assert "end of standard input" in d.log()
        # stopped otherwise while the pipe is open, it exits cleanly all the same
        d.proc = subprocess.Popen(d.argv(), stdin=subprocess.PIPE, stdout=open(d.log_path, "ab"),
                                  stderr=subprocess.STDOUT)
        d.wait_ready(60)
        assert d.stop() == 0
        assert "Fatal Python error" not in d.log()
    finally:
        d.close()


def test_after_the_starting_process_leaves_a_reuser_starts_the_daemon_again_and_loses_nothing(tmp_path):
    starter = holder(tmp_path / "data", 10)
    try:
        assert json.loads(starter.stdout.readline())["started"]
        reuser = embed.ensure_daemon(tmp_path / "data")
        assert not reuser.started
        client = reuser.client()
        starter.communicate("\n", timeout=120)      # the daemon goes with the process that started it
        wait_for(lambda: not embed.daemon_status(tmp_path / "data")["running"], timeout=60)
        client.store_logs(logs(7, "while away"))    # queued in the client meanwhile
        again = embed.ensure_daemon(tmp_path / "data", **QUIET)
        assert again.started
        assert client.flush(timeout=30)
        client.close()
        assert count_logs(again) == 17
        reuser.stop()
        again.stop()
    finally:
        if starter.poll() is None:
            starter.kill()


def test_a_start_that_loses_to_another_daemon_waits_for_it_and_reuses_it(tmp_path):
    """Another daemon (a service, a manual start) holds the data directory's writer lock
    while it opens a large database: ours is refused and must connect to that one."""
    import fcntl
    import threading
    other = DaemonProcess(tmp_path / "o")
    other.data_dir.mkdir(parents=True)
    held = os.open(other.data_dir / "writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    got = {}
    t = threading.Thread(target=lambda: got.update(d=embed.ensure_daemon(
        other.data_dir, runtime_dir=other.run_dir, timeout=120, **QUIET)))
    t.start()
    log = other.data_dir / embed.LOG_NAME
    wait_for(lambda: log.exists() and "another linkband-historyd writer" in log.read_text(),
             timeout=60)
    os.close(held)                                   # the other daemon comes up after all
    try:
        other.start()
        t.join(120)
        d = got["d"]
        assert not d.started and d.endpoints["query"] == other.query
        with d.client() as c:
            c.store_logs(logs(4))
            assert c.flush(timeout=30)
        assert other.stats()["tables"]["system_logs"] == 4
        d.stop()
        assert other.proc.poll() is None
    finally:
        other.close()


def test_a_daemon_that_cannot_start_is_reported_at_once_with_its_log(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "history.db").mkdir()       # the database path is a directory
    with pytest.raises(embed.DaemonError, match="exited with code 1") as err:
        embed.ensure_daemon(tmp_path / "data", timeout=120, **QUIET)
    assert "history.db" in str(err.value)


def test_a_daemon_started_with_stop_at_exit_false_outlives_its_program(tmp_path):
    code = ("import sys, json; from linkband_history.embed import ensure_daemon; "
            "d = ensure_daemon(sys.argv[1], stop_at_exit=False, collector_enabled=False, "
            "query_workers=1); print(json.dumps({'started': d.started, 'pid': d.pid}))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], capture_output=True,
                         text=True, timeout=120)
    got = json.loads(out.stdout)
    assert got["started"]
    procs = tree(got["pid"])
    try:
        status = embed.daemon_status(tmp_path / "data")
        assert status["running"] and status["pid"] == got["pid"]
        d = embed.ensure_daemon(tmp_path / "data")
        assert not d.started
        d.stop()
        assert embed.daemon_status(tmp_path / "data")["running"]
    finally:
        procs[0].terminate()
        wait_for(lambda: gone(procs), timeout=60)
