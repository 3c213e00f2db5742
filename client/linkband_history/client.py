"""HistoryClient: push records to the daemon without ever blocking the caller.

``store_*`` turns records into rows in the caller's thread (a few microseconds
each) and appends them to a bounded in-memory queue; one background thread
owns the ZeroMQ PUSH socket, batches the queue by count and by a few
milliseconds, and sends. When the daemon is away the queue keeps the newest
``max_queue`` records and counts the ones it had to drop; the count travels in
every message header so the daemon's ``stats`` shows it.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import deque

import zmq

from . import protocol
from .endpoints import resolve_endpoint

__all__ = ["HistoryClient"]


class HistoryClient:
    def __init__(self, ingest: str | None = None, query: str | None = None, *,
                 batch_size: int = 500, batch_interval: float = 0.005,
                 max_queue: int = 100_000, send_hwm: int = 1000,
                 query_timeout: float = 5.0, linger: float = 2.0):
        self.ingest_endpoint = resolve_endpoint("ingest", ingest)
        self.query_endpoint = resolve_endpoint("query", query)
        self.client_id = uuid.uuid4().hex
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self.max_queue = max_queue
        self.query_timeout = query_timeout
        self._send_hwm = send_hwm
        self._linger_ms = int(linger * 1000)
        self._ctx = zmq.Context()
        self._queue: deque = deque()
        self._lock = threading.Lock()           # guards the queue and counters
        self._wake = threading.Event()
        self._sent_cond = threading.Condition(self._lock)
        self._dropped = 0
        self._rec_sent = 0                      # records put into sent messages
        self._seq = 0                           # last sequence number used
        self._marker_wanted = 0                 # flush() asks the sender for a marker
        self._marker_seq = 0                    # last marker sent
        self._closing = False
        self._closed = False
        self._qlock = threading.Lock()
        self._qsock = None
        self._acked = {"lost_records": 0, "rejected": 0}
        self._thread = threading.Thread(target=self._sender, name="linkband-history-sender",
                                        daemon=True)
        self._thread.start()

    # -- storing -------------------------------------------------------------
    def store_metrics(self, records) -> None:
        self._store("metric", records)

    def store_performance(self, records) -> None:
        self._store("performance", records)

    def store_logs(self, records) -> None:
        self._store("log", records)

    def store_alerts(self, records) -> None:
        self._store("alert", records)

    def _store(self, kind: str, records) -> None:
        if isinstance(records, dict):
            records = (records,)
        now = time.time()
        rows, errors = [], []
        for i, record in enumerate(records):
            try:
                rows.append((kind, protocol.row_from_record(kind, record, now)))
            except (ValueError, TypeError, AttributeError) as exc:
                errors.append(f"record {i}: {exc}")
        if rows:
            with self._lock:
                if self._closed:
                    raise RuntimeError("HistoryClient is closed")
                q = self._queue
                was_empty = not q
                q.extend(rows)
                overflow = len(q) - self.max_queue
                if overflow > 0:                # keep the newest, count the rest
                    self._dropped += overflow
                    for _ in range(overflow):
                        q.popleft()
                full = len(q) >= self.batch_size
            if was_empty or full:
                self._wake.set()
        if errors:
            raise ValueError(f"{len(errors)} {kind} record(s) not stored: " + "; ".join(errors[:5]))

    # -- the sender thread ---------------------------------------------------
    def _sender(self) -> None:
        sock = self._ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, self._send_hwm)
        sock.setsockopt(zmq.LINGER, self._linger_ms)
        sock.connect(self.ingest_endpoint)
        pending = None                        # an encoded message zmq has not taken yet
        try:
            while True:
                self._wake.wait(0.05 if pending is not None else None)
                self._wake.clear()
                closing = self._closing
                if not closing and pending is None and self.batch_interval:
                    with self._lock:
                        short = len(self._queue) < self.batch_size and not self._marker_wanted
                    if short:
                        time.sleep(self.batch_interval)
                while True:
                    if pending is None:
                        pending = self._next_message()
                        if pending is None:
                            break
                    try:
                        sock.send(pending, zmq.NOBLOCK)
                    except zmq.Again:
                        break                 # daemon away: keep it, retry later
                    pending = None
                if closing:
                    if pending is not None:
                        try:
                            sock.send(pending, zmq.NOBLOCK)
                        except zmq.Again:
                            pass
                    return
        finally:
            sock.close()

    def _next_message(self) -> bytes | None:
        with self._lock:
            q = self._queue
            n = min(len(q), self.batch_size)
            if n == 0 and self._marker_wanted <= self._marker_seq:
                return None
            payload: dict = {}
            for _ in range(n):
                kind, row = q.popleft()
                rows = payload.get(kind)
                if rows is None:
                    payload[kind] = rows = []
                rows.append(row)
            self._seq += 1
            rec0 = self._rec_sent
            self._rec_sent += n
            if n == 0:
                self._marker_seq = self._seq
                self._sent_cond.notify_all()
            return protocol.encode_message(self.client_id, self._seq, time.time(), rec0,
                                           self._dropped, payload)

    # -- flushing ------------------------------------------------------------
    def _request_marker(self, deadline: float) -> int | None:
        """Have the sender send everything queued, then a marker; its seq."""
        with self._lock:
            self._marker_wanted = self._seq + 1
            wanted = self._marker_wanted
            self._wake.set()
            while self._marker_seq < wanted:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return None
                self._sent_cond.wait(left)
                self._wake.set()
            return self._marker_seq

    def flush(self, timeout: float = 5.0) -> bool:
        """True once the daemon has committed every record this client sent
        since the previous ``flush()``; False on timeout, or if any of them
        were lost or rejected on the way (see ``stats``)."""
        deadline = time.monotonic() + timeout
        marker = self._request_marker(deadline)
        if marker is None:
            return False
        marker_sent = time.monotonic()
        pause = 0.0005
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                reply = self._request("client.ack", {"client_id": self.client_id}, min(left, 1.0))
            except TimeoutError:
                reply = None
            if reply and reply.get("ok") and reply["rows"]:
                state = reply["rows"][0]
                if state["last_seq"] >= marker:
                    clean = all(state[k] == self._acked[k] for k in self._acked)
                    self._acked = {k: state[k] for k in self._acked}
                    return clean
            if time.monotonic() - marker_sent > 1.0:
                # The marker may have died with a restarted writer: send another.
                marker = self._request_marker(deadline)
                if marker is None:
                    return False
                marker_sent = time.monotonic()
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.02)

    # -- queries -------------------------------------------------------------
    def query(self, command: str, **params) -> dict:
        """Send one command to the query socket; the reply dict (``ok`` tells)."""
        return self._request(command, params, self.query_timeout)

    def _request(self, command: str, params: dict, timeout: float) -> dict:
        with self._qlock:
            if self._qsock is None:
                self._qsock = self._ctx.socket(zmq.REQ)
                self._qsock.setsockopt(zmq.LINGER, 0)
                self._qsock.connect(self.query_endpoint)
            sock = self._qsock
            sock.send(protocol.encode_request(command, params))
            if sock.poll(int(timeout * 1000)):
                return protocol.decode_reply(sock.recv())
            sock.close()                       # a REQ socket without its reply is stuck
            self._qsock = None
            raise TimeoutError(f"no reply from {self.query_endpoint} within {timeout:g}s")

    def stats(self) -> dict:
        with self._lock:
            return {"client_id": self.client_id, "queued": len(self._queue),
                    "dropped": self._dropped, "sent_records": self._rec_sent,
                    "messages": self._seq}

    # -- lifetime ------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closing = True
            self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        with self._qlock:
            if self._qsock is not None:
                self._qsock.close()
                self._qsock = None
        if not self._thread.is_alive():
            self._ctx.term()

    def __enter__(self) -> "HistoryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
