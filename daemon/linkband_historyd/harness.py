"""Run a real linkband-historyd in a directory of its own: for tests, benchmarks
and any program that embeds the daemon (the SDK's process manager).

    d = DaemonProcess(base_dir).start()
    with d.client() as c: ...
    d.stop()            # SIGTERM, returns the exit code
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from linkband_history import HistoryClient


class DaemonProcess:
    def __init__(self, base, *extra_args, log_level: str = "INFO", env: dict | None = None):
        self.base = Path(base)
        self.data_dir = self.base / "data"
        self.run_dir = self.base / "run"
        self.db_path = self.data_dir / "history.db"
        self.ingest = f"ipc://{self.run_dir}/ingest.sock"
        self.query = f"ipc://{self.run_dir}/query.sock"
        if len(self.ingest) > 100:
            raise ValueError(f"ipc path too long for a unix socket: {self.ingest}")
        self.log_path = self.base / "daemon.log"
        self.extra_args = [*extra_args, "--log-level", log_level]
        self.env = {**os.environ, **(env or {})}
        self.control = f"ipc://{self.run_dir}/control.sock"
        self.events = f"ipc://{self.run_dir}/events.sock"
        self.client_kw: dict = {}     # for its own clients: e.g. CURVE keys, when ingest/query are tcp://
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._clients: list[HistoryClient] = []

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "linkband_historyd", "--data-dir", str(self.data_dir),
                "--runtime-dir", str(self.run_dir), *self.extra_args]

    def start(self, timeout: float = 60.0) -> "DaemonProcess":
        self.base.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the query socket answers ``ping`` (the writer is up before it)."""
        deadline = time.monotonic() + timeout
        with HistoryClient(ingest=self.ingest, query=self.query, query_timeout=0.5,
                           **self.client_kw) as c:
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
        """Send ``sig`` and wait for the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def client(self, **kw) -> HistoryClient:
        c = HistoryClient(ingest=self.ingest, query=self.query, **{**self.client_kw, **kw})
        self._clients.append(c)
        return c

    def ask(self, command: str, **params) -> dict:
        with HistoryClient(ingest=self.ingest, query=self.query, query_timeout=30.0,
                           **self.client_kw) as c:
            return c.query(command, **params)

    def stats(self) -> dict:
        reply = self.ask("stats")
        if not reply.get("ok"):
            raise RuntimeError(f"stats failed: {reply}")
        return reply["rows"][0]

    def writer_pid(self) -> int:
        return self.stats()["writer"]["pid"]

    def children(self):
        import psutil
        return psutil.Process(self.proc.pid).children(recursive=True)

    def close(self) -> None:
        """Close the clients it made and kill whatever still runs."""
        for c in self._clients:
            c.close(timeout=1.0)
        self._clients.clear()
        if self.proc is not None and self.proc.poll() is None:
            kids = self.children()
            self.proc.kill()
            self.proc.wait(10)
            for k in kids:
                try:
                    k.kill()
                except Exception:
                    pass
        if self._log is not None:
            self._log.close()
            self._log = None

