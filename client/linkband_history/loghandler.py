"""HistoryLogHandler: the standard ``logging`` module into the history store."""
from __future__ import annotations

import logging
import traceback

from .client import HistoryClient

__all__ = ["HistoryLogHandler"]

# Attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class HistoryLogHandler(logging.Handler):
    """Maps each LogRecord to a log record and hands it to a HistoryClient.

    ``extra=`` fields go to extra_data; ``exc_info`` becomes
    ``extra_data.exception = {type, message, traceback}``. Never blocks: the
    client queues and sends from its own thread.
    """

    def __init__(self, client: HistoryClient | None = None, level=logging.NOTSET, **client_kw):
        super().__init__(level)
        self._own_client = client is None
        self.client = client if client is not None else HistoryClient(**client_kw)

    def to_record(self, record: logging.LogRecord) -> dict:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info and record.exc_info[0] is not None:
            etype, evalue, etb = record.exc_info
            extra["exception"] = {
                "type": etype.__name__,
                "message": str(evalue),
                "traceback": "".join(traceback.format_exception(etype, evalue, etb)),
            }
        elif record.exc_text:
            extra["exception"] = {"traceback": record.exc_text}
        if record.stack_info:
            extra["stack"] = record.stack_info
        return {
            "timestamp": record.created,
            "level": record.levelname,
            "logger_name": record.name,
            "message": record.getMessage(),
            "module": record.module,
            "function_name": record.funcName,
            "line_number": record.lineno,
            "thread_id": record.thread,
            "process_id": record.process,
            "extra_data": extra or None,
        }

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.client.store_logs((self.to_record(record),))
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
