"""What a query worker does with one request: decode, authorize, parse, run, reply.

Every request gets exactly one reply: a malformed request, an unknown command, a
bad parameter, a failing query or one over its time budget becomes an error
reply built by ``protocol.error``, counted, and the worker goes on.

Whether the request may run administrative commands (``admin=True`` in the
registry) is decided by the broker, which knows the socket it arrived on and the
peer's CURVE key, and travels with the request. The time budget is
``query.max_seconds``; a request may ask for less with the parameter
``max_seconds``, and only an admin request for more (up to
``query_budget.ADMIN_MAX_SECONDS``).
"""
from __future__ import annotations

import math
from collections import Counter

import apsw

from linkband_history import protocol
from linkband_historyd.commands.base import COMMANDS, CommandError, QueryContext, ResultCache
from linkband_historyd.query import search
from linkband_historyd.query.budget import ADMIN_MAX_SECONDS, Budget
from linkband_historyd.query.parallel import SideReaders
from linkband_historyd.query.params import BadParam, parse
from linkband_historyd.settings import Settings
from linkband_historyd.storage import schema

BUDGET_PARAM = "max_seconds"


class QueryHandler:
    def __init__(self, cfg: Settings, started_at: float, beat=None, stopping=None, log=None,
                 pids: dict | None = None):
        self.cfg = cfg
        self.started_at = started_at
        self.beat, self.stopping, self.log = beat, stopping, log
        self.pids = pids or {}            # query_pid, supervisor_pid: for stats, stop, reload
        self.qctx = None
        self.budget = None
        self.side = None                  # SideReaders of the connection, if any
        self.cache = ResultCache()
        self.errors: Counter = Counter()
        self.facts: dict = {}             # the broker's, with each request (stats shows them)

    def _open(self):
        conn = schema.open_reader(self.cfg.daemon.db_path)
        # big sorts spill to (owner-only) temp files instead of growing the worker
        conn.execute("PRAGMA temp_store = FILE")
        conn.createscalarfunction("lbh_fold", search.fold, 1, deterministic=True)
        return conn

    def _context(self) -> QueryContext:
        if self.qctx is None:
            conn = self._open()
            self.budget = Budget(conn, self.beat, self.stopping)
            if self.cfg.query.parallel > 1:
                self.side = SideReaders(conn, self._open, self.budget, self.cfg.query.parallel)
            self.qctx = QueryContext(conn, self.cfg, self.started_at, **self.pids)
        return self.qctx

    def handle(self, frame: bytes, admin: bool = True, admin_needs: str = "") -> dict:
        seconds = self.cfg.query.max_seconds
        try:
            name, raw = protocol.decode_request(frame)
        except protocol.ProtocolError as exc:
            return self._error("bad_request", str(exc))
        cmd = COMMANDS.get(name)
        if cmd is None:
            return self._error("unknown_command", f"unknown command {name[:64]!r}; "
                               "the command 'commands' lists them")
        if cmd.admin and not admin:
            return self._error("forbidden", f"command {name} needs {admin_needs or 'an admin'}")
        try:
            seconds = self._budget_of(raw, admin)
            p = parse(cmd.spec, raw)
            ctx = self._context()
            ctx.broker = self.facts
            self.budget.start(seconds)
            try:
                return self._run(cmd, ctx, p)
            finally:
                self.budget.end()
        except BadParam as exc:
            return self._error("bad_param", f"{name}: {exc}")
        except CommandError as exc:
            return self._error(exc.code, f"{name}: {exc}")
        except apsw.InterruptError:
            if self.budget is not None and self.budget.exceeded:
                return self._error("over_budget", self._over_budget(name, seconds, admin))
            return self._error("unavailable", f"{name}: interrupted: the worker is stopping")
        except apsw.CantOpenError as exc:
            self.close()                  # opened again at the next request
            return self._error("unavailable", f"database not available yet: {exc}")
        except apsw.Error as exc:
            self._warn("%s failed: %s", name, exc)
            return self._error("query_failed", f"{name}: {exc.__class__.__name__}: {exc}")
        except Exception as exc:  # a bug must not kill the worker
            if self.log:
                self.log.exception("%s crashed", name)
            return self._error("internal", f"{name}: {exc.__class__.__name__}: {exc}")

    def _run(self, cmd, ctx, p) -> dict:
        if not cmd.cached:
            return cmd.run(ctx, p)
        key = (cmd.name, repr(sorted(p.items())))
        version = ctx.data_version()
        reply = self.cache.get(key, version)
        if reply is None:
            reply = cmd.run(ctx, p)
            self.cache.put(key, reply)
        return reply

    def _budget_of(self, raw: dict, admin: bool) -> float:
        """The request's budget in seconds; ``max_seconds`` is taken out of ``raw``."""
        limit = self.cfg.query.max_seconds
        if BUDGET_PARAM not in raw:
            return limit
        v = raw.pop(BUDGET_PARAM)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise BadParam(BUDGET_PARAM, "must be a number of seconds > 0")
        most = ADMIN_MAX_SECONDS if admin else limit
        if v > most:
            who = ("an admin request" if admin else
                   "this request (an admin request may ask up to "
                   f"{ADMIN_MAX_SECONDS:g} s)")
            raise BadParam(BUDGET_PARAM, f"at most {most:g} for {who}; query.max_seconds is "
                                         f"{limit:g}")
        return float(v)

    def _over_budget(self, name: str, seconds: float, admin: bool) -> str:
        raise_it = (f"; an admin request may ask up to {ADMIN_MAX_SECONDS:g} s with "
                    f"{BUDGET_PARAM}" if admin else "")
        return (f"{name}: stopped after {seconds:g} s, its time budget (query.max_seconds = "
                f"{self.cfg.query.max_seconds:g}){raise_it}. Ask for less: a summary tier "
                "(tier=auto, hourly or daily; percentiles need detail rows), a larger bucket, "
                "a narrower since/until or fewer metrics; or export the rows page by page "
                "(linkband-history export) and compute it from them")

    def _warn(self, *args) -> None:
        if self.log:
            self.log.warning(*args)

    def _error(self, code: str, message: str) -> dict:
        self.errors[code] += 1
        return protocol.error(code, message)

    def close(self) -> None:
        if self.side is not None:
            self.side.close()
            self.side = None
        if self.qctx is not None:
            self.qctx.conn.close()
            self.qctx = None
