"""Retention, size budget, optimize and the storage report (scheduler jobs).

Every function reads through ``conn`` (read-only) and writes only through
``writer`` (the writer process), in bounded chunks, and takes ``now`` so that
tests run them with a frozen clock.

Retention, like journald and Prometheus: detail rows older than their kind's
``retention.<kind>_days`` go (archived first when archiving is on, see
``archiver``); summaries older than ``retention.summary_days`` (the minute tier:
``retention.minute_days``) go. Independently, when the database is larger than
``retention.max_db_bytes`` or the disk's free share falls under
``retention.min_free_percent``, the oldest detail goes first, a day at a time,
until it fits; a ``storage_warning`` is published and recorded when a threshold
is crossed.
"""
from __future__ import annotations

import logging
import os
import shutil
import time

from linkband_historyd.settings import Settings
from linkband_historyd.storage import fts_merger, schema

log = logging.getLogger("linkband_historyd.storage.maintenance")
KINDS = ("metric", "performance", "log", "alert")
DELETE_CHUNK = 5_000
VACUUM_PAGES = 48               # the most one call hands back (the writer paces it on the clock)
FTS_MERGE_PAGES = fts_merger.MAX_PAGES * 4      # the most one call merges (paced as well)


def delete_older(writer, kind: str, before: float, progress=None, **where) -> int:
    """Delete every row of ``kind`` with timestamp < before, chunk by chunk
    (``where``: after, min_id, max_id, keep -- see write_ops.op_delete)."""
    total = 0
    while True:
        r = writer.bulk("delete", kind=kind, before=before, limit=DELETE_CHUNK, **where)
        total += r["deleted"]
        if progress:
            progress(kind, total)
        if r.get("done") or r["deleted"] == 0:
            return total


SUMMARY_TIERS = ("minute", "hourly", "daily", "weekly", "monthly")
HOLDS_KEY = "restores"          # writer_state key of the restored months and their id ranges


def held_ranges(conn, kind: str) -> list[list[int]]:
    """The id ranges of ``kind`` that a restore brought back: retention keeps them."""
    return [[h["first_id"], h["last_id"]] for h in schema.read_state(conn, HOLDS_KEY, [])
            if h["kind"] == kind]


def keep_sql(keep) -> tuple[str, list]:
    """`` AND id NOT BETWEEN ? AND ?`` per kept range, and its arguments."""
    where, args = "", []
    for lo, hi in keep or ():
        where += " AND id NOT BETWEEN ? AND ?"
        args += [lo, hi]
    return where, args


def retention_cutoffs(cfg: Settings, now: float, policy: dict | None = None) -> tuple[dict, dict]:
    """(kind -> cutoff, summary tier -> cutoff) of the age policy: rows older than
    the cutoff go. ``policy`` ({kind or "minute"/"summary": days}) overrides the
    configured days; 0 days keeps a kind for ever."""
    policy = policy or {}
    kinds = {k: now - d * 86400 for k in KINDS
             if (d := policy.get(k, getattr(cfg.retention, f"{k}_days")))}
    tiers = {}
    for tier in SUMMARY_TIERS:
        key = "minute" if tier == "minute" else "summary"
        d = policy.get(key, getattr(cfg.retention, f"{key}_days"))
        if d:
            tiers[tier] = now - d * 86400
    return kinds, tiers


def retention(conn, writer, cfg: Settings, now: float, archiver=None, policy: dict | None = None,
              progress=None) -> dict:
    """Apply the age policy (``policy`` overrides the configured days per kind)."""
    done = {}
    kinds, tiers = retention_cutoffs(cfg, now, policy)
    for kind, cutoff in kinds.items():
        keep = []
        if archiver is not None:
            done[f"{kind}_archived"] = archiver.archive_before(kind, cutoff, progress=progress)
            keep = archiver.held_ranges(kind)
        done[kind] = delete_older(writer, kind, cutoff, progress=progress, keep=keep)
    for tier, cutoff in tiers.items():
        total = 0
        while True:
            n = writer.bulk("summaries.delete", summary_type=tier, before=cutoff,
                            limit=DELETE_CHUNK)["deleted"]
            total += n
            if n == 0:
                break
        done[f"summaries_{tier}"] = total
    return done


def retention_preview(conn, cfg: Settings, now: float, policy: dict | None = None) -> dict:
    """What :func:`retention` would delete now, counted and nothing deleted (a dry
    run): rows per kind (restored months are kept, as the real run keeps them) and
    summaries per tier, with the cutoffs."""
    kinds, tiers = retention_cutoffs(cfg, now, policy)
    out = {"dry_run": True, "cutoffs": {**kinds, **{f"summaries_{t}": c for t, c in tiers.items()}}}
    for kind, cutoff in kinds.items():
        where, args = keep_sql(held_ranges(conn, kind))
        out[kind] = conn.execute(f"SELECT count(*) FROM {schema.TABLES[kind]} WHERE timestamp < ?"
                                 f"{where}", [cutoff] + args).fetchall()[0][0]
    for tier, cutoff in tiers.items():
        out[f"summaries_{tier}"] = conn.execute(
            "SELECT count(*) FROM data_summaries WHERE summary_type = ? AND period_start < ?",
            (tier, cutoff)).fetchall()[0][0] + conn.execute(
            "SELECT count(*) FROM metric_rollups WHERE tier = ? AND bucket < ?",
            (tier, cutoff)).fetchall()[0][0]
    return out


