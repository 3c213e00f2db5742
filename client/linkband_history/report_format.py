"""A report of the daemon's ``reports`` command as Markdown (the tool prints it)."""
from __future__ import annotations

from datetime import datetime, timezone


def report_markdown(r: dict) -> str:
    """The report as Markdown (the tool prints it)."""
    def when(t):
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if t else "-"

    lines = [f"# linkband-history report ({r['period']}): {when(r['since'])} – {when(r['until'])}", "",
             "## Top error patterns", ""]
    lines += [f"- {p['count']}× `{p['pattern']}` (last {when(p['last_seen'])})"
              for p in r["top_error_patterns"]] or ["- none"]
    lines += ["", "## Alerts", ""]
    lines += [f"- {a['level']} {a['category']}: {a['count']}" for a in r["alert_counts"]] or ["- none"]
    lines += ["", "### Longest open", ""]
    lines += [f"- since {when(a['timestamp'])}: {a['title']} ({a['level']})"
              for a in r["longest_open_alerts"]] or ["- none"]
    lines += ["", "## Anomalies", ""]
    lines += [f"- {when(a['timestamp'])}: {a['title']}" for a in r["anomalies"]] or ["- none"]
    lines += ["", "## Performance p95 vs the previous period", "",
              "| component | operation | previous ms | now ms | change |", "|---|---|---|---|---|"]
    for c in r["performance_p95_changes"]:
        ch = f"{c['change_pct']:+.1f} %" if c["change_pct"] is not None else "-"
        fmt = lambda v: f"{v:.2f}" if v is not None else "-"           # noqa: E731
        lines.append(f"| {c['component']} | {c['operation']} | {fmt(c['p95_previous'])} | "
                     f"{fmt(c['p95'])} | {ch} |")
    return "\n".join(lines) + "\n"
