"""How the scheduler and the query process hand writes to the writer.

``WriterClient(endpoint).call(op, **params)`` sends one named operation (see
``write_ops``) to the writer's control socket and waits for its result, over
the daemon's one request-reply protocol (``linkband_history.rpc``). Not meant
to be shared between threads: one per thread.
"""
from __future__ import annotations

import time

import zmq

from linkband_history import rpc
from linkband_historyd.security import curve_auth

BULK_DUTY = 0.25     # share of the writer's time one long maintenance job may take

WriterError = rpc.RpcError           # what callers catch: an error reply, or "timeout"


class WriterClient:
    def __init__(self, endpoint: str, timeout: float = 30.0, ctx: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout = timeout
        self._rpc = curve_auth.requester(ctx or zmq.Context.instance(), endpoint, timeout)

    def call(self, op: str, timeout: float | None = None, **params):
        try:
            return self._rpc.call(op, params, timeout)["rows"][0]
        except rpc.Timeout:
            raise WriterError("timeout", f"the writer did not answer {op!r} in time") from None

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
        self._rpc.close()
