"""FTS5 merges nothing inside a commit (automerge 0); the writer's paced steps keep the
index merged: few segments after hundreds of small commits, and search still exact."""
from __future__ import annotations

import apsw
from conftest import wait_for


def _segments(db_path) -> int:
    """The segment count from the FTS5 structure record (id 10 of logs_fts_data):
    a 4-byte cookie, the v2 marker ff000001 (contentless_delete tables), then varints
    nLevel and nSegment."""
    conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        blob = conn.execute("SELECT block FROM logs_fts_data WHERE id = 10").fetchall()[0][0]
    finally:
        conn.close()
    pos, values = (8 if blob[4:8] == b"\xff\x00\x00\x01" else 4), []
    for _ in range(2):
        v = 0
        while True:
            b = blob[pos]
            pos += 1
            v = (v << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        values.append(v)
    return values[1]


def test_small_commits_leave_few_segments(daemon_factory):
    d = daemon_factory()
    conn = apsw.Connection(str(d.db_path), flags=apsw.SQLITE_OPEN_READONLY)
    assert conn.execute("SELECT v FROM logs_fts_config WHERE k = 'automerge'").fetchall() == [(0,)]
    conn.close()
    c = d.client()
    for i in range(300):             # 300 flushes: 300 commits, each a new level-0 segment
        c.store_logs([{"level": "INFO", "logger_name": "t", "message": f"디바이스 연결 {i} 번째"}])
        assert c.flush(timeout=10)
    # without merge steps FTS5 would hold up to crisismerge (16) segments per level
    wait_for(lambda: _segments(d.db_path) <= 8, timeout=20)
    r = d.ask("logs.search", q="연결", limit=1000)
    assert len(r["rows"]) == 300
