"""Embedding the daemon in another program (the SDK server's lifespan).

    from linkband_history.embed import ensure_daemon, freeze_support

    daemon = ensure_daemon("database", database_file="history.db")
    with daemon.client() as h: ...
    daemon.stop()            # or let the interpreter's exit stop it

:func:`ensure_daemon` reuses the daemon that already serves a data directory,
found where every client finds it (``endpoints.runtime_dir_for(data_dir)``, an
owner-only directory, so only a daemon of this user), after checking in its
``stats`` that it serves the database file asked for. Otherwise it starts one as
a child process and waits until it answers. Handles are counted per process: two
callers on one data directory share one daemon, and the last ``stop()`` (or the
interpreter's exit) stops a daemon this process started. Starting is serialized
by a lock file in the runtime directory, so two processes calling it at once end
with one daemon, the second connecting to the first one's; a daemon started
meanwhile by anything else (a service) makes ours refuse to start (its data
directory lock, its live sockets) and is reused the same way.

No daemon outlives the program that started it: the daemon's standard input is
a pipe whose other end only this process holds (``--stop-with-parent``), so its
death, even by SIGKILL, ends the pipe and the daemon stops in order; its own
children stop with it (``processes.skeleton``). That works alike on Linux,
macOS and Windows.

A frozen program (PyInstaller) has no ``python -m``: the daemon is started as
the program itself with :data:`DAEMON_FLAG`, and the program must call
:func:`freeze_support` first thing under ``if __name__ == "__main__":``. It runs
the daemon there (and, through ``multiprocessing.freeze_support()``, the
daemon's own child processes). This module imports nothing of the daemon: the
daemon is run as a program, as ``python -m linkband_historyd`` would.
"""
from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import zmq

from . import curve_keys, rpc
from .client import HistoryClient
from .endpoints import (check_ipc_endpoint, default_data_dir, default_endpoint,
                        make_private_dir, runtime_dir_for)

__all__ = ["ensure_daemon", "daemon_status", "freeze_support", "EmbeddedDaemon", "DaemonError",
           "DAEMON_FLAG"]

DAEMON_FLAG = "--linkband-historyd"      # argv[1] of a frozen program run as the daemon
LOG_NAME = "linkband-historyd.log"       # the daemon's stderr, in its data directory
LOG_ROTATE_BYTES = 1 << 20               # a longer log moves to .1 when a daemon starts
STOP_TIMEOUT = 60.0                      # the writer drains what it received before exiting
SOCKETS = ("ingest", "query", "events")


class DaemonError(RuntimeError):
    """The daemon could not be started or reached (the message says why)."""


@dataclass
class _Shared:
    """One data directory's daemon as this process knows it, shared by the handles."""
    data_dir: str
    database_path: str
    runtime_dir: str
    endpoints: dict
    proc: subprocess.Popen | None = None      # set when this process started it
    refs: int = 0
    log_path: str = ""
    log_start: int = 0                         # where the output of the daemon started last begins
    stop_at_exit: bool = True


_daemons: dict[tuple, _Shared] = {}
_registry_lock = threading.Lock()
_atexit_registered = False


