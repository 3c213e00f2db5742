"""Archives: detail past its retention moved, month by month, into archive files.

Each run writes, for every (kind, UTC month) with rows past the cutoff, one
*part*: ``<kind>-<YYYY-MM>-p<NNNN>.lbha`` beside its ``.manifest.json`` (format:
``archive_format``). Then the writer deletes exactly the archived rows, and a
``.done`` marker is written. The selection (time range and highest id) is kept
in the manifest's ``meta``, so the sequence is safe against a crash anywhere:

- before the manifest exists: the rows are still in the database, a leftover
  ``.tmp`` file is removed, the next run archives them again;
- manifest written, rows not (all) deleted: the next run finishes the deletion
  from the manifest's selection before anything else (ids only grow, so it
  deletes no other row), then writes ``.done``.

So no row is lost and none is archived twice. ``restore`` re-imports a month's
parts into the database (new ids) and holds them for ``archive.restore_days``:
retention leaves held rows alone; when the hold ends they are deleted again
(they are still in the archive). Without the daemon, read an archive with
``python -m linkband_historyd.archive.file_format dump FILE.lbha`` (and ``info``).
"""
from __future__ import annotations

import calendar
import glob
import json
import os
import re
from datetime import datetime, timezone

from linkband_history.protocol import FIELDS
from linkband_historyd.archive import file_format
from linkband_historyd.settings import Settings
from linkband_historyd.storage import schema
from linkband_historyd.storage.maintenance import HOLDS_KEY, delete_older, keep_sql
from linkband_historyd.storage.maintenance import held_ranges as _held_ranges
IMPORT_CHUNK = 5_000
_NAME = re.compile(r"^(metric|performance|log|alert)-(\d{4}-\d{2})-p(\d{4})$")


def month_of(t: float) -> str:
    d = datetime.fromtimestamp(t, timezone.utc)
    return f"{d.year:04d}-{d.month:02d}"


def month_range(month: str) -> tuple[float, float]:
    y, m = (int(x) for x in month.split("-"))
    start = calendar.timegm((y, m, 1, 0, 0, 0))
    y2, m2 = (y + 1, 1) if m == 12 else (y, m + 1)
    return float(start), float(calendar.timegm((y2, m2, 1, 0, 0, 0)))


def list_parts(directory: str, kind: str | None = None, month: str | None = None) -> list[dict]:
    """The archive parts in ``directory``, oldest month first."""
    out = []
    for man in sorted(glob.glob(os.path.join(directory, "*.manifest.json"))):
        base = man[: -len(".manifest.json")]
        m = _NAME.match(os.path.basename(base))
        if not m or (kind and m.group(1) != kind) or (month and m.group(2) != month):
            continue
        with open(man, encoding="utf-8") as f:
            manifest = json.load(f)
        out.append({"kind": m.group(1), "month": m.group(2), "part": int(m.group(3)),
                    "file": base + ".lbha", "rows": manifest["rows"],
                    "bytes": manifest["data_bytes"], "complete": os.path.exists(base + ".done"),
                    "created_at": manifest["created_at"], "meta": manifest["meta"]})
    return out


