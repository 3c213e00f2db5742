"""The export: each kind's rows past its watermark into new parts of a dataset.

A *target* is a dataset directory and a host name. Per target and kind the
*watermark* is the highest row id already in the dataset (ids only grow: the
tables are AUTOINCREMENT). A run reads the rows above it in id order, in pages
bounded in rows and bytes (short read transactions: the WAL is never pinned),
and writes them as parts: a part holds the rows ``W < id <= X``, ``X`` the id of
the ``rows_per_part``-th row above ``W``, one file per UTC date, all named
``part-<W+1>`` (``layout``); then the watermark moves to ``X``.

The watermarks live in the database (``writer_state``, key ``dataset``), written
by the writer like every write; this module only reads the database. They belong
there because an id means something only in the database that gave it (a
restored or replaced database brings its own), and because a shared directory (a
network share, a synced folder) then only ever gets new files, never one state
file rewritten every run, which syncing tools turn into conflicting copies.

Crash repair: files appear before their watermark moves, so a crash between the
two leaves a part written and its rows still above the watermark. The next run
computes the same part's name (``part-<W+1>``) and the date of its first row; the
file of that date is the first a part renames (``part_files``), so if any file
of the part exists, that one does. Its metadata gives the part's last id: the run
writes the same part again over the same names and only then moves the
watermark. No row is written twice or missed. Each target has a random *token*,
saved before its first file and written into every file, so files another
database left under the same host name are never taken for this one's (the run
stops with a clear error instead).

Left out: rows a restore brought back (the held id ranges and the ones noted for
the summary job): their originals were exported under their first ids.
"""
from __future__ import annotations

import os
import stat
import uuid

from linkband_historyd.dataset import layout
from linkband_historyd.dataset.part_files import PartFiles, read_metadata
from linkband_historyd.storage import restored_ranges, schema
from linkband_historyd.storage.maintenance import held_ranges, keep_sql

STATE_KEY = "dataset"
PAGE_ROWS = 65_536
PAGE_BYTES = 32 * 1024 * 1024


