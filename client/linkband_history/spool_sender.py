"""The sender thread of a :class:`~linkband_history.client.HistoryClient` with a spool.

What the daemon cannot take goes to disk (``spool.py``) and is sent, in order,
when the daemon is back; see :class:`SpoolSender`.
"""
from __future__ import annotations

import struct
import time
from collections import deque
from typing import TYPE_CHECKING

import zmq

from . import curve_keys, protocol

if TYPE_CHECKING:
    from .client import HistoryClient

ACK_INTERVAL = 0.2            # spool sender: how often it asks what the daemon committed
ACK_TIMEOUT = 1.0             # ... and when it stops waiting for an answer
WINDOW_BYTES = 32 << 20       # sent messages kept for a resend until committed (at most)
HANDSHAKE_WAIT = 0.2          # at start: how long a daemon that is there may take to connect


class SpoolSender:
    """The sender thread of a client with a spool.

    Its PUSH socket is IMMEDIATE: with no daemon connected (or its queue full)
    ZeroMQ refuses a message at once instead of keeping it in memory. A
    refused batch goes to the spool, and so does every later one until the
    spool has been sent: resends first, then the spool, oldest first, then live
    batches, so every client id's messages reach the daemon in order. A batch
    goes to the spool unnumbered (the spool numbers it under its own ids, see
    spool.py), so this client's own sequence never has a gap.

    A message ZeroMQ took is not yet committed: a writer that dies takes what it
    had received with it. So every message sent stays in ``win`` until the
    daemon says it committed it (``client.ack`` on a socket of this thread's
    own, never waited for), and when the connection drops (the socket monitor
    tells) the whole window is sent again before anything newer; the daemon
    stores a repeated (client_id, seq) once. Spool segments are deleted when
    their messages leave the window. At close, what is neither committed nor
    sendable goes to the spool for the next process on the same directory.
    """

    def __init__(self, client: HistoryClient):
        c = self.c = client
        self.spool = c._spool
        try:
            self._sockets()
        except BaseException:
            self.spool.close()
            raise
        self.ack_request = protocol.encode_request("client.ack", {"client_id": c._ack_id})
        self.asked_at = self.last_ask = 0.0
        self.win: deque = deque()       # (message, seq of this client or 0, spool segment or 0, records)
        self.win_bytes = 0
        self.resend: deque = deque()    # window entries to send again on the new connection
        self.blocked = False            # the socket refused the last message
        self.dropped_connection = False # seen by _send: resend the window first

    def _sockets(self) -> None:
        c = self.c
        self.sock = c._ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, c._send_hwm)
        self.sock.setsockopt(zmq.LINGER, c._linger_ms)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        curve_keys.apply(self.sock, c.ingest_endpoint, c._curve)
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED
                                                    | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.sock.connect(c.ingest_endpoint)
        self.ack = c._ctx.socket(zmq.REQ)
        for option in (zmq.IMMEDIATE, zmq.REQ_RELAXED, zmq.REQ_CORRELATE):
            self.ack.setsockopt(option, 1)
        self.ack.setsockopt(zmq.LINGER, 0)
        curve_keys.apply(self.ack, c.query_endpoint, c._curve)
        self.ack.connect(c.query_endpoint)

    def run(self) -> None:
        c = self.c
        try:
            # A daemon that is there takes a moment to connect: give it that moment
            # rather than writing the first batches to disk.
            deadline = time.monotonic() + HANDSHAKE_WAIT
            while time.monotonic() < deadline and self.monitor.poll(
                    max(1, int((deadline - time.monotonic()) * 1000))):
                if self._events() & 2:
                    break
            while True:
                busy = self.blocked or self.resend or self.spool.unsent()
                c._wake.wait(0.05 if busy or self.win else 0.25 if self.spool.writing else None)
                c._wake.clear()
                closing = c._closing
                c._await_batch(closing or bool(busy))
                self.pump()
                if closing:
                    self.finish()
                    return
        finally:
            self.sock.disable_monitor()
            self.monitor.close(0)
            self.ack.close(0)
            self.sock.close()
            self.spool.close()

    def pump(self, ask_every: float = ACK_INTERVAL) -> None:
        """One round: notice a lost connection, read acks, send what can be sent."""
        if (self._events() & 1 or self.dropped_connection) and self.win:
            self.resend = deque(self.win)
        self.dropped_connection = False
        self._acks(ask_every)
        self.blocked = False
        while self.resend and self._send(self.resend[0][0]):
            self.resend.popleft()
        spool = self.spool
        if spool.unsent() and not self.sock.getsockopt(zmq.EVENTS) & zmq.POLLOUT:
            self.blocked = True          # nobody to send to: do not read the disk for nothing
        while not self.blocked and not self.resend:
            nxt = spool.next_message()
            if nxt is None or not self._send(nxt[0]):
                break
            spool.sent()
            self._keep(nxt[0], 0, nxt[2], nxt[1])
        if not self.blocked and not self.resend and spool.seal_sent():
            self._release()
        c = self.c
        while True:
            parts = c._take(not (self.blocked or self.resend or spool.unsent()))
            if parts is None:
                break
            for i, (body, n, seq, rec0, dropped) in enumerate(parts):
                if seq is not None:
                    message = protocol.message_from_body(c.client_id, seq, time.time(), rec0,
                                                         dropped, body)
                    if self._send(message):
                        if n == 0:
                            c._marker_sent(seq)
                        self._keep(message, seq, 0, n)
                        continue
                    c._taken_back(parts[i:])
                for body, n, *_ in parts[i:]:
                    if n:
                        self._to_spool(body, n)
                break
        if self.win and not self.win[-1][1] and not self.blocked:
            c._want_marker()             # spool messages last: a marker after them gets them acked

    def finish(self) -> None:
        """At close: wait a little for what was sent to be committed; spool the rest."""
        deadline = time.monotonic() + min(0.5, self.c._linger_ms / 1000)
        while self.win and not (self.blocked or self.resend) and time.monotonic() < deadline:
            time.sleep(0.005)
            self.pump(ask_every=0.02)
        if not self.blocked and not self.resend and self.spool.seal_sent(idle=0):
            self._release()
        while (parts := self.c._take(False)) is not None:
            for body, n, *_ in parts:
                self._to_spool(body, n)
        for message, seq, _, n in self.win:
            if seq and n:                # this client's messages, maybe not committed
                try:
                    self.spool.add_message(message, n)
                except OSError:
                    pass

    def _send(self, message: bytes) -> bool:
        if self._events() & 1:           # nothing new may follow what the writer lost
            self.dropped_connection = self.blocked = True
            return False
        try:
            self.sock.send(message, zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.blocked = True
            return False

    def _to_spool(self, body: bytes, n: int) -> None:
        try:
            self.spool.add(body, n)
        except OSError:                  # the disk refused: count them as this client's drops
            with self.c._lock:
                self.c._dropped += n

    def _keep(self, message: bytes, seq: int, segment: int, n: int) -> None:
        self.win.append((message, seq, segment, n))
        self.win_bytes += len(message)
        if self.win_bytes > WINDOW_BYTES:    # too much unconfirmed: stop keeping the oldest
            while self.win_bytes > WINDOW_BYTES // 2:
                self.win_bytes -= len(self.win.popleft()[0])
            self._release()

    def _events(self) -> int:
        """The socket monitor's news: 1 a connection dropped, 2 one was made."""
        seen = 0
        while True:
            try:
                frame = self.monitor.recv_multipart(zmq.NOBLOCK)[0]
            except zmq.Again:
                return seen
            seen |= 1 if struct.unpack("=H", frame[:2])[0] == zmq.EVENT_DISCONNECTED else 2

    def _acks(self, ask_every: float) -> None:
        now = time.monotonic()
        if self.asked_at and self.ack.poll(0):
            self.asked_at = 0.0
            try:
                reply = protocol.decode_reply(self.ack.recv(zmq.NOBLOCK))
                last_seq = reply["rows"][0]["last_seq"] if reply["rows"] else 0
            except Exception:            # no usable answer: ask again later
                reply = None
            if reply and reply.get("ok"):
                self._trim(last_seq)
        elif self.asked_at and now - self.asked_at > ACK_TIMEOUT:
            self.asked_at = 0.0
        if self.win and not self.asked_at and now - self.last_ask >= ask_every:
            try:
                self.ack.send(self.ack_request, zmq.NOBLOCK)
                self.asked_at = self.last_ask = now
            except zmq.ZMQError:         # no query process connected yet
                pass

    def _trim(self, last_seq: int) -> None:
        """The daemon committed this client's messages up to ``last_seq``, so
        everything sent before them (one connection, in order) as well."""
        cut = 0
        for i, entry in enumerate(self.win):
            if entry[1]:
                if entry[1] > last_seq:
                    break
                cut = i + 1
        for _ in range(cut):
            self.win_bytes -= len(self.win.popleft()[0])
        if cut:
            self._release()

    def _release(self) -> None:
        """Delete the spool segments no message in the window comes from."""
        self.spool.release(next((e[2] for e in self.win if e[2]), None))
