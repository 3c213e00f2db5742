"""REST API, live WebSocket and dashboard page over the daemon's query and events sockets.

An ASGI (Starlette) app; the SDK's FastAPI server mounts it::

    from linkband_historyd.http.app import create_app
    gateway = create_app(query_endpoint, events_endpoint, auth=check)   # routes under /history
    app.mount("/", gateway)          # on the host's shutdown: gateway.state.gateway.close()

(``auth``: the host's decision per request; or ``token=``; or, only when the host
authenticates every request itself, ``allow_unauthenticated=True``), or it runs
alone: ``python -m linkband_historyd.http.app --query EP --events EP --host
127.0.0.1 --port 8765`` (a non-loopback --host needs --allow-remote); alone or as
the daemon's child it writes a new token to ``<runtime_dir>/http.token`` at each
start (``token_auth``).

The routes are the registry's (``@command(route=...)``, ``commands.routes()``;
GET: query string, typed by the command's parsers, lists repeat, tags as
``tag.KEY=VALUE``; POST: a JSON object). Replies are the daemon's; errors
``{"error": {"code", "message"}}`` with 400 / 401 / 403 / 413 / 501 / 503 / 500.
Exports stream page by page; ``/openapi.json`` describes it all; ``/ws?topics=a,b`` forwards
events; ``/ui`` is the dashboard; ``/prometheus`` (``http.metrics_path``) is the Prometheus
exposition (``http/prometheus.py``). Queries run in threads on a small pool of
HistoryClients. Requests without the token, non-loopback Host headers (DNS
rebinding), state changes and WebSockets from other origins, bodies over 1 MiB
(``http_guard``), non-JSON POSTs (cross-site forms) and WebSockets past
``max_websockets`` are refused.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import html
import io
import json
import logging
import os
import signal
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import msgpack
import zmq
import zmq.asyncio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from linkband_history import HistoryClient, curve_keys
from linkband_history.endpoints import default_runtime_dir, resolve_endpoint
from linkband_history.export import csv_cell
from linkband_history.protocol import FIELDS, LOG_LEVELS
from linkband_historyd.commands import routes as command_routes
from linkband_historyd.config import BY_KEY
from linkband_historyd.http import token_auth
from linkband_historyd.http.guard import (MAX_BODY_BYTES, GuardMiddleware, deny, is_loopback_host,
                                         request_check)
from linkband_historyd.http.openapi import openapi_document
from linkband_historyd.http.params import HTTPError, Params, parse_json
from linkband_historyd.http.prometheus import Exposition, PrometheusEndpoint
from linkband_historyd.http.responses import JSON, dumps, error_response, reply_response
from linkband_historyd.settings import Settings

log = logging.getLogger("linkband_historyd.http")

STATIC_DIR = Path(__file__).with_name("static")
EXPORT_PAGE = 10_000
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_DEFAULT = {k: BY_KEY[k].default for k in ("http.host", "http.port", "http.max_websockets",
                                             "daemon.log_level")}
MAX_WEBSOCKETS = _DEFAULT["http.max_websockets"]
WS_MAX_MESSAGE = 64 * 1024       # (un)subscribe messages are small

EXPORTS = {"metrics": "metric", "logs": "log", "performance": "performance", "alerts": "alert"}
RESERVED = frozenset({"command", "self"})      # HistoryClient.query's own argument names


# -- the daemon's query socket -------------------------------------------------

class ClientPool:
    """At most ``size`` HistoryClients, each used by one thread at a time."""

    def __init__(self, endpoint: str, size: int = 4, timeout: float = 15.0,
                 curve: dict | None = None):
        self.endpoint, self.timeout, self.curve = endpoint, timeout, curve or {}
        self._sem = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[HistoryClient] = []
        self._closed = False

    def query(self, command: str, params: dict, timeout: float | None = None) -> dict:
        bad = RESERVED.intersection(params)
        if bad:
            return {"ok": False, "error": {"code": "bad_param",
                                           "message": f"{command}: {min(bad)}: unknown parameter"}}
        if not self._sem.acquire(timeout=self.timeout):
            raise TimeoutError("all connections to the daemon are busy")
        try:
            with self._lock:
                if self._closed:
                    raise TimeoutError("gateway is closing")
                c = self._idle.pop() if self._idle else None
            if c is None:
                c = HistoryClient(query=self.endpoint, query_timeout=self.timeout, linger=0,
                                  **self.curve)
            c.query_timeout = timeout or self.timeout
            try:
                return c.query(command, **params)
            finally:
                with self._lock:
                    if self._closed:
                        c.close(timeout=1.0)
                    else:
                        self._idle.append(c)
        finally:
            self._sem.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for c in idle:
            c.close(timeout=1.0)


# -- the gateway --------------------------------------------------------------

class Gateway:
    def __init__(self, query_endpoint: str, events_endpoint: str | None, prefix: str,
                 timeout: float, pool_size: int, max_websockets: int = MAX_WEBSOCKETS,
                 curve: dict | None = None):
        self.events_endpoint, self.prefix, self.curve = events_endpoint, prefix, curve or {}
        self.max_websockets, self.websockets = max_websockets, 0      # the cap, the open ones
        self.pool = ClientPool(query_endpoint, pool_size, timeout, curve)
        self.params = Params()
        self.daemon_commands: dict | None = None      # from the daemon's `commands`, once reached
        self._zctx: zmq.asyncio.Context | None = None
        self.export_pages = 0                          # pages fetched by exports (for tests)

    async def ask(self, command: str, params: dict, timeout: float | None = None) -> dict:
        try:
            return await run_in_threadpool(self.pool.query, command, params, timeout)
        except TimeoutError as exc:
            raise HTTPError(503, "unavailable", f"{command}: {exc}") from None
        except (ValueError, TypeError, RecursionError) as exc:     # cannot be packed to send
            raise HTTPError(400, "bad_request", f"{command}: parameters cannot be sent: "
                            f"{exc}") from None

    async def params_of(self, request: Request, command: str) -> dict:
        p = self.params.convert(command, request.query_params.multi_items())
        if request.method == "POST":
            p.update(await json_body(request))
        return p

    def close(self) -> None:
        self.pool.close()
        if self._zctx is not None:
            self._zctx.destroy(linger=0)
            self._zctx = None

    # -- REST ---------------------------------------------------------------------
    def endpoint(self, command: str, export: bool = False):
        async def endpoint(request: Request):
            try:
                p = await self.params_of(request, command)
                if export:
                    return await self.export(command, EXPORTS[command], p)
                return reply_response(await self.ask(command, p))
            except HTTPError as e:
                return error_response(e.status, e.code, e.message)
        return endpoint

    async def export(self, command: str, kind: str, p: dict) -> Response:
        fmt = p.pop("format", "csv")
        if fmt not in ("csv", "jsonl"):
            raise HTTPError(400, "bad_param", f"format: must be csv or jsonl, not {fmt!r}")
        for k in ("limit", "cursor", "after_id", "count"):
            if k in p:
                raise HTTPError(400, "bad_param", f"{k}: an export pages through every match by "
                                "itself")
        columns, fields = ["id", *FIELDS[kind]], p.get("fields")
        if isinstance(fields, (str, list)):
            fields = fields.split(",") if isinstance(fields, str) else fields
            columns = [c for c in columns if c in ("id", "timestamp") or c in fields]
        first = await self.ask(command, {**p, "limit": EXPORT_PAGE, "count": True})
        self.export_pages += 1
        if not first.get("ok"):
            return reply_response(first)
        total = first.get("total")
        render = _csv_chunk if fmt == "csv" else _jsonl_chunk

        async def body():
            reply, header = first, fmt == "csv"
            while True:
                chunk = await run_in_threadpool(render, reply["rows"], columns, header)
                header, nxt, reply = False, reply.get("next"), None    # drop the page
                yield chunk
                chunk = None
                if not nxt:
                    return
                reply = await self.ask(command, {**p, "limit": EXPORT_PAGE, "cursor": nxt})
                self.export_pages += 1
                if not reply.get("ok"):
                    # the status is sent: cutting the stream is how the client learns of it
                    raise RuntimeError(f"export of {command} failed: {reply.get('error')}")

        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        name = f"{command}-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if total is not None:
            headers["X-Total-Count"] = str(total)
        return StreamingResponse(body(), media_type=media, headers=headers)

    # -- OpenAPI ------------------------------------------------------------------
    async def openapi_endpoint(self, request: Request):
        if self.daemon_commands is None:
            try:
                reply = await self.ask("commands", {}, timeout=2.0)
                if reply.get("ok"):
                    self.daemon_commands = {r["command"]: r for r in reply["rows"]}
            except HTTPError:
                pass
        return JSON(openapi_document(self.prefix, command_routes(), EXPORTS, self.params,
                                     self.daemon_commands))

    # -- WebSocket ----------------------------------------------------------------
    async def websocket_endpoint(self, ws: WebSocket):
        if self.websockets >= self.max_websockets:
            return await deny(ws.scope, ws.receive, ws.send, 503, "unavailable",
                              f"already {self.max_websockets} WebSocket connections (http."
                              "max_websockets)", ws_close=1013)
        self.websockets += 1
        try:
            await self.events(ws)
        finally:
            self.websockets -= 1

    async def events(self, ws: WebSocket):
        """Forward the daemon's events to one WebSocket until either side ends."""
        await ws.accept()
        if not self.events_endpoint:
            await ws.send_text(dumps({"error": {"code": "unavailable",
                                                "message": "no events endpoint configured"}}))
            await ws.close(code=1011)
            return
        if self._zctx is None:
            self._zctx = zmq.asyncio.Context()
        raw = ws.query_params.get("topics")
        topics = {""} if raw is None else {t.strip()[:256] for t in raw.split(",")[:64] if t.strip()}
        sock = self._zctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 10_000)
        # the daemon's own keys (HttpChild), else the environment's
        curve_keys.apply(sock, self.events_endpoint, curve_keys.load(
            self.curve.get("curve_server_public"), self.curve.get("curve_secret_key_file")))
        sock.connect(self.events_endpoint)
        for t in topics:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        lock = asyncio.Lock()

        async def send(obj):
            async with lock:
                await ws.send_text(dumps(obj))

        async def pump():
            while True:
                frames = await sock.recv_multipart()
                if len(frames) < 2:
                    continue
                try:
                    data = msgpack.unpackb(frames[1], raw=False)
                except Exception:
                    data = None
                await send({"topic": frames[0].decode("utf-8", "replace"), "data": data})

        async def listen():
            while True:
                try:
                    msg = parse_json(await ws.receive_text(), "message")
                except (ValueError, HTTPError):
                    msg = None
                if not isinstance(msg, dict):
                    await send({"error": {"code": "bad_request", "message":
                                          'send {"subscribe": [...]} or {"unsubscribe": [...]}'}})
                    continue
                for key, sub in (("subscribe", True), ("unsubscribe", False)):
                    wanted = msg.get(key) or []
                    for t in (str(t)[:256] for t in (wanted if isinstance(wanted, list) else [wanted])):
                        if sub != (t in topics) and (not sub or len(topics) < 64):
                            sock.setsockopt(zmq.SUBSCRIBE if sub else zmq.UNSUBSCRIBE, t.encode())
                            (topics.add if sub else topics.discard)(t)
                await send({"subscribed": sorted(topics)})

        async def run(fn, scope):          # the first to end (a disconnect) ends both
            try:
                await fn()
            except (WebSocketDisconnect, RuntimeError, OSError, zmq.ZMQError):
                pass
            finally:
                scope.cancel()

        try:
            await send({"subscribed": sorted(topics)})
            async with anyio.create_task_group() as tg:
                for fn in (pump, listen):
                    tg.start_soon(run, fn, tg.cancel_scope)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            sock.close(0)

    # -- dashboard ----------------------------------------------------------------
    async def ui_endpoint(self, request: Request):
        base = request.scope.get("root_path", "") + self.prefix
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        return Response(page.replace("{{BASE}}", html.escape(base, quote=True)),
                        media_type="text/html; charset=utf-8", headers={
                            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                            "connect-src 'self'; frame-ancestors 'none'",
                            "Cache-Control": "no-cache"})


