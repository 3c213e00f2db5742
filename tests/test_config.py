"""Configuration layers, clear errors before binding, and the documented defaults."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from linkband_historyd import config

ROOT = Path(__file__).resolve().parents[1]


def test_documented_toml_holds_exactly_the_builtin_defaults():
    with open(ROOT / "config" / "linkband-history.toml", "rb") as f:
        documented = config.flatten_toml(tomllib.load(f))
    assert documented == config.defaults()


def test_precedence_defaults_file_env_cli(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[ingest]\nbatch_size = 10\nbatch_wait_ms = 2\n[daemon]\nlog_level = "debug"\n')
    cfg = config.load(str(f), environ={"LINKBAND_HISTORY_BATCH_SIZE": "20",
                                       "LINKBAND_HISTORY_RUNTIME_DIR": str(tmp_path / "r")},
                      cli={"ingest.batch_size": "30"})
    assert cfg.ingest.batch_size == 30
    assert cfg.ingest.batch_wait_ms == 2.0
    assert cfg.daemon.log_level == "DEBUG"
    assert cfg.ingest.endpoint == f"ipc://{tmp_path / 'r'}/ingest.sock"
    cfg = config.load(str(f), environ={"LINKBAND_HISTORY_BATCH_SIZE": "20"})
    assert cfg.ingest.batch_size == 20
    assert config.load(None, environ={}).ingest.batch_size == 5000


@pytest.mark.parametrize("toml, env, key", [
    ("[ingest]\nbatch_size = 0\n", {}, "ingest.batch_size"),
    ("[ingest]\nbatch_size = 'x'\n", {}, "ingest.batch_size"),
    ("", {"LINKBAND_HISTORY_LOG_LEVEL": "LOUD"}, "daemon.log_level"),
    ("", {"LINKBAND_HISTORY_INGEST": "http://x"}, "ingest.endpoint"),
    ("", {"LINKBAND_HISTORY_QUERY": "tcp://0.0.0.0:5562"}, "query.endpoint"),
    ("[storage]\nsynchronous = 'SOMETIMES'\n", {}, "storage.synchronous"),
    ("[nope]\nkey = 1\n", {}, "nope.key"),
])
def test_bad_values_name_their_key(tmp_path, toml, env, key):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(config.ConfigError, match=key.replace(".", r"\.")):
        config.load(str(f), environ=env)


def test_remote_bind_needs_curve_keys(tmp_path):
    from linkband_history.curve_keys import keygen
    env = {"LINKBAND_HISTORY_INGEST": "tcp://0.0.0.0:5561"}
    with pytest.raises(config.ConfigError, match=r"security\.curve_server_key"):
        config.load(None, environ=env)
    # allow_remote is about the HTTP gateway only: it does not open the ZeroMQ sockets
    with pytest.raises(config.ConfigError, match=r"security\.curve_server_key"):
        config.load(None, environ={**env, "LINKBAND_HISTORY_ALLOW_REMOTE": "true"})
    _, secret = keygen(str(tmp_path / "keys"), "server")
    (tmp_path / "authorized").mkdir()
    keys = {"LINKBAND_HISTORY_CURVE_SERVER_KEY": secret,
            "LINKBAND_HISTORY_CURVE_AUTHORIZED_DIR": str(tmp_path / "authorized")}
    cfg = config.load(None, environ={**env, **keys})
    assert cfg.ingest.endpoint == "tcp://0.0.0.0:5561"


def test_daemon_exits_nonzero_on_bad_value_before_binding(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "linkband_historyd", "--runtime-dir", str(run),
                           "--data-dir", str(tmp_path / "data"), "--batch-size", "-5"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "ingest.batch_size" in proc.stderr and "--batch-size" in proc.stderr
    assert not run.exists() and not (tmp_path / "data").exists()


# The modules a client program may load: the standard library, pyzmq, msgpack and the
# client itself; Cython's runtime modules, which pyzmq's and msgpack's compiled parts
# register under their own names, belong to them.
CLIENT_ALLOWED = {"zmq", "msgpack", "linkband_history"}
_USE_THE_CLIENT = """
import logging, sys
from linkband_history import HistoryClient, HistoryLogHandler, subscribe
with HistoryClient(ingest=sys.argv[1], query=sys.argv[2]) as c:
    c.store_metrics([{"metric_name": "m", "value": 1.0}])
    c.store_logs([{"level": "INFO", "message": "연결"}])
    assert c.flush(timeout=30) and c.query("ping")["ok"]
    handler = HistoryLogHandler(client=c)
    logging.getLogger("t").addHandler(handler)
    logging.getLogger("t").warning("through the handler")
with subscribe(["x"], sys.argv[3], timeout=0.1) as sub:
    list(sub)
"""


def _foreign_modules(daemon, extra_import: str = "") -> list[str]:
    """Top-level names of the modules a client program loads beyond the allow-list
    (those the interpreter had loaded before the program's first line do not count)."""
    code = ("import json, sys, re; started = {m.split('.')[0] for m in sys.modules}\n" + extra_import
            + _USE_THE_CLIENT + "\nloaded = {m.split('.')[0] for m in sys.modules} - started\n"
            "cython = {m for m in loaded if re.fullmatch(r'cython_runtime|_cython_[0-9]\\w*', m)}\n"
            "print(json.dumps(sorted(loaded - set(sys.stdlib_module_names) - cython - %r)))" % CLIENT_ALLOWED)
    proc = subprocess.run([sys.executable, "-c", code, daemon.ingest, daemon.query, daemon.events],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_client_program_loads_only_pyzmq_msgpack_and_the_standard_library(daemon):
    assert _foreign_modules(daemon) == []
    # the same check names a module from elsewhere (it can fail)
    assert _foreign_modules(daemon, "import psutil\n") == ["psutil"]


def test_the_command_line_tool_loads_none_of_the_daemon_dependencies():
    code = ("import sys, linkband_history, linkband_history.cli; "
            "bad = [m for m in ('apsw', 'psutil', 'apscheduler', 'linkband_historyd') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runtime_dir_and_sockets_are_owner_only(daemon):
    import os
    import stat
    assert stat.S_IMODE(os.stat(daemon.run_dir).st_mode) == 0o700
    for name in ("ingest.sock", "query.sock"):
        assert stat.S_IMODE(os.stat(daemon.run_dir / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.db_path).st_mode) == 0o600


def test_every_option_declares_how_a_change_takes_effect():
    from linkband_historyd.config import APPLIES, CHILD, OPTIONS
    for o in OPTIONS:
        assert o.applies in APPLIES, o.key
        if o.applies == CHILD:
            assert set(o.children) <= {"query", "scheduler", "http"} and o.children, o.key


def test_an_option_without_the_declaration_cannot_be_declared():
    import pytest as _pytest

    from linkband_historyd import values
    from linkband_historyd.config import Option
    with _pytest.raises(TypeError, match="applies must be one of"):
        Option("daemon.new_thing", "", values.string, "LINKBAND_HISTORY_NEW_THING")
