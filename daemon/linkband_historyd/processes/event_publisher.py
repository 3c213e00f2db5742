"""The daemon's events: a ZeroMQ PUB socket owned by the writer.

Every event is a two-frame message ``[topic (UTF-8), payload (msgpack map)]``;
subscribers filter by topic prefix (``linkband_history.subscribe``). Topics:

- ``history_data_updated``: ``{"counts": {kind: records}, "since": t0, "until": t1}``,
  coalesced: at most one per ``events.coalesce_ms`` however fast records arrive;
- ``alert_stored``: the alert's fields, when an alert is stored;
- ``trend_alert``: an anomaly episode found by the trend watch (alert fields);
- ``archive_completed``: ``{"month", "files", "rows"}`` after an archive;
- ``storage_warning``: ``{"reason", "size_bytes", "free_bytes", ...}`` when a
  storage threshold is crossed.

The writer owns the socket because nearly every event is the consequence of
a write it makes; other processes ask it to publish through a control op.
"""
from __future__ import annotations

import time
from collections import Counter

import msgpack
import zmq

from linkband_historyd.security.sockets import bind

TOPICS = ("history_data_updated", "alert_stored", "trend_alert", "archive_completed",
          "storage_warning")


class EventPublisher:
    def __init__(self, ctx: zmq.Context, endpoint: str, runtime_dir: str, coalesce_s: float = 0.5):
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 10_000)
        bind(self.sock, endpoint, runtime_dir)
        self.coalesce_s = coalesce_s
        self._pending: Counter = Counter()
        self._pending_since = None
        self._last_sent = 0.0
        self.published: Counter = Counter()

    def publish(self, topic: str, payload: dict) -> None:
        try:
            self.sock.send_multipart([topic.encode(), msgpack.packb(payload, use_bin_type=True,
                                                                     default=str)], zmq.NOBLOCK)
            self.published[topic] += 1
        except zmq.Again:
            pass                                   # slow subscribers lose events, never the writer

    def data_committed(self, counts: dict, now: float | None = None) -> None:
        """Records were committed: announce them, at most once per coalescing window."""
        now = time.time() if now is None else now
        for kind, n in counts.items():
            if n:
                self._pending[kind] += n
        if self._pending and self._pending_since is None:
            self._pending_since = now
        self.flush(now)

    def flush(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if self._pending and now - self._last_sent >= self.coalesce_s:
            self.publish("history_data_updated", {"counts": dict(self._pending),
                                                  "since": self._pending_since, "until": now})
            self._pending.clear()
            self._pending_since = None
            self._last_sent = now

    def close(self) -> None:
        self.flush(time.time() + self.coalesce_s)
        self.sock.close(0)