class Archiver:
    def __init__(self, conn, writer, cfg: Settings):
        self.conn = conn
        self.writer = writer
        self.cfg = cfg
        self.dir = cfg.archive.dir
        self.level = cfg.archive.level
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def parts(self, kind: str | None = None, month: str | None = None) -> list[dict]:
        return list_parts(self.dir, kind, month)

    # -- archiving -------------------------------------------------------------
    def archive_due(self, now: float, kind: str | None = None, progress=None) -> dict:
        """Archive (and delete) every kind's detail past its configured retention."""
        done = {}
        for k in ([kind] if kind else FIELDS):
            days = getattr(self.cfg.retention, f"{k}_days")
            if days:
                done[k] = self.archive_before(k, now - days * 86400, now=now, progress=progress)
        return done

    def archive_before(self, kind: str, cutoff: float, now: float | None = None, progress=None) -> int:
        self.finish_pending()
        if now is not None:
            self.expire_holds(now)
        table = schema.TABLES[kind]
        keep = self.held_ranges(kind)
        where, args = keep_sql(keep)
        max_id, lo = self.conn.execute(
            f"SELECT max(id), min(timestamp) FROM {table} WHERE timestamp < ?{where}",
            [cutoff] + args).fetchall()[0]
        if max_id is None:
            return 0
        total = 0
        month = month_of(lo)
        while True:
            start, end = month_range(month)
            if start >= cutoff:
                break
            sel = {"kind": kind, "after": start, "before": min(end, cutoff), "max_id": max_id,
                   "keep": keep}
            total += self._archive_part(kind, month, sel, progress)
            month = month_of(end)
        return total

    def _archive_part(self, kind: str, month: str, sel: dict, progress) -> int:
        table = schema.TABLES[kind]
        columns = ("id",) + FIELDS[kind]
        where, args = keep_sql(sel["keep"])
        query_args = [sel["after"], sel["before"], sel["max_id"]] + args
        n = self.conn.execute(f"SELECT count(*) FROM {table} WHERE timestamp >= ? AND timestamp < ? "
                              f"AND id <= ?{where}", query_args).fetchall()[0][0]
        if not n:
            return 0
        base = os.path.join(self.dir, f"{kind}-{month}-p{self._next_part(kind, month):04d}")
        rows = self._pages(f"SELECT {', '.join(columns)} FROM {table} WHERE timestamp >= ? "
                           f"AND timestamp < ? AND id <= ?{where}", query_args)
        manifest = file_format.write_archive(base, {table: (list(columns), rows)},
                                                {"selection": sel, "kind": kind, "month": month},
                                                level=self.level,
                                                threads=max(1, (os.cpu_count() or 2) - 1))
        self._delete_selection(sel, progress)
        with open(base + ".done", "w") as f:
            f.write("deleted\n")
        self.writer.call("publish", topic="archive_completed",
                         payload={"kind": kind, "month": month, "file": base + ".lbha",
                                  "rows": manifest["rows"], "bytes": manifest["data_bytes"]})
        return manifest["rows"]

    def _pages(self, select: str, args: list, page: int = 50_000):
        """The selection in (timestamp, id) order, one short read transaction per
        page: a long archive never pins the WAL (checkpoints go on meanwhile)."""
        after = None
        while True:
            extra, more = ("", []) if after is None else (" AND (timestamp, id) > (?, ?)", list(after))
            rows = self.conn.execute(f"{select}{extra} ORDER BY timestamp, id LIMIT ?",
                                     args + more + [page]).fetchall()
            yield from rows
            if len(rows) < page:
                return
            after = (rows[-1][1], rows[-1][0])

    def _delete_selection(self, sel: dict, progress=None) -> int:
        return delete_older(self.writer, sel["kind"], sel["before"], progress=progress,
                            after=sel["after"], max_id=sel["max_id"], keep=sel.get("keep") or [])

    def finish_pending(self) -> int:
        """Complete what a crash interrupted: leftover temp files, undeleted parts."""
        for tmp in glob.glob(os.path.join(self.dir, "*.tmp")):
            os.remove(tmp)
        n = 0
        for part in self.parts():
            if not part["complete"]:
                n += self._delete_selection(part["meta"]["selection"])
                with open(part["file"][: -len(".lbha")] + ".done", "w") as f:
                    f.write("deleted\n")
        return n

    def _next_part(self, kind: str, month: str) -> int:
        return max([p["part"] for p in self.parts(kind, month)], default=0) + 1

    # -- restoring -------------------------------------------------------------
    def restore(self, kind: str, month: str, now: float, progress=None) -> dict:
        if kind not in FIELDS or not re.match(r"^\d{4}-\d{2}$", str(month)):
            raise ValueError("restore needs kind (metric, performance, log, alert) and month YYYY-MM")
        parts = [p for p in self.parts(kind, month) if p["complete"]]
        if not parts:
            raise ValueError(f"no archive of {kind} for {month}")
        if any(h["kind"] == kind and h["month"] == month for h in self.holds()):
            raise ValueError(f"{kind} {month} is already restored")
        first = last = None
        count = 0
        for part in parts:
            for _table, columns, block in file_format.read_archive(part["file"]):
                for i in range(0, len(block), IMPORT_CHUNK):
                    rows = [list(r[1:]) for r in block[i:i + IMPORT_CHUNK]]     # without the id
                    r = self.writer.bulk("import", kind=kind, rows=rows)
                    first = r["first_id"] if first is None else first
                    last = r["last_id"]
                    count += r["imported"]
                    if progress:
                        progress("restore", count)
        hold = {"kind": kind, "month": month, "first_id": first, "last_id": last, "rows": count,
                "restored_at": now, "hold_until": now + self.cfg.archive.restore_days * 86400}
        self._save_holds(self.holds() + [hold])
        return hold

    def holds(self) -> list[dict]:
        return schema.read_state(self.conn, HOLDS_KEY, [])

    def held_ranges(self, kind: str) -> list[list[int]]:
        return _held_ranges(self.conn, kind)

    def expire_holds(self, now: float) -> int:
        holds = self.holds()
        keep, n = [], 0
        for h in holds:
            if h["hold_until"] <= now:
                # rows ingested while the restore ran have ids in the range too: only the
                # restored month goes
                after, before = month_range(h["month"])
                n += delete_older(self.writer, h["kind"], before, after=after,
                                  min_id=h["first_id"], max_id=h["last_id"])
            else:
                keep.append(h)
        if len(keep) != len(holds):
            self._save_holds(keep)
        return n

    def _save_holds(self, holds: list) -> None:
        self.writer.call("state.set", key=HOLDS_KEY, value=holds)
