"""The table of query commands and what every command receives.

A command is declared once, by ``@command``: a name, a parameter spec (name ->
parser, see ``query.params``; a parser's ``json_schema`` types it in OpenAPI),
a function ``run(ctx, params) -> reply``, its HTTP route under the gateway's
prefix (``route="GET /metrics"``, or ``route=None``: it has none, said on
purpose), and the columns the tool prints it in (``columns=``; the tool learns
them from the ``commands`` reply). The gateway, its OpenAPI document and the
tool's tables are built from this registry. ``admin=True`` marks the administrative
commands (those that write, start maintenance or stop the daemon): with
``security.admin_endpoint`` or ``security.admin_keys_dir`` set, the query server
runs them only for the admin endpoint or an admin key. Replies are built by
``protocol.ok``; failures are raised as ``params.BadParam`` or
:class:`CommandError` and turned into ``protocol.error`` by the query server.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import apsw

from linkband_historyd.query import params as P
from linkband_historyd.settings import Settings


class CommandError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


METHODS = ("GET", "POST")     # GET for what reads, POST for what acts


@dataclass
class Command:
    name: str
    spec: dict
    run: Callable
    help: str
    cached: bool = False          # replies reused while the database is unchanged
    admin: bool = False           # writes or stops: refused where admin commands are restricted
    route: tuple[str, str] | None = None     # (method, path under the gateway's prefix)
    columns: tuple[str, ...] | None = None   # the tool's table; None: the rows' own keys

    @property
    def schema(self) -> dict:
        """{parameter: JSON schema}, from the parsers' ``json_schema``."""
        return {n: param_schema(p) for n, p in self.spec.items()}

    def describe(self) -> dict:
        """What the ``commands`` reply says about it (the tool and the gateway read it)."""
        return {"command": self.name, "help": self.help, "params": sorted(self.spec),
                "admin": self.admin, "route": " ".join(self.route) if self.route else None,
                "columns": list(self.columns) if self.columns else None}


COMMANDS: dict[str, Command] = {}


def param_schema(parser) -> dict:
    """The JSON schema a parser declares (``parser.json_schema``), or {} for any value."""
    return dict(getattr(parser, "json_schema", None) or {})


def parse_route(route: str | None) -> tuple[str, str] | None:
    """``"GET /metrics"`` -> ("GET", "/metrics"); None stays None (no route)."""
    if route is None:
        return None
    method, _, path = route.partition(" ")
    if method not in METHODS or not path.startswith("/") or " " in path:
        raise ValueError(f"route {route!r}: give 'GET /path' or 'POST /path', or None")
    return method, path


def command(name: str, help: str, spec: dict | None = None, *, route: str | None,
            columns=None, cached: bool = False, admin: bool = False, **more):
    """Register ``run(ctx, params)`` as the command ``name``. ``route`` is required:
    a command says which HTTP route it has, or that it has none (None)."""
    if name in COMMANDS:
        raise ValueError(f"command {name!r} declared twice")
    method_path = parse_route(route)

    def register(fn):
        COMMANDS[name] = Command(name, {**(spec or {}), **more}, fn, help, cached, admin,
                                 method_path, tuple(columns) if columns else None)
        return fn
    return register


def routes() -> list[tuple[str, str, str]]:
    """(method, path, command) of every command with a route, in declaration order."""
    return [(*c.route, c.name) for c in COMMANDS.values() if c.route]


class QueryContext:
    """The read-only connection of a query worker, its settings, and the pids of the
    query process that owns it and of the supervisor (``stats`` names the one,
    ``stop`` and ``reload`` signal the other)."""

    def __init__(self, conn: apsw.Connection, cfg: Settings, started_at: float,
                 query_pid: int | None = None, supervisor_pid: int | None = None):
        self.conn = conn
        self.cfg = cfg
        self.started_at = started_at
        self.query_pid = query_pid or os.getpid()
        self.supervisor_pid = supervisor_pid or os.getppid()
        self.broker: dict = {}          # what the query process told about itself (stats)

    def limit(self, p: dict, default: int | None = None) -> int:
        n = p.get("limit", default or self.cfg.query.default_limit)
        if n > self.cfg.query.max_limit:
            raise P.BadParam("limit", f"at most {self.cfg.query.max_limit}")
        return n

    def dicts(self, sql: str, args, columns) -> list[dict]:
        """Small results as dicts (JSON columns stay text)."""
        return [dict(zip(columns, r)) for r in self.conn.execute(sql, args)]

    def data_version(self) -> int:
        """Changes whenever another connection (the writer) has committed."""
        return self.conn.execute("PRAGMA data_version").fetchall()[0][0]


class ResultCache:
    """Replies of cached commands, valid while the writer has committed nothing
    new (``PRAGMA data_version`` unchanged): a stale row is never served."""

    def __init__(self, size: int = 64):
        self.size = size
        self._entries: OrderedDict = OrderedDict()
        self.version = None
        self.hits = self.misses = 0

    def get(self, key, version: int):
        if version != self.version:
            self._entries.clear()
            self.version = version
        reply = self._entries.get(key)
        if reply is None:
            self.misses += 1
        else:
            self.hits += 1
            self._entries.move_to_end(key)
        return reply

    def put(self, key, reply) -> None:
        self._entries[key] = reply
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
