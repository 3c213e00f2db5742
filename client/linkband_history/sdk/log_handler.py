"""The SDK's log module (``app/core/history_log_handler.py``), same names and signatures.

``setup_history_logging()`` adds one :class:`HistoryLogHandler` to the root
logger and to the SDK's named loggers, as the SDK's does; unlike the SDK's, a
record that propagates through several of them is stored once, and
``extra=`` fields are kept. A record goes straight to the manager's
``HistoryClient`` as a row (the mapping of ``linkband_history.loghandler``):
no model object is built per record, and the calling thread never waits for
the daemon.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from .. import loghandler, protocol

__all__ = ["HistoryLogHandler", "HistoryLogManager", "get_history_log_manager",
           "setup_history_logging"]

# the loggers the SDK's setup_logging() configures when it is given none
DEFAULT_LOGGERS = ("app.core", "app.api", "app.services", "app.main", "uvicorn", "fastapi")
_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def _default_manager():
    from .manager import HistoryDatabaseManager
    return HistoryDatabaseManager()


class HistoryLogHandler(loghandler.HistoryLogHandler):
    """A ``logging.Handler`` storing each record through ``db_manager``
    (default: a ``HistoryDatabaseManager()`` on ``database/history.db``).

    ``extra_data`` holds the record's ``extra=`` fields and, for an exception,
    ``{type, message, traceback}`` with the traceback as a list of lines, as
    the SDK's handler stores it.
    """

    sdk_shape = True

    def __init__(self, db_manager=None):
        self.db_manager = db_manager if db_manager is not None else _default_manager()
        super().__init__(self.db_manager.client)
        self._closed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self._closed:        # records of loggers it is still attached to after close()
            super().emit(record)

    def close(self) -> None:
        """Commit what was logged, as the SDK's does; a manager closed first
        (at exit the managers close before ``logging.shutdown`` runs) has done so."""
        if not self._closed:
            self._closed = True
            try:
                if not self.client.closed:
                    self.db_manager.force_flush()
            finally:
                super().close()


class HistoryLogManager:
    """The SDK's log manager: one handler, the loggers it is attached to,
    custom log lines, flushing and closing."""

    def __init__(self, db_manager=None):
        self.db_manager = db_manager if db_manager is not None else _default_manager()
        self.handler = HistoryLogHandler(self.db_manager)
        self._configured_loggers: set[str] = set()

    def setup_logging(self, logger_names: list | None = None, level: int = logging.INFO):
        """Attach the handler at ``level`` to each named logger (default: the
        SDK's) and to the root logger, and set those loggers' level, as the
        SDK does; a logger already configured is left alone."""
        if logger_names is None:
            logger_names = list(DEFAULT_LOGGERS)
        self.handler.setFormatter(logging.Formatter(_FORMAT))
        self.handler.setLevel(level)
        for name in logger_names:
            if name not in self._configured_loggers:
                logger = logging.getLogger(name)
                logger.addHandler(self.handler)
                logger.setLevel(level)
                self._configured_loggers.add(name)
        if "root" not in self._configured_loggers:
            logging.getLogger().addHandler(self.handler)
            self._configured_loggers.add("root")
        logging.info("History logging system initialized")

    def add_custom_log(self, level, message: str, logger_name: str = "custom",
                       module: str = None, extra_data: dict = None):
        """Store one log line that no logger produced. ``level``: a ``LogLevel``,
        its name or a ``logging`` level number; anything else is a ValueError."""
        name = protocol.normalize_level(getattr(level, "value", level))
        if name not in protocol.LOG_LEVELS:
            raise ValueError(f"level must be one of {', '.join(protocol.LOG_LEVELS)}, not {level!r}")
        self.db_manager.client.store_row("log", (
            time.time(), name, logger_name, str(message), module, None, None,
            threading.get_ident(), os.getpid(), protocol.dumps_json(extra_data or None)))

    def flush(self):
        """Return once everything logged so far is committed."""
        self.db_manager.force_flush()

    def close(self):
        """Flush, detach the handler from the loggers it was added to, close the manager."""
        try:
            self.handler.close()
        finally:
            for name in self._configured_loggers:
                logger = logging.getLogger() if name == "root" else logging.getLogger(name)
                logger.removeHandler(self.handler)
            self._configured_loggers.clear()
            if self.db_manager:
                self.db_manager.close()


_manager: HistoryLogManager | None = None
_manager_lock = threading.Lock()


def get_history_log_manager() -> HistoryLogManager:
    """The process's log manager (created on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = HistoryLogManager()
        return _manager


def setup_history_logging(logger_names: list | None = None, level: int = logging.INFO):
    """Set up history logging on the process's manager; returns the manager."""
    manager = get_history_log_manager()
    manager.setup_logging(logger_names, level)
    return manager
