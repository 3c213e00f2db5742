"""linkband-history: the command-line tool over the query socket.

``main`` (the click group and its options; the ``Tool`` its subcommands use is
in ``cli.tool``) gets its subcommands from the modules listed here, each
registering its own. No module of the tool imports this ``__init__``, so there
is no import circle. ``linkband-history`` and ``python -m linkband_history.cli``
run ``main``.
"""
from linkband_history.cli import admin, dataset, query, records, sdk_import, trends  # noqa: F401 - register subcommands
from linkband_history.cli.tool import main

__all__ = ["main"]
