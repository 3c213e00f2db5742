"""linkband_history.sdk's log module, driven the way the SDK's logging_config drives its own,
over a ``HistoryDatabaseManager`` on the test's daemon."""
from __future__ import annotations

import contextlib
import inspect
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

import sdk_models as sdk
from conftest import all_rows
from linkband_history.sdk import HistoryDatabaseManager, log_handler
from linkband_history.sdk.log_handler import (HistoryLogHandler, HistoryLogManager,
                                              get_history_log_manager, setup_history_logging)

SDK_LOGGERS = ("app.core", "app.api", "app.services", "app.main", "uvicorn", "fastapi")


def db_manager(daemon) -> HistoryDatabaseManager:
    return HistoryDatabaseManager(str(daemon.db_path), ingest=daemon.ingest, query=daemon.query)


@pytest.fixture(autouse=True)
def restore_logging():
    """Each test leaves the logging tree as it found it. The root logger is at
    WARNING, Python's default, so setup_logging()'s own INFO line through the
    root logger is not stored (nor is it by the SDK's)."""
    names = ("",) + SDK_LOGGERS + ("custom.logger",)
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    logging.getLogger().setLevel(logging.WARNING)
    yield
    for n, (level, handlers) in saved.items():
        logger = logging.getLogger(n)
        logger.setLevel(level)
        logger.handlers[:] = handlers
    log_handler._manager = None


@pytest.fixture
def manager(daemon):
    m = HistoryLogManager(db_manager(daemon))
    yield m
    m.close()


def logs(daemon, **params):
    return all_rows(daemon, "logs", order="asc", **params)


def test_setup_history_logging_stores_each_record_once_whichever_loggers_it_passes(daemon):
    log_handler._manager = HistoryLogManager(db_manager(daemon))
    manager = setup_history_logging()
    try:
        assert manager is get_history_log_manager()
        logging.getLogger("app.api").info("[API] GET /device/status")        # app.api, then root
        logging.getLogger("app.api.router_device").info("[API] POST /device/connect")  # 2 up
        logging.getLogger("app.core").warning("[DEVICE_MGR:CONNECT] 재연결 시도 중")
        logging.getLogger("uvicorn").info("Application startup complete.")
        logging.getLogger("custom.logger").warning("only the root logger's handler sees this")
        logging.getLogger().error("a root record")
        manager.flush()
        messages = [r["message"] for r in logs(daemon)]
        assert messages == ["[API] GET /device/status", "[API] POST /device/connect",
                            "[DEVICE_MGR:CONNECT] 재연결 시도 중", "Application startup complete.",
                            "only the root logger's handler sees this", "a root record"]
    finally:
        manager.close()


def test_records_from_many_threads_propagating_to_the_root_are_counted_exactly(daemon, manager):
    manager.setup_logging()
    api = logging.getLogger("app.api")

    def work(t):
        for i in range(500):
            api.info("[API] request %d of thread %d", i, t)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    manager.flush()
    assert daemon.stats()["tables"]["system_logs"] == 4 * 500


def test_extra_fields_and_the_sdk_record_fields_are_kept(daemon, manager):
    manager.setup_logging()
    logging.getLogger("app.services").info(
        "[AUTO_CONNECT] Cross-platform address update: %s", "LXB-01",
        extra={"registered_addr": "AA:BB:CC:DD:EE:FF", "current_addr": "11:22:33:44:55:66"})
    logging.getLogger("app.services").info("SDK style", extra={"extra": {"sensor": "eeg"}, "n": 1})
    manager.flush()
    first, second = logs(daemon, logger_name="app.services")
    assert first["message"] == "[AUTO_CONNECT] Cross-platform address update: LXB-01"
    assert first["extra_data"] == {"registered_addr": "AA:BB:CC:DD:EE:FF",
                                   "current_addr": "11:22:33:44:55:66"}
    assert first["level"] == "INFO" and first["module"] == "test_sdk_logging"
    assert first["function_name"] == "test_extra_fields_and_the_sdk_record_fields_are_kept"
    assert first["line_number"] > 0
    assert first["thread_id"] == threading.get_ident() and first["process_id"] > 0
    assert second["extra_data"] == {"sensor": "eeg", "n": 1}     # the SDK's record.extra, merged


def test_an_exception_is_kept_with_its_traceback_as_the_sdk_stores_it(daemon, manager):
    manager.setup_logging()
    try:
        raise ConnectionError("BLE link lost")
    except ConnectionError:
        logging.getLogger("app.core").exception("[DEVICE_MGR:ERROR] 연결 실패", extra={"address": "AA"})
    manager.flush()
    (row,) = logs(daemon, logger_name="app.core")
    assert row["level"] == "ERROR"
    exc = row["extra_data"]["exception"]
    assert exc["type"] == "ConnectionError" and exc["message"] == "BLE link lost"
    assert isinstance(exc["traceback"], list)
    assert any('raise ConnectionError("BLE link lost")' in line for line in exc["traceback"])
    assert row["extra_data"]["address"] == "AA"


