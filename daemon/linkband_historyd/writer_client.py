"""How the scheduler and the query process hand writes to the writer.

``WriterClient(endpoint).call(op, **params)`` sends one named operation (see
``write_ops``) to the writer's control socket and waits for its result. Not
thread-safe: one per thread.
"""
from __future__ import annotations

import time

import msgpack
import zmq

from linkband_historyd.security import curve_auth

BULK_DUTY = 0.25     # share of the writer's time one long maintenance job may take


class WriterError(RuntimeError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class WriterClient:
    def __init__(self, endpoint: str, timeout: float = 30.0, ctx: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout = timeout
        self._ctx = ctx or zmq.Context.instance()
        self._sock = None

    def _socket(self):
        if self._sock is None:
            self._sock = self._ctx.socket(zmq.REQ)
            self._sock.setsockopt(zmq.LINGER, 0)
            curve_auth.as_client(self._sock, self.endpoint)    # a tcp:// control socket is CURVE
            self._sock.connect(self.endpoint)
        return self._sock

    def call(self, op: str, timeout: float | None = None, **params):
        sock = self._socket()
        sock.send(msgpack.packb([op, params], use_bin_type=True, default=str))
        if not sock.poll(int((timeout or self.timeout) * 1000)):
            sock.close(0)                     # a REQ without its reply is stuck: start over
            self._sock = None
            raise WriterError("timeout", f"the writer did not answer {op!r} in time")
        reply = msgpack.unpackb(sock.recv(), raw=False)
        if not reply.get("ok"):
            err = reply.get("error", {})
            raise WriterError(err.get("code", "error"), err.get("message", ""))
        return reply["result"]

    def bulk(self, op: str, **params):
        """``call`` for one chunk of a long job (deleting, importing, merging): then
        waits so that the job keeps at most ``BULK_DUTY`` of the writer's time. Ingest
        batches run between chunks anyway; the pause also spreads the job's pages
        over more WAL checkpoints, whose disk flushes otherwise stall the writer's
        own writes (``bench/maintenance.py``)."""
        t = time.perf_counter()
        result = self.call(op, **params)
        time.sleep((time.perf_counter() - t) * (1.0 / BULK_DUTY - 1.0))
        return result

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
