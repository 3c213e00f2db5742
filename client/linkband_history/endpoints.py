"""Where the daemon's sockets are: shared by the daemon and every client.

Default: ``ipc://`` sockets in an owner-only runtime directory
(``$XDG_RUNTIME_DIR/linkband-history``, else ``<tmp>/linkband-history-<uid>``);
on Windows, which has no ``ipc://``, loopback TCP. ``LINKBAND_HISTORY_INGEST``
and ``LINKBAND_HISTORY_QUERY`` override them for clients (and the daemon).
"""
from __future__ import annotations

import os
import sys
import tempfile

IPC_SUPPORTED = sys.platform != "win32"
DEFAULT_TCP_PORTS = {"ingest": 5561, "query": 5562, "events": 5563, "control": 5564,
                     "scheduler": 5565}
ENV_PREFIX = "LINKBAND_HISTORY_"


def default_runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return os.path.join(base, "linkband-history")
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    return os.path.join(tempfile.gettempdir(), f"linkband-history-{uid}")


def default_endpoint(name: str, runtime_dir: str | None = None) -> str:
    if not IPC_SUPPORTED:
        return f"tcp://127.0.0.1:{DEFAULT_TCP_PORTS[name]}"
    return "ipc://" + os.path.join(runtime_dir or default_runtime_dir(), f"{name}.sock")


def resolve_endpoint(name: str, explicit: str | None = None) -> str:
    """An explicit endpoint, else ``LINKBAND_HISTORY_<NAME>``, else the default."""
    return explicit or os.environ.get(ENV_PREFIX + name.upper()) or default_endpoint(name)
