"""Security, against the real daemon: other users are refused by permissions, a
non-loopback bind without CurveZMQ keys is refused at start-up, CURVE clients
with a wrong key (or none) are rejected, administrative commands can be kept to
an admin endpoint or to admin keys. (Hostile strings in every parameter:
tests/test_fuzz.py.)"""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import zmq.auth

from linkband_history import HistoryClient, subscribe
from linkband_history.curve_keys import keygen
from linkband_historyd.harness import DaemonProcess

from other_user import as_nobody, connect_unix, open_file



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def keys(tmp_path):
    """Key pairs: the server's, two authorized clients (one of them an admin) and an intruder."""
    base = tmp_path / "keys"
    authorized, admins = base / "authorized", base / "admins"
    pairs = {name: keygen(str(base / name), name) for name in ("server", "good", "admin", "intruder")}
    authorized.mkdir(mode=0o700)
    admins.mkdir(mode=0o700)
    for name in ("good", "admin"):
        shutil.copy(pairs[name][0], authorized)
    shutil.copy(pairs["admin"][0], admins)
    return {"pairs": pairs, "authorized": str(authorized), "admins": str(admins),
            "server_public": pairs["server"][0]}


def client_kw(keys, name, server_public=None):
    return {"curve_server_public": server_public or keys["server_public"],
            "curve_secret_key_file": keys["pairs"][name][1]}


# -- start-up refusals -------------------------------------------------------------

def run_daemon(tmp_path, *args, env=None):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "linkband_historyd", "--runtime-dir", str(run),
                           "--data-dir", str(tmp_path / "data"), *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "LINKBAND_HISTORY_COLLECTOR": "false", **(env or {})})
    return proc, run


@pytest.mark.parametrize("flag", ["--ingest", "--query", "--events"])
def test_non_loopback_bind_without_keys_is_refused_at_start_up(tmp_path, flag):
    port = free_port()
    proc, run = run_daemon(tmp_path, flag, f"tcp://0.0.0.0:{port}",
                           env={"LINKBAND_HISTORY_ALLOW_REMOTE": "true"})
    assert proc.returncode == 2, proc.stderr
    assert "security.curve_server_key" in proc.stderr and "0.0.0.0" in proc.stderr
    assert f"{flag[2:]}.endpoint" in proc.stderr
    assert not run.exists() and not (tmp_path / "data").exists()    # nothing bound or created
    with socket.socket() as s:                                         # the port is still free
        s.bind(("0.0.0.0", port))


def test_admin_endpoint_off_loopback_without_keys_is_refused(tmp_path):
    proc, run = run_daemon(tmp_path, env={"LINKBAND_HISTORY_ADMIN_ENDPOINT":
                                          f"tcp://0.0.0.0:{free_port()}"})
    assert proc.returncode == 2
    assert "security.admin_endpoint" in proc.stderr and "security.curve_server_key" in proc.stderr
    assert not run.exists()


def test_unusable_keys_are_refused_at_start_up(tmp_path, keys):
    remote = ("--ingest", f"tcp://0.0.0.0:{free_port()}")
    secret = keys["pairs"]["server"][1]
    # a server key without the directory of authorized clients
    proc, _ = run_daemon(tmp_path, *remote, env={"LINKBAND_HISTORY_CURVE_SERVER_KEY": secret})
    assert proc.returncode == 2 and "security.curve_authorized_dir" in proc.stderr
    full = {"LINKBAND_HISTORY_CURVE_SERVER_KEY": secret,
            "LINKBAND_HISTORY_CURVE_AUTHORIZED_DIR": keys["authorized"]}
    # the public certificate instead of the secret one
    proc, _ = run_daemon(tmp_path, *remote, env={**full, "LINKBAND_HISTORY_CURVE_SERVER_KEY":
                                                 keys["pairs"]["server"][0]})
    assert proc.returncode == 2 and "holds no secret key" in proc.stderr
    # a secret key other users could read
    os.chmod(secret, 0o644)
    proc, run = run_daemon(tmp_path, *remote, env=full)
    assert proc.returncode == 2 and "chmod 600" in proc.stderr and not run.exists()


def test_keygen_writes_a_private_key_pair(tmp_path):
    d = tmp_path / "k" / "curve"
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "linkband_history.cli", "--json", "keygen",
                          "--dir", str(d), "--name", "laptop"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["secret"] == str(d / "laptop.key_secret") and doc["public"] == str(d / "laptop.key")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(doc["secret"]).st_mode) == 0o600
    public, secret = zmq.auth.load_certificate(doc["secret"])
    assert secret and public.decode() == doc["public_key"]
    assert zmq.auth.load_certificate(doc["public"]) == (public, None)
    # an existing pair is not overwritten without --force
    again = subprocess.run([sys.executable, "-m", "linkband_history.cli", "keygen", "--dir", str(d),
                            "--name", "laptop"], capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 1 and "exists" in again.stderr
    assert zmq.auth.load_certificate(doc["secret"]) == (public, secret)
    # a directory other users can enter is refused for secrets
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(PermissionError, match="chmod 700"):
        keygen(str(shared), "x")
    assert not list(shared.iterdir())


def tool(env, *args):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("LINKBAND_HISTORY_CURVE_", "LINKBAND_HISTORY_ADMIN_"))}
    return subprocess.run([sys.executable, "-m", "linkband_history.cli", *args],
                          capture_output=True, text=True, timeout=60, env={**base, **env})


