"""linkband-history: the click group, its options and the ``Tool`` its subcommands use.

    linkband-history status
    linkband-history metrics --name cpu_percent --since 15m
    linkband-history logs --level ERROR --since 2h
    linkband-history search "연결 EEG"
    linkband-history alerts --open
    linkband-history query alerts.open_count

``--json`` prints the daemon's reply as JSON; otherwise a readable table, in the
columns the command declares (the daemon's ``commands`` reply says which), with
humanized numbers, coloured levels and highlighted matches on a terminal, and
long output in a pager (``cli.terminal`` says when; ``--no-pager``).
``--since/--until`` take epoch seconds, ISO-8601 or a relative time (15m, 2h, 7d).
The subcommands live in the modules that ``linkband_history.cli`` imports.
"""
from __future__ import annotations

import json

import click

from linkband_history.cli.table import table_lines
from linkband_history.cli.terminal import Terminal
from linkband_history.client import HistoryClient
from linkband_history.protocol import LOG_LEVELS
from linkband_history.times import parse_time

def _time(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


class Tool:
    def __init__(self, query, as_json, timeout, admin=None, curve_server_public=None,
                 curve_secret_key_file=None, no_pager=False):
        self.term = Terminal(as_json, no_pager)
        self.query_endpoint = query
        self.admin_endpoint = admin
        self.as_json = as_json
        self.timeout = timeout
        self.curve = {"curve_server_public": curve_server_public,
                      "curve_secret_key_file": curve_secret_key_file}
        self._client = None
        self._admin_client = None
        self._commands = None             # the daemon's `commands` rows, by name, once asked

    def ask(self, command, **params):
        return self._ask(self.client(), command, params)

    def ask_admin(self, command, **params):
        """An administrative command: on the admin endpoint when one is given."""
        return self._ask(self.admin_client(), command, params)

    def _ask(self, client, command, params):
        params = {k: v for k, v in params.items() if v not in (None, (), [])}
        try:
            reply = client.query(command, **params)
        except TimeoutError as exc:
            raise click.ClickException(f"{exc} (is linkband-historyd running?)") from None
        if not reply.get("ok"):
            err = reply.get("error", {})
            if self.as_json:
                self.echo(json.dumps(reply, ensure_ascii=False, indent=2))
            hint = ""
            if err.get("code") == "forbidden" and "admin endpoint" in str(err.get("message")) \
                    and not self.admin_endpoint:
                hint = " (give --admin ENDPOINT or set LINKBAND_HISTORY_ADMIN_ENDPOINT)"
            raise click.ClickException(f"{err.get('code')}: {err.get('message')}{hint}")
        return reply

    def echo(self, text: str = "", nl: bool = True) -> None:
        """Print to stdout (through the pager when there is one)."""
        self.term.echo(text, nl)

    def table(self, rows, columns) -> None:
        for line in table_lines(self.term, rows, columns):
            self.echo(line)

    def show(self, command, reply):
        if self.as_json:
            self.echo(json.dumps(reply, ensure_ascii=False, indent=2))
            return
        rows = reply.get("rows", [])
        self.table(rows, self.columns(command) or (tuple(rows[0]) if rows else ()))
        if reply.get("next"):
            click.echo(f"-- more: --cursor {reply['next']}", err=True)

    def describe(self, command) -> dict | None:
        """What the daemon's ``commands`` reply says of ``command`` (None: not one)."""
        if self._commands is None:
            rows = self._ask(self.client(), "commands", {})["rows"]
            self._commands = {r["command"]: r for r in rows}
        return self._commands.get(command)

    def columns(self, command) -> tuple:
        """The table columns ``command`` declares (empty when it declares none)."""
        return tuple((self.describe(command) or {}).get("columns") or ())

    def fetch(self, command, **params):
        """The reply, or None when ``--json`` has printed it already."""
        reply = self.ask(command, **params)
        if self.as_json:
            self.show(command, reply)
            return None
        return reply

    def list(self, command, **params):
        self.show(command, self.ask(command, **params))

    def generic(self, command, **params):
        """Ask, then print the rows as a table with the columns they have."""
        reply = self.fetch(command, **params)
        if reply is not None:
            rows = reply.get("rows", [])
            self.table(rows, tuple(rows[0]) if rows else ())

    def client(self):
        if self._client is None:
            self._client = self._make_client(self.query_endpoint)
        return self._client

    def admin_client(self):
        if not self.admin_endpoint:
            return self.client()
        if self._admin_client is None:
            self._admin_client = self._make_client(self.admin_endpoint)
        return self._admin_client

    def _make_client(self, query):
        try:
            return HistoryClient(query=query, query_timeout=self.timeout, **self.curve)
        except (OSError, ValueError) as exc:          # unreadable or half-given CURVE keys
            raise click.ClickException(str(exc)) from None

    def close(self):
        self.term.close()
        for c in (self._client, self._admin_client):
            if c is not None:
                c.close(timeout=0.5)


def window_options(fn):
    """--since and --until."""
    fn = click.option("--until", callback=_time, help="epoch, ISO-8601 or relative (15m, 2h, 7d)")(fn)
    return click.option("--since", callback=_time, help="epoch, ISO-8601 or relative (15m, 2h, 7d)")(fn)


def range_options(fn):
    """A window and paging: --since, --until, --limit, --order, --cursor."""
    fn = click.option("--cursor", help="continue after the page that printed this cursor")(fn)
    fn = click.option("--order", type=click.Choice(["asc", "desc"]), default=None)(fn)
    fn = click.option("--limit", type=int, default=None, help="rows per page (default 1000)")(fn)
    return window_options(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--query", "query_endpoint", default=None, envvar="LINKBAND_HISTORY_QUERY",
              help="query endpoint (default: the daemon's default socket)")
@click.option("--admin", "admin_endpoint", default=None, envvar="LINKBAND_HISTORY_ADMIN_ENDPOINT",
              help="the daemon's admin endpoint (security.admin_endpoint), for cleanup, archive, "
                   "restore, optimize, vacuum, summarize, ack, resolve, reload, stop")
@click.option("--curve-server-key", "curve_server_public", default=None,
              envvar="LINKBAND_HISTORY_CURVE_SERVER_PUBLIC",
              help="CURVE: the server's public key (its .key file, or the z85 key) for tcp:// endpoints")
@click.option("--curve-secret-key", "curve_secret_key_file", default=None,
              envvar="LINKBAND_HISTORY_CURVE_CLIENT_SECRET", type=click.Path(dir_okay=False),
              help="CURVE: this client's .key_secret file (its .key must be authorized by the daemon)")
@click.option("--json", "as_json", is_flag=True, help="print the reply as JSON")
@click.option("--no-pager", is_flag=True, help="never page long output (LINKBAND_HISTORY_PAGER, "
              "PAGER or less; only on a terminal)")
@click.option("--timeout", type=float, default=10.0, show_default=True)
@click.pass_context
def main(ctx, query_endpoint, admin_endpoint, curve_server_public, curve_secret_key_file,
         as_json, no_pager, timeout):
    """Query the linkband-history daemon."""
    ctx.obj = Tool(query_endpoint, as_json, timeout, admin_endpoint, curve_server_public,
                   curve_secret_key_file, no_pager)
    ctx.call_on_close(ctx.obj.close)


def log_options(fn):
    fn = click.option("--module", multiple=True)(fn)
    fn = click.option("--logger", "logger_name", multiple=True, help="logger name (repeatable)")(fn)
    fn = click.option("--min-level", default=None, help="this level and above")(fn)
    fn = click.option("--level", multiple=True, help=", ".join(LOG_LEVELS))(fn)
    return range_options(fn)


def _lists(params: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
