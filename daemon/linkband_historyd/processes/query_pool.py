"""The query process's worker processes: started, watched, replaced.

The query process owns its workers (``query_worker``), so the supervisor keeps
seeing one query child: restarting it (a reload, a hang, a crash) restarts the
whole pool, and a worker whose query process is gone stops by itself. Here a
worker is watched the way the supervisor watches its children: one lock-free
shared double it beats; a worker that dies is replaced (after a back-off if it
keeps dying young); one whose heartbeat has not moved for
``supervisor.child_hang_s`` is killed (SIGKILL) and replaced. The request a lost
worker held is handed back to the broker, which answers it with an error.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import dataclass

from linkband_historyd.processes.query_worker import QueryWorker
from linkband_historyd.processes.skeleton import ReadyFlag, run_child
from linkband_historyd.settings import Settings

log = logging.getLogger("linkband_historyd.query")

DEFAULT_MAX_WORKERS = 4
YOUNG_S = 5.0              # a worker that dies sooner is restarted after a back-off


def worker_count(cfg: Settings) -> int:
    """``query.workers``, or from the CPU count: at least 2, at most 4."""
    return cfg.query.workers or max(2, min(os.cpu_count() or 2, DEFAULT_MAX_WORKERS))


@dataclass(eq=False)
class WorkerSlot:
    index: int
    wid: bytes = b""               # the routing id it was started with (a random token)
    proc: multiprocessing.Process | None = None
    heartbeat: object = None
    started: float = 0.0
    connected: bool = False        # its READY arrived
    request: object = None         # what it is answering, if anything
    hb_value: float = 0.0
    hb_seen: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = None


class WorkerPool:
    def __init__(self, cfg: Settings, backend_endpoint: str, supervisor_pid: int | None):
        self.cfg = cfg
        self.mp = multiprocessing.get_context("spawn")
        self.backend = backend_endpoint
        self.supervisor_pid = supervisor_pid
        self.slots = [WorkerSlot(i) for i in range(worker_count(cfg))]
        self.by_wid: dict[bytes, WorkerSlot] = {}
        self.replaced = 0

    def start_all(self) -> None:
        for slot in self.slots:
            self.spawn(slot)

    def spawn(self, slot: WorkerSlot) -> None:
        self.by_wid.pop(slot.wid, None)
        slot.wid = b"w" + os.urandom(12).hex().encode()
        cfg = self.cfg.updated({"query.worker_id": slot.wid, "query.backend_endpoint": self.backend,
                                "daemon.supervisor_pid": self.supervisor_pid})
        slot.heartbeat = self.mp.RawValue("d", 0.0)
        slot.proc = self.mp.Process(target=run_child,
                                    args=(QueryWorker, cfg, ReadyFlag(self.mp), slot.heartbeat,
                                          os.getpid()),
                                    name=f"linkband-historyd-query-worker-{slot.index}",
                                    daemon=False)
        slot.proc.start()
        slot.started = slot.hb_seen = time.monotonic()
        slot.hb_value = 0.0
        slot.connected = False
        slot.request = None
        slot.restart_at = None
        self.by_wid[slot.wid] = slot

    def check(self, now: float) -> list:
        """Kill hung workers, restart dead ones when due; the slots lost since the
        last check (their ``request`` still set, for the broker to answer)."""
        lost = []
        limit = self.cfg.supervisor.child_hang_s or 0.0
        for slot in self.slots:
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    log.info("starting query worker %d again", slot.index)
                    self.spawn(slot)
                continue
            if slot.proc is None:
                continue
            value = slot.heartbeat.value
            if value != slot.hb_value:
                slot.hb_value, slot.hb_seen = value, now
            elif value and limit and now - slot.hb_seen > limit and slot.proc.is_alive():
                log.error("query worker %d (pid %s) is hung: no heartbeat for %.1fs (limit %gs); "
                          "killing it with SIGKILL", slot.index, slot.proc.pid,
                          now - slot.hb_seen, limit)
                slot.proc.kill()
                slot.proc.join(5)
            if slot.proc.is_alive():
                continue
            code = slot.proc.exitcode
            young = now - slot.started < YOUNG_S and code != 0
            slot.backoff = min(max(slot.backoff * 2, 0.5), 
                self.cfg.supervisor.restart_backoff_max_s) if young else 0.0
            if code != 0:
                log.error("query worker %d (pid %s) died with exit code %s; starting another "
                          "in %.1fs", slot.index, slot.proc.pid, code, slot.backoff)
            slot.restart_at = now + slot.backoff
            slot.proc = None
            slot.connected = False
            self.by_wid.pop(slot.wid, None)
            self.replaced += 1
            lost.append(slot)
        return lost

    def stop_all(self, timeout: float) -> None:
        procs = [s.proc for s in self.slots if s.proc is not None]
        for p in procs:
            if p.is_alive():
                p.terminate()          # SIGTERM: the worker interrupts its statement and leaves
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                log.error("query worker (pid %s) did not stop within %.0fs; killing it",
                          p.pid, timeout)
                p.kill()
                p.join(5)
