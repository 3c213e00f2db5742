"""The query process: a REP socket answered from a read-only connection.

Every request gets exactly one reply (REP demands it): a malformed request, an
unknown command, a bad parameter or a failing query becomes an error reply
built by ``protocol.error``, counted, and the loop goes on.

With ``security.admin_endpoint`` set, a second REP socket is bound there and
the administrative commands (``admin=True`` in the registry) are answered only
on it; with ``security.admin_keys_dir`` (and CURVE) they are also answered on
the query endpoint for a client whose public key (the ZAP User-Id) is an admin key.
"""
from __future__ import annotations

import time
from collections import Counter

import apsw
import zmq

from linkband_history import protocol

from . import (admin_commands, analysis_commands, commands, log_commands,  # noqa: F401
               trend_commands)                                           # they register commands
from . import curve, schema, search
from .child import Child
from .params import BadParam, parse
from .registry import COMMANDS, CommandError, QueryContext, ResultCache
from .sockets import bind


class QueryServer(Child):
    name = "query"

    def initialize(self) -> None:
        self.started_at = self.cfg.get("daemon.started_at", time.time())
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 1024 * 1024)
        bind(self.sock, self.cfg["query.endpoint"], self.cfg["daemon.runtime_dir"])
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.admin_sock = None
        admin_endpoint = self.cfg.get("security.admin_endpoint")
        if admin_endpoint:
            self.admin_sock = self.ctx.socket(zmq.REP)
            self.admin_sock.setsockopt(zmq.LINGER, 0)
            self.admin_sock.setsockopt(zmq.MAXMSGSIZE, 1024 * 1024)
            bind(self.admin_sock, admin_endpoint, self.cfg["daemon.runtime_dir"])
            self.poller.register(self.admin_sock, zmq.POLLIN)
            self.log.info("admin endpoint ready: %s", admin_endpoint)
        self.admin_keys = curve.admin_keys() if curve.applies(self.cfg["query.endpoint"]) else None
        # admin commands on the query endpoint: everyone's (the default), only admin keys', or none
        self.admin_restricted = bool(admin_endpoint) or self.admin_keys is not None
        self.qctx = None
        self.cache = ResultCache()
        self.errors: Counter = Counter()
        self.log.info("query server ready: %s", self.cfg["query.endpoint"])

    def _context(self) -> QueryContext:
        if self.qctx is None:
            conn = schema.open_reader(self.cfg["daemon.db_path"])
            conn.createscalarfunction("lbh_fold", search.fold, 1, deterministic=True)
            self.qctx = QueryContext(conn, self.cfg, self.started_at)
        return self.qctx

    def loop_once(self) -> None:
        for sock, _ in self.poller.poll(int(self.tick * 1000)):
            frame = sock.recv(copy=False)
            admin = self._admin_allowed(sock, frame)
            with protocol.gc_paused():
                reply = protocol.encode_reply(self.handle(frame.bytes, admin))
            sock.send(reply)

    def _admin_allowed(self, sock, frame) -> bool:
        if sock is self.admin_sock or not self.admin_restricted:
            return True
        if self.admin_keys is None:
            return False
        try:
            return frame.get("User-Id") in self.admin_keys     # the client's z85 public key
        except zmq.ZMQError:                                   # not a ZAP-authenticated peer
            return False

    def handle(self, frame: bytes, admin: bool = True) -> dict:
        try:
            name, raw = protocol.decode_request(frame)
        except protocol.ProtocolError as exc:
            return self._error("bad_request", str(exc))
        cmd = COMMANDS.get(name)
        if cmd is None:
            return self._error("unknown_command", f"unknown command {name[:64]!r}; "
                               "the command 'commands' lists them")
        if cmd.admin and not admin:
            needs = []
            if self.admin_sock is not None:
                needs.append("the admin endpoint (security.admin_endpoint)")
            if self.admin_keys is not None:
                needs.append("an admin key (security.admin_keys_dir)")
            return self._error("forbidden", f"command {name} needs {' or '.join(needs)}")
        try:
            p = parse(cmd.spec, raw)
            ctx = self._context()
            if not cmd.cached:
                return cmd.run(ctx, p)
            key = (name, repr(sorted(p.items())))
            version = ctx.data_version()
            reply = self.cache.get(key, version)
            if reply is None:
                reply = cmd.run(ctx, p)
                self.cache.put(key, reply)
            return reply
        except BadParam as exc:
            return self._error("bad_param", f"{name}: {exc}")
        except CommandError as exc:
            return self._error(exc.code, f"{name}: {exc}")
        except apsw.CantOpenError as exc:
            self.qctx = None
            return self._error("unavailable", f"database not available yet: {exc}")
        except apsw.Error as exc:
            self.log.warning("%s failed: %s", name, exc)
            return self._error("query_failed", f"{name}: {exc.__class__.__name__}: {exc}")
        except Exception as exc:  # a bug must not kill the socket's only reader
            self.log.exception("%s crashed", name)
            return self._error("internal", f"{name}: {exc.__class__.__name__}: {exc}")

    def _error(self, code: str, message: str) -> dict:
        self.errors[code] += 1
        return protocol.error(code, message)

    def shutdown(self) -> None:
        self.sock.close(0)
        if self.admin_sock is not None:
            self.admin_sock.close(0)
        curve.stop(self.ctx)
        self.ctx.term()
        if self.qctx is not None:
            self.qctx.conn.close()
