"""linkband-history subcommands for trends, reports and alert handling."""
from __future__ import annotations

import json

import click

from linkband_history.cli.tool import _time, main


@main.command()
@click.argument("metric_names", nargs=-1, required=True)
@click.option("--since", callback=_time, help="default: a day before --until")
@click.option("--until", callback=_time, help="default: now")
@click.option("--bucket", default=None, help="1m .. 1d or auto")
@click.option("--horizon", type=int, default=None, help="buckets to forecast")
@click.pass_obj
def trends(tool, metric_names, **params):
    """Trend, anomalies, forecast and correlations of metrics."""
    reply = tool.fetch("metrics.trends", metric_name=list(metric_names), **params)
    if reply is None:
        return
    for r in reply["rows"]:
        tool.echo(f"{r['metric_name']}: {r['summary']}")
        tool.table(r["anomalies"], ("t", "kind", "value", "expected", "score"))
    if reply.get("correlation"):
        tool.echo("")
        tool.table(reply["correlation"], ("a", "b", "pearson", "spearman", "n"))


@main.command()
@click.option("--period", type=click.Choice(["day", "week"]), default="day", show_default=True)
@click.option("--until", callback=_time, help="end of the period (default: now)")
@click.pass_obj
def report(tool, period, until):
    """A daily or weekly report (JSON with --json, Markdown otherwise)."""
    reply = tool.ask("reports", period=period, until=until)
    if tool.as_json:
        return tool.echo(json.dumps(reply["rows"][0], ensure_ascii=False, indent=2))
    from linkband_history.report_format import report_markdown
    tool.echo(report_markdown(reply["rows"][0]))


@main.command()
@click.argument("alert_id")
@click.pass_obj
def ack(tool, alert_id):
    """Acknowledge an alert."""
    r = tool.ask_admin("alerts.ack", alert_id=alert_id)["rows"][0]
    tool.echo(json.dumps(r, ensure_ascii=False) if tool.as_json else f"acknowledged {alert_id}")


@main.command()
@click.argument("alert_id")
@click.pass_obj
def resolve(tool, alert_id):
    """Resolve an alert."""
    r = tool.ask_admin("alerts.resolve", alert_id=alert_id)["rows"][0]
    tool.echo(json.dumps(r, ensure_ascii=False) if tool.as_json else f"resolved {alert_id}")
