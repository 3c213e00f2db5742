"""Maintenance and alert commands of the query socket.

``cleanup``, ``archive``, ``restore``, ``optimize``, ``summarize`` and
``dataset.export`` start a job in the scheduler process and return its id at
once; ``jobs`` reports progress (the tool polls it to draw a progress bar).
``storage`` and ``archives`` read what is there. ``alerts.ack`` and
``alerts.resolve`` go to the writer, which is the only one that writes.
Everything here that writes, starts a job or stops the daemon is registered
``admin=True``.
"""
from __future__ import annotations

import os
import time

import zmq

from linkband_history import rpc
from linkband_history.protocol import ok
from linkband_historyd.archive.archiver import list_parts
from linkband_historyd.commands.base import CommandError, command
from linkband_historyd.query import params as P
from linkband_historyd.security import curve_auth
from linkband_historyd.storage import maintenance
from linkband_historyd.writer_client import WriterClient, WriterError

_ctx = None


def _scheduler(ctx, op: str, params: dict, timeout: float = 10.0) -> dict:
    global _ctx
    _ctx = _ctx or zmq.Context()
    with curve_auth.requester(_ctx, ctx.cfg.daemon.scheduler_endpoint, timeout) as scheduler:
        try:
            return scheduler.call(op, params)
        except rpc.Timeout:
            raise CommandError("unavailable", "the scheduler did not answer "
                                              "(is scheduler.enabled true?)") from None
        except rpc.RpcError as exc:
            raise CommandError(exc.code, str(exc)) from None


def _start(ctx, job: str, params: dict | None = None) -> dict:
    reply = _scheduler(ctx, "run", {"job": job, "params": params or {}})
    return ok(reply["rows"])


def policy(v):
    if not isinstance(v, dict) or not v:
        raise ValueError("must be a map of kind (metric, performance, log, alert, minute, "
                         "summary) to days")
    out = {}
    for k, days in v.items():
        if k not in ("metric", "performance", "log", "alert", "minute", "summary"):
            raise ValueError(f"unknown kind {k!r}")
        if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
            raise ValueError(f"{k}: days must be a number >= 0")
        out[k] = float(days)
    return out


policy.json_schema = {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                      "description": "{kind: days}, kind one of metric, performance, log, "
                                     "alert, minute, summary"}


def kind(v):
    if v not in ("metric", "performance", "log", "alert"):
        raise ValueError("must be metric, performance, log or alert")
    return v


kind.json_schema = {"enum": ["metric", "performance", "log", "alert"]}


def month(v):
    s = str(v)
    if len(s) != 7 or s[4] != "-" or not (s[:4] + s[5:]).isdigit():
        raise ValueError("must be YYYY-MM")
    return s


month.json_schema = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}


FORCE_UNDER_DAYS = 1 / 24     # a policy that deletes the last hour is a slip more often than not


@command("cleanup", "apply retention now (policy: {kind: days} overrides the configured days; "
         "under one hour needs force=true); dry_run=true counts what would go and deletes "
         "nothing; returns a job id", policy=policy, dry_run=P.boolean, force=P.boolean,
         admin=True, route="POST /cleanup")
def cmd_cleanup(ctx, p):
    pol = p.get("policy") or {}
    recent = sorted(k for k, days in pol.items() if 0 < days < FORCE_UNDER_DAYS)
    if recent and not p.get("force"):
        raise P.BadParam("policy", f"{', '.join(recent)}: under one hour would delete recent "
                                   "data; pass force=true if that is meant (dry_run=true shows "
                                   "what would go)")
    if p.get("dry_run"):
        return ok([maintenance.retention_preview(ctx.conn, ctx.cfg, time.time(), pol)])
    return _start(ctx, "retention", {"policy": p.get("policy")})


@command("archive", "archive (and remove) detail past its retention now; returns a job id",
         kind=kind, admin=True, route="POST /archive")
def cmd_archive(ctx, p):
    return _start(ctx, "archive", p)


@command("restore", "bring an archived month back for querying; returns a job id",
         kind=kind, month=month, admin=True, route="POST /restore")
def cmd_restore(ctx, p):
    if "kind" not in p or "month" not in p:
        raise P.BadParam("month", "restore needs kind and month (YYYY-MM)")
    return _start(ctx, "restore", p)


@command("optimize", "ANALYZE, FTS merge and incremental vacuum now; returns a job id",
         admin=True, route="POST /optimize")
def cmd_optimize(ctx, p):
    return _start(ctx, "optimize")


