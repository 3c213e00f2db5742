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
