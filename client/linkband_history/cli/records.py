"""linkband-history subcommands that read records: status, the listings, search,
summaries and aggregates, log statistics and context, performance, the dashboard,
export and events."""
from __future__ import annotations

import json
import sys
import time

import click

from linkband_history.cli.table import stamp
from linkband_history.cli.tool import _lists, _time, log_options, main, range_options, window_options
from linkband_history.export import FORMATS, KIND_NAMES
from linkband_history.export import export as run_export
from linkband_history.humanize import format_bytes, format_duration, format_number


@main.command()
@click.pass_obj
def status(tool):
    """Row counts, rejected and lost records, size, uptime."""
    reply = tool.fetch("stats")
    if reply is None:
        return
    s = reply["rows"][0]
    tool.echo(f"database   {s['database']['path']}  ({format_bytes(s['database']['size_bytes'])})")
    tool.echo(f"uptime     {format_duration(s['uptime_s'])}")
    width = max(12, *(len(format_number(n)) for n in s["tables"].values()))
    for table, n in s["tables"].items():
        tool.echo(f"{table:<17}{format_number(n):>{width}}")
    tool.echo(f"clients    {format_number(s['client_count'])}  stored {format_number(s['stored_total'])}"
              f"  lost {format_number(s['lost_records_total'])}  dropped by clients "
              f"{format_number(s['client_dropped_total'])}")
    if s["rejected"]:
        tool.echo("rejected   " + ", ".join(f"{k} {format_number(v)}" for k, v in s["rejected"].items()))


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


@main.command()
@log_options
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines as they are committed")
@click.option("--interval", type=float, default=0.5, show_default=True, help="--follow poll interval")
@click.option("-g", "--grep", "grep", default=None,
              help="with --follow: only lines containing every term (as search), highlighted")
@click.pass_obj
def logs(tool, follow, interval, grep, **params):
    """Log lines (with --follow: then new ones as they arrive, like journalctl -f)."""
    params = _lists(params)
    if not follow:
        if grep:
            raise click.UsageError("--grep goes with --follow; without it use: search TEXT")
        return tool.list("logs", **params)
    tool.term.no_pager()
    terms = follow_terms(grep)
    if params.pop("cursor", None) or params.pop("order", None):
        raise click.UsageError("--follow starts from the newest lines: no --cursor or --order")
    limit = params.pop("limit", None) or 10
    first = tool.ask("logs", order="desc", limit=limit, **params)["rows"][::-1]
    _print_follow(tool, first, terms)
    last_id = max([r["id"] for r in first], default=0)
    if not first:
        newest = tool.ask("logs", order="desc", limit=1)["rows"]
        last_id = newest[0]["id"] if newest else 0
    params.pop("since", None)
    try:
        while True:
            rows = tool.ask("logs", after_id=last_id, limit=1000, **params)["rows"]
            if rows:
                _print_follow(tool, rows, terms)
                last_id = rows[-1]["id"]
            else:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


def follow_terms(text: str | None) -> list[str]:
    """The terms of ``--grep``: split at spaces, a "quoted phrase" one term, folded."""
    if not text:
        return []
    terms = []
    for i, part in enumerate(text.split('"')):
        terms += [part] if i % 2 else part.split()       # odd parts were inside quotes
    return [t.casefold() for t in terms if t.strip()]


def match_spans(message: str, terms: list[str]) -> list[list[int]] | None:
    """Where each term occurs in ``message`` (any case), or None when one does not."""
    folded = message.casefold()
    if len(folded) != len(message):         # folding changed the length: no exact spans
        return [] if all(t in folded for t in terms) else None
    spans = []
    for t in terms:
        at = folded.find(t)
        if at < 0:
            return None
        while at >= 0:
            spans.append([at, at + len(t)])
            at = folded.find(t, at + len(t))
    return spans


def _print_follow(tool, rows, terms=()):
    for r in rows:
        spans = match_spans(r["message"], terms) if terms else []
        if spans is None:
            continue
        if tool.as_json:
            tool.echo(json.dumps(r, ensure_ascii=False))
            continue
        tool.echo(f"{stamp(r['timestamp'])} {tool.term.level(r['level'], 8)} {r['logger_name']}: "
                  + tool.term.marked(r["message"], spans).shown)


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


@main.command()
@click.option("--name", "metric_name", multiple=True)
@click.option("--type", "metric_type", multiple=True)
@window_options
@click.pass_obj
def summary(tool, **params):
    """Per metric over the range: count, min, max, avg, last."""
    tool.generic("metrics.summary", **_lists(params))


@main.command()
@click.option("--name", "metric_name", multiple=True)
@click.option("--type", "metric_type", multiple=True)
@click.option("--bucket", default=None, help="1s .. 1d, auto (default) or none")
@click.option("--fn", "functions", multiple=True,
              help="count sum min max avg last p50 p95 p99 (repeatable)")
@click.option("--group-by", "group_by", multiple=True, help="metric_name, metric_type, unit, tag:KEY")
@window_options
@click.pass_obj
def aggregate(tool, **params):
    """A bucketed series of metrics (for charts)."""
    tool.generic("metrics.aggregate", **_lists(params))


