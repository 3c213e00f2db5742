"""What the benchmarks in bench/ share; import it as a sibling (``import common``:
the scripts run as ``python bench/<name>.py``, so bench/ is on ``sys.path``).

- Realistic SDK-shaped records: :data:`METRICS` and :func:`metric_record`,
  :func:`make_metrics`, :func:`make_logs`; :data:`MAKERS`, :data:`STORE` and
  :data:`TABLE` map a kind ("metric", "log") to its generator, its
  ``HistoryClient`` method and its table.
- The daemon: :func:`fresh_daemon`, a ``linkband_historyd.harness.DaemonProcess``
  on a fresh ``tempfile.mkdtemp()`` (removed afterwards) at log level WARNING,
  stopped with SIGTERM (exit code not 0 -> WARNING).
- CPU accounting (who used the cores during a run): :func:`system_busy`,
  :func:`daemon_cpu`, :class:`CpuMeter`.
- Percentiles: :func:`pct`; the writer's own send->commit histogram over a phase:
  :func:`writer_latency` (a snapshot) and :func:`latency_between` (two of them).
- Building a database directly with APSW, as the writer stores rows: :func:`fill_table`.
- Output: :func:`note` (progress, stderr), :func:`warn` (stdout, collected in
  :data:`WARNINGS`), :func:`print_machine`, :func:`load_average`,
  :func:`print_table`, :func:`print_summary` (returns the exit code: 1 if any
  WARNING was printed).
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time

import apsw
import psutil
import zmq

from linkband_historyd.harness import DaemonProcess
from linkband_historyd.storage import fts_merger, schema
from linkband_historyd.storage.ingest_latency import BOUNDS, LatencyHistogram
from linkband_historyd.storage.row_store import RowStore

# -- realistic SDK data -------------------------------------------------------

HOSTS = ("lab-mac-01", "lab-win-02")

# (metric_type, metric_name, unit, sensor or None, value generator)
METRICS = (
    ("cpu", "cpu_percent", "%", None, lambda r: round(r.gauss(15, 4), 1)),
    ("memory", "memory_percent", "%", None, lambda r: round(r.gauss(76, 2), 1)),
    ("memory", "memory_used_mb", "MB", None, lambda r: round(r.gauss(12150, 80), 1)),
    ("memory", "process_memory_mb", "MB", None, lambda r: round(r.gauss(182, 5), 1)),
    ("cpu", "process_cpu_percent", "%", None, lambda r: round(r.gauss(6, 2), 1)),
    ("disk", "disk_usage_percent", "%", None, lambda r: round(r.uniform(61, 62), 2)),
    ("network", "network_bytes_sent", "bytes", None, lambda r: float(r.randint(0, 90000))),
    ("streaming", "eeg_throughput", "samples/s", "eeg", lambda r: round(r.gauss(250, 1.5), 1)),
    ("streaming", "ppg_throughput", "samples/s", "ppg", lambda r: round(r.gauss(100, 1), 1)),
    ("streaming", "acc_throughput", "samples/s", "acc", lambda r: round(r.gauss(50, 1), 1)),
    ("streaming", "total_latency", "ms", None, lambda r: round(r.gauss(12.5, 2), 2)),
    ("streaming", "battery_level", "%", "battery", lambda r: float(r.randint(20, 100))),
    ("buffer", "eeg_buffer_usage_percent", "%", "eeg", lambda r: round(r.uniform(5, 60), 1)),
    ("batch", "eeg_items_processed", "items", "eeg", lambda r: 50.0),
)


def metric_record(spec: tuple, r: random.Random, ts: float, host: str) -> dict:
    """One metric record of ``spec`` (an entry of :data:`METRICS`), value drawn from ``r``."""
    mtype, name, unit, sensor, gen = spec
    tags = {"host": host}
    if sensor:
        tags["sensor"] = sensor
    return {"timestamp": ts, "metric_type": mtype, "metric_name": name,
            "value": gen(r), "unit": unit, "tags": tags}


def make_metrics(n: int, seed: int, t0: float, step: float = 0.001,
                 names: int = len(METRICS)) -> list[dict]:
    """``n`` metric records cycling through the first ``names`` of :data:`METRICS`."""
    r = random.Random(seed)
    host = HOSTS[seed % len(HOSTS)]
    return [metric_record(METRICS[i % names], r, t0 + i * step, host) for i in range(n)]


def _mac(r):
    return ":".join(f"{r.randrange(256):02X}" for _ in range(6))


def make_logs(n: int, seed: int, t0: float, step: float = 0.001) -> list[dict]:
    """``n`` SDK log records: bracket-tagged mixed Korean/English lines, logger
    names like ``STREAM.eeg``, some with extra_data (one with an exception)."""
    r = random.Random(seed)
    pid = 40000 + seed
    addr = _mac(r)
    out = []
    for i in range(n):
        k = r.random()
        extra = None
        level = "INFO"
        if k < 0.40:
            seq = 1000 + i
            logger, module, func, line = "STREAM.eeg", "stream_manager", "_handle_eeg", 412
            msg = f"[STREAM:EEG] 패킷 수신 seq={seq} samples=25 ch1={r.uniform(-80, 80):.2f}µV"
            if k < 0.10:
                level = "DEBUG"
                extra = {"sensor_type": "eeg", "status": "streaming"}
        elif k < 0.55:
            logger, module, func, line = "STREAM.ppg", "stream_manager", "_handle_ppg", 455
            msg = f"[STREAM:PPG] PPG 데이터 처리 완료 red={r.randint(100000, 9000000)} ir={r.randint(100000, 9000000)}"
        elif k < 0.70:
            logger, module, func, line = "WEBSOCKET.server", "websocket_server", "broadcast", 233
            msg = f"[WS_SERVER] broadcast eeg_data to {r.randint(1, 3)} clients ({r.randint(900, 1400)} bytes)"
        elif k < 0.80:
            logger, module, func, line = "SYSTEM.monitor", "monitoring_service", "_collect", 118
            msg = (f"[METRICS_BROADCASTER] 시스템 메트릭 전송 cpu={r.uniform(5, 40):.1f}% "
                   f"memory={r.uniform(70, 82):.1f}%")
        elif k < 0.88:
            logger, module, func, line = "SYSTEM.monitor", "monitoring_service", "_check", 160
            msg = (f"[STREAMING_MONITOR] EEG {r.uniform(248, 251):.1f}Hz 정상, "
                   f"버퍼 사용률 {r.uniform(5, 60):.1f}%")
        elif k < 0.93:
            logger, module, func, line = "API.router", "router_stream", "start_streaming", 77
            msg = "[SERVER:START] 스트리밍 시작 요청 POST /stream/start"
            extra = {"endpoint": "/stream/start", "method": "POST", "action": "start"}
        elif k < 0.97:
            logger, module, func, line = "DEVICE.manager", "device_manager", "connect", 301
            msg = f"[DEVICE_MGR:CONNECT] BLE 연결 성공 address={addr}"
            extra = {"address": addr, "status": "connected", "timestamp": t0 + i * step}
        elif k < 0.995:
            level = "WARNING"
            logger, module, func, line = "DEVICE.manager", "device_manager", "_on_disconnect", 352
            msg = f"디바이스 연결이 끊어졌습니다 address={addr}, 재연결 시도 {r.randint(1, 5)}/5"
            extra = {"address": addr, "status": "disconnected", "action": "reconnect"}
        else:
            level = "ERROR"
            logger, module, func, line = "STREAM.acc", "stream_manager", "_notify", 498
            msg = "[STREAM:ACC] notification handler failed: BleakError 'Characteristic not found'"
            extra = {"exception": {"type": "BleakError", "message": "Characteristic not found",
                                   "traceback": "Traceback (most recent call last):\n  File "
                                   "\"stream_manager.py\", line 498, in _notify\n"
                                   "bleak.exc.BleakError: Characteristic not found"},
                     "sensor_type": "acc"}
        rec = {"timestamp": t0 + i * step, "level": level, "logger_name": logger,
               "message": msg, "module": module, "function_name": func, "line_number": line,
               "thread_id": 123145300000000 + (i % 3), "process_id": pid}
        if extra is not None:
            rec["extra_data"] = extra
        out.append(rec)
    return out


MAKERS = {"metric": make_metrics, "log": make_logs}
STORE = {"metric": "store_metrics", "log": "store_logs"}
TABLE = {"metric": "system_metrics", "log": "system_logs"}


# -- the daemon -----------------------------------------------------------------

@contextlib.contextmanager
def fresh_daemon(name: str, prepare=None):
    """A running ``DaemonProcess`` on a fresh ``tempfile.mkdtemp()``, log level WARNING,
    without its system metrics collector (its rows would mix with what is counted).

    ``prepare(db_path)``, if given, fills the database before the daemon starts.
    On leaving, the daemon is stopped with SIGTERM (:func:`stop_daemon`), anything
    left is killed and the directory is removed.
    """
    base = tempfile.mkdtemp(prefix=f"lbh-{name[:6]}-")
    d = DaemonProcess(base, log_level="WARNING", env={"LINKBAND_HISTORY_COLLECTOR": "false"})
    try:
        if prepare is not None:
            os.makedirs(d.data_dir, mode=0o700)
            prepare(str(d.db_path))
        d.start()
        try:
            yield d
        finally:
            stop_daemon(d)
    finally:
        d.close()
        shutil.rmtree(base, ignore_errors=True)


def stop_daemon(d: DaemonProcess, timeout: float = 60.0) -> int:
    """SIGTERM, wait (kill after ``timeout``); WARNING unless the exit code is 0,
    else the daemon's log (WARNING and above), if any, as a progress line."""
    try:
        code = d.stop(timeout=timeout)
    except subprocess.TimeoutExpired:
        d.close()                          # kills it and its children
        code = d.proc.returncode
    text = d.log().strip()
    if code != 0:
        warn(f"daemon exited with code {code} (expected 0); its log:\n{text}")
    elif text:
        note(f"daemon log (WARNING and above):\n{text}")
    return code


