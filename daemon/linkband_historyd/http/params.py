"""Query strings to typed command parameters for the HTTP gateway, and the JSON
schema of each parameter (for ``/openapi.json``; each parser declares its own,
see ``commands.base.param_schema``). JSON from a request (a
parameter, a POST body, a WebSocket message) goes through ``parse_json``: nesting
deeper than ``MAX_DEPTH`` is a 400, never a RecursionError."""
from __future__ import annotations

import json
import logging
import math

from linkband_historyd.commands.base import param_schema

log = logging.getLogger("linkband_historyd.http")
MAX_DEPTH = 32              # no command takes more than a list of lists


class HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _depth(value) -> int:
    """How deeply lists and objects nest in ``value`` (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse_json(text, what: str):
    """``json.loads``; ValueError for text that is not JSON, HTTPError 400 for JSON
    nested deeper than ``MAX_DEPTH`` (which would also be too deep to send on)."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
        deep = True
    else:
        deep = _depth(value) > MAX_DEPTH
    if deep:
        raise HTTPError(400, "bad_request", f"{what}: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def local_specs() -> tuple[dict, dict]:
    """The commands of the registry: {name: spec}, {name: help}."""
    try:
        from linkband_historyd.commands import COMMANDS    # the package registers every command
    except Exception as exc:          # pragma: no cover - a broken install
        log.warning("command specs not available: %s", exc)
        return {}, {}
    return ({n: dict(c.spec) for n, c in COMMANDS.items()},
            {n: c.help for n, c in COMMANDS.items()})


def _accepts(parser, value) -> bool:
    try:
        parser(value)
        return True
    except Exception:
        return False


class Params:
    """Query strings to command parameters, typed by the command's own parsers (those
    this package registers; a command it does not know gets the text as given)."""

    def __init__(self):
        self.specs, self.helps = local_specs()

    def schema(self, parser) -> dict:
        return param_schema(parser) or ({"type": "array"} if self.is_list(parser) else {})

    @staticmethod
    def is_list(parser) -> bool:
        if parser is None:                # unknown here: the daemon judges a list
            return True
        declared = param_schema(parser)
        if declared:
            return declared.get("type") == "array"
        return _accepts(parser, ["1"]) and isinstance(parser(["1"]), list)

    @staticmethod
    def typed(parser, s: str, name: str = "parameter"):
        """The first of bool / int / float / the text / JSON that the parser takes."""
        if parser is None:
            return s
        candidates = [s.strip().lower() == "true"] if s.strip().lower() in ("true", "false") else []
        for convert in (int, float, lambda x: x, lambda x: parse_json(x, name)):
            try:
                v = convert(s)
            except ValueError:
                continue
            if not (isinstance(v, float) and not math.isfinite(v)):
                candidates.append(v)
        return next((c for c in candidates if _accepts(parser, c)), s)   # else the daemon says why

    def convert(self, command: str, items) -> dict:
        spec = self.specs.get(command, {})
        grouped: dict[str, list[str]] = {}
        tags: dict[str, str] = {}
        for k, v in items:
            if v != "":                    # an empty form field is not given
                (tags.__setitem__(k[4:], v) if k.startswith("tag.")
                 else grouped.setdefault(k, []).append(v))
        out: dict = {}
        for k, vs in grouped.items():
            parser = spec.get(k)
            if k == "tags":
                try:
                    out[k] = parse_json(vs[-1], f"{command}: tags")
                except ValueError:
                    out[k] = None
                if not isinstance(out[k], dict):
                    raise HTTPError(400, "bad_param", f"{command}: tags: give a JSON object, or "
                                    "tag.KEY=VALUE")
            elif len(vs) > 1 and not self.is_list(parser):
                raise HTTPError(400, "bad_param", f"{command}: {k}: give it once")
            else:
                out[k] = vs if len(vs) > 1 else self.typed(parser, vs[0], f"{command}: {k}")
        if tags:
            out["tags"] = {**out.get("tags", {}), **tags}
        return out
