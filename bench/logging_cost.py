"""What one ``logger.info`` costs the SDK thread that calls it, through our handler.

Run: ``.venv/bin/python bench/logging_cost.py [--calls N] [--rate R] [--rounds K]
[--sdk PATH]``. One thread calls ``logger.info`` with an SDK-shaped message
(``"[STREAM:EEG] batch %d: %d samples, %.1f ms"``) N times (default 200,000)
and times each call with ``perf_counter_ns``; the table shows p50, p99, p99.9,
the max and the number of calls over 1 ms per handler, each beside the floor
of the same run (on a loaded machine the floor's own max shows what the
scheduler alone costs). Where the system counts context switches per thread
(Linux), each call over 1 ms is told apart: ``waited`` (the thread blocked at
least once, for the GIL or a lock: what our handler and client can cause) or
``preempted`` (only the system took the CPU away: the machine's load, which the
floor sees too):

- ``floor``: a handler that only formats the message (``logging.Formatter()``);
  what any handler costs.
- ``ours``: ``linkband_history.sdk.HistoryLogHandler`` (the SDK's signature)
  over a ``HistoryClient`` connected to a daemon started for the run
  (``common.fresh_daemon``); afterwards the daemon must hold exactly the
  records logged (else a WARNING).
- ``sdk``: the SDK's own ``HistoryLogHandler`` over its ``HistoryDatabaseManager``
  (a SQLite file in a temporary directory), when ``--sdk`` names the SDK's
  ``python_core`` directory (it is not in this repository; it needs pydantic
  and aiosqlite). Without it the row is skipped with a note.

Calls are paced at ``--rate`` per second (default 20,000: a busy SDK thread
that also does its own work between log lines, which is when the sender
thread runs); ``--rate 0`` calls back to back, the worst case, where the
calling thread never lets go of the GIL and the sender has to take it. The
handlers take turns in ``--rounds`` rounds (default 4) of N/K calls each, so a
change in the machine's load falls on all of them; the daemon's writer flushes
between turns, outside the timed calls.

The file is not called ``logging.py``: the scripts here run with this
directory first on ``sys.path``, so such a file would stand in for the
standard ``logging`` module in every one of them.
"""
import argparse
import contextlib
import gc
import logging
import os
import sys
import tempfile
import threading
import time
import types
from array import array
from collections import Counter

import common
from linkband_history import HistoryClient

MESSAGE = "[STREAM:EEG] batch %d: %d samples, %.1f ms"


class FormatOnly(logging.Handler):
    """The floor: a handler that formats the message and keeps nothing."""

    def emit(self, record):
        self.format(record)


SLOW_NS = 1_000_000
# A new thread's first moments overlap the main thread's return from Thread.start()
# (a perf sched trace showed it holding the core for ms then, in floor and ours alike).
SETTLE_S = 0.05


def _thread_switches():
    """This thread's (voluntary, involuntary) context switches so far, where the
    system counts them per thread (Linux); else None."""
    try:
        import resource
        who = resource.RUSAGE_THREAD
    except (ImportError, AttributeError):
        return None

    def switches():
        r = resource.getrusage(who)
        return r.ru_nvcsw, r.ru_nivcsw
    return switches


def timed_calls(logger: logging.Logger, n: int, rate: float, start: int, slow: Counter) -> array:
    """``n`` calls of ``logger.info`` in a new thread; the nanoseconds of each.

    Each call over 1 ms is counted in ``slow`` by why it took that long, from the
    thread's context switches during the call (read outside the timed span):
    ``waited`` (it blocked at least once: for the GIL or a lock, which our code can
    cause; it may have been preempted too, so this is an upper bound of our share),
    ``preempted`` (only taken off the CPU by the system: the machine's load),
    ``kept`` (never switched out: the time went to interrupts or, in a virtual
    machine, to the host running another guest -- the run's steal time shows it) or
    ``unknown`` (no per-thread counts on this system)."""
    out = array("q", bytes(8 * n))
    switches = _thread_switches()

    def run():
        pc = time.perf_counter_ns
        info = logger.info
        tick = 1e9 / rate if rate else 0
        time.sleep(SETTLE_S)        # the main thread is in join() by then, not starting us
        t_next = pc()
        before = None
        for i in range(n):
            if tick:
                t_next += tick
                wait = t_next - pc()
                if wait > 0:
                    time.sleep(wait / 1e9)
            if switches:
                before = switches()
            t0 = pc()
            info(MESSAGE, start + i, 250, 3.2)
            out[i] = dt = pc() - t0
            if dt > SLOW_NS:
                if before is None:
                    slow["unknown"] += 1
                else:
                    vol, invol = (a - b for a, b in zip(switches(), before))
                    slow["waited" if vol else "preempted" if invol else "kept"] += 1

    t = threading.Thread(target=run, name="sdk-stream-thread")
    gc.collect()
    t.start()
    t.join()
    return out


