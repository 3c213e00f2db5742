"""The system metrics collector: values against psutil read in the test, rates
as deltas, processes followed by pid and by name, the loop into a real daemon."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import types

import psutil
import pytest
from conftest import all_rows, wait_for

from linkband_historyd.collector import system_metrics as mod
from linkband_historyd.collector.system_metrics import MB, METRICS, SystemCollector, name_matches, run

SPEC = {m[1]: m for m in METRICS}
RATE_NAMES = {m[1] for m in METRICS if m[4]}           # need a previous sample


def by_name(records, name, **tags):
    return [r for r in records if r["metric_name"] == name
            and all(r["tags"].get(k) == v for k, v in tags.items())]


def one(records, name, **tags):
    found = by_name(records, name, **tags)
    assert len(found) == 1, (name, tags, found)
    return found[0]["value"]


def check_shape(records, collector):
    for r in records:
        assert set(r) == {"timestamp", "metric_type", "metric_name", "value", "unit", "tags"}
        mtype, name, unit, extra, _ = SPEC[r["metric_name"]]
        assert (r["metric_type"], r["unit"]) == (mtype, unit), r
        assert set(r["tags"]) == {"host", "pid", *extra}, r
        assert r["tags"]["host"] == collector.host and r["tags"]["pid"] == os.getpid()
        assert isinstance(r["value"], float) and r["value"] == r["value"]
        if r["metric_name"] in RATE_NAMES or r["unit"] == "%":
            assert r["value"] >= 0, r


@pytest.fixture
def sleeper():
    """A python child with 3 extra threads and ~40 MB touched, idle until killed."""
    code = ("import sys, threading, time\n"
            "[threading.Thread(target=time.sleep, args=(120,), daemon=True).start() for _ in range(3)]\n"
            "ballast = bytearray(40 * 2**20)\n"
            "f = open(sys.executable, 'rb')\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_first_sample_primes_and_has_no_rates():
    c = SystemCollector(process_names=[psutil.Process().name()], host="test-host")
    first = c.sample(now=1_700_000_000.5)
    names = {r["metric_name"] for r in first}
    assert not names & RATE_NAMES, names & RATE_NAMES
    assert {"memory_percent", "memory_used_mb", "memory_available_mb", "swap_percent",
            "disk_usage_percent", "process_memory_mb", "process_threads"} <= names
    assert {r["timestamp"] for r in first} == {1_700_000_000.5}
    assert os.getpid() in c.followed                   # this test runs in python
    check_shape(first, c)
    time.sleep(0.2)
    second = c.sample()
    check_shape(second, c)
    names2 = {r["metric_name"] for r in second}
    assert {"cpu_percent", "cpu_core_percent", "disk_write_bytes_per_s",
            "network_recv_bytes_per_s", "process_cpu_percent"} <= names2
    assert len(by_name(second, "cpu_percent")) == 1
    assert abs(second[0]["timestamp"] - time.time()) < 5


def test_memory_and_cores_agree_with_psutil():
    c = SystemCollector(mounts=[])
    c.sample()
    time.sleep(0.2)
    before = psutil.virtual_memory()
    records = c.sample()
    after = psutil.virtual_memory()
    tol = 0.02 * before.total / MB                      # other processes keep running
    assert one(records, "memory_total_mb") == pytest.approx(before.total / MB)
    for name, field in (("memory_used_mb", "used"), ("memory_available_mb", "available")):
        lo, hi = sorted((getattr(before, field) / MB, getattr(after, field) / MB))
        assert lo - tol <= one(records, name) <= hi + tol, name
    assert min(before.percent, after.percent) - 2 <= one(records, "memory_percent") \
        <= max(before.percent, after.percent) + 2
    assert one(records, "swap_used_mb") == pytest.approx(psutil.swap_memory().used / MB,
                                                         abs=max(tol, 1.0))
    cores = by_name(records, "cpu_core_percent")
    assert sorted(r["tags"]["core"] for r in cores) == list(range(psutil.cpu_count()))
    assert all(0 <= r["value"] <= 100 for r in cores)
    assert 0 <= one(records, "cpu_percent") <= 100


def test_disk_usage_per_mount(tmp_path):
    c = SystemCollector()
    records = c.sample()
    assert c.mounts, "no physical mount found"
    for mount in c.mounts:
        assert one(records, "disk_usage_percent", mount=mount) == pytest.approx(
            psutil.disk_usage(mount).percent, abs=0.2)
        du = psutil.disk_usage(mount)
        assert one(records, "disk_free_gb", mount=mount) == pytest.approx(du.free / 2**30, abs=0.5)
    explicit = SystemCollector(mounts=[str(tmp_path)])
    records = explicit.sample()
    assert {r["tags"]["mount"] for r in by_name(records, "disk_usage_percent")} == {str(tmp_path)}
    assert one(records, "disk_usage_percent", mount=str(tmp_path)) == pytest.approx(
        psutil.disk_usage(str(tmp_path)).percent, abs=0.2)


@pytest.mark.parametrize("how", ["pid", "name"])
def test_process_followed(sleeper, how):
    pid = sleeper.pid
    c = SystemCollector(mounts=[], pids=[pid]) if how == "pid" else \
        SystemCollector(mounts=[], process_names=["python"])   # "python3.11" too
    first = c.sample()
    assert pid in c.followed
    assert not by_name(first, "process_cpu_percent", process_pid=pid)    # only primed
    time.sleep(0.2)
    p = psutil.Process(pid)
    records = c.sample()
    rss = p.memory_info().rss / MB
    assert one(records, "process_memory_mb", process_pid=pid) == pytest.approx(rss, abs=2.0)
    assert rss > 40                                     # the ballast is in it
    assert one(records, "process_threads", process_pid=pid) == p.num_threads() == 4
    assert one(records, "process_open_files", process_pid=pid) == len(p.open_files()) >= 1
    assert 0 <= one(records, "process_cpu_percent", process_pid=pid) < 50   # it sleeps
    tags = by_name(records, "process_threads", process_pid=pid)[0]["tags"]
    assert tags["process"] == p.name() and tags["pid"] == os.getpid()
    sleeper.kill()
    sleeper.wait(10)
    records = c.sample()
    assert pid not in c.followed
    assert not by_name(records, "process_memory_mb", process_pid=pid)


def test_new_process_picked_up_by_name(tmp_path):
    c = SystemCollector(mounts=[], process_names=["python"])
    c.sample()
    child = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); "
                              "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert child.pid not in c.followed
        records = c.sample()
        assert child.pid in c.followed
        assert by_name(records, "process_memory_mb", process_pid=child.pid)
    finally:
        child.kill()
        child.wait(10)
    only_other = SystemCollector(mounts=[], process_names=["no-such-process-xyz"])
    only_other.sample()
    assert only_other.followed == {}


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs /bin/sh")
def test_pid_caught_before_exec_is_checked_again():
    """A new pid seen under another name (between fork and exec) is checked again."""
    c = SystemCollector(mounts=[], process_names=["python"])
    child = subprocess.Popen(["/bin/sh", "-c", f"read go; exec '{sys.executable}' -c "
                              "'import time; print(\"ready\", flush=True); time.sleep(60)'"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        c.sample()
        assert child.pid not in c.followed              # still "sh"
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ready"
        records = c.sample()
        assert child.pid in c.followed
        assert by_name(records, "process_threads", process_pid=child.pid)
    finally:
        child.kill()
        child.wait(10)


def test_name_matching():
    wanted = {"python", "linkband-sdk"}
    for name in ("python", "python3", "python3.11", "Python.exe", "LINKBAND-SDK"):
        assert name_matches(name, wanted), name
    for name in ("pythonw", "ipython", "python-foo", "linkband", "node"):
        assert not name_matches(name, wanted), name


def test_rates_are_deltas_of_real_io(tmp_path):
    if psutil.disk_io_counters(perdisk=False) is None:
        pytest.skip("no disk I/O counters on this machine")
    parts = [p for p in psutil.disk_partitions(all=True)
             if str(tmp_path).startswith(p.mountpoint.rstrip(os.sep) + os.sep)]
    if parts and max(parts, key=lambda p: len(p.mountpoint)).fstype in ("tmpfs", "ramfs"):
        pytest.skip("tmp_path is in memory: its writes never reach a disk")
    c = SystemCollector(mounts=[])
    first = c.sample()
    assert not [r for r in first if r["metric_name"].endswith("_per_s")]
    with open(tmp_path / "blob", "wb") as f:            # 8 MB that reach the disk
        for _ in range(8):
            f.write(os.urandom(2**20))
        f.flush()
        os.fsync(f.fileno())
    server = socket.create_server(("127.0.0.1", 0))     # and 1 MB over loopback
    a = socket.create_connection(server.getsockname())
    b, _ = server.accept()
    a.sendall(b"x" * 2**20)
    got = 0
    while got < 2**20:
        got += len(b.recv(2**20))
    for s in (a, b, server):
        s.close()
    time.sleep(0.05)
    records = c.sample()
    check_shape(records, c)
    assert one(records, "disk_write_bytes_per_s") > 0
    assert one(records, "disk_write_ops_per_s") > 0
    assert sum(r["value"] for r in by_name(records, "network_recv_bytes_per_s")) > 0
    rates = [r for r in records if r["metric_name"].endswith("_per_s")]
    assert rates and all(r["value"] >= 0 for r in rates)


def test_counter_going_back_gives_no_value_and_rates_use_elapsed_time(monkeypatch):
    clock = {"t": 100.0}
    counters = {"sent": 1_000_000, "recv": 5000}
    fake_time = types.SimpleNamespace(time=time.time, monotonic=lambda: clock["t"])
    nic = lambda: {"fake0": types.SimpleNamespace(
        bytes_sent=counters["sent"], bytes_recv=counters["recv"], packets_sent=10,
        packets_recv=20, errin=0, errout=0, dropin=0, dropout=0)}
    monkeypatch.setattr(mod, "time", fake_time)
    monkeypatch.setattr(mod.psutil, "net_io_counters", lambda **kw: nic())
    c = SystemCollector(mounts=[], nics=["fake0"])
    assert not by_name(c.sample(), "network_recv_bytes_per_s")
    clock["t"] += 0.5
    counters["recv"] += 1000
    records = c.sample()
    assert one(records, "network_recv_bytes_per_s", nic="fake0") == pytest.approx(2000.0)
    assert one(records, "network_sent_bytes_per_s", nic="fake0") == 0.0
    clock["t"] += 0.5
    counters["sent"] = 10                               # reset: no value, not negative
    counters["recv"] += 500
    records = c.sample()
    assert not by_name(records, "network_sent_bytes_per_s")
    assert one(records, "network_recv_bytes_per_s", nic="fake0") == pytest.approx(1000.0)
    clock["t"] += 1.0
    counters["sent"] += 300                             # counting again from the new base
    records = c.sample()
    assert one(records, "network_sent_bytes_per_s", nic="fake0") == pytest.approx(300.0)


class CountingClient:
    """Passes records on (or keeps them) and sets ``stop`` after ``n`` pushes."""

    def __init__(self, stop, n, inner=None):
        self.stop, self.n, self.inner, self.batches = stop, n, inner, []

    def store_metrics(self, records):
        self.batches.append(records)
        if self.inner is not None:
            self.inner.store_metrics(records)
        if len(self.batches) >= self.n:
            self.stop.set()


def test_run_loop_stops_on_event():
    stop = threading.Event()
    client = CountingClient(stop, 3)
    assert run(client, SystemCollector(mounts=[]), stop, 0.15) == 3
    names = [{r["metric_name"] for r in batch} for batch in client.batches]
    assert "cpu_percent" not in names[0] and all("cpu_percent" in n for n in names[1:])
    stop.set()
    assert run(client, SystemCollector(), stop, 0.05) == 0     # already stopped
    with pytest.raises(ValueError):
        SystemCollector(interval=0)
    with pytest.raises(ValueError, match="bogus"):
        SystemCollector.from_config({"interval": 1.0, "bogus": 1})


def test_end_to_end_into_the_daemon(daemon):
    writer = daemon.writer_pid()
    c = SystemCollector(interval=0.2, pids=[writer])
    client = daemon.client()
    stop = threading.Event()
    assert run(CountingClient(stop, 3, client), c, stop, 0.2) == 3
    assert client.flush(10)
    rows = all_rows(daemon, "metrics", metric_name="cpu_percent")
    assert len(rows) == 2                               # the first sample primes
    assert all(r["tags"] == {"host": c.host, "pid": os.getpid()} for r in rows)
    assert all(r["metric_type"] == "cpu" and r["unit"] == "%" for r in rows)
    tagged = all_rows(daemon, "metrics", metric_name="cpu_percent",
                      tags={"host": c.host, "pid": os.getpid()})
    assert [r["id"] for r in tagged] == [r["id"] for r in rows]
    procs = all_rows(daemon, "metrics", metric_name="process_memory_mb",
                     tags={"process_pid": writer})
    assert len(procs) == 3 and all(r["value"] > 1 for r in procs)
    stats = daemon.stats()
    assert stats["rejected_total"] == 0 and stats["lost_records_total"] == 0


def test_standalone_command(daemon):
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkband_historyd.collector.system_metrics", "--ingest", daemon.ingest,
         "--query", daemon.query, "--interval", "0.2", "--duration", "0.5",
         "--process-name", "python", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert wait_for(lambda: all_rows(daemon, "metrics", metric_name="cpu_percent",
                                     tags={"pid": proc.pid}))
    own = all_rows(daemon, "metrics", metric_name="process_threads",   # it follows itself
                   tags={"pid": proc.pid, "process_pid": proc.pid})
    assert own and all(r["value"] >= 1 for r in own)


def test_the_daemon_runs_the_collector_as_a_scheduler_job(daemon_factory):
    from conftest import wait_for
    d = daemon_factory(env={"LINKBAND_HISTORY_COLLECTOR": "true",
                            "LINKBAND_HISTORY_COLLECTOR_INTERVAL_S": "0.2"})
    rows = wait_for(lambda: d.ask("metrics", metric_name="memory_percent")["rows"], timeout=20)
    assert rows[0]["metric_type"] == "memory" and "host" in rows[0]["tags"]
    assert 0 < rows[0]["value"] <= 100
