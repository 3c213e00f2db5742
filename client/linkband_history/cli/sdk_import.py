"""linkband-history import-sdk: the SDK's own history.db into the running daemon."""
from __future__ import annotations

import json
import sys

import click

from linkband_history.cli.tool import main


@main.command("import-sdk")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--tz", default=None, metavar="ZONE",
              help="zone of the file's naive timestamps, e.g. Asia/Seoul (default: local)")
@click.pass_obj
def import_sdk(tool, path, tz):
    """Import an SDK history.db (all five tables) through the writer; a second run
    of the same file imports nothing."""
    from linkband_history.sdk.importer import import_sdk_db, zone
    try:
        zone_info = zone(tz)
    except Exception as exc:                       # ZoneInfoNotFoundError, ValueError
        raise click.BadParameter(f"unknown zone {tz!r} ({exc.__class__.__name__})",
                                 param_hint="--tz") from None
    bars: dict = {}
    show = sys.stderr.isatty() and not tool.as_json

    def progress(table, done, total):
        if not show:
            return
        bar = bars.get(table)
        if bar is None:
            bar = bars[table] = click.progressbar(length=max(total, 1), label=table,
                                                  file=sys.stderr)
            bar.__enter__()
            bar.done = 0
        bar.update(done - bar.done)
        bar.done = done
        if done >= total:
            bar.__exit__(None, None, None)

    try:
        result = import_sdk_db(path, tz=zone_info, client=tool.admin_client(), progress=progress)
    except Exception as exc:
        raise click.ClickException(f"import stopped: {exc}") from None
    if tool.as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    rows = [{"table": t, "read": r["read"], "stored": r["stored"], "duplicates": r["duplicates"],
             "refused": r["refused"],
             "reasons": "; ".join(f"{why} ({n})" for why, n in r["reasons"].items())
                        or ("table missing" if r.get("missing") else "")}
            for t, r in result.items()]
    tool.table(rows, ("table", "read", "stored", "duplicates", "refused", "reasons"))
