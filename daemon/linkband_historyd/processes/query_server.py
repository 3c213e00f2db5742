"""The query process: a broker in front of a pool of query workers.

Clients keep their REQ sockets: the query endpoint (and ``security.admin_endpoint``,
if set) is a ROUTER here, and every request is handed to a free worker process
(``query_pool``, ``query_worker``) over a backend ROUTER in the owner-only
runtime directory (the ZeroMQ guide's load-balancing broker). So one heavy
question occupies one worker while the others answer everyone else.

- **Lanes**: the commands in :data:`LIGHT` (ping, stats, the dashboard, single
  pages of listings, jobs...) may use any free worker; the others (aggregates,
  analyses, searches, log stats, trends, reports) at most all workers but one, so
  a cheap question always finds a worker even while heavy ones queue.
- **Bounded wait**: when no worker may take a request it waits, in arrival order,
  at most ``query.queue_wait_s`` (under the client's default 5 s timeout), then is
  answered ``busy``; past ``query.max_queued`` waiting requests, at once.
- **Admin**: administrative commands are allowed for a request that came in on the
  admin endpoint, or from a CURVE client whose key (the ZAP User-Id) is an admin
  key, or for everyone when neither is configured. The broker decides, since only
  it sees the socket and the key, and the decision travels with the request.
- **Lost workers**: a worker that dies or hangs while answering is replaced and its
  client gets an ``unavailable`` error reply rather than silence.
- **Latency**: the time from a request's arrival to its reply, per lane, in the
  writer's kind of histogram; it travels to the worker only with the commands in
  :data:`WITH_LATENCY` (the ``counters`` command exposes it).
"""
from __future__ import annotations

import socket
import time
from collections import deque
from dataclasses import dataclass

import msgpack
import zmq

from linkband_history import protocol
from linkband_history.endpoints import IPC_SUPPORTED
from linkband_historyd.processes.query_pool import WorkerPool
from linkband_historyd.processes.skeleton import Child
from linkband_historyd.security import curve_auth
from linkband_historyd.security.sockets import bind
from linkband_historyd.storage.ingest_latency import LatencyHistogram

MAX_REQUEST_BYTES = 1024 * 1024
START_WAIT_S = 30.0           # how long initialize waits for the workers' READY
CHECK_EVERY_S = 0.1           # workers' liveness and heartbeats

# cheap by construction: a page, a count of a recent window, a few rows, a hand-over
LIGHT = frozenset({"ping", "stats", "client.ack", "commands", "dashboard", "metrics",
                   "performance", "logs", "alerts", "logs.context", "jobs", "archives",
                   "alerts.ack", "alerts.resolve", "reload", "stop", "cleanup", "archive",
                   "restore", "optimize", "summarize", "counters"})
WITH_LATENCY = frozenset({"counters"})     # the requests whose facts carry the histograms


@dataclass(eq=False)
class Request:
    sock: zmq.Socket
    envelope: list
    body: zmq.Frame
    name: str
    heavy: bool
    admin: bool
    arrived: float
    rid: bytes = b""


def command_name(frame: bytes) -> str:
    """The command of a request, read without decoding its parameters ('' if unreadable:
    the worker then answers the error)."""
    try:
        u = msgpack.Unpacker(raw=False, max_buffer_size=len(frame) + 1, max_str_len=256,
                             max_bin_len=256, max_array_len=64, max_map_len=64)
        u.feed(frame)
        if u.read_array_header() != 3:
            return ""
        u.skip()
        name = u.unpack()
        return name if isinstance(name, str) else ""
    except Exception:
        return ""


