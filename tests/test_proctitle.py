"""Process titles: ``ps`` tells the daemon's processes apart (``linkband-historyd: writer``)."""
from __future__ import annotations

import json
import sys

import pytest
from conftest import free_port, wait_for

psutil = pytest.importorskip("psutil")
pytest.importorskip("setproctitle", reason="process titles need the [proctitle] extra")
pytest.importorskip("starlette", reason="the http child needs the [http] extra")
if not sys.platform.startswith("linux"):
    pytest.skip("reads /proc/<pid>/cmdline", allow_module_level=True)


def cmdline(pid: int) -> str:
    """What ps shows: /proc/<pid>/cmdline, NUL-separated arguments joined by spaces."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def test_every_process_of_the_daemon_shows_its_role_in_ps(daemon_factory):
    d = daemon_factory(env={"LINKBAND_HISTORY_HTTP": "true",
                            "LINKBAND_HISTORY_HTTP_PORT": str(free_port()),
                            "LINKBAND_HISTORY_QUERY_WORKERS": "2"})
    wait_for(lambda: (d.run_dir / "http.json").exists(), timeout=60)
    http_pid = json.loads((d.run_dir / "http.json").read_text())["pid"]
    stats = d.stats()
    roles = {d.proc.pid: "supervisor", stats["writer"]["pid"]: "writer", stats["pid"]: "query",
             d.ask("jobs")["pid"]: "scheduler", http_pid: "http"}
    assert len(roles) == 5
    for pid, role in roles.items():
        assert cmdline(pid) == f"linkband-historyd: {role}"

    def titles():
        return sorted(cmdline(k.pid) for k in d.children()
                      if "resource_tracker" not in cmdline(k.pid))
    want = sorted(["linkband-historyd: writer", "linkband-historyd: query",
                   "linkband-historyd: scheduler", "linkband-historyd: http",
                   "linkband-historyd: query worker 0", "linkband-historyd: query worker 1"])
    assert wait_for(lambda: titles() == want, timeout=30)
    assert not [t for t in titles() if "spawn_main" in t]
