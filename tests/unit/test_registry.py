"""The command registry, the scheduler's jobs and the writer's operations: each
declared once, with everything the gateway, OpenAPI and the tool need. No daemon."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from linkband_history.protocol import FIELDS
from linkband_historyd.commands import COMMANDS, routes
from linkband_historyd.commands.base import METHODS, command, param_schema
from linkband_historyd.http.app import EXPORTS
from linkband_historyd.processes.scheduler import JOBS, Jobs
from linkband_historyd.storage.write_ops import OPS

README = Path(__file__).resolve().parents[2] / "README.md"
# paths the gateway serves itself, beside the commands' routes
GATEWAY_PATHS = {"/openapi.json", "/ui", "/ui/", "/ws", "/prometheus"} | {f"/{r}/export" for r in EXPORTS}


def test_every_command_declares_a_route_or_says_it_has_none():
    for c in COMMANDS.values():
        assert c.route is None or (c.route[0] in METHODS and c.route[1].startswith("/")), c.name
    assert {c.name for c in COMMANDS.values() if c.route is None} == {"client.ack", "reload", "stop",
                                                                         "sdk.created", "sdk.stats", "sdk.store"}


def test_a_command_without_a_route_declaration_is_refused():
    with pytest.raises(TypeError, match="route"):
        command("nothing.said", "a command that says nothing of its route")
    with pytest.raises(ValueError, match="route"):
        command("bad.route", "a route with a method the gateway has not", route="PUT /x")
    assert "nothing.said" not in COMMANDS and "bad.route" not in COMMANDS


def test_a_command_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        command("metrics", "again", route=None)


def test_no_two_routes_are_alike_nor_clash_with_the_gateways_own_paths():
    pairs = [(m, p) for m, p, _ in routes()]
    assert len(pairs) == len(set(pairs))
    assert len({p for _, p in pairs}) == len(pairs)      # one method per path
    assert not {p for _, p in pairs} & GATEWAY_PATHS


def test_what_acts_is_posted_and_what_reads_is_got():
    for method, path, name in routes():
        if COMMANDS[name].admin:
            assert method == "POST", name
    assert {(m, p) for m, p, n in routes() if n in (
        "restore", "summarize", "jobs", "archives", "alerts.ack", "alerts.resolve", "vacuum")} == {
        ("POST", "/restore"), ("POST", "/summarize"), ("GET", "/jobs"), ("GET", "/archives"),
        ("POST", "/alerts/ack"), ("POST", "/alerts/resolve"), ("POST", "/vacuum")}


def test_table_columns_of_the_listings_are_fields_of_their_kind():
    kinds = {"metrics": "metric", "performance": "performance", "logs": "log",
             "logs.search": "log", "alerts": "alert"}
    for name, kind in kinds.items():
        cols = COMMANDS[name].columns
        assert cols and set(cols) <= set(FIELDS[kind]), name
    for c in COMMANDS.values():
        assert c.columns is None or all(isinstance(x, str) and x for x in c.columns), c.name


def test_every_parameter_of_every_command_has_a_json_schema():
    missing = [(c.name, n) for c in COMMANDS.values() for n, p in c.spec.items()
               if not param_schema(p)]
    assert missing == []
    assert COMMANDS["metrics"].schema["limit"] == {"type": "integer", "minimum": 1}
    assert COMMANDS["metrics"].schema["metric_name"]["type"] == "array"


def test_the_commands_reply_describes_route_and_columns():
    d = COMMANDS["jobs"].describe()
    assert d["route"] == "GET /jobs" and d["columns"][:2] == ["id", "state"]
    assert COMMANDS["stop"].describe()["route"] is None


def _readme_commands() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Commands of the query socket", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]   # past the head
    first_cells = [row.split("|")[1] for row in rows]
    return {name for cell in first_cells for name in re.findall(r"`([^`]+)`", cell)}


def test_the_readme_command_table_names_every_command_and_nothing_else():
    assert _readme_commands() == set(COMMANDS)


def test_jobs_are_the_methods_they_name_and_say_whether_they_are_exclusive():
    assert {n for n, exclusive in JOBS.items() if exclusive} == {
        "retention", "optimize", "archive", "restore", "budget", "vacuum", "dataset"}
    assert set(JOBS) >= {"summarize", "trend_watch"}
    assert all(callable(getattr(Jobs, n)) for n in JOBS)


def test_write_operations_say_whether_they_run_in_a_transaction():
    outside = {n for n, (_, transaction) in OPS.items() if not transaction}
    assert outside == {"maintenance", "reconfigure", "ping", "vacuum"}
    assert {"delete", "import", "alerts.update"} <= set(OPS)
