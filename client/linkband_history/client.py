"""HistoryClient: push records to the daemon without ever blocking the caller.

``store_*`` turns records into rows in the caller's thread (a few microseconds
each) and appends them to a bounded in-memory queue; one background thread
owns the ZeroMQ PUSH socket, batches the queue by count and by a few
milliseconds, and sends. A batch whose encoding is longer than
``max_message_bytes`` is split into messages under it (the rows are encoded a
second time only then); a record longer than that on its own is not sent,
logged once per kind and counted (``stats()["too_large"]``, and as dropped
in the daemon's ``stats``). When the daemon is away the queue keeps the newest
``max_queue`` records and counts the ones it had to drop; the count travels in
every message header so the daemon's ``stats`` shows it. With ``spool_dir``
the sender writes what the daemon cannot take to disk instead and sends it
when the daemon is back (``spool_sender.py``, ``spool.py``).
"""
from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import deque

import zmq

from . import curve_keys, protocol, rpc, thread_policy
from .endpoints import check_ipc_endpoint, resolve_endpoint
from .spool import Spool
from .spool_sender import SpoolSender

__all__ = ["HistoryClient"]

log = logging.getLogger("linkband_history")

# A thread waiting for the GIL gets it when the holder blocks (or after the switch
# interval, 5 ms): the sender takes and packs rows CHUNK_ROWS at a time, and once
# it has held the GIL YIELD_AFTER s (with the queue not filling up) it sleeps
# YIELD_SECONDS, so a caller of store_* never waits long behind a big batch.
YIELD_AFTER = 0.0003
YIELD_SECONDS = 0.0001
CHUNK_ROWS = 64