class QueryServer(Child):
    name = "query"

    def initialize(self) -> None:
        cfg = self.cfg
        self.ctx = zmq.Context()
        self.frontends = [self._frontend(cfg.query.endpoint)]
        admin_endpoint = cfg.security.admin_endpoint
        self.admin_sock = self._frontend(admin_endpoint) if admin_endpoint else None
        if self.admin_sock is not None:
            self.frontends.append(self.admin_sock)
            self.log.info("admin endpoint ready: %s", admin_endpoint)
        self.admin_keys = curve_auth.admin_keys() if curve_auth.applies(cfg.query.endpoint) else None
        # admin commands on the query endpoint: everyone's (the default), only admin keys', or none
        self.admin_restricted = bool(admin_endpoint) or self.admin_keys is not None
        needs = []
        if self.admin_sock is not None:
            needs.append("the admin endpoint (security.admin_endpoint)")
        if self.admin_keys is not None:
            needs.append("an admin key (security.admin_keys_dir)")
        self.admin_needs = " or ".join(needs)
        self.backend = self.ctx.socket(zmq.ROUTER)
        self.backend.setsockopt(zmq.LINGER, 0)
        backend_endpoint = self._bind_backend()
        self.poller = zmq.Poller()
        for s in self.frontends + [self.backend]:
            self.poller.register(s, zmq.POLLIN)
        self.pending: deque[Request] = deque()
        self.idle: deque = deque()
        self.heavy_running = 0
        self.next_rid = 0
        self.busy_replies = 0
        self.latency = {"light": LatencyHistogram(), "heavy": LatencyHistogram()}
        self.wait_s = cfg.query.queue_wait_s
        self.max_queued = cfg.query.max_queued
        self.pool = WorkerPool(cfg, backend_endpoint, self._parent)
        self.heavy_limit = max(1, len(self.pool.slots) - 1)
        self.pool.start_all()
        self._wait_for_workers()
        self._next_check = 0.0
        self.log.info("query server ready: %s (%d workers)", cfg.query.endpoint,
                      len(self.pool.slots))

    def _frontend(self, endpoint: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        bind(sock, endpoint, self.cfg.daemon.runtime_dir)
        return sock

    def _bind_backend(self) -> str:
        """In the owner-only runtime directory; without ipc:// (old Windows builds of
        libzmq), a free loopback port that is a CURVE server like every tcp:// endpoint
        of the daemon: another local user can neither pose as a worker nor read requests."""
        if IPC_SUPPORTED:
            endpoint = "ipc://" + self.cfg.daemon.runtime_dir.rstrip("/") + "/query-workers.sock"
            bind(self.backend, endpoint, self.cfg.daemon.runtime_dir)
            return endpoint
        for _ in range(20):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                endpoint = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
            curve_auth.add_internal(endpoint)
            try:
                bind(self.backend, endpoint, self.cfg.daemon.runtime_dir)
                return endpoint
            except zmq.ZMQError:                # taken meanwhile: another port
                continue
        raise OSError("no free loopback port for the query workers")

    def _wait_for_workers(self) -> None:
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline and not all(s.connected for s in self.pool.slots):
            if self.backend.poll(100):
                self._from_worker(self.backend.recv_multipart(copy=False))
            if self.stop_requested:
                return

    # -- the loop ---------------------------------------------------------------
    def loop_once(self) -> None:
        timeout = self.tick
        if self.pending:
            timeout = max(0.0, min(timeout, self.pending[0].arrived + self.wait_s - time.monotonic()))
        for sock, _ in self.poller.poll(int(timeout * 1000) + 1):
            for _ in range(100):                 # drain, but keep the other sockets turning
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if sock is self.backend:
                    self._from_worker(frames)
                else:
                    self._from_client(sock, frames)
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_EVERY_S
            for slot in self.pool.check(now):
                self._lost(slot)
        self._dispatch()
        self._expire(time.monotonic())

    def _from_client(self, sock, frames) -> None:
        if len(frames) < 2:
            return
        body = frames[-1]
        name = command_name(body.bytes)
        req = Request(sock, [f.bytes for f in frames[:-1]], body, name, name not in LIGHT,
                      self._admin_allowed(sock, body), time.monotonic())
        if len(self.pending) >= self.max_queued:
            self._busy(req, f"{self.max_queued} requests are already waiting (query.max_queued)")
            return
        self.pending.append(req)

    def _admin_allowed(self, sock, frame) -> bool:
        if sock is self.admin_sock or not self.admin_restricted:
            return True
        if self.admin_keys is None:
            return False
        try:
            return frame.get("User-Id") in self.admin_keys     # the client's z85 public key
        except zmq.ZMQError:                                   # not a ZAP-authenticated peer
            return False

    def _from_worker(self, frames) -> None:
        slot = self.pool.by_wid.get(frames[0].bytes)
        if slot is None or len(frames) < 2:            # not a worker we started
            return
        kind = frames[1].bytes
        if kind == b"READY":
            slot.connected = True
            if slot.request is None and slot not in self.idle:
                self.idle.append(slot)
        elif kind == b"REPLY" and len(frames) == 4:
            req = slot.request
            if req is None or frames[2].bytes != req.rid:
                return
            self._finish(slot)
            req.sock.send_multipart(req.envelope + [frames[3]], copy=False)
            self.latency["heavy" if req.heavy else "light"].add(time.monotonic() - req.arrived)
            self.idle.append(slot)
        elif kind == b"BYE":
            slot.connected = False
            if slot in self.idle:
                self.idle.remove(slot)

    # -- dispatch -----------------------------------------------------------------
    def _dispatch(self) -> None:
        if not self.idle or not self.pending:
            return
        waiting = deque()
        while self.pending and self.idle:
            req = self.pending.popleft()
            if req.heavy and self.heavy_running >= self.heavy_limit:
                waiting.append(req)                    # light ones behind it may go first
                continue
            self._send(self.idle.popleft(), req)
        waiting.extend(self.pending)
        self.pending = waiting

    def _send(self, slot, req: Request) -> None:
        self.next_rid += 1
        req.rid = self.next_rid.to_bytes(8, "big")
        slot.request = req
        if req.heavy:
            self.heavy_running += 1
        facts = self._facts()
        if req.name in WITH_LATENCY:
            facts["latency"] = {lane: h.to_dict() for lane, h in self.latency.items()}
        meta = msgpack.packb([req.admin, self.admin_needs, facts])
        self.backend.send_multipart([slot.wid, req.rid, meta, req.body], copy=False)

    def _facts(self) -> dict:
        return {"workers": len(self.pool.slots), "queued": len(self.pending),
                "busy": sum(1 for s in self.pool.slots if s.request is not None),
                "replaced": self.pool.replaced, "busy_replies": self.busy_replies,
                "zap_refused": sum(curve_auth.denied.values())}

    def _finish(self, slot) -> None:
        if slot.request is not None and slot.request.heavy:
            self.heavy_running -= 1
        slot.request = None

    def _lost(self, slot) -> None:
        req = slot.request
        if slot in self.idle:
            self.idle.remove(slot)
        if req is None:
            return
        self._finish(slot)
        self._reply(req, protocol.error(
            "unavailable", f"{req.name or 'request'}: the query worker answering it stopped "
            "(it died or hung and was replaced); ask again, and if it happens again ask for "
            "less (a summary tier, a narrower range)"))

    def _expire(self, now: float) -> None:
        # pending stays in arrival order (_dispatch keeps it), so the oldest is first
        while self.pending and now - self.pending[0].arrived >= self.wait_s:
            self._busy(self.pending.popleft(), f"no worker was free for {self.wait_s:g} s "
                                               "(query.queue_wait_s)")

    def _busy(self, req: Request, why: str) -> None:
        self.busy_replies += 1
        n = len(self.pool.slots)
        taken = sum(1 for s in self.pool.slots if s.request is not None)
        self._reply(req, protocol.error(
            "busy", f"{req.name or 'request'}: the daemon is busy: {why}; {taken} of {n} query "
            f"workers are answering ({self.heavy_running} of them long queries, which may use "
            f"{self.heavy_limit}). Ask again in a moment, or ask for less"))

    def _reply(self, req: Request, reply: dict) -> None:
        req.sock.send_multipart(req.envelope + [protocol.encode_reply(reply)])

    def shutdown(self) -> None:
        self.pool.stop_all(self.cfg.supervisor.stop_timeout_s)
        for s in self.frontends + [self.backend]:
            s.close(0)
        curve_auth.stop(self.ctx)
        self.ctx.term()
