"""Subscribe to the daemon's events (see the daemon's ``events`` module for topics).

    for topic, payload in subscribe(["history_data_updated"], timeout=5):
        ...

The iterator ends when no event arrives within ``timeout`` seconds (None:
wait for ever) or when it is closed.
"""
from __future__ import annotations

import msgpack
import zmq

from . import curve_keys
from .endpoints import check_ipc_endpoint, resolve_endpoint

__all__ = ["subscribe", "Subscription"]


class Subscription:
    def __init__(self, topics=(), endpoint: str | None = None, timeout: float | None = None, *,
                 curve_server_public: str | bytes | None = None,
                 curve_secret_key_file: str | None = None):
        self.endpoint = resolve_endpoint("events", endpoint)
        check_ipc_endpoint(self.endpoint)
        self.timeout = timeout
        keys = curve_keys.load(curve_server_public, curve_secret_key_file, endpoints=(self.endpoint,))
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        for t in (topics or [""]):
            self._sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        curve_keys.apply(self._sock, self.endpoint, keys)
        self._sock.connect(self.endpoint)

    def __iter__(self):
        return self

    def __next__(self):
        if self._sock is None:
            raise StopIteration
        ms = None if self.timeout is None else int(self.timeout * 1000)
        if not self._sock.poll(ms):
            raise StopIteration
        topic, payload = self._sock.recv_multipart()
        return topic.decode(), msgpack.unpackb(payload, raw=False)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
            self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def subscribe(topics=(), endpoint: str | None = None, timeout: float | None = None,
              **curve) -> Subscription:
    """An iterator of ``(topic, payload)``; topics match by prefix; none: all.
    ``curve_server_public`` / ``curve_secret_key_file``: as for HistoryClient."""
    return Subscription(topics, endpoint, timeout, **curve)