def export(conn, writer, root: str, host: str, rows_per_part: int, since: float | None = None,
           kinds=None, progress=None) -> dict:
    """Write every new row of ``kinds`` (default: all) into the dataset at ``root``
    as ``host``. ``since`` (epoch seconds) applies to a target's first export:
    the dataset then holds the rows timestamped at or after it."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        os.makedirs(root, mode=0o700, exist_ok=True)
    mode = stat.S_IMODE(os.stat(root).st_mode) if os.name == "posix" else 0o700
    target = _target(conn, writer, root, host, since)
    done = {}
    for kind in kinds or layout.KINDS:
        done[kind] = KindExport(conn, writer, root, host, target, kind, rows_per_part,
                                mode).run(progress)
    return {"dir": root, "host": host, "since": target["since"], "kinds": done}


def _key(root: str, host: str) -> str:
    return f"{host} {root}"


def _target(conn, writer, root: str, host: str, since: float | None) -> dict:
    state = schema.read_state(conn, STATE_KEY, {})
    target = state.get("targets", {}).get(_key(root, host))
    if target is None:
        target = {"dir": root, "host": host, "token": uuid.uuid4().hex,
                  "since": float(since or 0.0), "watermarks": {}}
        _save(conn, writer, root, host, target)      # before any file carries its token
    elif since is not None and since < target["since"]:
        raise layout.DatasetError(
            f"the dataset {root} (host {host}) started at {target['since']}; the rows before "
            "it are not exported there: give an earlier --since with another --dir")
    return target


def _save(conn, writer, root: str, host: str, target: dict) -> None:
    state = schema.read_state(conn, STATE_KEY, {})
    state.setdefault("targets", {})[_key(root, host)] = target
    writer.call("state.set", key=STATE_KEY, value=state)


class KindExport:
    """One kind of one target: :meth:`run` writes parts until the watermark is
    at the newest row."""

    def __init__(self, conn, writer, root, host, target, kind, rows_per_part, mode):
        self.conn, self.writer, self.root, self.host = conn, writer, root, host
        self.target, self.kind, self.mode = target, kind, mode
        self.rows_per_part = rows_per_part
        self.table = schema.TABLES[kind]
        self.columns = ", ".join(layout.COLUMNS[kind])
        # restored rows stay out; +timestamp: the filter never steers SQLite off the id order
        skip = held_ranges(conn, kind) + restored_ranges.load(conn).get(self.table, [])
        where, args = keep_sql(skip)
        since = float(target["since"])
        self.filters = (" AND +timestamp >= ?" if since else "") + where
        self.args = ([since] if since else []) + args

    def run(self, progress=None) -> dict:
        out = {"rows": 0, "parts": 0, "files": 0, "repaired": 0}
        watermark = self.target["watermarks"].get(self.kind, 0)
        while True:
            first = self.conn.execute(
                f"SELECT timestamp FROM {self.table} WHERE id > ?{self.filters} ORDER BY id "
                "LIMIT 1", [watermark, *self.args]).fetchall()
            if not first:
                break
            last = self._crashed_part(watermark + 1, first[0][0])
            if last is not None:
                out["repaired"] += 1
            else:
                last = self._part_end(watermark)
            rows, files = self._write(watermark, last, replace=out["repaired"] > 0, progress=progress)
            out["rows"] += rows
            out["files"] += files
            out["parts"] += 1
            watermark = self._move_watermark(last)
            if progress:
                progress(self.kind, out["rows"])
        out["watermark"] = watermark
        return out

    def _crashed_part(self, first_id: int, first_timestamp: float) -> int | None:
        """The last id of the part ``first_id`` when a crash left its files without
        the watermark, else None."""
        path = os.path.join(layout.part_dir(self.root, self.kind, self.host,
                                            layout.date_of(first_timestamp)),
                            layout.part_name(first_id))
        if not os.path.exists(path):
            return None
        meta = read_metadata(path)
        if meta.get(f"{layout.META_PREFIX}token") != self.target["token"]:
            raise layout.DatasetError(
                f"{path} was written by another database under the host name {self.host}: "
                "give this machine another dataset.host, or move those files away")
        return int(meta[f"{layout.META_PREFIX}last_id"])

    def _part_end(self, watermark: int) -> int:
        return self.conn.execute(
            f"SELECT max(id) FROM (SELECT id FROM {self.table} WHERE id > ?{self.filters} "
            "ORDER BY id LIMIT ?)", [watermark, *self.args, self.rows_per_part]).fetchall()[0][0]

    def _write(self, watermark: int, last: int, replace: bool, progress=None) -> tuple[int, int]:
        parts = PartFiles(self.root, self.kind, self.host, watermark + 1, last,
                          self.target["token"], self.mode, replace=replace)
        try:
            after = watermark
            while True:
                rows = self._page(after, last)
                if not rows:
                    break
                parts.write(rows)
                after = rows[-1][0]
            files = parts.commit()
        except BaseException:
            parts.abort()
            raise
        return parts.rows, len(files)

    def _page(self, after: int, last: int) -> list:
        """Rows after ``after`` up to ``last``: at most PAGE_ROWS, and no more once
        their text passes PAGE_BYTES (log lines and JSON may be long)."""
        cursor = self.conn.cursor()
        rows, size = [], 0
        try:
            for row in cursor.execute(
                    f"SELECT {self.columns} FROM {self.table} WHERE id > ? AND id <= ?"
                    f"{self.filters} ORDER BY id LIMIT ?", [after, last, *self.args, PAGE_ROWS]):
                rows.append(row)
                size += 8 * len(row) + sum(len(v) for v in row if type(v) is str)
                if size >= PAGE_BYTES:
                    break
        finally:
            cursor.close()
        return rows

    def _move_watermark(self, last: int) -> int:
        self.target["watermarks"][self.kind] = last
        _save(self.conn, self.writer, self.root, self.host, self.target)
        return last