# -- helpers ------------------------------------------------------------------

async def json_body(request: Request) -> dict:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HTTPError(415, "bad_request", "POST a JSON object of parameters with Content-Type: "
                        "application/json ({} for none)")
    raw = await request.body()          # at most max_body bytes (GuardMiddleware)
    if not raw.strip():
        return {}
    try:
        body = parse_json(raw, "body")
    except ValueError as exc:
        raise HTTPError(400, "bad_request", f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "bad_request", "body must be a JSON object of parameters")
    return body


def _csv_chunk(rows, columns, header: bool) -> bytes:
    """Rows as CSV, the way ``linkband-history export`` writes them."""
    f = io.StringIO()
    w = csv.writer(f)
    if header:
        w.writerow(columns)
    for r in rows:
        w.writerow([csv_cell(c, r.get(c)) for c in columns])
    return f.getvalue().encode("utf-8")


def _jsonl_chunk(rows, columns, header: bool) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def create_app(query_endpoint: str, events_endpoint: str | None = None, prefix: str = "/history",
               *, token: str | None = None, auth=None, allow_unauthenticated: bool = False,
               allowed_hosts=LOOPBACK_HOSTS, allowed_origins=(), timeout: float = 15.0,
               pool_size: int = 4, max_websockets: int = MAX_WEBSOCKETS,
               max_body: int = MAX_BODY_BYTES, parent_pid: int | None = None,
               curve: dict | None = None,
               prometheus: Exposition | None = Exposition()) -> Starlette:
    """The ASGI app. Every request needs ``token`` (Bearer or the ``/ui?token=`` cookie)
    or passes ``auth(HTTPConnection)``; with neither, only ``allow_unauthenticated=True``
    builds it (the host app answers for every request). ``allowed_hosts=None`` accepts
    any Host header (remote use); ``allowed_origins`` are browser origins beyond the
    gateway's own that may change state and open WebSockets. ``prometheus``: where
    and how the Prometheus exposition is served (None, or an empty path: not at all)."""
    checker = request_check(token, auth, allow_unauthenticated, "create_app")
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    gw = Gateway(query_endpoint, events_endpoint, prefix, timeout, pool_size, max_websockets, curve)
    routes = [Route(prefix + path, gw.endpoint(cmd), methods=[method])
              for method, path, cmd in command_routes()]
    routes += [Route(f"{prefix}/{r}/export", gw.endpoint(r, True), methods=["POST"]) for r in EXPORTS]
    routes += [
        Route(prefix + "/openapi.json", gw.openapi_endpoint, methods=["GET"]),
        Route(prefix + "/ui", gw.ui_endpoint, methods=["GET"]),
        Route(prefix + "/ui/", lambda r: RedirectResponse("../ui"), methods=["GET"]),
        Mount(prefix + "/static", StaticFiles(directory=STATIC_DIR), name="static"),
        WebSocketRoute(prefix + "/ws", gw.websocket_endpoint),
    ]
    if prometheus is not None and prometheus.path:
        routes.append(Route(prometheus.path, PrometheusEndpoint(gw, prometheus).serve,
                            methods=["GET"]))

    @asynccontextmanager
    async def lifespan(app):
        watch = None
        if parent_pid is not None:
            async def watch_parent():
                while os.getppid() == parent_pid:
                    await asyncio.sleep(1.0)
                log.warning("parent process is gone; stopping")
                os.kill(os.getpid(), signal.SIGTERM)
            watch = asyncio.get_running_loop().create_task(watch_parent())
        try:
            yield
        finally:
            if watch is not None:
                watch.cancel()
            gw.close()

    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(
        GuardMiddleware, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins,
        auth=checker, prefix=prefix, max_body=max_body)])
    app.state.gateway = gw
    return app