@main.command("log-stats")
@click.option("--level", multiple=True)
@click.option("--logger", "logger_name", multiple=True)
@click.option("--bucket", default=None)
@click.option("--top", type=int, default=None, help="how many error patterns")
@window_options
@click.pass_obj
def log_stats(tool, **params):
    """Counts by level, logger and bucket, and the top error patterns."""
    reply = tool.fetch("logs.stats", **_lists(params))
    if reply is None:
        return
    s = reply["rows"][0]
    tool.echo(f"total {format_number(s['total'])}  " + "  ".join(
        f"{tool.term.level(k)} {format_number(v)}" for k, v in s["by_level"].items()))
    tool.echo("\ntop loggers")
    tool.table(s["by_logger"][:10], ("logger_name", "count"))
    tool.echo("\ntop error patterns")
    tool.table(s["top_patterns"], ("count", "last_seen", "pattern"))


@main.command()
@click.argument("log_id", type=int)
@click.option("-B", "--before", type=int, default=5)
@click.option("-A", "--after", type=int, default=5)
@click.option("-C", "--context", "both", type=int, default=None, help="lines before and after")
@click.option("--logger", "logger_name", multiple=True, help="only lines of these loggers")
@click.pass_obj
def context(tool, log_id, before, after, both, logger_name):
    """The log lines around one log line (like grep -C)."""
    if both is not None:
        before = after = both
    reply = tool.fetch("logs.context", id=log_id, before=before, after=after,
                     logger_name=list(logger_name))
    if reply is None:
        return
    for r in reply["rows"]:
        tool.echo(("> " if r["match"] else "  ") + f"{stamp(r['timestamp'])} "
                  f"{tool.term.level(r['level'], 8)} {r['logger_name']}: {r['message']}")


@main.command()
@click.option("--component", multiple=True)
@click.option("--operation", multiple=True)
@window_options
@click.pass_obj
def perf(tool, **params):
    """Per component and operation: count, duration percentiles, throughput, errors."""
    tool.generic("performance.analysis", **_lists(params))


@main.command("perf-compare")
@click.option("--a-since", callback=_time, required=True, help="baseline window start")
@click.option("--a-until", callback=_time, required=True)
@click.option("--b-since", callback=_time, required=True, help="window to judge")
@click.option("--b-until", callback=_time, required=True)
@click.option("--component", multiple=True)
@click.option("--operation", multiple=True)
@click.pass_obj
def perf_compare(tool, **params):
    """Two windows side by side, the largest p95 regressions first."""
    reply = tool.fetch("performance.compare", **_lists(params))
    if reply is None:
        return
    tool.table(reply["rows"], ("component", "operation", "duration_p95_a", "duration_p95_b",
                                "duration_p95_change_pct", "error_rate_a", "error_rate_b"))


@main.command()
@click.pass_obj
def dashboard(tool):
    """The overview: latest metrics, log levels of the last hour, open alerts, patterns."""
    reply = tool.fetch("dashboard")
    if reply is None:
        return
    d = reply["rows"][0]
    tool.table(d["latest_metrics"], ("metric_name", "value", "unit", "timestamp"))
    tool.echo("\nlast hour: " + ", ".join(f"{tool.term.level(k)} {format_number(v)}"
                                          for k, v in sorted(d["log_levels"].items())))
    tool.echo("\nopen alerts")
    tool.table(d["open_alerts"], ("timestamp", "level", "category", "title"))
    tool.echo("\ntop error patterns")
    tool.table(d["top_patterns"], ("count", "last_seen", "pattern"))
    tool.echo(f"\nstorage {format_bytes(d['storage']['size_bytes'])}")


@main.command("export")
@click.argument("kind", type=click.Choice(sorted(KIND_NAMES)))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--name", "metric_name", multiple=True)
@click.option("--type", "metric_type", multiple=True)
@click.option("--component", multiple=True)
@click.option("--operation", multiple=True)
@click.option("--level", multiple=True)
@click.option("--logger", "logger_name", multiple=True)
@click.option("--category", multiple=True)
@window_options
@click.pass_obj
def export_cmd(tool, kind, fmt, output, **params):
    """Write every matching row to a file, page by page (bounded memory)."""
    params = {k: v for k, v in _lists(params).items() if v not in (None, [], ())}
    client = tool.client()
    bar = None
    show = sys.stderr.isatty() and not tool.as_json

    def progress(done, total):
        nonlocal bar
        if not show:
            return
        if bar is None:
            bar = click.progressbar(length=total or done, label=f"exporting {kind}", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        n = run_export(client, kind, params, fmt, output, progress)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    tool.echo(json.dumps({"rows": n, "file": output, "format": fmt}) if tool.as_json
              else f"{format_number(n)} rows written to {output}")


@main.command()
@click.argument("topics", nargs=-1)
@click.option("--events", "events_endpoint", default=None, envvar="LINKBAND_HISTORY_EVENTS",
              help="events endpoint (default: the daemon's default socket)")
@click.option("--count", type=int, default=None, help="stop after this many events")
@click.option("--timeout", "wait", type=float, default=None, help="stop after this long without one")
@click.pass_obj
def events(tool, topics, events_endpoint, count, wait):
    """Print the daemon's events as they happen (JSON lines), optionally only TOPICS."""
    from linkband_history.events import subscribe
    try:
        sub = subscribe(list(topics), events_endpoint, wait, **tool.curve)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    tool.term.no_pager()
    with sub:
        for n, (topic, payload) in enumerate(sub, 1):
            tool.echo(json.dumps({"topic": topic, "data": payload}, ensure_ascii=False, default=str))
            if count and n >= count:
                break

