"""linkband-history maintenance subcommands: cleanup, archive, restore, optimize,
archives, storage, jobs, reload, stop, vacuum; keygen (CurveZMQ key pairs) and ui
(the HTTP dashboard's URL with its token).
Jobs run in the daemon's scheduler; these follow them to the end with their
progress on a terminal. Administrative commands go to the admin endpoint when
one is given (``--admin`` / ``LINKBAND_HISTORY_ADMIN_ENDPOINT``)."""
from __future__ import annotations

import json
import os
import socket
import sys
import time

import click

from linkband_history.cli.tool import main
from linkband_history.humanize import format_bytes, format_number, format_value


def _run_job(tool, command, **params):
    """Start a maintenance job and follow it to the end, with progress on a terminal."""
    run = tool.ask_admin(command, **params)["rows"][0]
    show = sys.stderr.isatty() and not tool.as_json
    last = None
    while run["state"] in ("queued", "running"):
        time.sleep(0.2)
        run = tool.ask_admin("jobs", id=run["id"])["rows"][0]
        prog = run.get("progress")
        if show and prog and prog != last:
            click.echo(f"\r{run['job']}: {prog['step']} {prog['count']:,}".ljust(60), nl=False, err=True)
            last = prog
    if show and last:
        click.echo("", err=True)
    if tool.as_json:
        tool.echo(json.dumps(run, ensure_ascii=False, indent=2, default=str))
    else:
        tool.echo(f"{run['job']} {run['state']}: "
                   + json.dumps(run.get("result") or run.get("error"), ensure_ascii=False, default=str))
    if run["state"] != "done":
        sys.exit(1)


@main.command()
@click.option("--days", "days", multiple=True, metavar="KIND=DAYS",
              help="override a retention: metric=7, log=14, summary=180 ... (repeatable)")
@click.option("--dry-run", is_flag=True, help="count what would be deleted; delete nothing")
@click.option("--force", is_flag=True, help="allow a retention under one hour")
@click.pass_obj
def cleanup(tool, days, dry_run, force):
    """Apply retention (and the size budget) now."""
    policy = {}
    for item in days:
        k, _, v = item.partition("=")
        try:
            policy[k] = float(v)
        except ValueError:
            raise click.BadParameter(f"{item!r}: use KIND=DAYS", param_hint="--days") from None
    if dry_run:
        row = tool.ask_admin("cleanup", policy=policy or None, dry_run=True, force=force)["rows"][0]
        if tool.as_json:
            tool.echo(json.dumps(row, ensure_ascii=False, indent=2))
            return
        counts = {k: v for k, v in row.items() if k not in ("dry_run", "cutoffs")}
        tool.table([{"what": k, "would delete": v} for k, v in counts.items()],
                    ["what", "would delete"])
        return
    _run_job(tool, "cleanup", policy=policy or None, force=force)


@main.command()
@click.option("--kind", type=click.Choice(["metric", "performance", "log", "alert"]), default=None)
@click.pass_obj
def archive(tool, kind):
    """Archive (and remove) detail past its retention now."""
    _run_job(tool, "archive", kind=kind)


@main.command()
@click.argument("kind", type=click.Choice(["metric", "performance", "log", "alert"]))
@click.argument("month", metavar="YYYY-MM")
@click.pass_obj
def restore(tool, kind, month):
    """Bring an archived month back for querying (for archive.restore_days)."""
    _run_job(tool, "restore", kind=kind, month=month)


@main.command()
@click.pass_obj
def optimize(tool):
    """ANALYZE, FTS merge and incremental vacuum now."""
    _run_job(tool, "optimize")


@main.command()
@click.option("--kind", type=click.Choice(["metric", "performance", "log", "alert"]), default=None)
@click.pass_obj
def archives(tool, kind):
    """The archive files, per kind and month."""
    tool.list("archives", kind=kind)


