"""One writer per database, enforced with an OS lock on ``<data_dir>/writer.lock``.

Two daemons started on the same data directory would otherwise both write the
database (and the second would take over the first one's ipc:// sockets).
The lock is held by the writer process and released by the OS when it exits
or dies, so a crash never leaves a stale lock behind (unlike a pid file).
"""
from __future__ import annotations

import os


class DataDirLocked(RuntimeError):
    pass


class DataDirLock:
    def __init__(self, data_dir: str):
        self.path = os.path.join(data_dir, "writer.lock")
        self._fd = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock(fd)
        except OSError:
            os.close(fd)
            raise DataDirLocked(f"another linkband-historyd writer is using {os.path.dirname(self.path)}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())   # for people, not for locking
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)                      # closing drops the lock
            self._fd = None


if os.name == "nt":
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