class EmbeddedDaemon:
    """A handle on a data directory's daemon, from :func:`ensure_daemon`."""

    def __init__(self, shared: _Shared):
        self._shared = shared
        self._released = False

    @property
    def endpoints(self) -> dict:
        """``{"ingest": ..., "query": ..., "events": ...}``"""
        return dict(self._shared.endpoints)

    @property
    def started(self) -> bool:
        """True when this process started the daemon (and so stops it)."""
        return self._shared.proc is not None

    @property
    def data_dir(self) -> str:
        return self._shared.data_dir

    @property
    def database_path(self) -> str:
        return self._shared.database_path

    @property
    def runtime_dir(self) -> str:
        return self._shared.runtime_dir

    @property
    def pid(self) -> int | None:
        """The daemon's (supervisor's) pid when this process started it."""
        return self._shared.proc.pid if self._shared.proc is not None else None

    @property
    def log_path(self) -> str:
        return self._shared.log_path

    def client(self, **kw) -> HistoryClient:
        """A :class:`HistoryClient` of this daemon (``kw``: its keyword arguments)."""
        e = self._shared.endpoints
        return HistoryClient(ingest=e["ingest"], query=e["query"], **kw)

    def status(self, timeout: float = 2.0) -> dict:
        return daemon_status(self.data_dir, runtime_dir=self.runtime_dir, timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Release this handle; the last one stops a daemon this process started.
        Idempotent."""
        with _registry_lock:
            if self._released:
                return
            self._released = True
            s = self._shared
            s.refs -= 1
            if s.refs > 0:
                return
            key = _key(s.data_dir, s.runtime_dir)
            if _daemons.get(key) is s:
                del _daemons[key]
            proc, s.proc = s.proc, None
        if proc is not None:
            _terminate(proc, timeout)

    def __enter__(self) -> "EmbeddedDaemon":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"EmbeddedDaemon(data_dir={self.data_dir!r}, database={self.database_path!r}, "
                f"started={self.started})")


# -- where a data directory's daemon is -------------------------------------------------

def _key(data_dir: str, runtime_dir: str) -> tuple:
    return (os.path.normcase(data_dir), os.path.normcase(runtime_dir))


def _place(data_dir, database_file, runtime_dir) -> tuple[str, str, str, dict]:
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir or default_data_dir())))
    name = os.fspath(database_file or "history.db")
    if os.path.basename(name) != name or name in (".", ".."):
        raise ValueError(f"database_file must be a file name in the data directory, not a path: "
                         f"{name!r} (give its directory as data_dir)")
    runtime_dir = (os.path.abspath(os.path.expanduser(os.fspath(runtime_dir))) if runtime_dir
                   else runtime_dir_for(data_dir))
    endpoints = {n: default_endpoint(n, runtime_dir) for n in SOCKETS}
    return data_dir, os.path.join(data_dir, name), runtime_dir, endpoints


def _same_file(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def _socket_state(endpoint: str) -> str:
    """For an ipc:// endpoint: "absent", "stale" (nobody accepts) or "live"; "unknown"
    for tcp://. Instant, unlike a request to a daemon that is not there."""
    if not endpoint.startswith("ipc://"):
        return "unknown"
    path = endpoint[len("ipc://"):]
    if not os.path.exists(path):
        return "absent"
    if not hasattr(socket, "AF_UNIX"):
        return "unknown"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(path)
        return "live"
    except OSError:
        return "stale"
    finally:
        s.close()


def _stats(endpoint: str, timeout: float) -> dict:
    """The daemon's ``stats`` row; rpc.Timeout when nobody answers in time."""
    check_ipc_endpoint(endpoint)          # a squatted or symlinked directory: PermissionError
    keys = curve_keys.load(endpoints=(endpoint,))
    ctx = zmq.Context()
    try:
        with rpc.Requester(ctx, endpoint, timeout,
                           prepare=lambda s: curve_keys.apply(s, endpoint, keys)) as req:
            return req.call("stats", {"clients": 1})["rows"][0]
    finally:
        ctx.term()


def _probe(endpoints: dict, database_path: str, timeout: float) -> dict | None:
    """The running daemon's stats, None when none answers; DaemonError when the one
    answering serves another database file."""
    if _socket_state(endpoints["query"]) in ("absent", "stale"):
        return None
    try:
        stats = _stats(endpoints["query"], timeout)
    except (rpc.Timeout, rpc.RpcError):
        return None
    served = (stats.get("database") or {}).get("path", "")
    if not _same_file(served, database_path):
        raise DaemonError(f"the daemon at {endpoints['query']} serves {served}, not "
                          f"{database_path}: one daemon per data directory; give this "
                          "database another data directory")
    return stats


# -- starting one -----------------------------------------------------------------------

def daemon_command(args: list[str]) -> list[str]:
    """The command line of the daemon: this very program when frozen (it must call
    :func:`freeze_support`), else ``python -m linkband_historyd``."""
    if getattr(sys, "frozen", False):
        return [sys.executable, DAEMON_FLAG, *args]
    return [sys.executable, "-m", "linkband_historyd", *args]


def _option_key(name: str) -> str:
    if "." in name:
        return name
    section, sep, rest = name.partition("_")
    if not sep:
        raise TypeError(f"ensure_daemon: {name!r} is not an option (give section_name, e.g. "
                        "scheduler_enabled=False, or 'scheduler.enabled')")
    return f"{section}.{rest}"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)             # a JSON string is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"ensure_daemon: option value {v!r} is not a bool, number, string or list")


def _options_toml(options: dict) -> str:
    """``{"scheduler_enabled": False, "query.workers": 2}`` as a TOML file's text."""
    sections: dict[str, list] = {}
    for name, value in options.items():
        section, _, key = _option_key(name).partition(".")
        sections.setdefault(section, []).append(f"{key} = {_toml_value(value)}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n\n" for s, lines in sections.items())


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _open_log(path: str):
    try:
        if os.path.getsize(path) > LOG_ROTATE_BYTES:
            os.replace(path, path + ".1")
    except OSError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "ab")