def db_bytes(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def used_bytes(conn) -> int:
    """Bytes the database really uses (its size less the free pages)."""
    page = conn.execute("PRAGMA page_size").fetchall()[0][0]
    count = conn.execute("PRAGMA page_count").fetchall()[0][0]
    free = conn.execute("PRAGMA freelist_count").fetchall()[0][0]
    return (count - free) * page


def free_share(path: str) -> tuple[int, float]:
    du = shutil.disk_usage(os.path.dirname(path) or ".")
    return du.free, 100.0 * du.free / du.total


def oldest(conn, kind: str):
    t = schema.TABLES[kind]
    return conn.execute(f"SELECT min(timestamp) FROM {t}").fetchall()[0][0]


def enforce_budget(conn, writer, cfg: Settings, now: float, archiver=None, progress=None) -> dict:
    """Delete the oldest detail, a day at a time, while over the size budget or
    under the free-disk share. Returns what happened (and warns when it had to act)."""
    limit = cfg.retention.max_db_bytes
    min_free = cfg.retention.min_free_percent
    path = cfg.daemon.db_path
    removed = {}
    rounds = 0
    while rounds < 10_000:
        used = used_bytes(conn)
        free, share = free_share(path)
        over = (limit and used > limit) or (min_free and share < min_free)
        if not over:
            break
        if rounds == 0:
            warn(writer, "size_budget" if limit and used > limit else "low_disk",
                 used=used, limit=limit, free_bytes=free, free_percent=share, now=now)
        starts = [(oldest(conn, k), k) for k in KINDS]
        starts = [(t, k) for t, k in starts if t is not None]
        if not starts:
            break
        t0 = min(t for t, _ in starts)
        cutoff = t0 + 86400
        before = sum(removed.values())
        for _, kind in starts:
            keep = []
            if archiver is not None:
                archiver.archive_before(kind, cutoff, progress=progress)
                keep = archiver.held_ranges(kind)
            removed[kind] = removed.get(kind, 0) + delete_older(writer, kind, cutoff,
                                                                progress=progress, keep=keep)
        vacuum(writer)
        rounds += 1
        if sum(removed.values()) == before:
            break                                   # nothing left that may go (held rows)
    return {"removed": removed, "rounds": rounds}


def warn(writer, reason: str, now: float, **details) -> None:
    """Publish and record a storage_warning (once per crossing, by the caller)."""
    payload = {"reason": reason, "time": now, **details}
    log.warning("storage_warning: %s", payload)
    writer.call("publish", topic="storage_warning", payload=payload)
    writer.call("state.set", key="storage_warning", value=payload)


def optimize(writer, progress=None) -> dict:
    """ANALYZE where useful, merge FTS segments, hand free pages back to the disk."""
    # one index per call: the first ANALYZE of a big database reads every entry
    targets = writer.call("maintenance", step="analyze_plan")["targets"]
    for target in targets:
        writer.bulk("maintenance", step="analyze", target=target)
    out = {"analyze": {"analyzed": targets}}
    merged = 0
    for _ in range(20_000):                    # bounded calls; each is short
        r = writer.bulk("maintenance", step="fts_merge", pages=FTS_MERGE_PAGES)
        merged += 1
        if progress:
            progress("fts_merge", merged)
        if r.get("changed", 0) <= 1:
            break
    out["fts_merge_steps"] = merged
    out["vacuum"] = vacuum(writer)
    return out


def vacuum(writer, max_steps: int = 100_000) -> dict:
    """Hand free pages back to the disk, VACUUM_PAGES per step: each moved page rewrites
    its parent and pointer-map pages, so a step costs far more than its page count says."""
    first = last = None
    for _ in range(max_steps):
        r = writer.bulk("maintenance", step="incremental_vacuum", pages=VACUUM_PAGES)
        first = r["free_pages_before"] if first is None else first
        last = r["free_pages_after"]
        if last == 0 or last == r["free_pages_before"]:
            break
    return {"free_pages_before": first, "free_pages_after": last}


def storage(conn, cfg: Settings, archive_dir: str | None = None) -> dict:
    """Size per table and index, free disk, oldest and newest record per kind, archives."""
    path = cfg.daemon.db_path
    sizes = {}
    try:
        for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name "
                                       "ORDER BY 2 DESC"):
            sizes[name] = size
    except Exception:                           # dbstat not compiled in: page counts only
        sizes = {}
    records = {}
    for kind in KINDS:
        t = schema.TABLES[kind]
        lo, hi = conn.execute(f"SELECT min(timestamp), max(timestamp) FROM {t}").fetchall()[0]
        records[kind] = {"oldest": lo, "newest": hi}
    free, share = free_share(path)
    archives = {"files": 0, "bytes": 0}
    if archive_dir and os.path.isdir(archive_dir):
        for f in os.listdir(archive_dir):
            if f.endswith(".lbha"):
                archives["files"] += 1
                archives["bytes"] += os.path.getsize(os.path.join(archive_dir, f))
    return {"database_bytes": db_bytes(path), "used_bytes": used_bytes(conn), "objects": sizes,
            "free_bytes": free, "free_percent": share, "records": records, "archives": archives,
            "max_db_bytes": cfg.retention.max_db_bytes,
            "last_storage_warning": schema.read_state(conn, "storage_warning"),
            "time": time.time()}
