"""The UTC buckets of the summary tiers: minute, hourly, daily, weekly (Monday
00:00 UTC) and monthly (calendar months)."""
from __future__ import annotations

import calendar
from datetime import datetime, timezone

TIERS = ("minute", "hourly", "daily", "weekly", "monthly")
_WEEK_ORIGIN = 4 * 86400          # 1970-01-05 was a Monday


def bucket_start(tier: str, t: float) -> float:
    if tier == "minute":
        return float(int(t // 60) * 60)
    if tier == "hourly":
        return float(int(t // 3600) * 3600)
    if tier == "daily":
        return float(int(t // 86400) * 86400)
    if tier == "weekly":
        return float(int((t - _WEEK_ORIGIN) // 604800) * 604800 + _WEEK_ORIGIN)
    d = datetime.fromtimestamp(t, timezone.utc)
    return float(calendar.timegm((d.year, d.month, 1, 0, 0, 0)))


def bucket_end(tier: str, start: float) -> float:
    if tier == "monthly":
        d = datetime.fromtimestamp(start, timezone.utc)
        y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return float(calendar.timegm((y, m, 1, 0, 0, 0)))
    return start + {"minute": 60, "hourly": 3600, "daily": 86400, "weekly": 604800}[tier]
