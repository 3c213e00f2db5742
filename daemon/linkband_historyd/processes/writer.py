"""The writer process: the only process that ever writes the database.

It binds the PULL socket, takes every frame that is waiting (up to
``ingest.batch_size`` records or ``ingest.batch_max_bytes`` of frames, so a
batch of big records stays bounded in memory too), and commits them in one APSW transaction: the
rows of each kind with one ``executemany`` straight from the decoded messages,
the FTS rows of the new log lines with one INSERT..SELECT, and each client's
last sequence number, so ``flush()`` can tell what is durable. It commits as
soon as the socket is drained (never waiting for a full batch unless
``ingest.batch_wait_ms`` says so). WAL checkpoints run on a second connection
in a thread, off the commit path (``storage.checkpointer``).

Between two batches it does one piece of other work: a write operation of
another process, an FTS merge step, the copy that lets the WAL start over. Each
is paced on the clock and gives way to an ingest message that waits
(``storage.pacing``); how long each kind held the writer is published in its
state (``writer``, ``held``).

A bad frame or record is counted by reason and skipped; the good records of
the same message are kept: when SQLite refuses a batch (STRICT types, NOT NULL
and CHECK constraints), the batch is rolled back to its savepoint and retried
row by row to find the bad rows.
"""
from __future__ import annotations

import json
import os
import time

import apsw
import zmq

from linkband_history import rpc
from linkband_history.protocol import (
    FIELDS,
    JSON_FIELDS,
    TIME_FIELDS,
    dumps_json,
    gc_paused,
    ok,
    row_from_record,
)
from linkband_history.times import to_epoch
from linkband_historyd.processes.busy_beat import BusyBeat
from linkband_historyd.processes.event_publisher import EventPublisher
from linkband_historyd.processes.skeleton import Child
from linkband_historyd.security import curve_auth
from linkband_historyd.security.sockets import bind
from linkband_historyd.storage import schema, write_ops
from linkband_historyd.storage.checkpointer import Checkpointer
from linkband_historyd.storage.conversion import Converter
from linkband_historyd.storage.datalock import DataDirLock
from linkband_historyd.storage.fts_merger import FtsMerger
from linkband_historyd.storage.ingest_batch import Batch, ClientState, Limits, json_problem
from linkband_historyd.storage.ingest_latency import LatencyHistogram
from linkband_historyd.storage.pacing import HeldTimes
from linkband_historyd.storage.row_store import RowStore, refusal

PROGRESS_STEPS = 100_000   # SQLite VM steps between two heartbeats inside one long statement
FULL_QUIET_S = 2.0         # a full-storage episode ends after this long without a failure
DRAIN_QUIET_S = 0.05       # on stop: drain until the socket has been quiet this long
DRAIN_MAX_S = 5.0          # ... or this long has passed (senders may never pause)