def _log_since(path: str, start: int, n: int = 4000) -> str:
    """The last ``n`` bytes the daemon wrote to its log from offset ``start`` on."""
    try:
        with open(path, "rb") as f:
            f.seek(max(start, os.path.getsize(path) - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _spawn(s: _Shared, options: dict, stop_at_exit: bool) -> subprocess.Popen:
    e = s.endpoints
    args = ["--data-dir", s.data_dir, "--database-file", os.path.basename(s.database_path),
            "--runtime-dir", s.runtime_dir, "--ingest", e["ingest"], "--query", e["query"],
            "--events", e["events"]]
    if options:
        path = os.path.join(s.runtime_dir, "embedded.toml")
        _write_private(path, _options_toml(options))
        args += ["--config", path]
    kw: dict = {"stdout": None, "stderr": subprocess.STDOUT, "close_fds": True}
    if stop_at_exit:
        args.append("--stop-with-parent")
        kw["stdin"] = subprocess.PIPE          # only we hold its write end
    else:
        kw["stdin"] = subprocess.DEVNULL
    if sys.platform == "win32":                # no console window, no Ctrl-C of ours
        kw["creationflags"] = (subprocess.CREATE_NEW_PROCESS_GROUP
                               | getattr(subprocess, "CREATE_NO_WINDOW", 0))
    else:
        kw["start_new_session"] = True         # a terminal's Ctrl-C is for the host program
    s.log_path = os.path.join(s.data_dir, LOG_NAME)
    with _open_log(s.log_path) as log:
        kw["stdout"] = log
        s.log_start = log.tell()
        return subprocess.Popen(daemon_command(args), **kw)


def _wait_ready(s: _Shared, proc: subprocess.Popen, deadline: float) -> dict | None:
    """Until a daemon answers: ours, or the one that beat ours to the data directory.
    Returns its stats, or None when ours failed and no other one is there."""
    while True:
        stats = _probe(s.endpoints, s.database_path, max(0.2, min(1.0, deadline - time.monotonic())))
        if stats is not None:
            return stats
        code = proc.poll()
        if code == 2:
            raise DaemonError("linkband-historyd refused its configuration:\n"
                              + _log_since(s.log_path, s.log_start))
        # ours found another daemon's writer lock or live sockets (DataDirLocked,
        # SocketInUse: "another linkband-historyd ..."): that one may still be opening
        # the database, so wait for it; any other failure is final
        if code is not None and "another linkband-historyd" not in _log_since(s.log_path, s.log_start):
            return None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


class _StartLock:
    """An OS lock on ``<runtime_dir>/embed.lock`` while one process starts the daemon;
    the OS drops it when the holder exits or dies."""

    def __init__(self, runtime_dir: str):
        self.path = os.path.join(runtime_dir, "embed.lock")
        self.fd: int | None = None

    def acquire(self, deadline: float) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        while not self._try():
            if time.monotonic() > deadline:
                os.close(self.fd)
                self.fd = None
                raise DaemonError(f"another process keeps starting the daemon ({self.path} locked)")
            time.sleep(0.05)

    def _try(self) -> bool:
        try:
            if sys.platform == "win32":
                import msvcrt
                msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)                 # closing drops the lock
            self.fd = None


def _bring_up(s: _Shared, options: dict, timeout: float, stop_at_exit: bool) -> None:
    """Reuse the daemon that answers for ``s``, else start one (``s.proc``)."""
    deadline = time.monotonic() + timeout
    if _probe(s.endpoints, s.database_path, min(1.0, timeout)) is not None:
        return
    make_private_dir(s.runtime_dir)
    os.makedirs(s.data_dir, mode=0o700, exist_ok=True)
    lock = _StartLock(s.runtime_dir)
    lock.acquire(deadline)
    try:
        if _probe(s.endpoints, s.database_path, 1.0) is not None:
            return                             # started by whoever held the lock before us
        proc = _spawn(s, options, stop_at_exit)
        if _wait_ready(s, proc, deadline) is None:
            code = proc.poll()
            _terminate(proc, 5.0)
            why = (f"exited with code {code}" if code is not None
                   else f"did not answer within {timeout:g}s")
            raise DaemonError(f"linkband-historyd for {s.database_path} {why} (its log: "
                              f"{s.log_path}):\n{_log_since(s.log_path, s.log_start)}")
        if proc.poll() is None:
            s.proc, s.stop_at_exit = proc, stop_at_exit
        # else: ours lost to a daemon started meanwhile, which answers: reuse it
    finally:
        lock.release()


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    """Orderly stop: end its standard input (and SIGTERM where there are signals),
    wait for the writer to drain, kill only past ``timeout``."""
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    if proc.poll() is None and sys.platform != "win32":
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_stop_all)
        _atexit_registered = True


