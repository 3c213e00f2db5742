"""A query worker: one process with its own read-only connection, fed by the broker.

The query process (``query_server``) starts ``query.workers`` of them and hands
each request to a free one over its backend socket (DEALER here, ROUTER there).
Messages, as ZeroMQ frames:

- worker -> broker: ``READY`` once connected; ``REPLY, request id, reply`` for each
  request; ``BYE`` before leaving on its own (memory over ``query.worker_max_mb``).
- broker -> worker: ``request id, meta, request`` where meta is msgpack
  ``[admin allowed, what admin needs, broker facts for stats]``.

The worker's routing id is a random token the broker chose when it started the
worker: the broker ignores any peer it did not start. The worker beats its
heartbeat from its loop and, inside a long statement, from SQLite's progress
handler (``query_budget``); the broker replaces a worker that dies or hangs. A
worker whose broker is gone stops by itself, also inside a statement.
"""
from __future__ import annotations

import os
import sys
import time

import msgpack
import zmq

from linkband_history import protocol
from linkband_historyd.commands.dispatch import QueryHandler
from linkband_historyd.processes.skeleton import Child
from linkband_historyd.security import curve_auth

REPLY_LINGER_MS = 1000        # a worker that leaves still delivers its last reply


def private_mb() -> float:
    """Memory of this process that is its own (not mapped file pages): on Linux
    resident minus shared pages (the database is mmap'ed), elsewhere the RSS."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/statm") as f:
                fields = f.read().split()
            return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE") / 1e6
        except (OSError, ValueError, IndexError):
            pass
    import psutil
    return psutil.Process().memory_info().rss / 1e6


class QueryWorker(Child):
    name = "query-worker"

    def initialize(self) -> None:
        cfg = self.cfg
        self.max_mb = cfg.query.worker_max_mb
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, REPLY_LINGER_MS)
        self.sock.setsockopt(zmq.ROUTING_ID, cfg.query.worker_id)
        curve_auth.as_client(self.sock, cfg.query.backend_endpoint)
        self.sock.connect(cfg.query.backend_endpoint)
        self.handler = QueryHandler(
            cfg, cfg.daemon.started_at or time.time(), beat=self.beat,
            stopping=lambda: self.stop_requested or self.parent_gone(), log=self.log,
            pids={"query_pid": self._parent, "supervisor_pid": cfg.daemon.supervisor_pid})
        self.sock.send_multipart([b"READY"])

    def loop_once(self) -> None:
        if not self.sock.poll(int(self.tick * 1000)):
            return
        frames = self.sock.recv_multipart(copy=False)
        if len(frames) != 3:
            return
        req_id, meta, request = frames
        try:
            admin, needs, facts = msgpack.unpackb(meta.bytes, raw=False)
        except (ValueError, TypeError):
            admin, needs, facts = False, "", {}
        self.handler.facts = facts
        with protocol.gc_paused():
            reply = protocol.encode_reply(self.handler.handle(request.bytes, bool(admin), needs))
        self.sock.send_multipart([b"REPLY", req_id, reply], copy=False)
        if self.max_mb and private_mb() > self.max_mb:
            self.log.info("query worker (pid %d) holds %.0f MB, over query.worker_max_mb (%d): "
                          "leaving for a fresh one", os.getpid(), private_mb(), self.max_mb)
            self.sock.send_multipart([b"BYE"])
            self.stop_requested = True

    def shutdown(self) -> None:
        self.handler.close()
        self.sock.close()
        self.ctx.term()
