"""What every request to the HTTP gateway passes before a route sees it.

In this order: the Host header must be an allowed one (DNS rebinding: 400); a
state-changing request (any method but GET, HEAD, OPTIONS) and every WebSocket
handshake whose ``Origin`` is given must come from the gateway's own origin
(scheme://host:port of the request) or one of ``allowed_origins`` (403: a page
of another site, even one a host app's permissive CORS would let through);
the request must be authorized (401 with ``WWW-Authenticate: Bearer``);
a body may hold at most ``max_body`` bytes (413, counted as it arrives, whatever
``Content-Length`` says; nothing more is read). A refused WebSocket gets the
HTTP answer where the server supports it, else a close before the handshake.
"""
from __future__ import annotations

import inspect
import ipaddress
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from linkband_historyd.http.token_auth import TokenAuth
from linkband_historyd.http.params import HTTPError
from linkband_historyd.http.responses import error_response

MAX_BODY_BYTES = 1 << 20
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
UNAUTHORIZED = ("send Authorization: Bearer <token> (the token is in <runtime_dir>/http.token), "
                "or open the URL that `linkband-history ui` prints")


class BodyTooLarge(HTTPError):
    def __init__(self, limit: int):
        super().__init__(413, "too_large", f"request body over {limit} bytes")


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normal_origin(origin: str) -> str:
    """``scheme://host:port``, lower case, the default port written out."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return origin
    if not parts.scheme or not parts.hostname:
        return origin.strip().lower()          # "null" (file:// pages) and the like
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def own_origin(scope, host: str) -> str:
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    return normal_origin(f"{scheme}://{host}")


def request_check(token, auth, allow_unauthenticated: bool, owner: str):
    """The ``auth`` of :class:`GuardMiddleware` from an app factory's arguments
    (``owner``: the factory's name, for the error): a ``TokenAuth`` for ``token``,
    the host's callable ``auth``, or None only with ``allow_unauthenticated``."""
    if token is not None and auth is not None:
        raise ValueError(f"{owner}: give token= or auth=, not both")
    if token is not None:
        return TokenAuth(token)
    if auth is not None:
        if not callable(auth):
            raise ValueError(f"{owner}: auth= must be a callable (HTTPConnection) -> bool")
        return auth
    if allow_unauthenticated:
        return None
    raise ValueError(f"{owner}: give token= (Bearer header or cookie), auth= (a callable "
                     "deciding each request) or, when the host app authenticates every "
                     "request itself, allow_unauthenticated=True")


async def deny(scope, receive, send, status: int, code: str, message: str,
               headers: dict | None = None, ws_close: int = 1008) -> None:
    """The JSON error; for a WebSocket without the ASGI denial-response extension,
    a close before the handshake (the client sees a 403)."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": ws_close, "reason": message[:120]})
        return
    await error_response(status, code, message, headers)(scope, receive, send)


class GuardMiddleware:
    """Host, Origin, authorization and body size, as the module says. ``auth``: a
    ``TokenAuth`` (which also answers the ``<prefix>/ui?token=`` login), a callable
    ``(HTTPConnection) -> bool`` (may be async) of a host app, or None (no check)."""

    def __init__(self, app, allowed_hosts=None, allowed_origins=(), auth=None, prefix: str = "",
                 max_body: int = MAX_BODY_BYTES):
        self.app, self.auth, self.prefix, self.max_body = app, auth, prefix, max_body
        self.allowed = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        self.origins = {normal_origin(o) for o in allowed_origins}

    def origin_ok(self, origin: str | None, scope, host: str) -> bool:
        if origin is None:
            return True                   # not a browser
        o = normal_origin(origin)
        return o in self.origins or o == own_origin(scope, host)

    async def authorized(self, conn: HTTPConnection) -> bool:
        ok = self.auth(conn)
        if inspect.isawaitable(ok):
            ok = await ok
        return ok is True

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        conn = HTTPConnection(scope)
        host = conn.headers.get("host", "")
        hostname = urlsplit("//" + host).hostname or ""
        if self.allowed is not None and hostname.lower() not in self.allowed:
            return await deny(scope, receive, send, 400, "bad_request", f"host {host!r} not allowed")
        if (scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS) and \
                not self.origin_ok(conn.headers.get("origin"), scope, host):
            return await deny(scope, receive, send, 403, "forbidden",
                              f"origin {conn.headers.get('origin')!r} not allowed "
                              "(add it to http.allowed_origins)")
        if self.auth is not None:
            login = self.auth.login(conn, self.prefix) if isinstance(self.auth, TokenAuth) else None
            if login:
                return await login(scope, receive, send)
            if login is False or not await self.authorized(conn):
                return await deny(scope, receive, send, 401, "unauthorized", UNAUTHORIZED,
                                  {"WWW-Authenticate": "Bearer"})
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        return await self.bounded(scope, receive, send, conn)

    async def bounded(self, scope, receive, send, conn: HTTPConnection):
        """The app, with a body of at most ``max_body`` bytes."""
        declared = conn.headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > self.max_body:
            return await deny(scope, receive, send, 413, "too_large",
                              f"request body over {self.max_body} bytes")
        received, started = 0, False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def watching_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await deny(scope, receive, send, exc.status, exc.code, exc.message)
