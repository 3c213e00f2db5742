"""Client library of linkband-history: push records, query them back.

    from linkband_history import HistoryClient
    with HistoryClient() as h:
        h.store_metrics([{"metric_type": "cpu", "metric_name": "cpu_percent", "value": 15.2}])
        h.flush()
        h.query("metrics", metric_name="cpu_percent", since="15m")

Importing this package loads only pyzmq and msgpack: never the daemon's
dependencies (apsw, psutil, apscheduler).
"""
from .client import HistoryClient
from .events import subscribe
from .loghandler import HistoryLogHandler
from .protocol import KINDS, FIELDS, PROTOCOL_VERSION

__all__ = ["HistoryClient", "HistoryLogHandler", "subscribe", "KINDS", "FIELDS", "PROTOCOL_VERSION"]
__version__ = "0.1.0"
