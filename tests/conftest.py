"""Fixtures: the real daemon, on ipc:// sockets inside the test's tmp_path."""
from __future__ import annotations

import time

import pytest

from linkband_historyd.harness import DaemonProcess


@pytest.fixture
def daemon_factory(tmp_path):
    made = []

    def make(*extra_args, start=True, name="d", env=None):
        # the daemon's own system metrics would mix with what the tests count
        d = DaemonProcess(tmp_path / name, *extra_args,
                          env={"LINKBAND_HISTORY_COLLECTOR": "false", **(env or {})})
        made.append(d)
        return d.start() if start else d

    yield make
    for d in made:
        d.close()


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


class EventCollector:
    """Collects the daemon's events from before the ``with`` block until ``timeout``
    seconds without one after it: ``with EventCollector(d.events, ["x"]) as ev: ...``
    then ``ev.events`` is the list of (topic, payload)."""

    def __init__(self, endpoint, topics=(), timeout=3.0):
        import threading
        self.endpoint, self.topics, self.timeout = endpoint, list(topics), timeout
        self.events = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen)

    def _listen(self):
        from linkband_history import subscribe
        with subscribe(self.topics, self.endpoint, timeout=self.timeout) as sub:
            self._ready.set()
            self.events.extend(sub)

    def __enter__(self):
        self._thread.start()
        self._ready.wait(5)
        time.sleep(0.3)                          # the SUB socket has connected
        return self

    def __exit__(self, *exc):
        self._thread.join(self.timeout * 5)


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


def free_port() -> int:
    """A loopback TCP port free right now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_kb(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` field in kB (VmRSS, VmHWM ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def calendar_bucket(tier: str, t: float) -> float:
    """The UTC start of the summary bucket holding ``t``, by calendar arithmetic on a
    datetime (an oracle for the daemon's own ``bucket_start``): the minute, the hour,
    the day, the week from Monday, the month."""
    from datetime import datetime, timedelta, timezone
    d = datetime.fromtimestamp(t, timezone.utc)
    if tier == "minute":
        d = d.replace(second=0, microsecond=0)
    elif tier == "hourly":
        d = d.replace(minute=0, second=0, microsecond=0)
    elif tier in ("daily", "weekly"):
        d = d.replace(hour=0, minute=0, second=0, microsecond=0)
        if tier == "weekly":
            d -= timedelta(days=d.weekday())
    elif tier == "monthly":
        d = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        raise ValueError(tier)
    return d.timestamp()
