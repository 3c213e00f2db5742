"""The tool's tables: cells humanized by column, numbers right-aligned, widths in cells.

A column's name says how its numbers read (``humanize``): times as local time,
``*bytes`` as sizes, ``*_ms`` and ``duration*`` as durations, ``*_pct`` and
``*percent`` as percentages, ids as they are (to copy into ``context ID``),
other numbers with thousands separators. A row with ``value`` and ``unit``
shows them as one humanized value (``74.7 GB``). The level column is coloured
and, in search results, the matched terms of the message are highlighted.
"""
from __future__ import annotations

import json
from datetime import datetime

from linkband_history.cli.terminal import Cell, Terminal, display_width, fit
from linkband_history.humanize import format_bytes, format_number, format_value

TIME_COLUMNS = {"timestamp", "acknowledged_at", "resolved_at", "bucket", "first_seen", "last_seen",
                "oldest", "newest", "queued", "finished", "t"}
ID_COLUMNS = {"id", "part", "pid", "month"}
CELL_WIDTH = 60                   # any column but the last
LAST_WIDTH = 200                  # the last column when stdout is not a terminal
WINDOW_BEFORE = 20                # cells of a long message kept before its first match


def stamp(t) -> str:
    return datetime.fromtimestamp(t).isoformat(sep=" ", timespec="milliseconds")


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def cell_text(col: str, v, row: dict | None = None) -> str:
    """The plain text of one cell."""
    if v is None:
        return ""
    if is_number(v):
        if col in TIME_COLUMNS:
            return stamp(v)
        if col in ID_COLUMNS or col.endswith("_id"):
            return str(v)
        if col == "value" and row is not None and "unit" in row:
            return format_value(v, row.get("unit"))
        if col.endswith("bytes"):
            return format_bytes(v)
        if col.endswith("_ms") or col.startswith("duration"):
            return format_value(v, "ms")
        if col.endswith("_pct") or col.endswith("percent"):
            return format_value(v, "%")
        return format_number(v)
    if isinstance(v, (dict, list)):
        v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v).replace("\n", " ")


def _window(text: str, spans, width: int) -> tuple[str, list]:
    """A long message cut around its first match, the spans moved with it."""
    if display_width(text) <= width or not spans:
        return fit(text, width), spans
    start = max(0, spans[0][0] - WINDOW_BEFORE)
    if start == 0:
        return fit(text, width), spans
    cut = "…" + text[start:]
    return fit(cut, width), [[a - start + 1, b - start + 1] for a, b in spans]


def table_lines(term: Terminal, rows, columns) -> list[str]:
    """The header and one line per row."""
    columns = list(columns)
    if "value" in columns and "unit" in columns:
        columns.remove("unit")                     # shown with the value
    last = len(columns) - 1
    room = term.width()
    widths = [display_width(c) for c in columns]
    numeric = [bool(rows) for _ in columns]
    plain = []
    for r in rows:
        texts = []
        for i, c in enumerate(columns):
            v = r.get(c)
            numeric[i] = numeric[i] and (v is None or (is_number(v) and c not in TIME_COLUMNS))
            texts.append(cell_text(c, v, r))
        plain.append(texts)
    for texts in plain:
        for i, t in enumerate(texts[:last]):
            widths[i] = max(widths[i], min(display_width(t), CELL_WIDTH))
    last_width = LAST_WIDTH if room is None else max(20, room - sum(widths[:last]) - 2 * last)
    out = [_join([Cell(c) for c in columns], widths, numeric, last)]
    for r, texts in zip(rows, plain):
        cells = []
        for i, (c, t) in enumerate(zip(columns, texts)):
            width = last_width if i == last else CELL_WIDTH
            if c == "message" and r.get("highlights"):
                shown, spans = _window(t, r["highlights"], width)
                cells.append(term.marked(shown, spans))
            elif c == "level" and t:
                cells.append(Cell(t, term.level(t)))
            else:
                cells.append(Cell(fit(t, width)))
        out.append(_join(cells, widths, numeric, last))
    return out


def _join(cells, widths, numeric, last) -> str:
    parts = []
    for i, (cell, w) in enumerate(zip(cells, widths)):
        if numeric[i]:
            parts.append(cell.rjust(w))
        elif i == last:
            parts.append(cell.shown)
        else:
            parts.append(cell.ljust(w))
    return "  ".join(parts).rstrip()
