"""The OpenAPI document built from the registry, and parameter parsing: the
gateway's query strings, the tool's KEY=VALUE words, the daemon's parsers. No daemon."""
from __future__ import annotations

import click
import pytest

from linkband_history.cli.query import parse_assignments
from linkband_historyd.commands import COMMANDS, routes
from linkband_historyd.http.app import EXPORTS
from linkband_historyd.http.openapi import openapi_document
from linkband_historyd.http.params import HTTPError, Params
from linkband_historyd.query.params import BadParam, parse


@pytest.fixture(scope="module")
def doc():
    return openapi_document("/history", routes(), EXPORTS, Params(), None)


def test_the_openapi_document_has_one_operation_per_route_of_the_registry(doc):
    for method, path, name in routes():
        op = doc["paths"]["/history" + path][method.lower()]
        assert op["x-daemon-command"] == name and op["summary"] == COMMANDS[name].help
    assert len([p for p in doc["paths"] if not p.endswith("/export")]) == len(routes())


def test_openapi_parameters_are_typed_by_the_commands_parsers(doc):
    get = {p["name"]: p["schema"] for p in doc["paths"]["/history/metrics"]["get"]["parameters"]}
    assert get["limit"] == {"type": "integer", "minimum": 1}
    assert get["order"] == {"enum": ["asc", "desc"]}
    body = doc["paths"]["/history/restore"]["post"]["requestBody"]["content"]["application/json"]
    props = body["schema"]["properties"]
    assert props["kind"]["enum"] == ["metric", "performance", "log", "alert"]
    assert props["month"]["type"] == "string"


def test_query_strings_are_typed_by_the_commands_parsers():
    params = Params()
    p = params.convert("metrics", [("limit", "5"), ("metric_name", "a"), ("metric_name", "b"),
                                   ("tag.device", "x"), ("order", "")])
    assert p == {"limit": 5, "metric_name": ["a", "b"], "tags": {"device": "x"}}
    assert params.convert("alerts", [("open", "true")]) == {"open": True}
    with pytest.raises(HTTPError, match="give it once"):
        params.convert("metrics", [("limit", "5"), ("limit", "6")])


def test_the_tools_key_value_words_are_json_when_they_parse_else_text():
    assert parse_assignments(["limit=5", "open=true", "q=연결 EEG", "n=a", "n=b", "e="]) == {
        "limit": 5, "open": True, "q": "연결 EEG", "n": ["a", "b"], "e": ""}
    assert parse_assignments(['metric_name=["a","b"]']) == {"metric_name": ["a", "b"]}
    with pytest.raises(click.BadParameter):
        parse_assignments(["limit"])


def test_the_daemons_parsers_name_the_bad_parameter():
    spec = COMMANDS["metrics"].spec
    assert parse(spec, {"limit": "7", "order": "DESC"}) == {"limit": 7, "order": "desc"}
    with pytest.raises(BadParam, match="limit"):
        parse(spec, {"limit": 0})
    with pytest.raises(BadParam, match="unknown parameter"):
        parse(spec, {"nope": 1})
