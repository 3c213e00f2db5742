"""Binding the daemon's sockets safely.

``ipc://`` sockets live in an owner-only (0700) runtime directory, checked with
``lstat`` (``endpoints.check_private_dir``: a symbolic link, another owner or
group/other bits are refused) and are created 0600. A socket file that is
there already is taken over only when it is stale: if something answers a
connect on it, another daemon is alive there and the bind is refused
(:class:`SocketInUse`); else (ECONNREFUSED) it is unlinked. Which addresses may
be bound at all is decided by the configuration (``config.finish``): loopback
and ipc:// only, unless CurveZMQ keys are configured; every tcp:// endpoint is
a CURVE server (``curve``), with the user's own keys when none are configured.
"""
from __future__ import annotations

import errno
import os
import socket

import zmq

from linkband_history.endpoints import make_private_dir
from linkband_historyd.security import curve_auth


class SocketInUse(RuntimeError):
    """An ipc:// path another live process answers on."""


def prepare_runtime_dir(path: str) -> None:
    """Create the runtime directory 0700 (and its missing parents), or refuse one
    that is a symbolic link, another user's, or open to others (PermissionError)."""
    make_private_dir(path, "runtime directory")


def ipc_path(endpoint: str) -> str | None:
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def check_not_live(endpoint: str) -> None:
    """Refuse to take over an ipc:// socket another process still answers on;
    a stale one (ECONNREFUSED: its process is gone) is removed."""
    path = ipc_path(endpoint)
    if path is None or not hasattr(socket, "AF_UNIX") or not os.path.lexists(path):
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2.0)
        s.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        raise SocketInUse(f"{path}: cannot tell whether another daemon uses it "
                          f"({exc.strerror or exc}); refusing to replace it") from None
    finally:
        s.close()
    raise SocketInUse(f"{path} is in use: another linkband-historyd answers on it (give this one "
                      "its own --runtime-dir or --data-dir, or stop the other one)")


def bind(sock: zmq.Socket, endpoint: str, runtime_dir: str) -> None:
    curve_auth.secure(sock, endpoint)          # CURVE keys + ZAP on tcp:// endpoints, if set
    path = ipc_path(endpoint)
    if path is None:
        sock.bind(endpoint)
        return
    directory = os.path.dirname(os.path.abspath(path))
    if directory == os.path.abspath(runtime_dir):
        prepare_runtime_dir(directory)
    else:
        make_private_dir(directory, "socket directory")
    check_not_live(endpoint)
    old = os.umask(0o077)
    try:
        sock.bind(endpoint)
    finally:
        os.umask(old)
    if os.path.exists(path):
        os.chmod(path, 0o600)