class Writer(Child):
    name = "writer"

    def initialize(self) -> None:
        cfg = self.cfg
        self.db_path = cfg.daemon.db_path
        self.lock = DataDirLock(cfg.daemon.data_dir)
        self.lock.acquire()                       # before touching the database or sockets
        damaged = schema.check_or_move_aside(self.db_path)
        self.conn = schema.open_writer(self.db_path, cfg.storage.synchronous,
                                       cfg.storage.max_page_count,
                                       4 * cfg.storage.wal_max_mb * 1024 * 1024)
        if damaged:
            self.log.critical("THE DATABASE WAS DAMAGED: moved aside to %s (kept, not deleted); "
                              "a fresh database was started", damaged)
            with self.conn:
                self.conn.execute(schema.INSERT["alert"], row_from_record("alert", {
                    "level": "CRITICAL", "category": "SYSTEM", "source_component": "linkband-historyd",
                    "title": "데이터베이스 손상 감지 / history database damaged",
                    "description": f"손상된 데이터베이스를 {damaged}(으)로 옮기고 새로 시작했습니다 / "
                                   f"moved aside to {damaged}, a fresh database was started",
                    "metadata": {"moved_to": damaged}}, time.time()))
        self.store = RowStore(self.conn)
        self.clients = {row[0]: ClientState(*row) for row in self.conn.execute(
            f"SELECT {', '.join(schema.CLIENT_COLUMNS)} FROM ingest_clients")}
        self.batch_size = cfg.ingest.batch_size
        self.batch_max_bytes = cfg.ingest.batch_max_bytes
        self.batch_wait = cfg.ingest.batch_wait_ms / 1000.0
        self.max_message_bytes = cfg.ingest.max_message_bytes
        self.limits = Limits.from_settings(cfg.ingest)
        # A long statement (a VACUUM, a big batch) keeps proving the writer alive to
        # the supervisor, so only a writer that really stopped is taken for hung.
        self.conn.set_progress_handler(self._progress, PROGRESS_STEPS)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        self.sock.setsockopt(zmq.RCVHWM, cfg.ingest.receive_hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        bind(self.sock, cfg.ingest.endpoint, cfg.daemon.runtime_dir)
        self.peer_ids = curve_auth.applies(cfg.ingest.endpoint)   # ZAP User-Id per frame (batch.add)
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.setsockopt(zmq.MAXMSGSIZE, 64 * 1024 * 1024)
        bind(self.control, cfg.daemon.control_endpoint, cfg.daemon.runtime_dir)
        self.events = EventPublisher(self.ctx, cfg.events.endpoint, cfg.daemon.runtime_dir,
                                     cfg.events.coalesce_ms / 1000.0)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.control, zmq.POLLIN)
        self.pid = os.getpid()
        self.merger = FtsMerger(self.conn)
        self.converter = Converter(self, write_ops.run)   # schema 6's rows, if any are left
        self.checkpointer = Checkpointer(self.db_path, cfg.storage.checkpoint_interval_s,
                                         cfg.storage.wal_max_mb * 1024 * 1024)
        self.checkpointer.start()
        self.commits = 0
        self.latency = LatencyHistogram()
        self.held = HeldTimes()
        self.step_sizes = {}                      # write_ops: paced steps, sized on the clock
        self.started_at = time.time()
        self._state_saved = 0.0
        self._last_commit = 0.0
        self.received = self.committed = 0
        self.full_since = 0.0                     # storage full since (0: it is not)
        self.full_last = 0.0
        self.full_records = 0
        with self.conn:
            self._save_state()
        self.log.info("writer ready: %s -> %s", cfg.ingest.endpoint, self.db_path)

    # -- the loop ------------------------------------------------------------
    def loop_once(self) -> None:
        ready = dict(self.poller.poll(int(self.tick * 1000)))
        if self.sock in ready:
            with gc_paused(), self.held.timing("commit"):   # decoding makes lists by the thousand
                self.commit(self.receive())
            _YIELD()
        if self.control in ready:
            self.control_once()                   # one bounded operation between batches
            _YIELD()
        with self.held.timing("fts_merge") as t:
            t.ran = self.merger.step(self.ingest_waiting)   # paced, gives way to ingest
        if t.ran:
            _YIELD()
        with self.held.timing("checkpoint") as t:
            t.ran = self.checkpointer.finish(self.conn, self.ingest_waiting)
        self.converter.step()                     # paced, while schema 6's rows are left
        if not ready:
            self.events.flush()
            if self._state_saved < self._last_commit and time.time() - self._state_saved > 1.0:
                with self.conn:                  # idle: publish the last commits' latencies
                    self._save_state()

    def ingest_waiting(self) -> bool:
        """Whether an ingest message waits: paced work stops between two steps for it."""
        return bool(self.sock.poll(0, zmq.POLLIN))

    def control_once(self) -> None:
        """Run one write operation asked for by another process of the daemon."""
        try:
            frames = self.control.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        envelope, body = frames[:-1], frames[-1]

        def run(name, params):
            step = params.get("step") if isinstance(params, dict) else None   # maintenance
            with self.held.timing(f"op.{name}" + (f".{step}" if isinstance(step, str) else "")):
                return ok([write_ops.run(self, name, params)])
        reply = rpc.answer(body, run)
        self.control.send_multipart(envelope + [reply])

    def receive(self) -> Batch:
        """Every frame waiting now, up to ``batch_size`` records or until the
        frames reach ``batch_max_bytes`` (so at most one frame past it)."""
        batch = Batch(self.clients, self.limits)
        sock = self.sock
        deadline = time.monotonic() + self.batch_wait if self.batch_wait else 0.0
        while batch.records < self.batch_size and batch.bytes < self.batch_max_bytes:
            try:
                frame = sock.recv(zmq.NOBLOCK, copy=not self.peer_ids)
            except zmq.Again:
                left = deadline - time.monotonic() if deadline else 0.0
                if left > 0 and sock.poll(max(1, int(left * 1000))):
                    continue
                break
            if self.peer_ids:
                batch.add(frame.bytes, _user_id(frame))
            else:
                batch.add(frame)
        return batch

    def commit(self, batch: Batch) -> None:
        conn = self.conn
        self.received += batch.records
        try:
            with conn:
                for kind, rows in batch.rows.items():
                    if rows:
                        self._insert(kind, rows, batch)
                if batch.clients:
                    conn.executemany(schema.UPSERT_CLIENT, [st.row() for st in batch.clients.values()])
                if batch.rejects:
                    conn.executemany(schema.ADD_REJECTS, batch.rejects.items())
                counts = [(schema.TABLES[k], n) for k, n in batch.stored.items()
                          if n and schema.TABLES[k] in schema.COUNTED_TABLES]
                if counts:
                    conn.executemany(schema.ADD_COUNT, counts)
                if batch.received_at - self._state_saved > 1.0:
                    self._save_state()
        except (apsw.Error, BatchAborted, OverflowError, TypeError, ValueError, KeyError) as exc:
            self._rollback()
            if not _caused_by(exc, apsw.FullError, BatchAborted):
                # Nothing of this batch is stored; its clients' sequence numbers were
                # not advanced either, so their next messages show the gap as lost.
                self.log.exception("commit of %d records failed", batch.records)
                return
            # Disk (or max_page_count) full: nothing of this batch is stored, its
            # clients' sequence numbers stay, so they count the records as lost.
            # Every committed row stays readable; the next commit that fits resumes.
            self.full_records += batch.records
            self.full_last = time.time()
            if not self.full_since:
                self.full_since = time.time()
                self.log.error("storage full: not storing new records until there is room")
                self.events.publish("storage_warning", {"reason": "storage_full",
                                                        "time": self.full_since})
            return
        if self.full_since and batch.records and time.time() - self.full_last > FULL_QUIET_S:
            # records fit again, and nothing failed for a while: the episode is over
            self.log.warning("storage has room again: storing resumed (%d records were not "
                             "stored while full)", self.full_records)
            self.full_since = 0.0
        batch.committed()
        if batch.stored["log"]:
            self.merger.wrote()
        self.commits += 1
        self.committed += batch.records
        self.events.data_committed(batch.stored)
        for alert in batch.new_alerts:
            self.events.publish("alert_stored", alert)
        done = self._last_commit = time.time()
        add = self.latency.add
        for sent_at in batch.sent_at:
            add(done - sent_at)

    def busy(self) -> BusyBeat:
        """Beats around a long C call that runs no statement steps (``busy_beat``)."""
        return BusyBeat(self.beat)

    def _progress(self) -> bool:
        """SQLite's progress handler: a heartbeat from inside a long statement."""
        self.beat()
        return False                              # go on (True would interrupt it)

    def _rollback(self) -> None:
        """A failed COMMIT (SQLITE_FULL, I/O errors) may leave the transaction open:
        end it, or the next batch would commit this one's rows along with its own."""
        self.store.rolled_back()
        if not self.conn.getautocommit():
            try:
                self.conn.execute("ROLLBACK")
            except apsw.Error:
                pass

    def _save_state(self) -> None:
        """Publish the latency histogram (of commits up to now) for ``stats``."""
        self._state_saved = time.time()
        doc = {"since": self.started_at, "commits": self.commits, **self.latency.to_dict()}
        writer = {"pid": os.getpid(), "started_at": self.started_at, "commits": self.commits,
                  "received_records": self.received, "committed_records": self.committed,
                  "not_stored_while_full": self.full_records, "held": self.held.to_dict(),
                  "wal_copies": self.checkpointer.counts()}
        self.conn.executemany(schema.SET_WRITER_STATE, [("ingest_latency", json.dumps(doc)),
                                                        ("writer", json.dumps(writer))])

    def _insert(self, kind: str, rows: list, batch: Batch) -> None:
        conn = self.conn
        first = self.store.last_id(kind) + 1
        try:
            with conn:                                   # a savepoint
                self.store.insert(kind, rows)
        except (apsw.Error, TypeError, ValueError, OverflowError, KeyError) as exc:
            self.store.rolled_back()                     # names it added went with the savepoint
            if _caused_by(exc, apsw.FullError) or conn.getautocommit():
                # Storage full, or SQLite rolled the whole transaction back: the
                # batch cannot go on (inserting row by row now would autocommit).
                raise BatchAborted(_caused_by(exc, apsw.FullError)) from exc
            self._insert_one_by_one(kind, rows, batch)
        self.store.after(kind, first, self.store.last_id(kind))
        if kind == "alert":                              # announced once committed
            cols = ("id",) + FIELDS["alert"]
            batch.new_alerts = [dict(zip(cols, r)) for r in conn.execute(
                f"SELECT {', '.join(cols)} FROM alert_history WHERE id >= ?", (first,))]

    def _insert_one_by_one(self, kind: str, rows: list, batch: Batch) -> None:
        """The slow path: find the rows SQLite refuses, keep all the others."""
        fields = FIELDS[kind]
        now = time.time()
        for i, row in enumerate(rows):
            try:
                row = _coerce(kind, fields, row, now, self.limits)
                reason = refusal(kind, row)
                if reason:
                    raise _Refused(reason)
                self.store.insert(kind, [row])
            except _Refused as exc:
                batch.reject(kind, i, exc.reason)
            except apsw.FullError:
                raise BatchAborted(True) from None
            except apsw.ConstraintError as exc:
                batch.reject(kind, i, _constraint_reason(exc))
            except (apsw.Error, TypeError, ValueError, OverflowError, KeyError):
                batch.reject(kind, i, "wrong_type")

    def shutdown(self) -> None:
        # Drain: everything ZeroMQ has already received is committed before exit.
        drained = 0
        deadline = time.monotonic() + DRAIN_MAX_S
        while time.monotonic() < deadline:
            batch = self.receive()
            if not batch.messages:
                # quiet: wait a moment for frames still in flight, then stop
                if not self.sock.poll(int(DRAIN_QUIET_S * 1000)):
                    break
                continue
            self.commit(batch)
            drained += batch.records
        self.sock.close(0)
        self.control.close(0)
        self.events.close()
        curve_auth.stop(self.ctx)                     # the ZAP handler's sockets, if CURVE is on
        self.ctx.term()
        try:
            with self.conn:
                self._save_state()
        except apsw.Error:
            pass
        self.checkpointer.stop()
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except apsw.Error:
            pass
        self.conn.close()
        self.lock.release()
        self.log.info("writer stopped after draining %d records", drained)