@command("vacuum", "a full VACUUM (rewrites the file; ingestion waits, nothing is lost); "
         "returns a job id", admin=True, route="POST /vacuum")
def cmd_vacuum(ctx, p):
    return _start(ctx, "vacuum")


@command("summarize", "fold new rows into the summary tiers now; returns a job id", admin=True,
         route="POST /summarize")
def cmd_summarize(ctx, p):
    return _start(ctx, "summarize")


@command("dataset.export", "write the rows new since the last export into a Parquet dataset "
         "now: the configured dataset.dir, or dir (since: where a new dataset starts); "
         "returns a job id", since=P.time_value, dir=P.text, kind=kind, admin=True,
         route="POST /dataset")
def cmd_dataset_export(ctx, p):
    if not (p.get("dir") or ctx.cfg.dataset.dir):
        raise P.BadParam("dir", "dataset.dir is not set: give the dataset's directory")
    if p.get("dir") and not os.path.isabs(p["dir"]):   # else it lands in the daemon's cwd
        raise P.BadParam("dir", "must be an absolute path (the tool makes its --dir absolute)")
    return _start(ctx, "dataset", p)


@command("jobs", "state and progress of maintenance jobs (id: one of them)", id=P.text,
         route="GET /jobs", columns=("id", "state", "queued", "finished", "result"))
def cmd_jobs(ctx, p):
    reply = _scheduler(ctx, "jobs", {"id": p.get("id")})
    return ok(reply["rows"], None, scheduled=reply.get("scheduled", []), pid=reply.get("pid"),
              totals=reply.get("totals", {}))


@command("archives", "the archive files, per kind and month", kind=kind, month=month,
         route="GET /archives", columns=("kind", "month", "part", "rows", "bytes", "complete", "file"))
def cmd_archives(ctx, p):
    return ok(list_parts(ctx.cfg.archive.dir, p.get("kind"), p.get("month")))


@command("storage", "size per table and index, free disk, oldest and newest record per kind, "
         "archives", route="GET /storage")
def cmd_storage(ctx, p):
    return ok([maintenance.storage(ctx.conn, ctx.cfg, ctx.cfg.archive.dir)])


def _signal_supervisor(ctx, name: str) -> None:
    import os
    import signal
    sig = getattr(signal, name, None)
    if sig is None:
        raise CommandError("unsupported", f"{name} does not exist on this platform; "
                                          "restart the service instead")
    os.kill(ctx.supervisor_pid, sig)        # a query worker's parent is the query process


@command("reload", "reload the configuration (like SIGHUP): each changed option is applied "
         "live, by restarting the child that uses it, or kept until the daemon restarts, as "
         "the option declares; the reply names them; ingestion goes on", admin=True,
         route=None)
def cmd_reload(ctx, p):
    from linkband_historyd.config import ConfigError, reload_file, reload_plan
    try:
        new = reload_file(ctx.cfg)
    except ConfigError as exc:
        raise CommandError("bad_config", f"reload refused, the configuration stays as it "
                                         f"was: {exc}") from None
    # compared with the configuration this process started with
    plan = reload_plan(ctx.cfg, new)
    _signal_supervisor(ctx, "SIGHUP")
    return ok([{"reloading": True, **plan.as_reply()}])


@command("stop", "stop the daemon (like SIGTERM): the writer drains and commits first",
         admin=True, route=None)
def cmd_stop(ctx, p):
    _signal_supervisor(ctx, "SIGTERM")
    return ok([{"stopping": True}])


def _alert_update(ctx, p, field):
    if "alert_id" not in p:
        raise P.BadParam("alert_id", "required")
    w = WriterClient(ctx.cfg.daemon.control_endpoint, timeout=10.0)
    try:
        return ok([w.call("alerts.update", alert_id=p["alert_id"], field=field,
                          at=p.get("at", time.time()))])
    except WriterError as exc:
        code = "bad_param" if "no alert" in str(exc) else "unavailable"
        raise CommandError(code, str(exc)) from None
    finally:
        w.close()


@command("alerts.ack", "acknowledge an alert by alert_id", alert_id=P.text, at=P.time_value,
         admin=True, route="POST /alerts/ack")
def cmd_alerts_ack(ctx, p):
    return _alert_update(ctx, p, "acknowledged_at")


@command("alerts.resolve", "resolve an alert by alert_id", alert_id=P.text, at=P.time_value,
         admin=True, route="POST /alerts/resolve")
def cmd_alerts_resolve(ctx, p):
    return _alert_update(ctx, p, "resolved_at")
