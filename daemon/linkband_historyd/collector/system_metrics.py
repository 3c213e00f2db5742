"""System metrics collector: a job of the daemon that samples the machine with
psutil and pushes the values through the client library like any SDK process.

    c = SystemCollector(process_names=["python"], interval=1.0)
    run(client, c, stop_event)                  # a loop on a monotonic schedule
    # or, as a job of a scheduler:  scheduler.add_job(c.push, "interval",
    #                                    seconds=c.interval, args=[client])
    python -m linkband_historyd.collector.system_metrics --ingest ENDPOINT --interval 1 --process-name python

Every record has the SDK's shape (timestamp, metric_type, metric_name, value,
unit, tags); tags always hold ``host`` and ``pid`` (of the collecting process)
plus ``core`` / ``mount`` / ``nic`` / ``process`` + ``process_pid`` where
relevant. The metrics are listed in :data:`METRICS`.

Rates (``*_per_s``) are deltas of the kernel's counters divided by the real time
between the two reads (``time.monotonic``); CPU percentages are deltas of the
CPU time counters. So the **first** ``sample()`` only primes them and returns
the other metrics; a NIC, process or core that appears later is primed on the
sample that first sees it. A counter that went backwards (wrap, reset, device
re-attached) yields no value for that interval, never a negative one.

Processes: pids given explicitly are followed while they live; names are
matched on every sample against new pids (a pid that does not match is checked
again on the next few samples, in case it was caught between fork and exec,
and every pid again every ``RESCAN_SAMPLES`` samples). One ``psutil.Process``
is kept per pid, so its ``cpu_percent`` is a real delta (100 = one core).
Cost: a few reads of /proc per sample, plus more per followed process
(``open_files`` is the dearest call); bench/collector.py prints it.
``sample()`` is not meant to be called from two threads at once.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time

import psutil

log = logging.getLogger("linkband_historyd.collector.system_metrics")

MB = 1024 * 1024                   # MiB, as the SDK's memory_used_mb
GB = 1024 ** 3
REFRESH_SECONDS = 60.0             # mounts and NICs are rediscovered this often
RECHECK_SAMPLES = 3                # a non-matching new pid is checked this many samples
RESCAN_SAMPLES = 30                # every pid's name is checked again this often

# (metric_type, metric_name, unit, extra tag keys, needs a previous sample)
METRICS = (
    ("cpu", "cpu_percent", "%", (), True),
    ("cpu", "cpu_core_percent", "%", ("core",), True),
    ("memory", "memory_percent", "%", (), False),
    ("memory", "memory_used_mb", "MB", (), False),
    ("memory", "memory_available_mb", "MB", (), False),
    ("memory", "memory_total_mb", "MB", (), False),
    ("memory", "swap_percent", "%", (), False),
    ("memory", "swap_used_mb", "MB", (), False),
    ("disk", "disk_usage_percent", "%", ("mount",), False),
    ("disk", "disk_used_gb", "GB", ("mount",), False),
    ("disk", "disk_free_gb", "GB", ("mount",), False),
    ("disk", "disk_read_bytes_per_s", "bytes/s", (), True),
    ("disk", "disk_write_bytes_per_s", "bytes/s", (), True),
    ("disk", "disk_read_ops_per_s", "ops/s", (), True),
    ("disk", "disk_write_ops_per_s", "ops/s", (), True),
    ("network", "network_sent_bytes_per_s", "bytes/s", ("nic",), True),
    ("network", "network_recv_bytes_per_s", "bytes/s", ("nic",), True),
    ("network", "network_packets_sent_per_s", "packets/s", ("nic",), True),
    ("network", "network_packets_recv_per_s", "packets/s", ("nic",), True),
    ("network", "network_errors_per_s", "errors/s", ("nic",), True),
    ("network", "network_drops_per_s", "packets/s", ("nic",), True),
    ("process", "process_cpu_percent", "%", ("process", "process_pid"), True),
    ("process", "process_memory_mb", "MB", ("process", "process_pid"), False),
    ("process", "process_threads", "count", ("process", "process_pid"), False),
    ("process", "process_open_files", "count", ("process", "process_pid"), False),
)
_DISK_RATES = tuple(m for m in METRICS if m[1].startswith("disk_") and m[4])
_NET_RATES = tuple(m for m in METRICS if m[0] == "network")
_SKIP_FSTYPES = frozenset({"squashfs", "iso9660", "udf", "tmpfs", "devtmpfs"})
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)


def _norm(name: str) -> str:
    name = name.lower()
    return name[:-4] if name.endswith(".exe") else name


def name_matches(name: str, wanted) -> bool:
    """``name`` (a process name) is one of ``wanted`` (normalized names),
    ignoring case, a ``.exe`` suffix and a version suffix: ``python`` matches
    ``python3``, ``python3.11`` and ``python.exe``."""
    n = _norm(name)
    for w in wanted:
        if n == w or (n.startswith(w) and not n[len(w):].strip("0123456789.")):
            return True
    return False


def _busy_total(t) -> tuple[float, float]:
    """Busy and total seconds of one ``cpu_times`` entry, as psutil counts them
    (guest time is inside user time on Linux; idle and iowait are not busy)."""
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total - t.idle - getattr(t, "iowait", 0.0), total


def _pct(part: float, whole: float) -> float:
    return round(min(100.0, 100.0 * part / whole), 2)     # 2 decimals: no float noise


def physical_mounts() -> list[str]:
    """Mount points of physical file systems, one per device (bind mounts of the
    same device, read-only images and memory file systems left out)."""
    seen, out = set(), []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _SKIP_FSTYPES or part.device in seen or not part.fstype:
            continue
        seen.add(part.device)
        out.append(part.mountpoint)
    return out or [os.path.abspath(os.sep)]          # e.g. a container's overlay root


class SystemCollector:
    def __init__(self, process_names=(), pids=(), mounts=None, interval: float = 1.0,
                 host: str | None = None, nics=None):
        if not interval > 0:
            raise ValueError("interval must be > 0 seconds")
        self.interval = float(interval)
        self.host = host or socket.gethostname()
        self.pid = os.getpid()
        self.base_tags = {"host": self.host, "pid": self.pid}
        self._names = frozenset(_norm(n) for n in process_names)
        self._mount_arg = list(mounts) if mounts is not None else None
        self._nic_arg = set(nics) if nics is not None else None
        self.mounts: list[str] = []
        self.nics: set | None = None
        self._refresh_at = 0.0
        self._n = 0                                  # samples taken
        self._cpu_prev = None                        # [(busy, total)] per core
        self._prev: dict = {}                        # counter key -> (monotonic, values)
        self._procs: dict[int, list] = {}            # pid -> [Process, tags, primed, files_ok]
        self._unmatched: dict[int, int] = {}         # pid -> sample number first seen
        for pid in pids:
            try:
                self._track(psutil.Process(int(pid)))
            except (psutil.Error, ValueError) as exc:
                log.warning("process %s not followed: %s", pid, exc)

    @classmethod
    def from_config(cls, cfg: dict) -> "SystemCollector":
        """From a config section: ``interval``, ``process_names``, ``pids``,
        ``mounts``, ``nics``, ``host`` (all optional)."""
        known = {"interval", "process_names", "pids", "mounts", "nics", "host"}
        bad = sorted(set(cfg) - known)
        if bad:
            raise ValueError(f"unknown collector option(s): {', '.join(bad)}")
        return cls(**cfg)

    # -- what is watched ---------------------------------------------------------
    def _track(self, proc: psutil.Process) -> None:
        tags = {**self.base_tags, "process": proc.name(), "process_pid": proc.pid}
        self._procs[proc.pid] = [proc, tags, False, True]

    def _refresh(self, mono: float) -> None:
        self._refresh_at = mono + REFRESH_SECONDS
        if self._mount_arg is None:
            try:
                self.mounts = physical_mounts()
            except OSError as exc:
                log.warning("cannot list mounts: %s", exc)
        else:
            self.mounts = self._mount_arg
        if self._nic_arg is None:
            try:
                self.nics = {n for n, s in psutil.net_if_stats().items() if s.isup}
            except OSError:
                self.nics = None                     # unknown: all of them
        else:
            self.nics = self._nic_arg
        for key in [k for k in self._prev if k[0] == "nic" and self.nics is not None
                    and k[1] not in self.nics]:
            del self._prev[key]

    def _discover(self) -> None:
        """Start following new processes whose name matches; forget vanished pids."""
        pids = psutil.pids()
        live = set(pids)
        for pid in self._procs.keys() - live:
            del self._procs[pid]
        for pid in self._unmatched.keys() - live:
            del self._unmatched[pid]
        if not self._names:
            return
        n, full = self._n, self._n % RESCAN_SAMPLES == 0
        for pid in pids:
            if pid in self._procs:
                continue
            first = self._unmatched.get(pid)
            if first is not None and not full and n - first >= RECHECK_SAMPLES:
                continue
            try:
                proc = psutil.Process(pid)
                if name_matches(proc.name(), self._names):
                    self._track(proc)
                    self._unmatched.pop(pid, None)
                    continue
            except psutil.Error:
                pass
            if first is None:
                self._unmatched[pid] = n

    # -- sampling ----------------------------------------------------------------
    def sample(self, now: float | None = None) -> list[dict]:
        """One sample of every metric as a list of records (timestamp ``now``,
        default ``time.time()``). Rates and CPU percentages need the previous
        sample: the first call returns only the other metrics."""
        ts = time.time() if now is None else float(now)
        self._n += 1
        out: list[dict] = []
        base = self.base_tags

        def add(mtype, name, value, unit, tags=base):
            out.append({"timestamp": ts, "metric_type": mtype, "metric_name": name,
                        "value": float(value), "unit": unit, "tags": tags})

        if time.monotonic() >= self._refresh_at:
            self._refresh(time.monotonic())

        # CPU: deltas of the time counters, per core and over all cores
        cores = [_busy_total(t) for t in psutil.cpu_times(percpu=True)]
        prev, self._cpu_prev = self._cpu_prev, cores
        if prev is not None and len(prev) == len(cores):
            busy_sum = total_sum = 0.0
            for i, ((b0, t0), (b1, t1)) in enumerate(zip(prev, cores)):
                db, dt = max(0.0, b1 - b0), t1 - t0     # idle can step back a tick
                if dt > 0:
                    busy_sum += db
                    total_sum += dt
                    add("cpu", "cpu_core_percent", _pct(db, dt), "%", {**base, "core": i})
            if total_sum > 0:
                out.insert(0, {"timestamp": ts, "metric_type": "cpu", "metric_name": "cpu_percent",
                               "value": _pct(busy_sum, total_sum), "unit": "%", "tags": base})

        vm = psutil.virtual_memory()
        add("memory", "memory_percent", vm.percent, "%")
        add("memory", "memory_used_mb", vm.used / MB, "MB")
        add("memory", "memory_available_mb", vm.available / MB, "MB")
        add("memory", "memory_total_mb", vm.total / MB, "MB")
        sw = psutil.swap_memory()
        add("memory", "swap_percent", sw.percent, "%")
        add("memory", "swap_used_mb", sw.used / MB, "MB")

        for mount in self.mounts:
            try:
                du = psutil.disk_usage(mount)
            except OSError:
                continue
            tags = {**base, "mount": mount}
            add("disk", "disk_usage_percent", du.percent, "%", tags)
            add("disk", "disk_used_gb", du.used / GB, "GB", tags)
            add("disk", "disk_free_gb", du.free / GB, "GB", tags)

        io = psutil.disk_io_counters(perdisk=False, nowrap=False)
        if io is not None:
            self._rates(add, ("disk",), _DISK_RATES, time.monotonic(),
                        (io.read_bytes, io.write_bytes, io.read_count, io.write_count), base)

        nics = self.nics
        for nic, c in psutil.net_io_counters(pernic=True, nowrap=False).items():
            if nics is None or nic in nics:
                self._rates(add, ("nic", nic), _NET_RATES, time.monotonic(),
                            (c.bytes_sent, c.bytes_recv, c.packets_sent, c.packets_recv,
                             c.errin + c.errout, c.dropin + c.dropout), {**base, "nic": nic})

        if self._procs or self._names:
            self._discover()
            self._sample_processes(add)
        return out

    def _rates(self, add, key, specs, mono, values, tags) -> None:
        """Per-second rates of ``values`` (counters) since the previous read of ``key``."""
        prev = self._prev.get(key)
        self._prev[key] = (mono, values)
        if prev is None:
            return
        elapsed = mono - prev[0]
        if elapsed <= 0:
            return
        for (mtype, name, unit, _, _), v1, v0 in zip(specs, values, prev[1]):
            if v1 >= v0:                        # a counter that went back: no value
                add(mtype, name, (v1 - v0) / elapsed, unit, tags)

    def _sample_processes(self, add) -> None:
        for pid, entry in list(self._procs.items()):
            proc, tags, primed, files_ok = entry
            try:
                with proc.oneshot():
                    cpu = proc.cpu_percent(None)     # the first call only primes
                    rss = proc.memory_info().rss
                    threads = proc.num_threads()
                    files = None
                    if files_ok:
                        try:
                            files = len(proc.open_files())
                        except psutil.AccessDenied:
                            entry[3] = False
            except _GONE:
                del self._procs[pid]
                continue
            except psutil.AccessDenied as exc:
                log.warning("process %s (%s) not readable, no longer followed: %s",
                            pid, tags["process"], exc)
                del self._procs[pid]
                continue
            if primed:
                add("process", "process_cpu_percent", cpu, "%", tags)
            entry[2] = True
            add("process", "process_memory_mb", rss / MB, "MB", tags)
            add("process", "process_threads", threads, "count", tags)
            if files is not None:
                add("process", "process_open_files", files, "count", tags)

    @property
    def followed(self) -> dict[int, str]:
        """The processes followed now: pid -> name."""
        return {pid: e[1]["process"] for pid, e in self._procs.items()}

    def push(self, client) -> int:
        """Take one sample and hand it to ``client.store_metrics``; the record
        count. This is the function to run as a scheduler job."""
        records = self.sample()
        if records:
            client.store_metrics(records)
        return len(records)


def run(client, collector: SystemCollector, stop_event: threading.Event,
        interval: float | None = None) -> int:
    """Sample and push every ``interval`` seconds (default: the collector's)
    until ``stop_event`` is set; the number of samples taken. Ticks follow a
    fixed monotonic schedule (t0 + k * interval), so a slow sample does not
    shift the following ones; ticks missed entirely (a suspended machine) are
    skipped, not caught up in a burst. A failing sample is logged and skipped."""
    interval = float(interval or collector.interval)
    if not interval > 0:
        raise ValueError("interval must be > 0 seconds")
    samples = 0
    next_tick = time.monotonic()
    while not stop_event.is_set():
        try:
            collector.push(client)
        except (psutil.Error, OSError, ValueError):
            log.exception("system metrics sample failed")
        samples += 1
        next_tick += interval
        now = time.monotonic()
        if next_tick <= now:                      # behind: the next tick still to come
            next_tick += ((now - next_tick) // interval + 1) * interval
        stop_event.wait(next_tick - now)
    return samples


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m linkband_historyd.collector.system_metrics",
                                 description="Push system metrics to linkband-historyd.")
    ap.add_argument("--ingest", help="ingest endpoint (default: the daemon's)")
    ap.add_argument("--query", help="query endpoint (default: the daemon's)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--process-name", action="append", default=[], metavar="NAME",
                    help="follow processes of this name (repeatable)")
    ap.add_argument("--pid", action="append", type=int, default=[], help="follow this pid")
    ap.add_argument("--mount", action="append", default=None,
                    help="report this mount point (repeatable; default: all physical)")
    ap.add_argument("--nic", action="append", default=None,
                    help="report this network interface (repeatable; default: all up)")
    ap.add_argument("--host", help="host tag (default: the host name)")
    ap.add_argument("--duration", type=float, default=0.0, help="stop after seconds (0: never)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.interval > 0:
        ap.error("--interval must be > 0")
    from linkband_history import HistoryClient

    collector = SystemCollector(process_names=args.process_name, pids=args.pid,
                                mounts=args.mount, interval=args.interval, host=args.host,
                                nics=args.nic)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.duration > 0:
        timer = threading.Timer(args.duration, stop.set)
        timer.daemon = True
        timer.start()
    client = HistoryClient(ingest=args.ingest, query=args.query)
    log.info("collecting every %gs into %s (processes: %s)", collector.interval,
             client.ingest_endpoint, ", ".join(args.process_name + list(map(str, args.pid)))
             or "none")
    try:
        samples = run(client, collector, stop)
    finally:
        client.close()
    log.info("stopped after %d samples", samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
