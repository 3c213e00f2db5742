"""The typed settings: one field per option with the option's default, the derived
values beside them, a bad value named by its key, nothing changeable in place, and
the object a spawned child gets equal to the one its parent sent. No daemon."""
from __future__ import annotations

import dataclasses
import multiprocessing
import pickle

import pytest

from linkband_historyd import config, settings
from linkband_historyd.http.app import GatewaySettings


def _defaults(section) -> dict:
    out = {}
    for f in dataclasses.fields(section):
        has_factory = f.default_factory is not dataclasses.MISSING
        out[f.name] = f.default_factory() if has_factory else f.default
    return out


def test_every_option_is_a_field_of_its_section_with_the_options_default():
    for o in config.OPTIONS:
        section, name = o.key.split(".", 1)
        cls = config.SECTIONS[section]
        assert name in _defaults(cls), o.key
        assert _defaults(cls)[name] == o.default, o.key


def test_the_sections_hold_the_options_and_the_derived_values_and_nothing_else():
    declared = {o.key for o in config.OPTIONS} | set(settings.DERIVED) | set(settings.RUNTIME)
    fields = {f"{s}.{f.name}" for s, cls in config.SECTIONS.items() for f in dataclasses.fields(cls)}
    assert fields == declared
    assert set(config.SECTIONS) == {f.name for f in dataclasses.fields(settings.Settings)}


def test_load_returns_typed_settings_with_the_derived_values_filled_in(tmp_path):
    s = config.load(None, environ={}, cli={"daemon.data_dir": str(tmp_path / "d"),
                                           "daemon.runtime_dir": str(tmp_path / "r"),
                                           "ingest.batch_size": "7"})
    assert isinstance(s, settings.Settings)
    assert s.ingest.batch_size == 7 and s.query.max_seconds == 10.0
    assert s.daemon.db_path == str(tmp_path / "d" / "history.db")
    assert s.daemon.control_endpoint == f"ipc://{tmp_path / 'r'}/control.sock"
    assert s.archive.dir == str(tmp_path / "d" / "archives")
    # --print-config's lines: every option and derived value, none of the run-time ones
    keys = [k for k, _ in s.items()]
    assert set(keys) == {o.key for o in config.OPTIONS} | set(settings.DERIVED)


@pytest.mark.parametrize("key,env,value", [
    ("ingest.batch_size", "LINKBAND_HISTORY_BATCH_SIZE", "lots"),
    ("query.max_seconds", "LINKBAND_HISTORY_QUERY_MAX_SECONDS", "0"),
    ("daemon.log_level", "LINKBAND_HISTORY_LOG_LEVEL", "LOUD"),
])
def test_a_bad_value_is_refused_with_its_key_named(key, env, value):
    with pytest.raises(config.ConfigError, match=rf"^{key.replace('.', chr(92) + '.')}: .*{value}"):
        config.load(None, environ={env: value})


def test_settings_are_frozen_and_a_change_is_a_new_object():
    s = config.load(None, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.ingest.batch_size = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.ingest = None
    t = s.updated({"ingest.batch_size": 1, "query.max_limit": 5})
    assert (t.ingest.batch_size, t.query.max_limit) == (1, 5)
    assert (s.ingest.batch_size, s.query.max_limit) == (5000, 100_000)
    assert t.ingest.batch_wait_ms == s.ingest.batch_wait_ms and t.http is s.http


def test_a_reload_plan_applies_what_it_may_and_keeps_what_needs_a_restart():
    old = config.load(None, environ={})
    new = config.load(None, environ={"LINKBAND_HISTORY_BATCH_SIZE": "9",
                                     "LINKBAND_HISTORY_MAX_LIMIT": "50",
                                     "LINKBAND_HISTORY_SYNCHRONOUS": "FULL"})
    plan = config.reload_plan(old, new)
    assert plan.live == ("ingest.batch_size",) and plan.kept == ("storage.synchronous",)
    assert plan.children == {"query": ["query.max_limit"]}
    applied = plan.applied(old, new)
    assert applied.ingest.batch_size == 9 and applied.query.max_limit == 50
    assert applied.storage.synchronous == "NORMAL"


def _echo(conn, obj):
    conn.send(pickle.dumps(obj))


def test_a_spawned_child_gets_the_same_settings_its_parent_sent():
    s = config.load(None, environ={}).updated({"daemon.started_at": 1.5})
    mp = multiprocessing.get_context("spawn")
    parent, child = mp.Pipe()
    proc = mp.Process(target=_echo, args=(child, s))
    proc.start()
    try:
        assert pickle.loads(parent.recv()) == s
    finally:
        proc.join(30)


def test_the_gateway_child_and_the_standalone_gateway_build_the_same_settings(tmp_path):
    s = config.load(None, environ={}, cli={"daemon.runtime_dir": str(tmp_path / "r"),
                                           "daemon.data_dir": str(tmp_path / "d"),
                                           "http.port": "9000"})
    child = GatewaySettings.from_settings(s)
    alone = GatewaySettings.from_arguments(
        ["--query", s.query.endpoint, "--events", s.events.endpoint, "--port", "9000",
         "--runtime-dir", str(tmp_path / "r"), "--exit-with-parent"])
    assert child == alone
