"""Security, against the real daemon: other users are refused by permissions, a
non-loopback bind without CurveZMQ keys is refused at start-up, CURVE clients
with a wrong key (or none) are rejected, administrative commands can be kept to
an admin endpoint or to admin keys. Then the attacks of another local user
(uid 65534, where the tests run as root): keyless loopback tcp://, a squatted or
symlinked runtime directory, the spool's files, two daemons' sockets, a
writable key directory, another client's id under CURVE. (Hostile strings in
every parameter: tests/test_fuzz.py.)"""
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
from conftest import free_port, wait_for
from other_user import (as_nobody, can_switch_user, connect_unix, open_file, run_python_as_nobody,
                        stdlib_python_for_nobody)

from linkband_history import HistoryClient, subscribe
from linkband_history.curve_keys import keygen
from linkband_historyd.harness import DaemonProcess


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


# -- attacks by another local user (uid 65534) -------------------------------------

needs_other_user = pytest.mark.skipif(not can_switch_user(),
                                      reason="needs root to act as another user (uid 65534)")


def shared_base(mode=0o755) -> Path:
    """A directory under /tmp the other user can reach (mode 1777: like /tmp itself)."""
    base = Path(tempfile.mkdtemp(prefix="lbh-sec-", dir="/tmp"))
    os.chmod(base, mode)
    return base


def nobody_env(**extra) -> dict:
    return {k: v for k, v in {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), **extra}.items() if v}


@pytest.fixture
def own_config(tmp_path, monkeypatch):
    """This user's config directory (where the daemon makes its own keys), for the
    daemon and the clients of this test alike."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for var in ("LINKBAND_HISTORY_CURVE_SERVER_PUBLIC", "LINKBAND_HISTORY_CURVE_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    return home


@needs_other_user
def test_keyless_loopback_tcp_gives_another_user_nothing_and_the_owner_everything(
        daemon_factory, own_config):
    ports = {n: free_port() for n in ("ingest", "query", "events")}
    d = daemon_factory(*[a for n, p in ports.items() for a in (f"--{n}", f"tcp://127.0.0.1:{p}")],
                       start=False, env={"XDG_CONFIG_HOME": str(own_config)})
    d.ingest, d.query = (f"tcp://127.0.0.1:{ports[n]}" for n in ("ingest", "query"))
    d.start()                                    # the harness's client: no key arguments
    keys = own_config / "linkband-history" / "curve"
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    for secret in keys.glob("*.key_secret"):
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    server_public = (keys / "server.key").read_text()
    # the other user: no keys at all, then a key pair of its own (with the server's public key)
    attack = f"""
import json, os, tempfile
from linkband_history import HistoryClient
from linkband_history.curve_keys import keygen
out = {{}}
kd = tempfile.mkdtemp()
server = os.path.join(kd, "server.key")
open(server, "w").write({server_public!r})
_, secret = keygen(os.path.join(kd, "k"), "mallory")
for how, kw in (("no keys", {{}}), ("own keys", {{"curve_server_public": server,
                                                 "curve_secret_key_file": secret}})):
    c = HistoryClient({d.ingest!r}, {d.query!r}, query_timeout=2, linger=0, **kw)
    c.store_logs([{{"level": "INFO", "logger_name": "mallory", "message": "from nobody"}}])
    for command in ("stats", "stop"):
        try:
            out[how + " " + command] = c.query(command)
        except TimeoutError:
            out[how + " " + command] = "no reply"
    out[how + " flush"] = c.flush(timeout=2)
    c.close(timeout=1)
print(json.dumps(out))
"""
    proc = run_python_as_nobody(attack, env=nobody_env())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {f"{how} {what}": "no reply" if what != "flush" else False
                      for how in ("no keys", "own keys") for what in ("stats", "stop", "flush")}
    assert d.proc.poll() is None                 # "stop" never ran
    # the owner: the library and the tool, with no key argument
    with d.client() as c:
        c.store_logs([{"level": "INFO", "logger_name": "owner", "message": "from the owner"}])
        assert c.flush(timeout=10)
        logs = c.query("logs", limit=100)["rows"]
    assert [r["logger_name"] for r in logs] == ["owner"]       # nothing of the other user's
    stats = d.stats()
    assert stats["security"]["curve"] and stats["security"]["zap_refused"]["query"] >= 1
    out = tool({"LINKBAND_HISTORY_QUERY": d.query, "XDG_CONFIG_HOME": str(own_config)},
               "--json", "status")
    assert out.returncode == 0 and json.loads(out.stdout)["ok"], out.stderr
    assert d.proc.poll() is None


SQUATTER = """
import json, os, select, socket, sys
run = sys.argv[1]
if sys.argv[2] == "symlink":
    trap = os.path.join(os.path.dirname(os.path.dirname(run)), "trap")
    os.makedirs(os.path.join(trap, "run"))
    os.symlink(trap, os.path.dirname(run))
