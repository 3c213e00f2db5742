"""The query commands: the registry (``base``), what they share (parameters, the
query engine, search, log patterns, the time budget), and one module per group of
commands. Importing the package registers every command (this is the one place
that imports the command modules); the dispatcher
(``dispatch``) runs them for the query workers.
"""
from linkband_historyd.commands import admin, analysis, basic, logs, sdk, trends# noqa: F401
from linkband_historyd.commands import monitoring  # noqa: F401
from linkband_historyd.commands.base import COMMANDS, routes  # noqa: F401