def local_url(host: str, port: int, prefix: str) -> str:
    """The URL the owner's browser uses for a gateway bound to ``host``."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{prefix}"


def _arguments(argv):
    ap = argparse.ArgumentParser(prog="python -m linkband_historyd.http.app",
                                 description="REST API, WebSocket and dashboard of linkband-history")
    add = ap.add_argument
    add("--query", help="the daemon's query endpoint (default: as clients find it)")
    add("--events", help="the daemon's events endpoint (default: as clients find it)")
    add("--host", default=_DEFAULT["http.host"])
    add("--port", type=int, default=_DEFAULT["http.port"])
    add("--prefix", default="/history")
    add("--runtime-dir", default=os.environ.get("LINKBAND_HISTORY_RUNTIME_DIR") or None,
        help="owner-only directory for http.token and http.json (default: the daemon's)")
    add("--allowed-origin", action="append", default=[], dest="allowed_origins",
        help="a browser origin (scheme://host:port) beyond the gateway's own that may "
             "change state and open WebSockets (repeatable)")
    add("--max-websockets", type=int, default=MAX_WEBSOCKETS)
    add("--allow-remote", action="store_true",
        help="allow a non-loopback --host (token-protected, but plain HTTP)")
    add("--timeout", type=float, default=15.0, help="seconds to wait for a reply of the daemon")
    add("--exit-with-parent", action="store_true", help="stop when the parent process is gone")
    add("--log-level", default=_DEFAULT["daemon.log_level"], choices=LOG_LEVELS)
    add("--metrics-path", default=Exposition().path, type=BY_KEY["http.metrics_path"].parse,
        help="path of the Prometheus exposition ('' for none)")
    return ap.parse_args(argv)


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway runs with: built from the daemon's settings by :class:`HttpChild`,
    or from the command line of the standalone ``linkband-history-http`` (:func:`main`).
    ``curve``: the HistoryClient keyword arguments of the daemon's own CURVE keys (none:
    the environment's, as any client finds them)."""
    query: str | None = None
    events: str | None = None
    host: str = _DEFAULT["http.host"]
    port: int = _DEFAULT["http.port"]
    prefix: str = "/history"
    runtime_dir: str | None = None
    allowed_origins: tuple = ()
    max_websockets: int = MAX_WEBSOCKETS
    allow_remote: bool = False
    timeout: float = 15.0
    exit_with_parent: bool = False
    log_level: str = _DEFAULT["daemon.log_level"]
    curve: tuple = ()                 # (("curve_server_public", ...), ...): hashable, picklable
    prometheus: Exposition = Exposition()

    @classmethod
    def from_arguments(cls, argv=None) -> "GatewaySettings":
        a = _arguments(argv)
        return cls(a.query, a.events, a.host, a.port, a.prefix, a.runtime_dir,
                   tuple(a.allowed_origins), a.max_websockets, a.allow_remote, a.timeout,
                   a.exit_with_parent, a.log_level, prometheus=Exposition(a.metrics_path))

    @classmethod
    def from_settings(cls, s: Settings) -> "GatewaySettings":
        """The gateway as a child of the daemon: its http section, the query and events
        endpoints, the runtime directory (for the token), ``security.allow_remote``; with
        CURVE on the daemon's tcp:// endpoints it connects with the server's keys."""
        from linkband_historyd.security.curve_auth import self_client_options
        return cls(s.query.endpoint, s.events.endpoint, s.http.host, s.http.port,
                   runtime_dir=s.daemon.runtime_dir or None,
                   allowed_origins=tuple(s.http.allowed_origins),
                   max_websockets=s.http.max_websockets, allow_remote=s.security.allow_remote,
                   exit_with_parent=True, log_level=s.daemon.log_level,
                   curve=tuple(self_client_options(s).items()),
                   prometheus=Exposition(s.http.metrics_path, s.http.metrics_window_s,
                                         s.http.metrics_max_series_per_metric,
                                         s.http.metrics_max_series))