class BatchAborted(Exception):
    """The batch's transaction is gone (``full``: because storage is full)."""

    def __init__(self, full: bool):
        super().__init__("storage full" if full else "transaction rolled back")
        self.full = full


# Between two pieces of its work the writer offers its core to whatever waits for it:
# woken by a batch it may have preempted an SDK thread, and without this the SDK thread
# waited until the writer slept or the next scheduler tick, through the commit, the FTS
# merge step and the checkpoint copy in a row (bench/README, issue 14). When nothing
# waits the call returns at once.
_YIELD = getattr(os, "sched_yield", lambda: None)


def _caused_by(exc, cls, aborted=None) -> bool:
    """Whether ``cls`` (or a BatchAborted for a full storage) is in the exception chain."""
    while exc is not None:
        if isinstance(exc, cls) or (aborted and isinstance(exc, aborted) and exc.full):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _Refused(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _coerce(kind: str, fields: tuple, row, now: float, limits: Limits = Limits()):
    """Make one raw row insertable, or say why it cannot be. (Batch.add has
    checked the limits; a JSON field sent as a map becomes text only here, so
    its size and depth are checked here.)"""
    if isinstance(row, dict):                      # a client that sent records as maps
        try:
            return row_from_record(kind, row, now)
        except (ValueError, TypeError):
            raise _Refused("bad_value") from None
    if not isinstance(row, list) or len(row) != len(fields):
        raise _Refused("bad_shape")
    for i, name in enumerate(fields):
        v = row[i]
        if name in TIME_FIELDS and isinstance(v, str):
            try:
                row[i] = to_epoch(v)                # ISO-8601 on the wire: convert at the edge
            except ValueError:
                raise _Refused("bad_timestamp") from None
        elif name in JSON_FIELDS and isinstance(v, (dict, list)):
            try:
                row[i] = dumps_json(v)
            except RecursionError:
                raise _Refused("json_too_deep") from None
            problem = json_problem(row[i], limits)
            if problem:
                raise _Refused(problem)
    return row


def _constraint_reason(exc: apsw.ConstraintError) -> str:
    text = str(exc)
    if "NOT NULL" in text:
        return "missing_field"
    if "CHECK" in text:
        return "bad_value"
    return "wrong_type"


def _user_id(frame: zmq.Frame) -> str | None:
    """The sender's key as the ZAP handler authenticated it (None: not a CURVE peer)."""
    try:
        return frame.get("User-Id") or None
    except zmq.ZMQError:
        return None
