"""Error patterns: log messages grouped by their template.

Numbers, ids, addresses and quoted values are masked, so "연결 실패 (3회)
address=AA:BB:CC:DD:EE:FF" and "연결 실패 (5회) address=11:22:33:44:55:66"
are one pattern: "연결 실패 (<n>회) address=<mac>".
"""
from __future__ import annotations

import re

_MASKS = [
    (re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"), "<uuid>"),
    (re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])"), "<mac>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"'[^']*'"), "'<str>'"),
    (re.compile(r'"[^"]*"'), '"<str>"'),
    (re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?"), "<n>"),
]


def template(message: str) -> str:
    for pattern, mask in _MASKS:
        message = pattern.sub(mask, message)
    return message


def group(messages) -> list[dict]:
    """``messages``: (message, count, first_seen, last_seen, last_id) per distinct
    message; returns patterns, most frequent first."""
    out: dict[str, dict] = {}
    for message, count, first, last, last_id in messages:
        t = template(message)
        g = out.get(t)
        if g is None:
            out[t] = {"pattern": t, "count": count, "first_seen": first, "last_seen": last,
                      "example": message, "example_id": last_id, "variants": 1}
        else:
            g["count"] += count
            g["variants"] += 1
            g["first_seen"] = min(g["first_seen"], first)
            if last >= g["last_seen"]:
                g["last_seen"], g["example"], g["example_id"] = last, message, last_id
    return sorted(out.values(), key=lambda g: (-g["count"], g["pattern"]))
