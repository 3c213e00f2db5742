"""HistoryDatabaseManager: the SDK's class, same methods, over the daemon.

The SDK's callers keep their code: ``store_*`` take its model objects (or any
object with their attributes, or dicts) and never block, because they hand the
record to :class:`HistoryClient`'s queue; ``force_flush()`` returns once the
daemon has committed everything stored before it; the query methods return
the SDK's model objects with naive local datetimes.

The database is the file at ``db_path``: the manager uses the daemon serving
that file (data directory = the file's directory, database file = its name),
started as a child by :func:`linkband_history.embed.ensure_daemon` when none
runs, and stopped at ``close()`` or the interpreter's exit when it started it.
Two managers on one path share one daemon (counted per process; another
process reuses the running one). Given endpoints or a client, it uses those.

The SDK's summaries have no ingest kind of their own: ``store_summary`` queues
them and a background thread hands them to the writer (``sdk.store``), so it
does not block either; ``force_flush()`` sends what is queued first.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import deque

from ..client import HistoryClient
from . import models, queries

__all__ = ["HistoryDatabaseManager"]

log = logging.getLogger("linkband_history.sdk")

SUMMARY_QUEUE = 10_000            # summaries kept while the daemon is away, newest kept
SUMMARY_BATCH = 500
JOB_TIMEOUT_S = 3600.0


class HistoryDatabaseManager:
    """The SDK's ``app.database.history_db.HistoryDatabaseManager``, over linkband-history."""

    def __init__(self, db_path: str = "database/history.db", *, client: HistoryClient | None = None,
                 ingest: str | None = None, query: str | None = None, flush_timeout: float = 30.0,
                 daemon_options: dict | None = None, **client_options):
        self.db_path = db_path
        self.data_dir = os.path.dirname(os.path.abspath(db_path))
        self.flush_timeout = flush_timeout
        self.daemon = None                  # the embed handle, when no endpoints were given
        self._own_client = client is None
        if client is None and ingest is None and query is None:
            from ..embed import ensure_daemon
            os.makedirs(self.data_dir, exist_ok=True)
            self.daemon = ensure_daemon(self.data_dir, database_file=os.path.basename(db_path),
                                        **(daemon_options or {}))
            client = self.daemon.client(**client_options)
        elif client is None:
            client = HistoryClient(ingest, query, **client_options)
        self.client = client
        self._summaries: deque = deque(maxlen=SUMMARY_QUEUE)
        self._summary_lock = threading.Lock()      # one sender of summaries at a time
        self._summary_wake = threading.Event()
        self._summary_thread: threading.Thread | None = None
        self._closed = False
        # at interpreter exit what is stored is committed; registered after ensure_daemon's
        # own exit hook, so it runs before that one stops the daemon (atexit is LIFO)
        self._finalizer = weakref.finalize(self, _close_at_exit, weakref.ref(self))
        atexit.register(self._finalizer)

    # -- storing (never blocks) ----------------------------------------------------
    def _store(self, kind: str, send, obj) -> None:
        try:
            send(models.to_wire(kind, obj))
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("%s record not stored: %s", kind, exc)      # as the SDK does: logged

    def store_metric(self, metric) -> None:
        self._store("metric", self.client.store_metrics, metric)

    def store_performance_data(self, perf) -> None:
        self._store("performance", self.client.store_performance, perf)

    def store_log(self, log_entry) -> None:
        self._store("log", self.client.store_logs, log_entry)

    def store_alert(self, alert) -> None:
        self._store("alert", self.client.store_alerts, alert)

    def store_summary(self, summary) -> None:
        try:
            self._summaries.append(models.to_wire("summary", summary))
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("summary not stored: %s", exc)
            return
        if self._summary_thread is None:
            self._summary_thread = threading.Thread(target=self._summary_sender, daemon=True,
                                                    name="linkband-history-sdk-summaries")
            self._summary_thread.start()
        self._summary_wake.set()

    def _summary_sender(self) -> None:
        while not self._closed:
            self._summary_wake.wait()
            self._summary_wake.clear()
            try:
                self._send_summaries()
            except Exception as exc:             # the daemon away: kept for the next try
                log.warning("summaries not sent yet: %s", exc)

    def _send_summaries(self) -> None:
        with self._summary_lock:
            while self._summaries:
                batch = [self._summaries[i] for i in range(min(SUMMARY_BATCH, len(self._summaries)))]
                result = queries.ask(self.client, "sdk.store", kind="summary", rows=batch)["rows"][0]
                for _ in batch:
                    self._summaries.popleft()
                for index, reason in result["refused"]:
                    log.warning("summary refused by the daemon: %s", reason)

    def force_flush(self) -> None:
        """Returns once everything stored before the call is committed."""
        self._send_summaries()
        if not self.client.flush(self.flush_timeout):
            log.warning("force_flush: not every record was committed (see the daemon's stats)")

    # -- reading -----------------------------------------------------------------
    def query_metrics(self, query) -> list:
        return queries.query_metrics(self.client, query)

    def query_logs(self, query) -> list:
        return queries.query_logs(self.client, query)

    def get_history_stats(self):
        return queries.history_stats(self.client)

    def get_storage_info(self):
        return queries.storage_info(self.client)

    # -- maintenance -----------------------------------------------------------------
    def cleanup_old_data(self, retention_days: int = 30, dry_run: bool = True) -> dict:
        """Rows older than ``retention_days`` per table: counted when ``dry_run``
        (nothing is deleted), else deleted (by the daemon's retention job)."""
        return queries.cleanup(self.client, retention_days, dry_run, JOB_TIMEOUT_S)

    def optimize_database(self) -> dict:
        return queries.optimize(self.client, JOB_TIMEOUT_S)

    # -- lifetime ---------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is stored, then let go of the daemon."""
        if self._closed:
            return
        try:
            self.force_flush()
        except Exception as exc:
            log.warning("close: could not flush: %s", exc)
        self._closed = True
        self._summary_wake.set()
        if self._own_client:
            self.client.close()
        if self.daemon is not None:
            self.daemon.stop()              # the last handle stops a daemon started here
        self._finalizer.detach()
        atexit.unregister(self._finalizer)

    def __enter__(self) -> "HistoryDatabaseManager":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _close_at_exit(ref) -> None:
    manager = ref()
    if manager is not None:
        manager.close()