class HistoryClient:
    def __init__(self, ingest: str | None = None, query: str | None = None, *,
                 batch_size: int = 500, batch_interval: float = 0.005,
                 max_queue: int = 100_000, send_hwm: int = 1000,
                 query_timeout: float = 5.0, linger: float = 2.0,
                 curve_server_public: str | bytes | None = None,
                 curve_secret_key_file: str | None = None,
                 spool_dir: str | None = None, spool_max_bytes: int = 64 << 20,
                 max_message_bytes: int = protocol.MAX_MESSAGE_BYTES):
        self.ingest_endpoint = resolve_endpoint("ingest", ingest)
        self.query_endpoint = resolve_endpoint("query", query)
        for endpoint in (self.ingest_endpoint, self.query_endpoint):
            check_ipc_endpoint(endpoint)        # a squatted or symlinked directory: refused
        # CURVE keys for tcp:// endpoints (else the environment, else the user's own; see curve_keys)
        self._curve = curve_keys.load(curve_server_public, curve_secret_key_file,
                                      endpoints=(self.ingest_endpoint, self.query_endpoint))
        self.client_id = uuid.uuid4().hex
        # under CURVE the daemon keys this client's sequence by its public key as well
        self._ack_id = curve_keys.state_id(self.client_id, self._curve, self.ingest_endpoint)
        # opened here, so a bad or busy directory fails now; used by the sender thread only
        self._spool = Spool(spool_dir, spool_max_bytes, client_id=self.client_id) if spool_dir else None
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        if max_message_bytes < 4096:
            raise ValueError("max_message_bytes must be at least 4096")
        # a message's payload; the daemon's ingest.max_message_bytes must be above the whole
        self._max_body = max_message_bytes - protocol.HEADER_BYTES
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
        self._rpc = rpc.Requester(self._ctx, self.query_endpoint, query_timeout,
                                  prepare=lambda s: curve_keys.apply(s, self.query_endpoint,
                                                                     self._curve))
        self._acked = {"lost_records": 0, "rejected": 0}
        self._too_large = 0                     # records over max_message_bytes, not sent
        self._too_large_flushed = 0             # ... as of the previous flush()
        self._too_large_kinds: set = set()      # kinds already logged
        self._held_since = 0.0                  # the sender holds the GIL since (monotonic)
        self._socket_open = threading.Event()   # the sender's first socket exists
        self._thread = threading.Thread(target=self._sender_main, name="linkband-history-sender",
                                        daemon=True)
        self._thread.start()
        # a query socket opened first would start ZeroMQ's I/O thread outside the policy
        self._socket_open.wait(5.0)

    # -- storing -------------------------------------------------------------
    def store_metrics(self, records) -> None:
        self._store("metric", records)

    def store_performance(self, records) -> None:
        self._store("performance", records)

    def store_logs(self, records) -> None:
        self._store("log", records)

    def store_alerts(self, records) -> None:
        self._store("alert", records)

    def store_row(self, kind: str, row: list | tuple) -> None:
        """Queue one row in ``FIELDS[kind]`` order as ``protocol.row_from_record``
        makes it, unchecked: the logging handlers' path. One append, no conversion;
        the sender is woken when the queue was empty or reaches a batch, not per record."""
        with self._lock:
            if self._closed:
                raise RuntimeError("HistoryClient is closed")
            q = self._queue
            q.append((kind, row))
            n = len(q)
            if n > self.max_queue:              # keep the newest, count the rest
                self._dropped += 1
                q.popleft()
        if n == 1 or n == self.batch_size:
            self._wake.set()

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
    def _sender_main(self) -> None:
        """The sender thread: under the policy of ``thread_policy`` from its start, so
        the ZeroMQ I/O thread its first socket starts inherits it too."""
        try:
            thread_policy.stay_behind_callers()
            if self._spool is None:
                run = functools.partial(self._sender, self._push_socket())
            else:
                run = SpoolSender(self).run
        finally:
            self._socket_open.set()     # also when a socket could not be opened
        run()

    def _push_socket(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, self._send_hwm)
        sock.setsockopt(zmq.LINGER, self._linger_ms)
        curve_keys.apply(sock, self.ingest_endpoint, self._curve)
        sock.connect(self.ingest_endpoint)
        return sock

    def _sender(self, sock: zmq.Socket) -> None:
        pending: deque = deque()              # encoded messages zmq has not taken yet
        try:
            while True:
                self._wake.wait(0.05 if pending else None)
                self._wake.clear()
                closing = self._closing
                self._await_batch(closing or bool(pending))
                while True:
                    if not pending:
                        pending.extend(self._next_messages())
                        if not pending:
                            break
                    try:
                        sock.send(pending[0], zmq.NOBLOCK)
                    except zmq.Again:
                        break                 # daemon away: keep them, retry later
                    pending.popleft()
                    if not pending and not closing:
                        self._yield_gil()
                if closing:
                    while pending:
                        try:
                            sock.send(pending.popleft(), zmq.NOBLOCK)
                        except zmq.Again:
                            break
                    return
        finally:
            sock.close()

    def _await_batch(self, busy: bool) -> None:
        """Both senders, after a wake-up: unless ``busy`` (closing, or messages waiting),
        give a short queue ``batch_interval`` to fill up to a batch; then start the
        clock of this thread's hold on the GIL (it was let go here)."""
        if not busy and self.batch_interval:
            with self._lock:
                short = len(self._queue) < self.batch_size and not self._marker_wanted
            if short:
                time.sleep(self.batch_interval)
        self._held_since = time.monotonic()

    def _next_messages(self) -> list[bytes]:
        """The next batch as messages (one, unless it had to be split); [] when
        there is nothing to send."""
        got: list | None = []
        while got == []:                  # a batch whose every record was too large
            got = self._take(True)
        if got is None:
            return []
        out = []
        for body, n, seq, rec0, dropped in got:
            if n == 0:
                self._marker_sent(seq)
            out.append(protocol.message_from_body(self.client_id, seq, time.time(), rec0,
                                                  dropped, body))
        return out

    def _yield_gil(self) -> None:
        """Sleep a moment (letting a caller of store_* that waits for the GIL have it)
        when this thread has held it YIELD_AFTER s, unless the queue is filling up."""
        if (time.monotonic() - self._held_since > YIELD_AFTER
                and 0 < len(self._queue) < self.max_queue // 2 and not self._closing):
            time.sleep(YIELD_SECONDS)
            self._held_since = time.monotonic()

    def _pop_rows(self, n: int) -> tuple[dict, int]:
        """Up to ``n`` queued rows as a payload, and their number; the lock is taken
        CHUNK_ROWS rows at a time (the queue may also lose its oldest rows meanwhile,
        to overflow, so there may be fewer)."""
        q = self._queue
        payload: dict = {}
        taken = 0
        while taken < n:
            with self._lock:
                k = min(CHUNK_ROWS, n - taken, len(q))
                for _ in range(k):
                    kind, row = q.popleft()
                    rows = payload.get(kind)
                    if rows is None:
                        payload[kind] = rows = []
                    rows.append(row)
            if k == 0:
                break
            taken += k
            self._yield_gil()
        return payload, taken

    def _pack(self, payload: dict) -> bytes:
        """``protocol.pack_payload(payload)``, CHUNK_ROWS rows per C call."""
        if sum(map(len, payload.values())) <= CHUNK_ROWS:
            return protocol.pack_payload(payload)
        packed: dict = {}
        for kind, rows in payload.items():
            out = packed[kind] = []
            for i in range(0, len(rows), CHUNK_ROWS):
                out += protocol.pack_rows(rows[i:i + CHUNK_ROWS])
                self._yield_gil()
        return protocol.body_of(packed)

    # The sender threads' side of the queue and the counters.
    def _take(self, direct: bool):
        """The next batch as a list of ``(body, n, seq, rec0, dropped)``, or None:
        ``body`` the packed payload of ``n`` records, one part unless the batch
        was longer than ``max_message_bytes`` (split by :meth:`_split`). With
        ``direct`` the parts get the next sequence numbers (a marker when flush()
        wants one and the queue is empty); else ``seq`` is None.

        The rows are taken a chunk at a time and encoded outside the lock, so
        ``store_*`` never waits for that; only this thread numbers messages, so numbering afterwards keeps
        them in order (a marker flush() asks for meanwhile comes after them)."""
        with self._lock:
            n = min(len(self._queue), self.batch_size)
            if n == 0 and not (direct and self._marker_wanted > self._marker_seq):
                return None
        payload, n = self._pop_rows(n)
        body = self._pack(payload)
        parts = [(body, n)] if len(body) <= self._max_body else self._split(payload)
        if not direct:
            return [(b, k, None, 0, 0) for b, k in parts if k]
        out = []
        with self._lock:
            for b, k in parts:
                self._seq += 1
                self._rec_sent += k
                out.append((b, k, self._seq, self._rec_sent - k, self._dropped))
        return out

    def _split(self, payload: dict) -> list[tuple[bytes, int]]:
        """A batch too long for one message, as parts that fit; a record that
        cannot fit on its own is counted (as dropped, so the daemon's accounting
        stays exact) and logged once per kind."""
        rows = [(kind, row) for kind, kind_rows in payload.items() for row in kind_rows]
        parts, refused = protocol.split_rows(rows, self._max_body)
        if refused:
            with self._lock:
                self._dropped += len(refused)
                self._too_large += len(refused)
            for kind in sorted(set(refused) - self._too_large_kinds):
                self._too_large_kinds.add(kind)
                log.error("linkband_history: a %s record is longer than max_message_bytes "
                          "(%d) on its own: not sent (counted in stats()['too_large']; "
                          "logged once per kind)", kind, self._max_body + protocol.HEADER_BYTES)
        return parts

    def _taken_back(self, parts: list) -> None:
        """The last parts numbered by _take() were not sent: free their numbers."""
        with self._lock:
            self._seq -= len(parts)
            self._rec_sent -= sum(p[1] for p in parts)

    def _marker_sent(self, seq: int) -> None:
        with self._lock:
            self._marker_seq = seq
            self._sent_cond.notify_all()

    def _want_marker(self) -> None:
        with self._lock:
            self._marker_wanted = max(self._marker_wanted, self._seq + 1)

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
        were lost or rejected on the way (see ``stats``) or too large to send."""
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
                reply = self._request("client.ack", {"client_id": self._ack_id}, min(left, 1.0))
            except TimeoutError:
                reply = None
            if reply and reply.get("ok") and reply["rows"]:
                state = reply["rows"][0]
                if state["last_seq"] >= marker:
                    clean = all(state[k] == self._acked[k] for k in self._acked)
                    self._acked = {k: state[k] for k in self._acked}
                    with self._lock:
                        too_large, self._too_large_flushed = self._too_large_flushed, self._too_large
                    return clean and too_large == self._too_large_flushed
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
        return self._rpc.request(command, params, timeout)

    def stats(self) -> dict:
        with self._lock:
            out = {"client_id": self.client_id, "queued": len(self._queue),
                   "dropped": self._dropped, "sent_records": self._rec_sent,
                   "messages": self._seq, "too_large": self._too_large}
        if self._spool is not None:      # plain ints, kept by the sender thread
            out.update(spool_bytes=self._spool.bytes, spool_dropped=self._spool.dropped,
                       spool_torn=self._spool.torn)
        return out

    # -- lifetime ------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closing = True
            self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        self._rpc.close()
        if not self._thread.is_alive():
            self._ctx.term()

    def __enter__(self) -> "HistoryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
