"""Acting as another local user (uid/gid 65534, "nobody") in the security tests.

Each check runs in a forked child that drops to uid 65534 and makes only plain
system calls, so the answer is what the kernel's permission checks say to a
stranger: "ok" or the errno name. Needs root; the tests skip otherwise.
"""
from __future__ import annotations

import errno
import json
import os
import socket

NOBODY = 65534


def can_switch_user() -> bool:
    return hasattr(os, "fork") and hasattr(os, "geteuid") and os.geteuid() == 0


def as_nobody(checks: dict) -> dict:
    """Run each check (name -> callable) in a child process as uid/gid 65534;
    returns name -> "ok" or the errno name it failed with."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                          # the child: only plain system calls
        result = {}
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            for name, fn in checks.items():
                try:
                    fn()
                    result[name] = "ok"
                except OSError as exc:
                    result[name] = errno.errorcode.get(exc.errno, str(exc.errno))
        except BaseException as exc:                      # noqa: BLE001 - report, never return
            result = {"_setup": repr(exc)}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def connect_unix(path):
    def run():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
        finally:
            s.close()
    return run


def open_file(path):
    def run():
        with open(path, "rb"):
            pass
    return run


def python_runs_as_nobody(python: str | None = None, probe: str = "import zmq") -> bool:
    """Whether ``python`` (default: the tests' interpreter) starts as uid 65534 and runs ``probe``."""
    import subprocess
    import sys
    try:
        return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               python or sys.executable, "-c", probe],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def stdlib_python_for_nobody() -> str:
    """An interpreter uid 65534 can start, for programs that need only the standard
    library: the tests' own, else the system's ``python3``; skips the test if neither runs."""
    import shutil
    import sys

    import pytest
    for python in (sys.executable, shutil.which("python3", path="/usr/bin:/bin"), "/usr/bin/python3"):
        if python and python_runs_as_nobody(python, probe="import json, select, socket"):
            return python
    pytest.skip(f"no interpreter starts as uid {NOBODY} ({sys.executable}'s files are in a "
                "directory only root may enter, e.g. pyenv under /root, and there is no system python3)")


def run_python_as_nobody(code: str, timeout: float = 60, env: dict | None = None):
    """Run ``python -c code`` as uid/gid 65534 with ``setpriv`` (the interpreter of the
    tests, so pyzmq, msgpack and httpx are importable); returns the CompletedProcess."""
    import subprocess
    import sys

    import pytest
    if not python_runs_as_nobody():
        pytest.skip(f"{sys.executable} does not start as uid {NOBODY} (its files are in a "
                    "directory only root may enter, e.g. pyenv under /root)")
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=timeout,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent",
                               **(env or {})})