def ws_protocol() -> str:
    """uvicorn's WebSocket protocol on websockets' sans-I/O core where uvicorn has it
    (0.35 on); the SDK pins uvicorn 0.34.2, whose "websockets" protocol serves the same."""
    from uvicorn.config import WS_PROTOCOLS
    return "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"


def main(argv=None, ready=None) -> int:
    """The command line (``linkband-history-http``)."""
    return serve(GatewaySettings.from_arguments(argv), ready)


def serve(gs: GatewaySettings, ready=None) -> int:
    """Run the gateway until a stop signal; ``ready`` (an Event) is set once the port is
    bound and the token and address files are written."""
    if not gs.allow_remote and not is_loopback_host(gs.host):
        print(f"http_gateway: refusing to bind {gs.host}: not a loopback address; give "
              "--allow-remote to serve other machines (plain HTTP: the token crosses the "
              "network in clear)", file=sys.stderr)
        return 2
    if not 0 <= gs.port <= 65535 or gs.max_websockets < 1:
        print(f"http_gateway: bad port {gs.port} or --max-websockets", file=sys.stderr)
        return 2
    import uvicorn

    from linkband_historyd.security.sockets import prepare_runtime_dir
    logging.basicConfig(level=gs.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime_dir = gs.runtime_dir or default_runtime_dir()
    try:
        prepare_runtime_dir(runtime_dir)
        token = token_auth.write_token(runtime_dir)
    except (OSError, ValueError, RuntimeError) as exc:      # e.g. a directory another user owns
        print(f"http_gateway: cannot write the token into {runtime_dir}: {exc}", file=sys.stderr)
        return 2
    prefix = "/" + gs.prefix.strip("/") if gs.prefix.strip("/") else ""
    app = create_app(resolve_endpoint("query", gs.query), resolve_endpoint("events", gs.events),
                     prefix, token=token, allowed_origins=gs.allowed_origins,
                     allowed_hosts=None if gs.allow_remote else LOOPBACK_HOSTS,
                     max_websockets=gs.max_websockets, timeout=gs.timeout,
                     parent_pid=os.getppid() if gs.exit_with_parent else None,
                     curve=dict(gs.curve), prometheus=gs.prometheus)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                port = self.servers[0].sockets[0].getsockname()[1]
                token_auth.write_info(runtime_dir, local_url(gs.host, port, prefix))
                if ready is not None:
                    ready.set()

    server = Server(uvicorn.Config(app, host=gs.host, port=gs.port, access_log=False,
                                   log_level=gs.log_level.lower(), lifespan="on",
                                   ws=ws_protocol(), ws_max_size=WS_MAX_MESSAGE))
    # uvicorn re-raises a stop signal after its shutdown: with these handlers SIGTERM and
    # SIGINT end in exit code 0 (and one that comes before uvicorn listens is not lost)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        token_auth.forget(runtime_dir, token)
    return 0 if server.started else 1


class HttpChild:
    """The gateway as a child of the supervisor: ``Supervisor.ORDER`` can hold
    ``("http", HttpChild)`` (``run_child(cls, settings, ready)`` builds and runs it); it
    runs with :meth:`GatewaySettings.from_settings` and stops with its parent."""

    name = "http"

    def __init__(self, cfg: Settings, ready=None):
        self.cfg, self.ready = cfg, ready

    def run(self) -> None:
        os.umask(0o077)
        raise SystemExit(serve(GatewaySettings.from_settings(self.cfg), self.ready))


if __name__ == "__main__":
    sys.exit(main())
