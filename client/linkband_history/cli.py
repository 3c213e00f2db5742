"""linkband-history: the command-line tool over the query socket.

    linkband-history status
    linkband-history metrics --name cpu_percent --since 15m
    linkband-history logs --level ERROR --since 2h
    linkband-history search "연결 EEG"
    linkband-history alerts --open

``--json`` prints the daemon's reply as JSON; otherwise a readable table.
``--since/--until`` take epoch seconds, ISO-8601 or a relative time (15m, 2h, 7d).
"""
from __future__ import annotations

import json
import sys
from datetime import datetime

import click

from .client import HistoryClient
from .times import parse_time

TABLE_COLUMNS = {
    "metrics": ("timestamp", "metric_type", "metric_name", "value", "unit", "tags"),
    "performance": ("timestamp", "component", "operation", "duration_ms", "throughput",
                    "efficiency_percent", "error_count"),
    "logs": ("timestamp", "level", "logger_name", "message"),
    "logs.search": ("timestamp", "level", "logger_name", "message"),
    "alerts": ("timestamp", "level", "category", "title", "resolved_at"),
}
TIME_COLUMNS = {"timestamp", "acknowledged_at", "resolved_at"}


def _time(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _cell(col, v, width=60):
    if v is None:
        return ""
    if col in TIME_COLUMNS and isinstance(v, (int, float)):
        return datetime.fromtimestamp(v).isoformat(sep=" ", timespec="milliseconds")
    if isinstance(v, (dict, list)):
        v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    s = str(v).replace("\n", " ")
    return s if len(s) <= width else s[: width - 1] + "…"


def print_table(rows, columns):
    cells = [[_cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


class Tool:
    def __init__(self, query, as_json, timeout):
        self.query_endpoint = query
        self.as_json = as_json
        self.timeout = timeout
        self._client = None

    def ask(self, command, **params):
        params = {k: v for k, v in params.items() if v not in (None, (), [])}
        if self._client is None:
            self._client = HistoryClient(query=self.query_endpoint, query_timeout=self.timeout)
        try:
            reply = self._client.query(command, **params)
        except TimeoutError as exc:
            raise click.ClickException(f"{exc} (is linkband-historyd running?)") from None
        if not reply.get("ok"):
            err = reply.get("error", {})
            if self.as_json:
                click.echo(json.dumps(reply, ensure_ascii=False, indent=2))
            raise click.ClickException(f"{err.get('code')}: {err.get('message')}")
        return reply

    def show(self, command, reply):
        if self.as_json:
            click.echo(json.dumps(reply, ensure_ascii=False, indent=2))
            return
        rows = reply.get("rows", [])
        print_table(rows, TABLE_COLUMNS[command])
        if reply.get("next"):
            click.echo(f"-- more: --cursor {reply['next']}", err=True)

    def list(self, command, **params):
        self.show(command, self.ask(command, **params))

    def close(self):
        if self._client is not None:
            self._client.close(timeout=0.5)


def range_options(fn):
    fn = click.option("--cursor", help="continue after the page that printed this cursor")(fn)
    fn = click.option("--order", type=click.Choice(["asc", "desc"]), default=None)(fn)
    fn = click.option("--limit", type=int, default=None, help="rows per page (default 1000)")(fn)
    fn = click.option("--until", callback=_time, help="epoch, ISO-8601 or relative (15m, 2h, 7d)")(fn)
    fn = click.option("--since", callback=_time, help="epoch, ISO-8601 or relative (15m, 2h, 7d)")(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--query", "query_endpoint", default=None, envvar="LINKBAND_HISTORY_QUERY",
              help="query endpoint (default: the daemon's default socket)")
@click.option("--json", "as_json", is_flag=True, help="print the reply as JSON")
@click.option("--timeout", type=float, default=10.0, show_default=True)
@click.pass_context
def main(ctx, query_endpoint, as_json, timeout):
    """Query the linkband-history daemon."""
    ctx.obj = Tool(query_endpoint, as_json, timeout)
    ctx.call_on_close(ctx.obj.close)


@main.command()
@click.pass_obj
def status(tool):
    """Row counts, rejected and lost records, size, uptime."""
    reply = tool.ask("stats")
    if tool.as_json:
        return tool.show("stats", reply)
    s = reply["rows"][0]
    click.echo(f"database   {s['database']['path']}  ({s['database']['size_bytes'] / 1e6:.1f} MB)")
    click.echo(f"uptime     {s['uptime_s']:.0f} s")
    for table, n in s["tables"].items():
        click.echo(f"{table:<17}{n:>12,}")
    click.echo(f"clients    {s['client_count']}  stored {s['stored_total']:,}  "
               f"lost {s['lost_records_total']:,}  dropped by clients {s['client_dropped_total']:,}")
    if s["rejected"]:
        click.echo("rejected   " + ", ".join(f"{k} {v:,}" for k, v in s["rejected"].items()))


@main.command()
@click.option("--type", "metric_type", multiple=True, help="metric_type (repeatable)")
@click.option("--name", "metric_name", multiple=True, help="metric_name (repeatable)")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE (repeatable)")
@range_options
@click.pass_obj
def metrics(tool, tags, **params):
    """Metric records."""
    tag_map = {}
    for t in tags:
        if "=" not in t:
            raise click.BadParameter(f"{t!r}: use KEY=VALUE", param_hint="--tag")
        k, v = t.split("=", 1)
        tag_map[k] = v
    tool.list("metrics", tags=tag_map or None, **_lists(params))


@main.command()
@click.option("--component", multiple=True)
@click.option("--operation", multiple=True)
@range_options
@click.pass_obj
def performance(tool, **params):
    """Performance records."""
    tool.list("performance", **_lists(params))


def log_options(fn):
    fn = click.option("--module", multiple=True)(fn)
    fn = click.option("--logger", "logger_name", multiple=True, help="logger name (repeatable)")(fn)
    fn = click.option("--min-level", default=None, help="this level and above")(fn)
    fn = click.option("--level", multiple=True, help="DEBUG, INFO, WARNING, ERROR, CRITICAL")(fn)
    return range_options(fn)


@main.command()
@log_options
@click.pass_obj
def logs(tool, **params):
    """Log lines."""
    tool.list("logs", **_lists(params))


@main.command()
@click.argument("text", nargs=-1, required=True)
@log_options
@click.pass_obj
def search(tool, text, **params):
    """Log lines containing every term of TEXT (substrings, any case, Korean stems)."""
    tool.list("logs.search", q=" ".join(text), **_lists(params))


@main.command()
@click.option("--level", multiple=True)
@click.option("--category", multiple=True)
@click.option("--open/--resolved", "open_", default=None, help="only open or only resolved")
@range_options
@click.pass_obj
def alerts(tool, open_, **params):
    """Alert history."""
    tool.list("alerts", open=open_, **_lists(params))


def _lists(params: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


if __name__ == "__main__":
    sys.exit(main())