# -- CPU accounting: who used the cores during a run ------------------------------

def system_busy() -> float:
    """CPU seconds all processes of the machine have used (from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return float("nan")
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")     # minus idle, iowait


def daemon_cpu(d: DaemonProcess) -> dict:
    """CPU seconds of the daemon's processes: writer, query, supervisor (+ tracker)."""
    out = {"writer": 0.0, "other": 0.0}
    try:
        sup = psutil.Process(d.proc.pid)
        kids = sup.children(recursive=True)
        titled = [k.pid for k in kids if "linkband-historyd: writer" in " ".join(k.cmdline())]
        # without setproctitle the writer is the first child spawned
        spawned = sorted((k for k in kids if "spawn_main" in " ".join(k.cmdline())),
                         key=lambda k: k.create_time())
        writer = titled[0] if titled else (spawned[0].pid if spawned else None)
        for proc in [sup] + sup.children(recursive=True):
            t = proc.cpu_times()
            out["writer" if proc.pid == writer else "other"] += t.user + t.system
    except (psutil.Error, IndexError):
        pass
    return out


class CpuMeter:
    """Started at the beginning of a run; :meth:`report` says who used the CPU since."""

    def __init__(self, d: DaemonProcess):
        self.d = d
        self.d0 = daemon_cpu(d)
        self.sys0 = system_busy()
        self.me0 = time.process_time()
        self.wall0 = time.monotonic()

    def report(self, clients_cpu: float) -> str:
        d1 = daemon_cpu(self.d)
        wall = time.monotonic() - self.wall0
        busy = system_busy() - self.sys0
        writer = d1["writer"] - self.d0["writer"]
        dother = d1["other"] - self.d0["other"]
        me = time.process_time() - self.me0
        others = busy - writer - dother - clients_cpu - me
        return (f"CPU s over {wall:.1f} s wall x {os.cpu_count()} cores: clients {clients_cpu:.1f}, "
                f"writer {writer:.1f}, rest of daemon {dother:.1f}, this script {me:.1f}, "
                f"other processes on the machine {max(0.0, others):.1f}")


