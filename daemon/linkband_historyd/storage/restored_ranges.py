"""The row ids a restore brought back, which the summary job skips.

A restore re-imports archived rows with new ids. Their summaries were never
deleted, so folding them in again would count them twice. The writer notes each
import's id range in ``writer_state`` (key ``summaries.skip``: table -> list of
inclusive ``[first, last]``) in the import's own transaction, and drops the ranges
the summary watermark has passed when it moves the watermark. Both happen in the
writer, so no update is lost between them.
"""
from __future__ import annotations

from linkband_historyd.storage import schema

KEY = "summaries.skip"


def load(conn) -> dict:
    return schema.read_state(conn, KEY, {})


def noted(skip: dict, table: str, first: int, last: int) -> dict:
    """``skip`` with ids first..last of ``table`` added (joined to a range they extend)."""
    ranges = skip.setdefault(table, [])
    if ranges and ranges[-1][1] == first - 1:
        ranges[-1][1] = last
    else:
        ranges.append([first, last])
    return skip


def pruned(skip: dict, watermarks: dict) -> dict:
    """``skip`` without the ranges at or below each table's watermark."""
    return {t: kept for t, ranges in skip.items()
            if (kept := [r for r in ranges if r[1] > watermarks.get(t, 0)])}


def live_ranges(lo: int, hi: int, ranges) -> list[tuple[int, int]]:
    """The parts (a, b] of ids lo < id <= hi outside the inclusive ``ranges``."""
    out, cur = [], lo
    for a, b in sorted(ranges or ()):
        if b <= cur:
            continue
        if a > hi:
            break
        if a - 1 > cur:
            out.append((cur, min(a - 1, hi)))
        cur = max(cur, b)
    if cur < hi:
        out.append((cur, hi))
    return out