else:
    os.makedirs(run, mode=0o700)
listeners = []
for name in ("ingest.sock", "query.sock", "events.sock"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.path.join(run, name))
    os.chmod(os.path.join(run, name), 0o777)
    s.listen(16)
    listeners.append(s)
print("ready", flush=True)
accepted = 0
while True:
    ready, _, _ = select.select(listeners + [sys.stdin], [], [])
    if sys.stdin in ready:
        break
    for s in ready:
        s.accept()[0].close()
        accepted += 1
print(json.dumps({"accepted": accepted}), flush=True)
"""


@needs_other_user
@pytest.mark.parametrize("how", ["squatted", "symlink"])
def test_a_fallback_runtime_dir_made_by_another_user_is_refused_naming_the_owner(tmp_path, how):
    """The fallback runtime dir is <cache>/linkband-history/run; here the cache dir is
    world-writable (like /tmp) so that another user can get there first."""
    base = shared_base(0o1777)
    try:
        cache = base / "cache"
        cache.mkdir()
        os.chmod(cache, 0o1777)
        env = {**os.environ, "XDG_CACHE_HOME": str(cache), "XDG_DATA_HOME": str(tmp_path / "xdg"),
               "LINKBAND_HISTORY_COLLECTOR": "false"}
        for var in ("XDG_RUNTIME_DIR", "LINKBAND_HISTORY_INGEST", "LINKBAND_HISTORY_QUERY",
                    "LINKBAND_HISTORY_EVENTS"):
            env.pop(var, None)
        run = cache / "linkband-history" / "run"
        squatter = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                     stdlib_python_for_nobody(), "-c", SQUATTER, str(run), how],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert squatter.stdout.readline().strip() == "ready"
            daemon = subprocess.run([sys.executable, "-m", "linkband_historyd"], env=env,
                                    capture_output=True, text=True, timeout=60)
            assert daemon.returncode == 1
            assert str(cache / "linkband-history") in daemon.stderr
            assert "uid 65534" in daemon.stderr, daemon.stderr
            client = subprocess.run([sys.executable, "-c", """
from linkband_history import HistoryClient, subscribe
for make in (HistoryClient, subscribe):
    try:
        make()
    except PermissionError as exc:
        print(exc)
