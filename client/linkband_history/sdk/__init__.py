"""The Link Band SDK's history API over linkband-history: switching is changing imports.

    from linkband_history.sdk import HistoryDatabaseManager, SystemLog, LogQuery

Names are loaded on first use (module ``__getattr__``), so importing this
package costs nothing and loads only the stdlib, pyzmq, msgpack and other
``linkband_history`` modules: never the daemon, never pydantic (the SDK's own
model classes are used when ``app.models.history_models`` is importable).
"""
from __future__ import annotations

import importlib

_MODELS = ("SystemMetric", "PerformanceData", "SystemLog", "AlertHistory", "DataSummary",
           "MetricQuery", "LogQuery", "HistoryStats", "StorageInfo",
           "MetricType", "ComponentType", "LogLevel", "AlertCategory", "SummaryType")

# public name -> the module of this package that defines it
_WHERE = {
    **{name: "models" for name in _MODELS},
    "HistoryDatabaseManager": "manager",
    "import_sdk_db": "importer",
    "HistoryLogHandler": "log_handler",
    "HistoryLogManager": "log_handler",
    "get_history_log_manager": "log_handler",
    "setup_history_logging": "log_handler",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