def steal_seconds() -> float | None:
    """CPU time the hypervisor gave to other guests while this one wanted it (all
    CPUs, /proc/stat), where the system reports it; else None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def load_sdk(path: str):
    """The SDK's history_log_handler module from its python_core directory,
    without running the package ``__init__`` files of ``app`` (they are empty
    today, but its other modules need the device stack)."""
    import importlib
    root = os.path.join(os.path.abspath(path), "app")
    for name, sub in (("app", ""), ("app.core", "core"), ("app.database", "database"),
                      ("app.models", "models")):
        mod = types.ModuleType(name)
        mod.__path__ = [os.path.join(root, sub) if sub else root]
        sys.modules[name] = mod
    return importlib.import_module("app.core.history_log_handler")


def make_handlers(args, d, tmp: str) -> dict:
    """name -> (handler, after_turn callable, close callable)."""
    handlers = {"floor": (FormatOnly(), lambda: None, lambda: None)}
    client = HistoryClient(ingest=d.ingest, query=d.query, query_timeout=10.0)
    manager = types.SimpleNamespace(client=client,
                                    force_flush=lambda: client.flush(timeout=120),
                                    close=client.close)
    try:
        from linkband_history.sdk.log_handler import HistoryLogHandler
        ours = HistoryLogHandler(manager)
    except ImportError:             # a checkout from before issue 14: the client's handler
        from linkband_history import HistoryLogHandler
        ours = HistoryLogHandler(client)
        common.note("ours: linkband_history.HistoryLogHandler (no linkband_history.sdk here)")

    def flushed():
        if not client.flush(timeout=120):
            common.warn("ours: flush() not confirmed")
    handlers["ours"] = (ours, flushed, client.close)
    if args.sdk:
        try:
            sdk = load_sdk(args.sdk)
        except ImportError as exc:
            common.note(f"the SDK's handler: not loaded ({exc}); skipped")
        else:
            db = sdk.HistoryDatabaseManager(os.path.join(tmp, "database", "history.db"))
            handlers["sdk"] = (sdk.HistoryLogHandler(db), db.force_flush, db.close)
    else:
        common.note("the SDK's handler: skipped (its code is not in this repository; "
                    "pass --sdk PATH/python_core to measure it)")
    return handlers


def stored_logs(d) -> int:
    reply = d.ask("stats")
    return reply["rows"][0]["tables"]["system_logs"] if reply.get("ok") else -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200_000, help="logger.info calls per handler")
    ap.add_argument("--rate", type=float, default=20_000, help="calls per second (0: back to back)")
    ap.add_argument("--rounds", type=int, default=4, help="turns per handler")
    ap.add_argument("--sdk", help="the SDK's python_core directory, to measure its handler too")
    args = ap.parse_args()
    started = time.monotonic()
    print("linkband-history logging benchmark: the cost of one logger.info in a thread")
    common.print_machine()
    print(f"calls {args.calls:,} per handler, rate {args.rate:,.0f}/s"
          f"{' (back to back)' if not args.rate else ''}, {args.rounds} rounds")
    print(f"load average at start: {common.load_average()}\n")
    per = args.calls // args.rounds
    steal_at_start = steal_seconds()
    with common.fresh_daemon("logging") as d, tempfile.TemporaryDirectory() as tmp:
        handlers = make_handlers(args, d, tmp)
        times = {name: [] for name in handlers}
        slow = {name: Counter() for name in handlers}
        for r in range(args.rounds):
            for name, (handler, after_turn, _) in handlers.items():
                logger = logging.getLogger(f"bench.{name}")
                logger.propagate = False
                logger.setLevel(logging.INFO)
                logger.addHandler(handler)
                try:
                    times[name].extend(timed_calls(logger, per, args.rate, r * per, slow[name]))
                finally:
                    logger.removeHandler(handler)
                after_turn()
                common.note(f".. round {r + 1}/{args.rounds} {name} done; load {common.load_average()}")
        expected = per * args.rounds
        got = stored_logs(d)
        if got != expected:
            common.warn(f"ours: the daemon holds {got} log rows, {expected} were logged")
        lost = handlers["ours"][0].client.stats()["dropped"]
        for _, _, close in handlers.values():
            with contextlib.suppress(Exception):
                close()
    rows = []
    floor = {q: common.pct(times["floor"], q) for q in (0.5, 0.99, 0.999)}
    floor[1] = max(times["floor"])
    for name, values in times.items():
        figs = {q: common.pct(values, q) for q in (0.5, 0.99, 0.999)}
        figs[1] = max(values)
        over = sum(1 for v in values if v > 1_000_000)
        rows.append((name, *(f"{figs[q] / 1000:.1f} us" for q in (0.5, 0.99, 0.999)),
                     f"{figs[1] / 1e6:.2f} ms", f"{over:,}",
                     f"{figs[0.5] / floor[0.5]:.2f}x / {figs[0.99] / floor[0.99]:.2f}x"))
    common.print_table(("handler", "p50", "p99", "p99.9", "max", "calls > 1 ms",
                        "p50 / p99 vs floor"), rows)
    print("\ncalls over 1 ms, why (the thread's context switches during the call): "
          "waited = blocked at least once (GIL or lock); preempted = only taken off the CPU; "
          "kept = never switched out (interrupts, or the VM's host)")
    for name in times:
        c = slow[name]
        print(f"  {name:6} max {max(times[name]) / 1e6:.2f} ms (floor's max {floor[1] / 1e6:.2f} ms); "
              f"over 1 ms: {sum(c.values())} (floor {sum(slow['floor'].values())}): "
              f"waited {c['waited']}, preempted {c['preempted']}, kept {c['kept']}"
              + (f", unknown {c['unknown']}" if c["unknown"] else ""))
    if steal_at_start is not None:
        print(f"steal time during the run (CPU time the VM's host gave to others): "
              f"{(steal_seconds() - steal_at_start) * 1000:.0f} ms")
    print(f"\nours: {got:,} of {expected:,} records stored, {lost} dropped by the client. "
          "Targets (issue 14): p50 <= 1.5x the floor, p99 <= 2x, max < 1 ms.")
    return common.print_summary(started)


if __name__ == "__main__":
    sys.exit(main())
