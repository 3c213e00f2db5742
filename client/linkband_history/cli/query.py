"""``linkband-history query COMMAND KEY=VALUE ...``: any command of the daemon.

Every command the daemon declares is reachable here, those without a
subcommand of their own too. A value is taken as JSON when it parses as JSON
(``limit=5``, ``open=true``, ``metric_name='["a","b"]'``), else as the text
given; a key given twice becomes a list. The reply is printed as a table in
the columns the command declares (the daemon's ``commands`` reply says which),
else as JSON; ``--json`` prints the reply as it came. Administrative commands
go to the admin endpoint when one is given.
"""
from __future__ import annotations

import json

import click

from linkband_history.cli.tool import main


def parse_assignments(items) -> dict:
    """``("a=1", "b=x", "b=y")`` -> ``{"a": 1, "b": ["x", "y"]}``."""
    given: dict[str, list] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="PARAMS")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        given.setdefault(key, []).append(value)
    return {k: vs[0] if len(vs) == 1 else vs for k, vs in given.items()}


@main.command("query")
@click.argument("command")
@click.argument("params", nargs=-1, metavar="[KEY=VALUE]...")
@click.pass_obj
def query(tool, command, params):
    """Run any daemon COMMAND (`linkband-history query commands` lists them)."""
    p = parse_assignments(params)
    info = tool.describe(command) or {}
    ask = tool.ask_admin if info.get("admin") else tool.ask
    reply = ask(command, **p)
    columns = tuple(info.get("columns") or ())
    if tool.as_json or not columns:
        tool.echo(json.dumps(reply, ensure_ascii=False, indent=2, default=str))
        return
    tool.table(reply.get("rows", []), columns)
    if reply.get("next"):
        click.echo(f"-- more: cursor={reply['next']}", err=True)
