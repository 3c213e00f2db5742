"""The scheduler process: summaries, retention, archives, budget, optimize, dataset.

An APScheduler 3 ``BlockingScheduler`` in its own process, in-memory job store,
``coalesce=True, max_instances=1``. It reads the database freely (WAL, its own
read-only connections) and hands every write to the writer, in bounded chunks
(``writer_client``), so ingestion latency stays low while it works.

It also answers the query process on an internal REP socket
(``daemon.scheduler_endpoint``, over ``linkband_history.rpc``): ``run`` starts a
job now (cleanup with a policy, archive, restore, optimize, summarize, dataset) and
returns its id; ``jobs`` reports the state and progress of recent runs, and the
runs of each job finished and failed since the scheduler started. A short
internal job serves that socket and watches the stop flag, so signals still
only set a flag.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import Counter
from datetime import timezone

import zmq
from apscheduler.schedulers.blocking import BlockingScheduler

from linkband_history import rpc
from linkband_history.protocol import ok
from linkband_historyd.processes.skeleton import Child
from linkband_historyd.rollups.summarizer import Summarizer
from linkband_historyd.security.sockets import bind
from linkband_historyd.settings import Settings
from linkband_historyd.storage import conversion, maintenance, schema
from linkband_historyd.writer_client import WriterClient

JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
KEEP_RUNS = 100
JOBS: dict[str, bool] = {}        # the jobs ``run`` may start: name -> exclusive


def job(name: str, exclusive: bool = False):
    """Declare a method of :class:`Jobs` as the job ``name`` (the method's own name).
    ``exclusive`` jobs never overlap each other (archive, retention, ...); every job
    runs one at a time."""
    def register(fn):
        if fn.__name__ != name:
            raise ValueError(f"job {name!r} must be the method of that name, not {fn.__name__}")
        JOBS[name] = exclusive
        return fn
    return register


# what a job that reads or deletes rows by id or time answers while the writer still
# converts schema 6's rows (they are not in the views yet): it runs again next time
CONVERTING = {"skipped": "the writer is converting old rows to the current schema"}


class Jobs:
    """What each job does, given a read connection, a writer client and ``now``.

    Kept apart from the process so tests call them with a frozen clock.
    """

    def __init__(self, cfg: Settings, archiver_factory=None):
        self.cfg = cfg
        self.archiver_factory = archiver_factory

    def archiver(self, conn, writer):
        if self.archiver_factory is None or not self.cfg.archive.enabled:
            return None
        return self.archiver_factory(conn, writer, self.cfg)

    @job("summarize")
    def summarize(self, conn, writer, now, params=None, progress=None):
        if conversion.pending(conn):
            return CONVERTING
        total = {}
        for _ in range(100):                      # catch up in bounded runs
            r = Summarizer(conn, writer).run(now)
            for k, v in r["rows_seen"].items():
                total[k] = total.get(k, 0) + v
            if progress:
                progress("summarize", sum(total.values()))
            if not r["rows_seen"]:
                break
        return {"rows_seen": total}

    @job("retention", exclusive=True)
    def retention(self, conn, writer, now, params=None, progress=None):
        if conversion.pending(conn):
            return CONVERTING
        policy = (params or {}).get("policy")
        out = maintenance.retention(conn, writer, self.cfg, now, self.archiver(conn, writer),
                                    policy, progress)
        out["budget"] = maintenance.enforce_budget(conn, writer, self.cfg, now,
                                                   self.archiver(conn, writer), progress)
        return out

    @job("budget", exclusive=True)
    def budget(self, conn, writer, now, params=None, progress=None):
        if conversion.pending(conn):
            return CONVERTING
        return maintenance.enforce_budget(conn, writer, self.cfg, now, self.archiver(conn, writer),
                                          progress)

    @job("trend_watch")
    def trend_watch(self, conn, writer, now, params=None, progress=None):
        from linkband_historyd.trends.watch import watch
        return watch(conn, writer, self.cfg, now)

    @job("optimize", exclusive=True)
    def optimize(self, conn, writer, now, params=None, progress=None):
        return maintenance.optimize(writer, progress)

    @job("vacuum", exclusive=True)
    def vacuum(self, conn, writer, now, params=None, progress=None):
        return writer.call("vacuum", timeout=6 * 3600)

    @job("archive", exclusive=True)
    def archive(self, conn, writer, now, params=None, progress=None):
        arch = self.archiver(conn, writer)
        if arch is None:
            raise RuntimeError("archiving is not enabled (archive.enabled)")
        if conversion.pending(conn):
            return CONVERTING
        return arch.archive_due(now, (params or {}).get("kind"), progress=progress)

    @job("restore", exclusive=True)
    def restore(self, conn, writer, now, params=None, progress=None):
        arch = self.archiver(conn, writer)
        if arch is None:
            raise RuntimeError("archiving is not enabled (archive.enabled)")
        params = params or {}
        return arch.restore(params["kind"], params["month"], now, progress=progress)

    @job("dataset", exclusive=True)     # never beside a restore, whose rows it leaves out
    def dataset(self, conn, writer, now, params=None, progress=None):
        params = params or {}
        root = params.get("dir") or self.cfg.dataset.dir
        if not root:
            raise RuntimeError("no dataset directory: set dataset.dir, or give dir")
        if conversion.pending(conn):                # its watermark would pass unconverted rows
            return CONVERTING
        try:        # pyarrow only where a dataset is written
            from linkband_historyd.dataset import exporter
        except ImportError:
            from linkband_historyd.dataset import missing_dependency
            raise RuntimeError(missing_dependency()) from None
        kinds = [params["kind"]] if params.get("kind") else None
        return exporter.export(conn, writer, root, self.cfg.dataset.host,
                               self.cfg.dataset.rows_per_part, params.get("since"), kinds, progress)


class Scheduler(Child):
    name = "scheduler"
    tick = 0.2

    def initialize(self) -> None:
        cfg = self.cfg
        if hasattr(os, "nice"):
            os.nice(10)                 # maintenance yields the CPU to the writer and the SDK
        from linkband_historyd.archive.archiver import Archiver  # zstandard only where archives are made
        self.jobs = Jobs(cfg, Archiver)
        self.runs: dict[str, dict] = {}
        self.finished: Counter = Counter()       # (job, "done" | "failed") -> runs
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._exclusive = threading.Lock()        # archive/retention/... never overlap
        self._one_at_a_time = {n: threading.Lock() for n in JOBS}   # nor two runs of a job
        self.ctx = zmq.Context()
        self.handlers = rpc.Handlers(run=self.start_run, jobs=self.list_runs)
        self.control = self.ctx.socket(zmq.REP)
        self.control.setsockopt(zmq.LINGER, 0)
        bind(self.control, cfg.daemon.scheduler_endpoint, cfg.daemon.runtime_dir)
        self.sched = BlockingScheduler(job_defaults=JOB_DEFAULTS, timezone=timezone.utc)
        s = self.sched
        s.add_job(self.run_job, "interval", seconds=cfg.scheduler.summaries_interval_s,
                  args=["summarize"], id="summarize")   # first run after one interval
        s.add_job(self.run_job, "interval", seconds=cfg.scheduler.retention_interval_s,
                  args=["retention"], id="retention", next_run_time=_soon(30))
        s.add_job(self.run_job, "interval", seconds=cfg.scheduler.budget_interval_s,
                  args=["budget"], id="budget", next_run_time=_soon(10))
        if cfg.trends.watch:
            s.add_job(self.run_job, "interval", seconds=cfg.trends.bucket_s, args=["trend_watch"],
                      id="trend_watch", next_run_time=_soon(5))
        if cfg.dataset.dir:
            s.add_job(self.run_job, "interval", seconds=cfg.dataset.interval_s, args=["dataset"],
                      id="dataset", next_run_time=_soon(60))
        hour, minute = (int(x) for x in cfg.scheduler.optimize_at.split(":"))
        from tzlocal import get_localzone  # apscheduler's own dependency
        s.add_job(self.run_job, "cron", hour=hour, minute=minute, timezone=get_localzone(),
                  args=["optimize"], id="optimize")
        s.add_job(self.serve, "interval", seconds=self.tick, id="control", max_instances=1)
        self.collector_client = None
        if cfg.collector.enabled:
            from linkband_history import HistoryClient
            from linkband_historyd.collector.system_metrics import SystemCollector
            from linkband_historyd.security import curve_auth
            collector = SystemCollector(process_names=cfg.collector.process_names,
                                        pids=cfg.collector.pids,
                                        mounts=cfg.collector.mounts or None,
                                        interval=cfg.collector.interval_s)
            self.collector_client = HistoryClient(ingest=cfg.ingest.endpoint,
                                                  query=cfg.query.endpoint,
                                                  **curve_auth.self_client_options(cfg))
            s.add_job(collector.push, "interval", seconds=cfg.collector.interval_s,
                      args=[self.collector_client], id="collector", next_run_time=_soon(0.5))
        logging.getLogger("apscheduler").setLevel(logging.WARNING)   # no line per job run
        self.log.info("scheduler ready: %s", cfg.daemon.scheduler_endpoint)

    def loop_once(self) -> None:
        self.sched.start()                         # returns after serve() shut it down
        self.stop_requested = True

    # -- running jobs ------------------------------------------------------------
    def run_job(self, name: str, params: dict | None = None, run_id: str | None = None):
        run_id = run_id or self._new_run(name, params)
        run = self.runs[run_id]
        run.update(state="running", started=time.time())
        conn = schema.open_reader(self.cfg.daemon.db_path)
        writer = WriterClient(self.cfg.daemon.control_endpoint, ctx=self.ctx)

        def progress(what, n):
            run["progress"] = {"step": what, "count": n, "time": time.time()}

        try:
            with self._exclusive if JOBS[name] else self._one_at_a_time[name]:
                run["result"] = getattr(self.jobs, name)(conn, writer, time.time(), params,
                                                         progress)
            run["state"] = "done"
        except Exception as exc:                   # a job failure is reported, never fatal
            self.log.exception("job %s failed", name)
            run.update(state="failed", error=f"{exc.__class__.__name__}: {exc}")
        finally:
            run["finished"] = time.time()
            self.finished[name, run["state"]] += 1
            writer.close()
            conn.close()
        return run.get("result")

    def _new_run(self, name: str, params) -> str:
        with self._lock:
            run_id = f"{name}-{next(self._ids)}"
            self.runs[run_id] = {"id": run_id, "job": name, "params": params or {},
                                 "state": "queued", "queued": time.time()}
            while len(self.runs) > KEEP_RUNS:
                self.runs.pop(next(iter(self.runs)))
        return run_id

    # -- the control socket and the stop flag -----------------------------------------
    def serve(self) -> None:
        if self.stop_requested or self.parent_gone():
            self.sched.shutdown(wait=False)
            return
        self.beat()             # every tick: the scheduler's loop (not a job) is alive
        while self.control.poll(0):
            # whatever goes wrong answering is the request's fault: a bad_request reply
            self.control.send(self.handlers.answer(self.control.recv(), bad_request=(Exception,)))

    def start_run(self, params: dict) -> dict:
        """``run``: queue the job ``params["job"]`` (with ``params["params"]``) now."""
        name = params.get("job")
        if name not in JOBS:
            raise rpc.RpcError("bad_param", f"job must be one of {', '.join(JOBS)}")
        run_id = self._new_run(name, params.get("params"))
        self.sched.add_job(self.run_job, "date", args=[name, params.get("params"), run_id],
                           id=run_id)
        return ok([self.runs[run_id]])

    def list_runs(self, params: dict) -> dict:
        """``jobs``: recent runs (or the one ``params["id"]``), newest first, and the
        next scheduled time of each job; ``totals``: per job, the runs done and failed
        since this process started."""
        wanted = params.get("id")
        rows = [r for r in self.runs.values() if wanted in (None, r["id"])]
        scheduled = [{"id": j.id, "next_run": j.next_run_time.timestamp()
                      if j.next_run_time else None} for j in self.sched.get_jobs()
                     if j.id in JOBS]
        totals = {n: {"done": self.finished[n, "done"], "failed": self.finished[n, "failed"]}
                  for n in JOBS}
        return ok(rows[::-1], None, scheduled=scheduled, totals=totals, pid=os.getpid())

    def shutdown(self) -> None:
        if self.collector_client is not None:
            self.collector_client.close(timeout=2.0)
        self.control.close(0)
        # A job may still be waiting on the writer (which may be gone too). Every
        # job is safe to cut anywhere (its writes are transactions of the writer,
        # archives finish from their manifests), so exit now instead of joining
        # its thread: a stop, or a supervisor's death, is never held up by a job.
        self.log.debug("scheduler stopped")
        logging.shutdown()
        os._exit(0)


def _soon(seconds: float):
    from datetime import datetime
    return datetime.fromtimestamp(time.time() + seconds, timezone.utc)