"""], env=env, capture_output=True, text=True, timeout=60)
            lines = client.stdout.splitlines()
            assert len(lines) == 2, client.stdout + client.stderr
            for line in lines:
                assert str(cache / "linkband-history") in line and "uid 65534" in line
            out = subprocess.run([sys.executable, "-m", "linkband_history.cli", "status"], env=env,
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode != 0 and "uid 65534" in out.stderr, out.stdout + out.stderr
        finally:
            report, _ = squatter.communicate("", timeout=30)
        assert json.loads(report) == {"accepted": 0}             # nothing reached the squatter
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_other_user
def test_spool_files_are_private_under_umask_022(daemon_factory):
    d = daemon_factory(start=False)                  # away: everything goes to the spool
    base = shared_base()
    old = os.umask(0o022)
    try:
        spool = base / "spool"
        c = d.client(spool_dir=str(spool), batch_size=10)
        c.store_logs([{"level": "INFO", "logger_name": "login", "message": f"password=hunter{i}"}
                      for i in range(100)])
        assert c.flush(timeout=0.5) is False
        c.close()
        files = sorted(spool.iterdir())
        assert any(p.suffix == ".seg" for p in files) and spool / "LOCK" in files
        assert stat.S_IMODE(os.stat(spool).st_mode) == 0o700
        assert {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in files} == \
            {p.name: 0o600 for p in files}
        os.chmod(spool, 0o711)                       # even a traversable directory keeps them
        result = as_nobody({p.name: open_file(p) for p in files})
        assert set(result.values()) == {"EACCES"}, result
    finally:
        os.umask(old)
        shutil.rmtree(base, ignore_errors=True)


# -- sockets of two daemons ---------------------------------------------------------

def explicit_daemon(tmp_path, name, env=None, *extra):
    """A daemon with explicit --ingest/--query/--events and no --runtime-dir."""
    base = tmp_path / name
    sockets = tmp_path / f"{name}-sockets"
    d = DaemonProcess(base, env={"LINKBAND_HISTORY_COLLECTOR": "false", **(env or {})})
    d.ingest, d.query, d.events = (f"ipc://{sockets}/{n}.sock" for n in ("in", "q", "ev"))
    argv = [sys.executable, "-m", "linkband_historyd", "--data-dir", str(d.data_dir),
            "--ingest", d.ingest, "--query", d.query, "--events", d.events, *extra]
    d.argv = lambda: argv
    return d


def test_two_daemons_without_runtime_dir_keep_their_own_control_and_scheduler(tmp_path, monkeypatch):
    xdg = Path(tempfile.mkdtemp(prefix="lbh-"))          # short: socket paths have a limit
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    from linkband_history.endpoints import runtime_dir_for
    a, b = explicit_daemon(tmp_path, "a"), explicit_daemon(tmp_path, "b")
    try:
        a.start()
        b.start()
        run_a, run_b = Path(runtime_dir_for(str(a.data_dir))), Path(runtime_dir_for(str(b.data_dir)))
        assert run_a != run_b and run_a.parent == run_b.parent == xdg / "linkband-history"
        for run in (run_a, run_b):                    # the scheduler binds after the query process
            wait_for(lambda: (run / "scheduler.sock").exists(), timeout=30)
            assert {p.name for p in run.glob("*.sock")} == {"control.sock", "scheduler.sock",
                                                            "query-workers.sock"}
            assert stat.S_IMODE(os.stat(run).st_mode) == 0o700
        assert a.stats()["database"]["path"] == str(a.db_path)
        assert b.stats()["database"]["path"] == str(b.db_path)
        job = a.ask("optimize")                       # runs in a's scheduler, through a's writer
        assert job["ok"], job
        job_id = job["rows"][0]["id"]
        assert any(j["id"] == job_id for j in a.ask("jobs")["rows"])
        assert not any(j["id"] == job_id for j in b.ask("jobs")["rows"])
        # a third daemon on a's runtime directory, or on a's sockets, is refused; a goes on
        for extra in (("--runtime-dir", str(run_a)), ()):
            c = explicit_daemon(tmp_path, "c", None, *extra)
            if not extra:
                c.argv()[c.argv().index("--ingest") + 1] = a.ingest
            proc = subprocess.run(c.argv(), capture_output=True, text=True, timeout=60,
                                  env=c.env)
            assert proc.returncode == 1, proc.stderr
            assert "is in use" in proc.stderr
            assert (str(run_a) if extra else a.ingest[len("ipc://"):]) in proc.stderr
        assert a.ask("ping")["ok"] and b.ask("ping")["ok"]
        assert a.ask("stop")["ok"]
        assert a.proc.wait(60) == 0
        assert b.proc.poll() is None and b.ask("ping")["ok"]    # a's stop went to a only
        assert b.stop() == 0
    finally:
        a.close()
        b.close()
        shutil.rmtree(xdg, ignore_errors=True)


# -- key directories and identities -------------------------------------------------

@pytest.mark.parametrize("which", ["authorized", "admins"])
def test_a_key_directory_others_can_write_is_refused_at_start(tmp_path, keys, which):
    os.chmod(keys[which], 0o777)
    proc, run = run_daemon(tmp_path, "--ingest", f"tcp://0.0.0.0:{free_port()}",
                           env={"LINKBAND_HISTORY_ALLOW_REMOTE": "true",
                                "LINKBAND_HISTORY_CURVE_SERVER_KEY": keys["pairs"]["server"][1],
                                "LINKBAND_HISTORY_CURVE_AUTHORIZED_DIR": keys["authorized"],
                                "LINKBAND_HISTORY_ADMIN_KEYS_DIR": keys["admins"]})
    assert proc.returncode == 2, proc.stderr
    assert keys[which] in proc.stderr and "writable by other users" in proc.stderr
    assert not run.exists()


def test_under_curve_another_clients_id_with_a_high_sequence_does_not_suppress_its_records(
        curve_daemon, keys):
    from linkband_history import protocol
    d = curve_daemon
    victim = d.client()
    victim.store_metrics([metric("victim", i) for i in range(10)])
    assert victim.flush(timeout=10)
    # an authorized client with another key sends the victim's id, far ahead in sequence
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    server_public, _ = zmq.auth.load_certificate(keys["server_public"])
    push.curve_publickey, push.curve_secretkey = zmq.auth.load_certificate(keys["pairs"]["admin"][1])
    push.curve_serverkey = server_public
    push.connect(d.ingest)
    row = protocol.row_from_record("metric", metric("forged"), time.time())
    push.send(protocol.encode_message(victim.client_id, 10 ** 9, time.time(), 10 ** 9, 0,
                                      {"metric": [row]}))
    deadline = time.monotonic() + 30
    while not d.ask("metrics", metric_name="forged")["rows"] and time.monotonic() < deadline:
        time.sleep(0.05)
    push.close(0)
    ctx.term()
    victim.store_metrics([metric("victim", i) for i in range(10, 20)])
    assert victim.flush(timeout=10)                       # acknowledged: not taken as duplicates
    assert len(d.ask("metrics", metric_name="victim", limit=100)["rows"]) == 20
    stats = d.stats()
    assert stats["duplicate_messages_total"] == 0 and stats["stored_total"] == 21
    ids = {c["client_id"] for c in stats["clients"]}
    good_public = zmq.auth.load_certificate(keys["pairs"]["good"][1])[0].decode()
    admin_public = zmq.auth.load_certificate(keys["pairs"]["admin"][1])[0].decode()
    assert {f"{victim.client_id}@{good_public}", f"{victim.client_id}@{admin_public}"} <= ids