# -- CURVE -----------------------------------------------------------------------

@pytest.fixture
def curve_daemon(daemon_factory, keys):
    ports = {n: free_port() for n in ("ingest", "query", "events")}
    d = daemon_factory(*[a for n, p in ports.items() for a in (f"--{n}", f"tcp://0.0.0.0:{p}")],
                       start=False, env={"LINKBAND_HISTORY_CURVE_SERVER_KEY": keys["pairs"]["server"][1],
                                         "LINKBAND_HISTORY_CURVE_AUTHORIZED_DIR": keys["authorized"],
                                         "LINKBAND_HISTORY_ADMIN_KEYS_DIR": keys["admins"]})
    d.ingest = f"tcp://127.0.0.1:{ports['ingest']}"
    d.query = f"tcp://127.0.0.1:{ports['query']}"
    d.events = f"tcp://127.0.0.1:{ports['events']}"
    d.client_kw = client_kw(keys, "good")
    return d.start()


def metric(name, value=1.0):
    return {"metric_type": "sec", "metric_name": name, "value": value}


def test_curve_accepts_authorized_keys_and_rejects_others(curve_daemon, keys, monkeypatch):
    d = curve_daemon
    for var in ("LINKBAND_HISTORY_CURVE_SERVER_PUBLIC", "LINKBAND_HISTORY_CURVE_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    good = d.client()
    with subscribe(["history_data_updated"], d.events, timeout=5, **client_kw(keys, "good")) as ok_sub, \
            subscribe(["history_data_updated"], d.events, timeout=1,
                      **client_kw(keys, "intruder")) as bad_sub:
        time.sleep(0.5)                                   # both SUB sockets have tried to connect
        good.store_metrics([metric("from_good", i) for i in range(10)])
        assert good.flush(timeout=10)
        topic, payload = next(ok_sub)
        assert topic == "history_data_updated" and payload["counts"]["metric"] >= 10
        assert list(bad_sub) == []                        # the intruder hears nothing

    # an unknown key, the right key pair with a wrong server key, and no CURVE at all
    wrong_server = client_kw(keys, "good", server_public=keys["pairs"]["intruder"][0])
    for kw in (client_kw(keys, "intruder"), wrong_server, {}):
        c = HistoryClient(d.ingest, d.query, query_timeout=1.0, linger=0, **kw)
        try:
            c.store_metrics([metric("from_intruder")])
            assert not c.flush(timeout=2)
            with pytest.raises(TimeoutError):
                c.query("ping")
        finally:
            c.close(timeout=1)

    time.sleep(0.5)
    rows = good.query("metrics", limit=100)["rows"]
    assert sorted({r["metric_name"] for r in rows}) == ["from_good"] and len(rows) == 10
    stats = good.query("stats")["rows"][0]
    assert stats["security"]["curve"] and stats["security"]["zap_refused"]["query"] >= 1
    assert stats["stored_total"] == 10
    assert "refused a CURVE connection" in d.log()      # the writer's ZAP handler logs them


def test_curve_admin_commands_need_an_admin_key(curve_daemon, keys):
    d = curve_daemon
    reply = d.ask("cleanup")                              # "good" is authorized, not an admin
    assert not reply["ok"] and reply["error"]["code"] == "forbidden"
    assert "command cleanup needs an admin key" in reply["error"]["message"]
    assert d.ask("stop")["error"]["code"] == "forbidden"
    assert d.ask("storage")["ok"]                         # reading is not administrative
    with HistoryClient(d.ingest, d.query, query_timeout=30, **client_kw(keys, "admin")) as admin:
        reply = admin.query("cleanup")
        assert reply["ok"], reply
        assert reply["rows"][0]["id"]
    assert d.proc.poll() is None
    # the tool: CURVE options, and the daemon's refusal passed on
    env = {"LINKBAND_HISTORY_QUERY": d.query}
    curve_args = ["--curve-server-key", keys["server_public"], "--curve-secret-key"]
    out = tool(env, *curve_args, keys["pairs"]["good"][1], "--json", "status")
    assert out.returncode == 0 and json.loads(out.stdout)["ok"], out.stderr
    out = tool(env, *curve_args, keys["pairs"]["good"][1], "optimize")
    assert out.returncode == 1 and "needs an admin key" in out.stderr
    out = tool(env, *curve_args, keys["pairs"]["admin"][1], "optimize")
    assert out.returncode == 0 and "optimize done" in out.stdout, out.stdout + out.stderr
    out = tool(env, "--timeout", "1", "status")                     # no CURVE: no answer
    assert out.returncode == 1 and "no reply" in out.stderr


def test_a_key_removed_from_the_authorized_dir_is_refused_without_restart(curve_daemon, keys):
    d = curve_daemon
    assert d.ask("ping")["ok"]
    os.remove(Path(keys["authorized"]) / "good.key")
    with HistoryClient(d.ingest, d.query, query_timeout=1.0, linger=0, **client_kw(keys, "good")) as c:
        with pytest.raises(TimeoutError):
            c.query("ping")
    with HistoryClient(d.ingest, d.query, query_timeout=10, **client_kw(keys, "admin")) as c:
        assert c.query("ping")["ok"]


# -- the admin endpoint -------------------------------------------------------------



def test_admin_commands_only_on_the_admin_endpoint(daemon_factory, tmp_path):
    admin = f"ipc://{tmp_path}/d/run/admin.sock"          # in the daemon's runtime directory
    d = daemon_factory(env={"LINKBAND_HISTORY_ADMIN_ENDPOINT": admin})
    assert admin == f"ipc://{d.run_dir}/admin.sock"
    for command in ("cleanup", "optimize", "stop", "reload"):
        reply = d.ask(command)
        assert not reply["ok"] and reply["error"]["code"] == "forbidden", reply
        assert f"command {command} needs the admin endpoint" in reply["error"]["message"]
    assert d.ask("stats")["ok"] and d.ask("jobs")["ok"]
    assert d.proc.poll() is None                          # "stop" was refused
    assert stat.S_IMODE(os.stat(d.run_dir / "admin.sock").st_mode) == 0o600
    with HistoryClient(query=admin, query_timeout=30) as c:
        reply = c.query("cleanup")
        assert reply["ok"], reply
        assert c.query("stats")["ok"]                     # the admin endpoint answers everything
    # the tool sends administrative commands to the admin endpoint when it knows it
    out = tool({"LINKBAND_HISTORY_QUERY": d.query}, "cleanup")
    assert out.returncode == 1 and "needs the admin endpoint" in out.stderr
    assert "LINKBAND_HISTORY_ADMIN_ENDPOINT" in out.stderr
    out = tool({"LINKBAND_HISTORY_QUERY": d.query}, "--admin", admin, "cleanup")
    assert out.returncode == 0, out.stderr
    assert "retention done" in out.stdout
    out = tool({"LINKBAND_HISTORY_QUERY": d.query, "LINKBAND_HISTORY_ADMIN_ENDPOINT": admin}, "stop")
    assert out.returncode == 0, out.stderr
    assert d.proc.wait(60) == 0


# -- other users -----------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="needs fork and uids")
def test_other_users_are_refused_by_permissions():
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user (uid 65534); no other user is available")
    # a base other users can walk through, so that only the daemon's own modes stand in the way
    base = Path(tempfile.mkdtemp(prefix="lbh-sec-", dir="/tmp"))
    os.chmod(base, 0o755)
    d = DaemonProcess(base / "d", env={"LINKBAND_HISTORY_COLLECTOR": "false"})
    try:
        d.start()
        deadline = time.monotonic() + 30                  # the scheduler binds after the query process
        while not (d.run_dir / "scheduler.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with d.client() as c:
            c.store_logs([{"level": "INFO", "logger_name": "x", "message": "secret"}])
            assert c.flush()
        os.chmod(d.base, 0o755)
        run, data = d.run_dir, d.data_dir
        sockets = sorted(run.glob("*.sock"))
        assert {p.name for p in sockets} == {f"{n}.sock" for n in ("ingest", "query", "events",
                                                                   "control", "scheduler",
                                                                   "query-workers")}
        files = [data / n for n in ("history.db", "history.db-wal", "history.db-shm") if (data / n).exists()]
        assert files
        for p in sockets:
            connect_unix(p)()                                 # the owner connects: the paths are right
        checks = {"list base": lambda: os.listdir(d.base),
                  "list runtime dir": lambda: os.listdir(run),
                  "list data dir": lambda: os.listdir(data)}
        checks.update({f"connect {p.name}": connect_unix(p) for p in sockets})
        checks.update({f"open {p.name}": open_file(p) for p in files})
        result = as_nobody(checks)
        assert "_setup" not in result, result
        assert result.pop("list base") == "ok"            # the walk works up to our directories
        assert set(result.values()) == {"EACCES"}, result
        # defence in depth: with the directories made traversable, the 0600 sockets and
        # database files still refuse another user
        os.chmod(run, 0o711)
        os.chmod(data, 0o711)
        try:
            result = as_nobody({**{f"connect {p.name}": connect_unix(p) for p in sockets},
                                 **{f"open {p.name}": open_file(p) for p in files}})
        finally:
            os.chmod(run, 0o700)
            os.chmod(data, 0o700)
        assert set(result.values()) == {"EACCES"}, result
        assert d.stop() == 0
    finally:
        d.close()
        shutil.rmtree(base, ignore_errors=True)
