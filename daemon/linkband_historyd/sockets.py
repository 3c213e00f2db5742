"""Binding the daemon's sockets safely.

``ipc://`` sockets live in an owner-only (0700) runtime directory and are
created 0600; a stale socket file left by a killed process is replaced.
Which addresses may be bound at all is decided by the configuration
(``config.finish``): loopback and ipc:// only, unless CurveZMQ keys are
configured; then the public tcp:// endpoints are CURVE servers (``curve``).
"""
from __future__ import annotations

import os
import stat

import zmq

from . import curve


def prepare_runtime_dir(path: str) -> None:
    """Create the runtime directory 0700, or refuse one that others can use."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(f"runtime directory {path} belongs to uid {st.st_uid}, not us")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)


def bind(sock: zmq.Socket, endpoint: str, runtime_dir: str) -> None:
    curve.secure(sock, endpoint)          # CURVE keys + ZAP on public tcp:// endpoints, if set
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        directory = os.path.dirname(path) or "."
        if os.path.abspath(directory) == os.path.abspath(runtime_dir):
            prepare_runtime_dir(directory)
        else:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        old = os.umask(0o077)
        try:
            sock.bind(endpoint)
        finally:
            os.umask(old)
        if os.path.exists(path):
            os.chmod(path, 0o600)
    else:
        sock.bind(endpoint)