# -- percentiles ------------------------------------------------------------------

def wait_tick(start: float, k: int, tick: float) -> float:
    """Sleep until tick ``k`` of a schedule started at ``start`` (monotonic); how late we are."""
    due = start + k * tick
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
        now = time.monotonic()
    return now - due


def remove_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except OSError:
            pass


def pct(values, q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; NaN if empty."""
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def writer_latency(db_path) -> dict:
    """The writer's send->commit histogram as it last published it (``writer_state`` key
    ``ingest_latency``: {"since", "buckets": {index: count}, ...}; cumulative since the
    writer started, published when idle for 1 s)."""
    with contextlib.closing(schema.open_reader(str(db_path))) as conn:
        row = conn.execute("SELECT value FROM writer_state WHERE key = 'ingest_latency'").fetchall()
    return json.loads(row[0][0]) if row else {}


def latency_between(before: dict, after: dict, over_ms: float = 5.0) -> dict:
    """count, p50, p99, max (ms: upper bounds of 5 % buckets) and the number ``over``
    ``over_ms`` of the messages committed between two :func:`writer_latency` snapshots."""
    old = before.get("buckets", {}) if before.get("since") == after.get("since") else {}
    diff = {i: n - old.get(i, 0) for i, n in after.get("buckets", {}).items() if n > old.get(i, 0)}
    h = LatencyHistogram({"buckets": diff, "max": float("inf")})
    bound = lambda i: BOUNDS[min(int(i), len(BOUNDS) - 1)] * 1e3    # noqa: E731
    return {"count": h.total, "p50": h.percentile(0.5) * 1e3, "p99": h.percentile(0.99) * 1e3,
            "max": max(map(bound, diff), default=0.0),
            "over": sum(n for i, n in diff.items() if bound(i) > over_ms)}


# -- building a database directly ---------------------------------------------------

def fill_table(conn, kind: str, rows, total: int, tx: int = 50_000) -> None:
    """Insert the positional ``rows`` of ``kind`` (an iterable) in ``tx``-row transactions
    as the writer does (``row_store.RowStore.add``: the rows, their FTS entries or their
    metrics' latest values), and ``schema.ADD_COUNT`` (logs: then merged as the writer
    keeps them); a progress line every million rows."""
    table = schema.TABLES[kind]
    store = RowStore(conn)
    done, t0 = 0, time.monotonic()
    while chunk := list(itertools.islice(rows, tx)):
        with conn:
            store.add(kind, chunk)
            conn.execute(schema.ADD_COUNT, (table, len(chunk)))
        done += len(chunk)
        if done % 1_000_000 < tx or done == total:
            note(f"build: {done:,} of {total:,} {table} rows, {time.monotonic() - t0:.0f} s")
    if kind == "log":
        # the state the writer's merge steps keep (fts_merger.py): merged as far as
        # usermerge asks, in steps of the writer's size (FTS5 frees a merge's input
        # pages at the end of each step); FTS5 itself merges nothing (automerge 0)
        while True:
            before = conn.totalchanges()
            with conn:
                conn.execute(fts_merger.MERGE, (fts_merger.MAX_PAGES,))
            if conn.totalchanges() - before <= 1:
                break


# -- output -----------------------------------------------------------------------

WARNINGS: list[str] = []


def note(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    WARNINGS.append(msg)
    print(f"WARNING: {msg}", flush=True)


def print_machine() -> None:
    print(f"machine: nproc {os.cpu_count()}, {platform.machine()}, {platform.system()} "
          f"{platform.release()}")
    print(f"python {platform.python_version()}, SQLite {apsw.sqlite_lib_version()} "
          f"(apsw {apsw.apsw_version()}), libzmq {zmq.zmq_version()} (pyzmq {zmq.__version__})")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def saved_pct(small: int, big: int) -> str:
    """How much smaller ``small`` is than ``big``, as a percentage."""
    return f"{100 * (1 - small / big):.2f} %"


def print_table(head: tuple, lines: list[tuple]) -> None:
    """Columns padded to their widest cell: the first left-aligned, the others right."""
    widths = [max(len(str(x[i])) for x in lines + [head]) for i in range(len(head))]
    for row in [head] + lines:
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths))).rstrip())


def print_summary(started: float) -> int:
    """Total time since ``started`` (``time.monotonic()``) and the WARNINGs; the exit code."""
    print(f"\ntotal time {time.monotonic() - started:.0f} s; "
          f"{len(WARNINGS)} warning(s)" + ("" if not WARNINGS else ":"))
    for w in WARNINGS:
        print(f"  - {w.splitlines()[0]}")
    return 1 if WARNINGS else 0
