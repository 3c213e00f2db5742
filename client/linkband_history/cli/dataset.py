"""linkband-history dataset export: write the rows new since the last export into
a Parquet dataset now, through the daemon (its ``dataset.export`` command starts
the scheduler's dataset job, the one ``[dataset] dir`` runs on its own)."""
from __future__ import annotations

import os

import click

from linkband_history.cli.admin import _run_job
from linkband_history.cli.tool import _time, main

KINDS = ("metric", "performance", "log", "alert")


@main.group()
def dataset():
    """Parquet datasets for many machines (kind=/host=/date= partitions)."""


@dataset.command("export")
@click.option("--since", callback=_time, default=None,
              help="where a new dataset starts: epoch, ISO-8601 or relative (15m, 2h, 7d); "
                   "default: the oldest row")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="the dataset's directory; default: the daemon's dataset.dir")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="one kind only")
@click.pass_obj
def export(tool, since, directory, kind):
    """Export every row not yet in the dataset (each row once), and wait for it."""
    _run_job(tool, "dataset.export", since=since, kind=kind,
             dir=os.path.abspath(directory) if directory else None)