def test_the_handler_level_keeps_records_below_it_out(daemon, manager):
    manager.setup_logging(["app.api"], level=logging.WARNING)
    logging.getLogger("app.api").info("not stored")
    logging.getLogger("app.api").warning("stored")
    manager.flush()
    assert [r["message"] for r in logs(daemon)] == ["stored"]


def test_add_custom_log_takes_the_sdk_enum_a_name_or_a_number(daemon, manager):
    manager.add_custom_log(sdk.LogLevel.WARNING, "배터리 부족", extra_data={"battery": 12})
    manager.add_custom_log("error", "custom error", logger_name="api", module="router_history")
    manager.add_custom_log(logging.DEBUG, "debug line")
    with pytest.raises(ValueError, match="level must be one of"):
        manager.add_custom_log("LOUD", "refused")
    manager.flush()
    rows = logs(daemon)
    assert [(r["level"], r["logger_name"], r["message"]) for r in rows] == [
        ("WARNING", "custom", "배터리 부족"), ("ERROR", "api", "custom error"),
        ("DEBUG", "custom", "debug line")]
    assert rows[0]["extra_data"] == {"battery": 12}
    assert rows[1]["module"] == "router_history"
    assert rows[0]["thread_id"] == threading.get_ident()


def test_close_flushes_detaches_the_handler_and_closes_the_manager(daemon, capsys):
    db = db_manager(daemon)
    manager = HistoryLogManager(db)
    manager.setup_logging()
    logging.getLogger("app.main").info("last words")
    manager.close()
    assert db._closed
    assert manager.handler not in logging.getLogger().handlers
    assert manager.handler not in logging.getLogger("app.main").handlers
    logging.getLogger("app.main").warning("after close: goes nowhere, raises nothing")
    assert "Traceback" not in capsys.readouterr().err
    assert [r["message"] for r in logs(daemon)] == ["last words"]


def test_a_handler_closed_by_logging_shutdown_has_committed_what_it_got(daemon):
    db = db_manager(daemon)
    handler = HistoryLogHandler(db)
    logger = logging.getLogger("app.core")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.info("before shutdown")
    logging.shutdown([lambda: handler])           # what atexit runs: flush(), close()
    assert [r["message"] for r in logs(daemon)] == ["before shutdown"]
    db.close()


# The SDK's signatures (reference: app/core/history_log_handler.py), annotations aside.
SDK_SIGNATURES = {
    HistoryLogHandler: "(db_manager=None)",
    HistoryLogHandler.close: "(self)",
    HistoryLogManager: "(db_manager=None)",
    HistoryLogManager.setup_logging: "(self, logger_names=None, level=20)",
    HistoryLogManager.add_custom_log: ("(self, level, message, logger_name='custom', module=None, "
                                       "extra_data=None)"),
    HistoryLogManager.flush: "(self)",
    HistoryLogManager.close: "(self)",
    get_history_log_manager: "()",
    setup_history_logging: "(logger_names=None, level=20)",
}


@pytest.mark.parametrize("obj", list(SDK_SIGNATURES), ids=lambda o: o.__qualname__)
def test_the_log_module_has_the_sdks_signatures(obj):
    sig = inspect.signature(obj)
    bare = sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                       return_annotation=sig.empty)
    assert str(bare) == SDK_SIGNATURES[obj]


def test_the_sdk_package_exports_the_log_module():
    import linkband_history.sdk as package
    assert package.HistoryLogHandler is HistoryLogHandler
    assert package.setup_history_logging is setup_history_logging
    assert package.get_history_log_manager is get_history_log_manager
    assert package.HistoryLogManager is HistoryLogManager


def test_with_no_manager_given_it_logs_into_database_history_db_through_a_daemon_it_started(
        tmp_path, monkeypatch):
    from linkband_history.sdk import LogQuery
    monkeypatch.chdir(tmp_path)
    manager = setup_history_logging(["app.api"])
    try:
        assert manager.db_manager.db_path == "database/history.db"
        logging.getLogger("app.api").info("[API] GET /history/logs")
        manager.flush()
        (row,) = manager.db_manager.query_logs(LogQuery(logger_names=["app.api"]))
        assert row.message == "[API] GET /history/logs"
    finally:
        manager.close()
    assert (tmp_path / "database" / "history.db").exists()


def test_a_process_that_only_calls_setup_history_logging_exits_cleanly_with_its_records_stored(
        tmp_path):
    code = textwrap.dedent("""
        import logging
        logging.basicConfig(level=logging.WARNING)
        from linkband_history.sdk import setup_history_logging
        setup_history_logging()
        logging.getLogger("app.api").info("[API] GET /device/status")
        logging.getLogger("app.core").warning("[DEVICE_MGR:CONNECT] 재연결 시도 중")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # the console handler's two lines, nothing else: no warning, no traceback at exit
    assert proc.stderr.splitlines() == ["INFO:app.api:[API] GET /device/status",
                                        "WARNING:app.core:[DEVICE_MGR:CONNECT] 재연결 시도 중"]
    db = tmp_path / "database" / "history.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT logger_name, message FROM system_logs ORDER BY id").fetchall()
    assert rows == [("app.api", "[API] GET /device/status"),
                    ("app.core", "[DEVICE_MGR:CONNECT] 재연결 시도 중")]
