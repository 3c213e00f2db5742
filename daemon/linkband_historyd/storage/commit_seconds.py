"""When each row was stored, to the second, without a column on every row.

The SDK's rows carry ``created_at`` (SQLite's ``CURRENT_TIMESTAMP``: the second
the row was stored). A column would add 8 bytes to every log line; instead the
table ``commit_seconds`` holds one row per kind and second in which the writer
stored rows of that kind: ``(kind, first_id, second)``, ``first_id`` the
lowest id stored in that second. Ids only grow (AUTOINCREMENT), so a row's
second is that of the entry with the greatest ``first_id`` at or below its id
(:func:`seconds_of`: one seek of the primary key per row). A writer storing rows all day
adds one entry per kind and second, a few dozen bytes; an idle one adds none.

Rows stored before schema 8, or moved by the conversion of schema 6, have no
entry at or below their id: their ``created_at`` is None (unknown), never a
wrong second. An SDK database being imported gives its own ``created_at``
(:meth:`CommitSeconds.note` with that second), so its rows keep it.

Retention prunes entries below the one that covers the oldest row left
(:meth:`CommitSeconds.prune`); the newest entry of a kind is never pruned, so
the writer's cache of it stays true.
"""
from __future__ import annotations

import json
import time

TABLE = """CREATE TABLE commit_seconds (
    kind TEXT NOT NULL,
    first_id INTEGER NOT NULL,
    second INTEGER NOT NULL,
    PRIMARY KEY (kind, first_id)
) STRICT, WITHOUT ROWID"""

# every id of a JSON array with its second (None: stored before entries were kept)
LOOKUP_MANY = ("SELECT j.value, (SELECT c.second FROM commit_seconds c WHERE c.kind = ? "
               "AND c.first_id <= j.value ORDER BY c.first_id DESC LIMIT 1) FROM json_each(?) j")
_NEWEST = "SELECT second FROM commit_seconds WHERE kind = ? ORDER BY first_id DESC LIMIT 1"
_ADD = "INSERT OR REPLACE INTO commit_seconds (kind, first_id, second) VALUES (?, ?, ?)"
_PRUNE = ("DELETE FROM commit_seconds WHERE kind = ? AND first_id < (SELECT coalesce(max(first_id), 0) "
          "FROM commit_seconds WHERE kind = ? AND first_id <= (SELECT coalesce(min(id), 9e18) FROM {table}))")

_UNKNOWN = object()


class CommitSeconds:
    """The writer's side: an entry when a kind's rows are stored in a new second.

    ``newest`` caches each kind's newest second (read once from the table);
    :meth:`forget` drops the cache after a rollback, which may have taken the
    entries it describes."""

    def __init__(self, conn):
        self.conn = conn
        self.newest: dict = {}

    def forget(self) -> None:
        self.newest.clear()

    def note(self, kind: str, first_id: int, second: float | None = None) -> None:
        """Rows of ``kind`` from ``first_id`` on were stored in ``second`` (default: now)."""
        s = int(time.time() if second is None else second)
        last = self.newest.get(kind, _UNKNOWN)
        if last is _UNKNOWN:
            found = self.conn.execute(_NEWEST, (kind,)).fetchall()
            last = found[0][0] if found else None
        if last != s:
            self.conn.execute(_ADD, (kind, first_id, s))
        self.newest[kind] = s

    def prune(self, kind: str, table: str) -> None:
        """Drop the entries of ``kind`` below the one covering ``table``'s oldest id."""
        self.conn.execute(_PRUNE.format(table=table), (kind, kind))


def seconds_of(conn, kind: str, ids: list) -> dict:
    """``{id: second or None}`` for the rows ``ids`` of ``kind``."""
    return dict(conn.execute(LOOKUP_MANY, (kind, json.dumps(ids))).fetchall())
