"""Fixtures: the real daemon, on ipc:// sockets inside the test's tmp_path."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from linkband_history import HistoryClient


class Daemon:
    """One linkband-historyd process tree with its own data and runtime dirs."""

    def __init__(self, base, *extra_args):
        self.base = base
        self.data_dir = base / "data"
        self.run_dir = base / "run"
        self.ingest = f"ipc://{self.run_dir}/ingest.sock"
        self.query = f"ipc://{self.run_dir}/query.sock"
        self.db_path = self.data_dir / "history.db"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.log_path = base / "daemon.log"
        self._clients: list[HistoryClient] = []

    def argv(self):
        return [sys.executable, "-m", "linkband_historyd", "--data-dir", str(self.data_dir),
                "--runtime-dir", str(self.run_dir), "--log-level", "INFO", *self.extra_args]

    def start(self, timeout: float = 30.0) -> "Daemon":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with HistoryClient(ingest=self.ingest, query=self.query, query_timeout=0.5) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if c.query("ping").get("ok"):
                        return
                except TimeoutError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"daemon not ready within {timeout}s:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def client(self, **kw) -> HistoryClient:
        c = HistoryClient(ingest=self.ingest, query=self.query, **kw)
        self._clients.append(c)
        return c

    def ask(self, command, **params) -> dict:
        with HistoryClient(ingest=self.ingest, query=self.query) as c:
            return c.query(command, **params)

    def stats(self) -> dict:
        reply = self.ask("stats")
        assert reply["ok"], reply
        return reply["rows"][0]

    def writer_pid(self) -> int:
        return self.stats()["writer"]["pid"]

    def children(self):
        import psutil
        return psutil.Process(self.proc.pid).children(recursive=True)

    def close(self) -> None:
        for c in self._clients:
            c.close(timeout=1.0)
        if self.proc is not None and self.proc.poll() is None:
            kids = self.children()
            self.proc.kill()
            self.proc.wait(10)
            for k in kids:
                try:
                    k.kill()
                except Exception:
                    pass


@pytest.fixture
def daemon_factory(tmp_path):
    made = []

    def make(*extra_args, start=True, name="d"):
        d = Daemon(tmp_path / name, *extra_args)
        d.base.mkdir(exist_ok=True)
        made.append(d)
        return d.start() if start else d

    yield make
    for d in made:
        d.close()


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


def all_rows(daemon, command, **params):
    """Every row of a listing, following cursors."""
    rows, cursor = [], None
    while True:
        reply = daemon.ask(command, cursor=cursor, **params) if cursor else daemon.ask(command, **params)
        assert reply["ok"], reply
        rows.extend(reply["rows"])
        cursor = reply["next"]
        if not cursor:
            return rows


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached within %.1fs" % timeout)
