"""Request and reply over ZeroMQ: one envelope, one timeout policy, handlers by name.

Every request-reply socket of the SDK and the daemon speaks the query protocol's
envelope (:mod:`protocol`): a request is ``[PROTOCOL_VERSION, name, params]``, a
reply ``{"ok": True, "rows": [...], "next": ..., ...}`` or ``{"ok": False,
"error": {"code", "message"}}``. That holds for the query socket, the writer's
control socket and the scheduler's socket alike.

Timeout policy, the ZeroMQ guide's lazy pirate: a request waits at most its
timeout; a REQ socket whose request got no reply can never send again, so it is
closed and the next request opens a new one. A request that timed out is not
sent again here: the other side may have done it all the same (a write, a job
started), so the caller decides whether to ask again.

The answering side registers its handlers by name (:class:`Handlers`) or
passes one dispatch function to :func:`answer`.
"""
from __future__ import annotations

import threading
from typing import Callable

import zmq

from . import protocol


class Timeout(TimeoutError):
    """No reply within the timeout (the socket has been replaced)."""


class RpcError(RuntimeError):
    """An error reply, or a handler's refusal: ``code`` travels in the reply."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Requester:
    """The asking side of one endpoint. Thread-safe: requests take turns.

    ``prepare(sock)`` runs on each new socket before it connects (CURVE keys);
    with ``lenient``, parameters of a type msgpack lacks travel as their ``str()``
    (the daemon's internal callers) instead of raising TypeError.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout: float,
                 prepare: Callable[[zmq.Socket], None] | None = None, lenient: bool = False):
        self.endpoint = endpoint
        self.timeout = timeout
        self._ctx = ctx
        self._prepare = prepare
        self._lenient = lenient
        self._lock = threading.Lock()
        self._sock = None

    def request(self, name: str, params: dict | None = None, timeout: float | None = None) -> dict:
        """The reply to one request, ``ok`` or not; :class:`Timeout` without one."""
        timeout = self.timeout if timeout is None else timeout
        frame = protocol.encode_request(name, params, lenient=self._lenient)
        with self._lock:
            sock = self._socket()
            sock.send(frame)
            if sock.poll(int(timeout * 1000)):
                return protocol.decode_reply(sock.recv())
            self._drop()                     # a REQ socket without its reply is stuck
        raise Timeout(f"no reply from {self.endpoint} within {timeout:g}s")

    def call(self, name: str, params: dict | None = None, timeout: float | None = None) -> dict:
        """:meth:`request`, with an error reply raised as :class:`RpcError`."""
        reply = self.request(name, params, timeout)
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise RpcError(err.get("code", "error"), err.get("message", ""))
        return reply

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            sock = self._ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            try:
                if self._prepare is not None:
                    self._prepare(sock)
                sock.connect(self.endpoint)
            except BaseException:
                sock.close(0)
                raise
            self._sock = sock
        return self._sock

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> "Requester":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def answer(frame: bytes, dispatch: Callable[[str, dict], dict],
           bad_request: tuple = (ValueError, TypeError)) -> bytes:
    """The encoded reply to one request frame: ``dispatch(name, params)``'s reply
    dict, or an error reply: a malformed request, or one of the ``bad_request``
    exceptions, is ``bad_request``; an :class:`RpcError` keeps its code. Values of
    a type msgpack lacks travel as their ``str()``."""
    try:
        name, params = protocol.decode_request(frame)
        reply = dispatch(name, params)
    except RpcError as exc:
        reply = protocol.error(exc.code, str(exc))
    except (protocol.ProtocolError, *bad_request) as exc:
        reply = protocol.error("bad_request", str(exc))
    return protocol.encode_reply(reply, lenient=True)


class Handlers(dict):
    """Handlers registered by name; each takes ``(*args, params)`` and returns a
    reply dict (:func:`protocol.ok`). An unknown name is a ``bad_request``."""

    def register(self, name: str):
        def add(fn):
            self[name] = fn
            return fn
        return add

    def dispatch(self, name: str, params: dict, *args) -> dict:
        fn = self.get(name)
        if fn is None:
            raise RpcError("bad_request", f"unknown op {name!r}")
        return fn(*args, params)

    def answer(self, frame: bytes, *args, bad_request: tuple = (ValueError, TypeError)) -> bytes:
        return answer(frame, lambda name, params: self.dispatch(name, params, *args), bad_request)
