"""HistoryLogHandler: the standard ``logging`` module into the history store.

The mapping of a ``LogRecord`` to a log row lives here once; the SDK-shaped
handler (``sdk/log_handler.py``) subclasses this one. It runs in the thread
that logs, so the common record (no ``extra=``, no exception) costs the
message's formatting, one list and one append to the client's queue: no dict,
no JSON, no timestamp conversion, no handler lock. ``extra=`` fields and
tracebacks take the longer way (:func:`extra_of`).

A handler attached to several loggers of one hierarchy (the SDK adds the same
one to ``app.api`` and to the root) is called once per logger a record
propagates through; :meth:`HistoryLogHandler.handle` stores it once.
"""
from __future__ import annotations

import logging
import threading
import traceback
import weakref

from . import protocol
from .client import HistoryClient

__all__ = ["HistoryLogHandler", "log_row", "extra_of"]

_BASE = vars(logging.LogRecord("", 0, "", 0, "", (), None))
_BASE_LEN = len(_BASE)          # a record with no more attributes has no extra= fields
# Attributes every LogRecord has or a Formatter adds; anything else came from ``extra=``.
_STANDARD = frozenset(_BASE) | {"message", "asctime", "taskName"}
_LEVELS = frozenset(protocol.LOG_LEVELS)


def level_name(record: logging.LogRecord) -> str:
    """The record's level as one the store knows; a custom level by its number
    (a TRACE at 5 is a DEBUG, a NOTICE at 25 an INFO)."""
    name = record.levelname
    if name in _LEVELS:
        return name
    n = record.levelno
    return ("CRITICAL" if n >= 50 else "ERROR" if n >= 40 else "WARNING" if n >= 30
            else "INFO" if n >= 20 else "DEBUG")


def extra_of(record: logging.LogRecord, sdk_shape: bool = False) -> dict | None:
    """The record's ``extra=`` fields, its exception (``{type, message,
    traceback}``) and stack, or None. With ``sdk_shape`` as the SDK's own
    handler stored them: the traceback as a list of lines, and a dict passed
    as ``extra={"extra": {...}}`` merged into the top level."""
    d = vars(record)
    extra = None
    if len(d) > _BASE_LEN:
        extra = {k: v for k, v in d.items() if k not in _STANDARD}
        if sdk_shape and isinstance(extra.get("extra"), dict):
            extra.update(extra.pop("extra"))
    if record.exc_info and record.exc_info[0] is not None:
        etype, evalue, etb = record.exc_info
        lines = traceback.format_exception(etype, evalue, etb)
        extra = extra or {}
        extra["exception"] = {"type": etype.__name__, "message": str(evalue),
                              "traceback": lines if sdk_shape else "".join(lines)}
    elif record.exc_text:
        extra = extra or {}
        extra["exception"] = {"traceback": record.exc_text}
    if record.stack_info:
        extra = extra or {}
        extra["stack"] = record.stack_info
    return extra or None


def log_row(record: logging.LogRecord, sdk_shape: bool = False) -> tuple:
    """The record as a row in ``protocol.FIELDS["log"]`` order, ready for
    :meth:`HistoryClient.store_row`. A tuple of plain values: the garbage
    collector stops tracking it, so a long queue costs full collections nothing."""
    extra = None
    if len(vars(record)) > _BASE_LEN or record.exc_info or record.exc_text or record.stack_info:
        extra = extra_of(record, sdk_shape)
    return (record.created, level_name(record), record.name, record.getMessage(),
            record.module, record.funcName, record.lineno, record.thread, record.process,
            None if extra is None else protocol.dumps_json(extra))


class HistoryLogHandler(logging.Handler):
    """Maps each LogRecord to a log row and hands it to a HistoryClient.

    ``extra=`` fields go to extra_data; ``exc_info`` becomes
    ``extra_data.exception = {type, message, traceback}``. Never blocks: the
    client queues and sends from its own thread. A record that reaches this
    handler through several loggers is stored once.
    """

    sdk_shape = False           # see extra_of()

    def __init__(self, client: HistoryClient | None = None, level=logging.NOTSET, **client_kw):
        super().__init__(level)
        self._own_client = client is None
        self.client = client if client is not None else HistoryClient(**client_kw)
        self._last = threading.local()  # per thread: a weak reference to the last record handled

    def to_record(self, record: logging.LogRecord) -> dict:
        """The record as a client record (a dict), for callers that want one."""
        row = log_row(record, self.sdk_shape)
        out = dict(zip(protocol.FIELDS["log"], row))
        out["extra_data"] = extra_of(record, self.sdk_shape)
        return out

    def handle(self, record: logging.LogRecord):
        """Like ``logging.Handler.handle`` without the handler's lock (the
        client's queue has its own), and once per record: logging calls a
        handler once for each logger the record passes on its way up."""
        last = getattr(self._last, "ref", None)
        if last is not None and last() is record:
            return False
        rv = self.filter(record)
        if rv:
            self._last.ref = weakref.ref(record)
            # Python 3.12: a filter may return a replacement record
            self.emit(rv if isinstance(rv, logging.LogRecord) else record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.client.store_row("log", log_row(record, self.sdk_shape))
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.client.flush(timeout=1.0)

    def close(self) -> None:
        try:
            if self._own_client:
                self.client.close()
        finally:
            super().close()
