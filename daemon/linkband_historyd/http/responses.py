"""The HTTP gateway's JSON: strict JSON text, and the one error shape
``{"error": {"code", "message"}}`` every refusal and failure answers with."""
from __future__ import annotations

import json
import math

from starlette.responses import JSONResponse

# the daemon's error codes -> HTTP statuses (anything else: 500)
STATUS = {"bad_param": 400, "bad_request": 400, "forbidden": 403, "unknown_command": 501,
          "unavailable": 503}


def _finite(v):
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


def dumps(obj) -> str:
    """Strict JSON (NaN and infinities become null), UTF-8 text kept as is."""
    kw = dict(ensure_ascii=False, separators=(",", ":"),
              default=lambda o: bytes(o).hex() if isinstance(o, (bytes, bytearray)) else str(o))
    try:
        return json.dumps(obj, allow_nan=False, **kw)
    except ValueError:
        return json.dumps(_finite(obj), **kw)


class JSON(JSONResponse):
    def render(self, content) -> bytes:
        return dumps(content).encode("utf-8")


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSON:
    return JSON({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def reply_response(reply: dict) -> JSON:
    if reply.get("ok"):
        return JSON(reply)
    err = reply.get("error") or {}
    code = str(err.get("code") or "internal")
    return error_response(STATUS.get(code, 500), code, str(err.get("message", "")))
