"""The ``/openapi.json`` document of the HTTP gateway."""
from __future__ import annotations


def openapi_document(prefix: str, routes, exports: dict, params, daemon_commands) -> dict:
    """The OpenAPI 3 document of ``routes`` (the registry's, ``commands.routes()``):
    parameters typed by ``params`` (``http.params.Params``); ``daemon_commands`` (the
    running daemon's ``commands`` reply, or None) says which it answers."""
    known, specs, schema = daemon_commands, params.specs, params.schema
    ref = lambda name: {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
    errors = {s: {"description": "error", "content": ref("Error")}
              for s in "400 401 403 413 500 501 503".split()}
    body = lambda props: {"content": {"application/json": {
        "schema": {"type": "object", "properties": props}}}}
    paths: dict = {}
    for method, path, command in routes:
        spec = specs.get(command, {})
        names = sorted(known[command]["params"] if known and command in known else spec)
        props = {n: schema(spec.get(n)) for n in names}
        op = {"summary": (known or {}).get(command, {}).get("help") or params.helps.get(
                  command, command),
              "operationId": command.replace(".", "_"), "x-daemon-command": command,
              "responses": {"200": {"description": "the daemon's reply", "content": ref("Reply")},
                            **errors}}
        if known is not None and command not in known:
            op["description"] = "not answered by the running daemon yet: 501"
        if method == "GET":
            op["parameters"] = [{"name": n, "in": "query", "schema": props[n]} for n in names]
        else:
            op["requestBody"] = body(props)
        paths[prefix + path] = {method.lower(): op}
    for route, kind in exports.items():
        props = {n: schema(p) for n, p in sorted(specs.get(route, {}).items())
                 if n not in ("limit", "cursor", "after_id", "count")}
        paths[f"{prefix}/{route}/export"] = {"post": {
            "summary": f"every matching {kind} record, streamed page by page",
            "operationId": f"export_{route}",
            "requestBody": body({**props, "format": {"enum": ["csv", "jsonl"], "default": "csv"}}),
            "responses": {"200": {"description": "the export", "content": {
                "text/csv": {}, "application/x-ndjson": {}}}, **errors}}}
    string = {"type": "string"}
    return {"openapi": "3.0.3", "paths": paths, "security": [{"bearer": []}], "info": {
        "title": "Link Band history API", "version": "1",
        "description": f"Live events: WebSocket {prefix}/ws?topics=a,b (prefix match) sends "
                       '{"topic", "data"}; send {"subscribe": [...]} or {"unsubscribe": [...]}.'},
        "components": {"securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer", "description": "the token of <runtime_dir>/"
            "http.token (or the cookie that GET /ui?token=... sets)"}}, "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "enum": ["bad_param", "bad_request",
                             "unauthorized", "forbidden", "too_large", "unknown_command",
                             "unavailable", "query_failed", "internal"]},
                    "message": string}}}},
            "Reply": {"type": "object", "properties": {
                "ok": {"type": "boolean"}, "rows": {"type": "array", "items": {}},
                "next": {**string, "nullable": True, "description": "cursor of the next page"}}},
        }}}