@main.command()
@click.pass_obj
def storage(tool):
    """Sizes per table and index, free disk, oldest and newest record, archives."""
    reply = tool.fetch("storage")
    if reply is None:
        return
    s = reply["rows"][0]
    tool.echo(f"database {format_bytes(s['database_bytes'])} (used {format_bytes(s['used_bytes'])}), "
              f"free disk {format_bytes(s['free_bytes'])} ({format_value(s['free_percent'], '%')}), "
              f"archives {format_number(s['archives']['files'])} files "
              f"{format_bytes(s['archives']['bytes'])}")
    tool.table([{"kind": k, **v} for k, v in s["records"].items()], ("kind", "oldest", "newest"))
    tool.table([{"object": k, "bytes": v} for k, v in list(s["objects"].items())[:15]],
                ("object", "bytes"))


@main.command()
@click.pass_obj
def jobs(tool):
    """Maintenance jobs: recent runs and the next scheduled ones."""
    tool.list("jobs")


@main.command()
@click.pass_obj
def reload(tool):
    """Reload the daemon's configuration (as SIGHUP does)."""
    tool.ask_admin("reload")
    tool.echo("reloading")


@main.command()
@click.pass_obj
def stop(tool):
    """Stop the daemon (as SIGTERM does): it drains and exits."""
    tool.ask_admin("stop")
    tool.echo("stopping")


@main.command()
@click.pass_obj
def vacuum(tool):
    """A full VACUUM (only on request: ingestion waits meanwhile, nothing is lost)."""
    _run_job(tool, "vacuum")


def default_key_dir() -> str:
    base = (os.environ.get("APPDATA") if sys.platform == "win32" else None) or \
        os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "linkband-history", "curve")


@main.command()
@click.option("--dir", "directory", default=None, type=click.Path(file_okay=False),
              help="where to write the key pair (made 0700); default: "
                   "~/.config/linkband-history/curve")
@click.option("--name", default=None, help="file name: NAME.key (public) and NAME.key_secret "
                                           "(secret, 0600); default: this host's name")
@click.option("--force", is_flag=True, help="replace an existing key pair of that name")
@click.pass_obj
def keygen(tool, directory, name, force):
    """Write a CurveZMQ key pair (for the daemon or for a client)."""
    from linkband_history.curve_keys import keygen as write_pair
    import zmq.auth
    name = name or socket.gethostname().replace(os.sep, "_") or "linkband-history"
    try:
        public_file, secret_file = write_pair(directory or default_key_dir(), name, force)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    public_key = zmq.auth.load_certificate(public_file)[0].decode("ascii")
    if tool.as_json:
        tool.echo(json.dumps({"public": public_file, "secret": secret_file,
                               "public_key": public_key}))
        return
    tool.echo(f"public key  {public_file}  ({public_key})\n"
               f"secret key  {secret_file}  (0600: keep it on this machine)\n"
               "A daemon uses its .key_secret as security.curve_server_key; a client's .key "
               "goes into the daemon's security.curve_authorized_dir.")


@main.command()
@click.option("--runtime-dir", default=None, envvar="LINKBAND_HISTORY_RUNTIME_DIR",
              type=click.Path(file_okay=False), help="where the gateway wrote http.token "
              "(default: the daemon's runtime directory)")
@click.option("--url", default=None, help="the gateway's base URL, e.g. "
              "http://127.0.0.1:8765/history (default: from <runtime_dir>/http.json)")
@click.option("--open", "open_browser", is_flag=True, help="open it in the web browser")
def ui(runtime_dir, url, open_browser):
    """Print the dashboard's URL with the HTTP gateway's token (it logs the browser in)."""
    from linkband_history.endpoints import default_runtime_dir
    from linkband_history.http_login import LoginError, dashboard_url
    try:
        link = dashboard_url(runtime_dir or default_runtime_dir(), url)
    except (LoginError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(link)
    if open_browser:
        import webbrowser
        if not webbrowser.open(link):
            raise click.ClickException("no web browser could be opened; open the URL above")