def _stop_all() -> None:
    """At exit: stop every daemon started here (but one started with stop_at_exit=False)."""
    with _registry_lock:
        procs = [s.proc for s in _daemons.values() if s.proc is not None and s.stop_at_exit]
        for s in _daemons.values():
            s.proc = None
        _daemons.clear()
    for proc in procs:
        _terminate(proc, STOP_TIMEOUT)


# -- the public functions ---------------------------------------------------------------

def ensure_daemon(data_dir=None, *, database_file=None, runtime_dir=None, timeout: float = 30.0,
                  stop_at_exit: bool = True, **options) -> EmbeddedDaemon:
    """A handle on the daemon serving ``data_dir`` (None: the per-user default) and
    its ``database_file`` (default ``history.db``), started here if none answers.

    ``options``: daemon options for a daemon started here (``scheduler_enabled=False``,
    ``query_workers=2``, or ``**{"retention.log_days": 7}``); a daemon already running
    keeps its own. ``stop_at_exit``: stop a daemon started here when this interpreter
    exits, and have it stop by itself should this process die; False leaves it running
    after exit (only the last :meth:`EmbeddedDaemon.stop` stops it then). Raises
    :class:`DaemonError` when no daemon answers within ``timeout`` seconds or the one
    that answers serves another file, PermissionError when the runtime directory is
    not this user's alone.
    """
    d, db, run, endpoints = _place(data_dir, database_file, runtime_dir)
    key = _key(d, run)
    # at the first call, whatever it finds: so a caller's own exit hook, registered after
    # this call, runs before this one stops the daemon (atexit is last in, first out)
    _register_atexit()
    with _registry_lock:
        s = _daemons.get(key)
        if s is not None and not _same_file(s.database_path, db):
            raise DaemonError(f"this process already uses the daemon of {d} with {s.database_path}, "
                              f"not {db}: one daemon per data directory")
        if s is None:
            s = _Shared(d, db, run, endpoints)
        if s.proc is None or s.proc.poll() is not None:
            s.proc = None
            _bring_up(s, options, timeout, stop_at_exit)
        s.refs += 1
        _daemons[key] = s
        return EmbeddedDaemon(s)


def daemon_status(data_dir=None, *, runtime_dir=None, timeout: float = 2.0) -> dict:
    """``{"running": bool, ...}`` for a health route: within ``timeout`` seconds
    (at once when its socket is absent or stale) whether a daemon answers for
    ``data_dir``, and if so the file it serves, its pids, uptime and row counts."""
    d, _, run, endpoints = _place(data_dir, None, runtime_dir)
    out: dict = {"running": False, "data_dir": d, "runtime_dir": run, "endpoints": endpoints}
    with _registry_lock:
        s = _daemons.get(_key(d, run))
        out["started_here"] = bool(s is not None and s.proc is not None)
    state = _socket_state(endpoints["query"])
    if state in ("absent", "stale"):
        out["reason"] = f"no daemon: its query socket is {state} ({endpoints['query']})"
        return out
    try:
        stats = _stats(endpoints["query"], timeout)
    except rpc.Timeout:
        out["reason"] = f"no reply within {timeout:g}s from {endpoints['query']}"
        return out
    except (rpc.RpcError, PermissionError) as exc:
        out["reason"] = str(exc)
        return out
    db = stats.get("database") or {}
    out.update(running=True, database_path=db.get("path"), size_bytes=db.get("size_bytes"),
               pid=stats.get("supervisor_pid"), query_pid=stats.get("pid"),
               writer_pid=(stats.get("writer") or {}).get("pid"), uptime_s=stats.get("uptime_s"),
               tables=stats.get("tables"))
    return out


def freeze_support() -> None:
    """Call first under ``if __name__ == "__main__":`` in a frozen program that uses
    :func:`ensure_daemon`: runs ``multiprocessing.freeze_support()`` (the daemon's
    child processes), and the daemon itself when this process was started as it
    (``argv[1]`` is :data:`DAEMON_FLAG`); neither returns. Otherwise does nothing."""
    multiprocessing.freeze_support()
    if len(sys.argv) > 1 and sys.argv[1] == DAEMON_FLAG:
        import runpy
        sys.argv = [sys.argv[0], *sys.argv[2:]]
        runpy.run_module("linkband_historyd", run_name="__main__")
        sys.exit(0)
