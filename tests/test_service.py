"""Service integration: the systemd unit and notify protocol, the launchd plist,
SIGHUP reload without stopping ingestion, reload and stop over the socket."""
from __future__ import annotations

import plistlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]


def test_systemd_unit_verifies(tmp_path):
    if not shutil.which("systemd-analyze"):
        # a fresh machine has no package lists yet: without them the install finds nothing
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "systemd"], capture_output=True)
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed and could not be installed here")
    unit = (ROOT / "systemd" / "linkband-history.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "StateDirectory=" in unit
    exe = shutil.which("linkband-historyd") or str(Path(sys.executable).parent / "linkband-historyd")
    target = tmp_path / "linkband-history.service"
    target.write_text(unit.replace("/usr/local/bin/linkband-historyd", exe))
    out = subprocess.run(["systemd-analyze", "verify", str(target)], capture_output=True, text=True)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if "linkband-history.service" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_launchd_plist():
    with open(ROOT / "launchd" / "com.linkband.history.plist", "rb") as f:
        p = plistlib.load(f)
    assert p["Label"] == "com.linkband.history"
    assert p["RunAtLoad"] is True and p["KeepAlive"] == {"SuccessfulExit": False}
    args = p["ProgramArguments"]
    assert args[0].endswith("linkband-historyd")
    assert args[args.index("--data-dir") + 1].endswith("Library/Application Support/Link Band SDK/history")
    assert p["StandardOutPath"] and p["StandardErrorPath"] and p["Umask"] == 0o077


def test_notify_protocol_ready_watchdog_stopping(daemon_factory, tmp_path):
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(30)
    d = daemon_factory(start=False, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    d.base.mkdir(parents=True, exist_ok=True)
    d._log = open(d.log_path, "ab")
    d.proc = subprocess.Popen(d.argv(), stdout=d._log, stderr=subprocess.STDOUT, env=d.env)
    messages = []
    while not any("READY=1" in m for m in messages):
        messages.append(srv.recv(4096).decode())
    # READY=1 came once the sockets accept: a query is answered right away
    with d.client(query_timeout=2) as c:
        assert c.query("ping")["ok"]
    pings = 0
    while pings < 2:
        if "WATCHDOG=1" in srv.recv(4096).decode():
            pings += 1
    d.proc.send_signal(signal.SIGTERM)
    rest = []
    while not any("STOPPING=1" in m for m in rest):
        rest.append(srv.recv(4096).decode())
    assert d.proc.wait(60) == 0
    srv.close()


def test_sighup_reloads_without_stopping_ingestion(daemon_factory, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[daemon]\nlog_level = "INFO"\n[retention]\nmetric_days = 30\n')
    d = daemon_factory("--config", str(conf))
    scheduler_pid = d.ask("jobs")["pid"]
    stop = threading.Event()
    sent = []

    def push():
        c = d.client()
        i = 0
        while not stop.is_set():
            c.store_metrics([{"metric_name": "during_reload", "value": i}])
            sent.append(i)
            i += 1
            time.sleep(0.002)
        assert c.flush(timeout=30)
        c.close()

    t = threading.Thread(target=push)
    t.start()
    time.sleep(0.3)
    conf.write_text('[daemon]\nlog_level = "DEBUG"\n[retention]\nmetric_days = 7\n')
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in d.log(), timeout=30)
    new_pid = wait_for(lambda: (lambda r: r.get("ok") and r["pid"] != scheduler_pid and r["pid"])(
        d.ask("jobs")), timeout=30)
    assert new_pid
    # a bad configuration is refused and the daemon goes on
    conf.write_text('[ingest]\nbatch_size = -1\n')
    r = d.ask("reload")
    assert not r["ok"] and r["error"]["code"] == "bad_config"
    assert "reload refused" in r["error"]["message"] and "ingest.batch_size" in r["error"]["message"]
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in d.log(), timeout=30)
    time.sleep(0.3)
    stop.set()
    t.join(60)
    values = sorted(int(r["value"]) for r in d.ask("metrics", metric_name="during_reload",
                                                  limit=100_000)["rows"])
    assert values == sent                                   # nothing lost while reloading
    assert d.stats()["lost_records_total"] == 0
    assert d.ask("stop")["ok"]
    assert d.proc.wait(60) == 0


def test_a_reload_applies_each_option_as_it_declares_and_names_the_ones_needing_a_restart(
        daemon_factory, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[events]\ncoalesce_ms = 500\n')
    d = daemon_factory("--config", str(conf))
    scheduler_pid = d.ask("jobs")["pid"]
    # live and restart-only options: no child restarts, the restart-only one is named and kept
    conf.write_text('[events]\ncoalesce_ms = 50\n[ingest]\nmax_message_bytes = 2000000\n')
    r = d.ask("reload")
    assert r["ok"], r
    row = r["rows"][0]
    assert row["applied_live"] == ["events.coalesce_ms"]
    assert row["need_restart"] == ["ingest.max_message_bytes"] and row["restarted"] == {}
    wait_for(lambda: "configuration reloaded" in d.log(), timeout=30)
    assert "ingest.max_message_bytes change only with a restart" in d.log()
    assert d.ask("jobs")["pid"] == scheduler_pid
    # a scheduler option restarts the scheduler alone
    conf.write_text('[events]\ncoalesce_ms = 50\n[ingest]\nmax_message_bytes = 2000000\n'
                    '[retention]\nlog_days = 7\n')
    r = d.ask("reload")
    assert r["rows"][0]["restarted"] == {"scheduler": ["retention.log_days"]}, r
    assert r["rows"][0]["need_restart"] == ["ingest.max_message_bytes"]
    wait_for(lambda: d.ask("jobs").get("pid") not in (None, scheduler_pid), timeout=30)


def test_the_supervisor_runs_the_http_gateway_when_enabled(daemon_factory):
    import json
    import urllib.request
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = daemon_factory(env={"LINKBAND_HISTORY_HTTP": "true", "LINKBAND_HISTORY_HTTP_PORT": str(port)})
    c = d.client()
    c.store_metrics([{"metric_name": "cpu_percent", "value": 12.5}])
    assert c.flush()

    def get():                      # with the token the gateway wrote at its start
        token = (d.run_dir / "http.token").read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/history/dashboard",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.loads(r.read())
    body = wait_for(lambda: _try(get), timeout=30)
    assert body["rows"][0]["latest_metrics"][0]["value"] == 12.5
    assert d.stop() == 0


def _try(fn):
    try:
        return fn()
    except OSError:
        return None
