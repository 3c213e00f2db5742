"""The daemon embedded in a PyInstaller-frozen program, as the SDK ships its server.

A small server is frozen in one-folder mode with the spec lines the README gives
the SDK (``--collect-submodules linkband_historyd``); it calls ``ensure_daemon()``,
pushes, flushes, queries and exits. The daemon and its children run as the frozen
executable itself (``freeze_support``), and none is left once the program ends,
whether it exits or is killed."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from conftest import wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

SERVER = '''\
"""A stand-in for the SDK's server: the daemon embedded, records pushed and counted."""
import json
import sys

from linkband_history.embed import ensure_daemon, freeze_support


def main():
    data_dir, n, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "hold"
    d = ensure_daemon(data_dir, timeout=120, collector_enabled=False, query_workers=1)
    with d.client() as c:
        c.store_logs([{"level": "INFO", "logger_name": "frozen", "message": f"record {i}"}
                      for i in range(n)])
        assert c.flush(timeout=60)
        count = c.query("logs", count=True, limit=1)["total"]
    print(json.dumps({"count": count, "started": d.started, "pid": d.pid}), flush=True)
    if hold:
        sys.stdin.readline()


if __name__ == "__main__":
    freeze_support()
    main()
'''


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    base = tmp_path_factory.mktemp("frozen")
    (base / "sdk_server.py").write_text(SERVER)
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--onedir", "--log-level", "WARN",
           "--distpath", str(base / "dist"), "--workpath", str(base / "build"),
           "--specpath", str(base), "--collect-submodules", "linkband_historyd",
           # this checkout's sources: an editable install's import hook is invisible to
           # PyInstaller's analysis (an ordinary install, as in the SDK, needs no --paths)
           "--paths", str(ROOT / "client"), "--paths", str(ROOT / "daemon"),
           str(base / "sdk_server.py")]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-5000:]
    exe = base / "dist" / "sdk_server" / "sdk_server"
    assert exe.exists()
    return exe


@pytest.fixture
def runtime(monkeypatch):
    xdg = tempfile.mkdtemp(prefix="lbh-frozen-")   # short: unix socket paths
    monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    yield xdg
    shutil.rmtree(xdg, ignore_errors=True)


def frozen_processes(exe: Path) -> list[psutil.Process]:
    """Every live process running the frozen program (the daemon and its children too)."""
    root = str(exe.parent)
    out = []
    for p in psutil.process_iter(["exe", "cmdline", "status"]):
        try:
            exe_path = p.info["exe"] or ""
            argv0 = (p.info["cmdline"] or [""])[0]
            if p.info["status"] != psutil.STATUS_ZOMBIE and (
                    exe_path.startswith(root) or argv0.startswith(root)):
                out.append(p)
        except (psutil.NoSuchProcess, IndexError):
            pass
    return out


def daemon_log(data_dir: Path) -> str:
    return (data_dir / "linkband-historyd.log").read_text(errors="replace")


def test_a_frozen_program_embeds_the_daemon_and_leaves_none_behind(frozen, runtime, tmp_path):
    data = tmp_path / "database"
    run = subprocess.run([str(frozen), str(data), "500", "exit"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["count"] == 500 and got["started"]
    wait_for(lambda: not frozen_processes(frozen), timeout=60)
    log = daemon_log(data)
    assert "writer ready" in log and "query server ready" in log
    assert "died with exit code" not in log and "Traceback" not in log, log[-3000:]
    # the records are in the file, for the next start (here: a second run)
    run = subprocess.run([str(frozen), str(data), "1", "exit"], capture_output=True, text=True,
                         timeout=300)
    assert json.loads(run.stdout.strip().splitlines()[-1])["count"] == 501
    wait_for(lambda: not frozen_processes(frozen), timeout=60)


def test_a_killed_frozen_program_takes_its_daemon_with_it(frozen, runtime, tmp_path):
    p = subprocess.Popen([str(frozen), str(tmp_path / "database"), "50", "hold"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        got = json.loads(p.stdout.readline())
        assert got["count"] == 50
        daemon = psutil.Process(got["pid"])
        assert len([daemon, *daemon.children(recursive=True)]) >= 4   # run as the frozen exe
        assert os.path.samefile(daemon.exe(), frozen)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        wait_for(lambda: not frozen_processes(frozen), timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
