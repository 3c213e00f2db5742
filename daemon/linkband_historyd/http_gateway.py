"""REST API, live WebSocket and dashboard page over the daemon's query and events sockets.

An ASGI (Starlette) app; the SDK's FastAPI server mounts it::

    from linkband_historyd.http_gateway import create_app
    gateway = create_app(query_endpoint, events_endpoint)      # routes under /history
    app.mount("/", gateway)          # on the host's shutdown: gateway.state.gateway.close()

or it runs alone: ``python -m linkband_historyd.http_gateway --query EP --events EP
--host 127.0.0.1 --port 8765`` (a non-loopback --host needs --allow-remote).

``ROUTES`` maps paths to daemon commands (GET: query string, typed by the command's
parsers, lists repeat, tags as ``tag.KEY=VALUE``; POST: a JSON object). Replies are the
daemon's; errors ``{"error": {"code", "message"}}`` with 400 / 501 / 503 / 500. Exports
stream page by page; ``/openapi.json`` describes it all; ``/ws?topics=a,b`` forwards
events; ``/ui`` is the dashboard. Queries run in threads on a small pool of
HistoryClients. Non-loopback Host headers (DNS rebinding), non-JSON POSTs (cross-site
forms) and WebSockets from other sites' pages are refused.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import html
import io
import ipaddress
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import msgpack
import zmq
import zmq.asyncio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from linkband_history import HistoryClient, curve_keys
from linkband_history.endpoints import resolve_endpoint
from linkband_history.protocol import FIELDS, JSON_FIELDS

from .http_openapi import openapi_document
from .http_params import HTTPError, Params

log = logging.getLogger("linkband_historyd.http")

STATIC_DIR = Path(__file__).with_name("static")
EXPORT_PAGE = 10_000
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
STATUS = {"bad_param": 400, "bad_request": 400, "forbidden": 403, "unknown_command": 501,
          "unavailable": 503}

# (method, path under the prefix, daemon command)
ROUTES = [
    ("GET", "/metrics", "metrics"), ("GET", "/metrics/summary", "metrics.summary"),
    ("GET", "/metrics/aggregate", "metrics.aggregate"), ("GET", "/metrics/trends", "metrics.trends"),
    ("GET", "/logs", "logs"), ("GET", "/logs/search", "logs.search"),
    ("GET", "/logs/stats", "logs.stats"), ("GET", "/logs/context", "logs.context"),
    ("GET", "/performance", "performance"), ("GET", "/performance/analysis", "performance.analysis"),
    ("GET", "/performance/compare", "performance.compare"), ("GET", "/alerts", "alerts"),
    ("GET", "/dashboard", "dashboard"), ("GET", "/reports", "reports"),
    ("POST", "/analyze", "analyze"), ("POST", "/archive", "archive"),
    ("POST", "/cleanup", "cleanup"), ("GET", "/storage", "storage"),
    ("POST", "/optimize", "optimize"), ("GET", "/stats", "stats"),
    ("GET", "/health", "ping"), ("GET", "/commands", "commands"),
]
EXPORTS = {"metrics": "metric", "logs": "log", "performance": "performance", "alerts": "alert"}
RESERVED = frozenset({"command", "self"})      # HistoryClient.query's own argument names


# -- JSON -----------------------------------------------------------------------

def _finite(v):
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


def dumps(obj) -> str:
    """Strict JSON (NaN and infinities become null), UTF-8 text kept as is."""
    kw = dict(ensure_ascii=False, separators=(",", ":"),
              default=lambda o: bytes(o).hex() if isinstance(o, (bytes, bytearray)) else str(o))
    try:
        return json.dumps(obj, allow_nan=False, **kw)
    except ValueError:
        return json.dumps(_finite(obj), **kw)


class JSON(JSONResponse):
    def render(self, content) -> bytes:
        return dumps(content).encode("utf-8")


def error_response(status: int, code: str, message: str) -> JSON:
    return JSON({"error": {"code": code, "message": message}}, status_code=status)


def reply_response(reply: dict) -> JSON:
    if reply.get("ok"):
        return JSON(reply)
    err = reply.get("error") or {}
    code = str(err.get("code") or "internal")
    return error_response(STATUS.get(code, 500), code, str(err.get("message", "")))


# -- the daemon's query socket -------------------------------------------------

class ClientPool:
    """At most ``size`` HistoryClients, each used by one thread at a time."""

    def __init__(self, endpoint: str, size: int = 4, timeout: float = 15.0):
        self.endpoint, self.timeout = endpoint, timeout
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
                c = HistoryClient(query=self.endpoint, query_timeout=self.timeout, linger=0)
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
                 timeout: float, pool_size: int):
        self.events_endpoint, self.prefix = events_endpoint, prefix
        self.pool = ClientPool(query_endpoint, pool_size, timeout)
        self.params = Params()
        self.daemon_commands: dict | None = None      # from the daemon's `commands`, once reached
        self._zctx: zmq.asyncio.Context | None = None
        self.export_pages = 0                          # pages fetched by exports (for tests)

    async def ask(self, command: str, params: dict, timeout: float | None = None) -> dict:
        try:
            return await run_in_threadpool(self.pool.query, command, params, timeout)
        except TimeoutError as exc:
            raise HTTPError(503, "unavailable", f"{command}: {exc}") from None

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
        return JSON(openapi_document(self.prefix, ROUTES, EXPORTS, self.params,
                                     self.daemon_commands))

    # -- WebSocket ----------------------------------------------------------------
    async def websocket_endpoint(self, ws: WebSocket):
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
        curve_keys.apply(sock, self.events_endpoint, curve_keys.load())   # keys from the environment
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
                    msg = json.loads(await ws.receive_text())
                except ValueError:
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
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
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
        w.writerow(["" if r.get(c) is None else
                    json.dumps(r[c], ensure_ascii=False) if c in JSON_FIELDS else r[c]
                    for c in columns])
    return f.getvalue().encode("utf-8")


def _jsonl_chunk(rows, columns, header: bool) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GuardMiddleware:
    """Refuse a Host that is not allowed (DNS rebinding), and a WebSocket opened by a page
    of another site (browsers apply no CORS to WebSockets): a browser's Origin must be the
    page's own, a loopback one, or one of ``allowed_origins`` (an app's ``file://`` page)."""

    def __init__(self, app, allowed_hosts=None, allowed_origins=()):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        self.origins = {o.lower().rstrip("/") for o in allowed_origins}

    def origin_ok(self, origin: str | None, host: str) -> bool:
        if not origin or origin.lower().rstrip("/") in self.origins:
            return True
        parts = urlsplit(origin.lower())
        return parts.netloc == host.lower() or (
            parts.scheme in ("http", "https") and is_loopback_host(parts.hostname or ""))

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        hostname = urlsplit("//" + host).hostname or ""
        bad = self.allowed is not None and hostname.lower() not in self.allowed
        if scope["type"] == "websocket":
            if bad or not self.origin_ok(headers.get("origin"), host):
                return await send({"type": "websocket.close", "code": 1008})
        elif bad:
            return await error_response(400, "bad_request", f"host {host!r} not allowed")(
                scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(query_endpoint: str, events_endpoint: str | None = None, prefix: str = "/history",
               *, allowed_hosts=LOOPBACK_HOSTS, allowed_origins=(), timeout: float = 15.0,
               pool_size: int = 4, parent_pid: int | None = None) -> Starlette:
    """The ASGI app. ``allowed_hosts=None`` accepts any Host header (remote use);
    ``allowed_origins`` adds WebSocket origins beyond the page's own and loopback ones."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    gw = Gateway(query_endpoint, events_endpoint, prefix, timeout, pool_size)
    routes = [Route(prefix + path, gw.endpoint(cmd), methods=[method])
              for method, path, cmd in ROUTES]
    routes += [Route(f"{prefix}/{r}/export", gw.endpoint(r, True), methods=["POST"]) for r in EXPORTS]
    routes += [
        Route(prefix + "/openapi.json", gw.openapi_endpoint, methods=["GET"]),
        Route(prefix + "/ui", gw.ui_endpoint, methods=["GET"]),
        Route(prefix + "/ui/", lambda r: RedirectResponse("../ui"), methods=["GET"]),
        Mount(prefix + "/static", StaticFiles(directory=STATIC_DIR), name="static"),
        WebSocketRoute(prefix + "/ws", gw.websocket_endpoint),
    ]

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

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(GuardMiddleware, allowed_hosts=allowed_hosts,
                                               allowed_origins=allowed_origins)])
    app.state.gateway = gw
    return app


def main(argv=None, ready=None) -> int:
    """The command line; ``ready`` (an Event) is set once the port is bound."""
    ap = argparse.ArgumentParser(prog="python -m linkband_historyd.http_gateway",
                                 description="REST API, WebSocket and dashboard of linkband-history")
    add = ap.add_argument
    add("--query", help="the daemon's query endpoint (default: as clients find it)")
    add("--events", help="the daemon's events endpoint (default: as clients find it)")
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8765)
    add("--prefix", default="/history")
    add("--allow-remote", action="store_true", help="allow a non-loopback --host (no authentication!)")
    add("--timeout", type=float, default=15.0, help="seconds to wait for a reply of the daemon")
    add("--exit-with-parent", action="store_true", help="stop when the parent process is gone")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    args = ap.parse_args(argv)
    if not args.allow_remote and not is_loopback_host(args.host):
        print(f"http_gateway: refusing to bind {args.host}: not a loopback address; give "
              "--allow-remote to serve other machines (the API has no authentication)",
              file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"http_gateway: bad port {args.port}", file=sys.stderr)
        return 2
    import uvicorn
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(resolve_endpoint("query", args.query), resolve_endpoint("events", args.events),
                     args.prefix, allowed_hosts=None if args.allow_remote else LOOPBACK_HOSTS,
                     timeout=args.timeout, parent_pid=os.getppid() if args.exit_with_parent else None)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started and ready is not None:
                ready.set()

    server = Server(uvicorn.Config(app, host=args.host, port=args.port, access_log=False,
                                   log_level=args.log_level.lower(), lifespan="on",
                                   ws="websockets-sansio"))
    # uvicorn re-raises a stop signal after its shutdown: with these handlers SIGTERM and
    # SIGINT end in exit code 0 (and one that comes before uvicorn listens is not lost)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    server.run()
    return 0 if server.started else 1


class HttpChild:
    """The gateway as a child of the supervisor: ``Supervisor.ORDER`` can hold
    ``("http", HttpChild)`` (``run_child(cls, cfg, ready)`` builds and runs it). Reads
    ``http.host`` / ``http.port`` (defaults 127.0.0.1 / 8765), the query and events
    endpoints, ``security.allow_remote`` and ``daemon.log_level``; stops with its parent."""

    name = "http"

    def __init__(self, cfg: dict, ready=None):
        self.cfg, self.ready = cfg, ready

    def argv(self) -> list[str]:
        c = self.cfg
        argv = ["--query", c["query.endpoint"], "--events", c["events.endpoint"],
                "--host", str(c.get("http.host", "127.0.0.1")), "--port", str(c.get("http.port", 8765)),
                "--log-level", c.get("daemon.log_level", "INFO"), "--exit-with-parent"]
        return argv + (["--allow-remote"] if c.get("security.allow_remote") else [])

    def run(self) -> None:
        os.umask(0o077)
        # with CURVE on the daemon's tcp:// endpoints, the gateway connects with the server's keys
        from .curve import self_client_options
        keys = self_client_options(self.cfg)
        if keys:
            os.environ[curve_keys.ENV_SERVER_PUBLIC] = keys["curve_server_public"]
            os.environ[curve_keys.ENV_CLIENT_SECRET] = keys["curve_secret_key_file"]
        raise SystemExit(main(self.argv(), self.ready))


if __name__ == "__main__":
    sys.exit(main())
