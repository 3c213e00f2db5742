"""The systemd notify protocol: a few lines over ``$NOTIFY_SOCKET``, no dependency.

``notify("READY=1", "STATUS=...")`` sends one datagram when the daemon runs
under systemd with ``Type=notify``; elsewhere it does nothing.
``watchdog_interval()`` is half of ``$WATCHDOG_USEC`` (when systemd asks for
pings and they are meant for this process), else None.
"""
from __future__ import annotations

import os
import socket


def notify(*lines: str) -> bool:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path or not hasattr(socket, "AF_UNIX"):
        return False
    if path.startswith("@"):                       # abstract namespace
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
            s.sendall("\n".join(lines).encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
