"""Who may use the HTTP gateway: the holder of its token.

A gateway the daemon runs (or ``linkband-history-http``) makes a new random token
at each start and writes it to ``<runtime_dir>/http.token`` (0600, in the
owner-only runtime directory, through a 0600 temporary file and a rename, so
there is no moment where another user could read it), with its address in
``http.json``; ``linkband-history ui`` turns the two into the dashboard URL.

A request carries the token as ``Authorization: Bearer <token>`` or in the
cookie that ``GET <prefix>/ui?token=<token>`` sets (``HttpOnly``,
``SameSite=Strict``, path the gateway's prefix) before redirecting to the
clean URL. A WebSocket may also give ``?token=`` (browsers cannot set its
headers). Tokens are compared in constant time.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets

from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse

from linkband_history.http_login import INFO_FILE, TOKEN_FILE

COOKIE = "linkband_history_token"


def route_path(scope) -> str:
    """The path below the app's mount point (``root_path``)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def write_private(path: str, text: str) -> None:
    """Replace ``path`` with ``text``, the file 0600 from its first byte on."""
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)            # whatever the umask
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def write_token(runtime_dir: str) -> str:
    """A new token, written to ``<runtime_dir>/http.token``."""
    token = secrets.token_urlsafe(32)
    write_private(os.path.join(runtime_dir, TOKEN_FILE), token + "\n")
    return token


def write_info(runtime_dir: str, url: str) -> None:
    write_private(os.path.join(runtime_dir, INFO_FILE),
                  json.dumps({"url": url, "pid": os.getpid()}) + "\n")


def forget(runtime_dir: str, token: str) -> None:
    """Remove the token and address files at exit, unless another gateway has
    written its own since."""
    path = os.path.join(runtime_dir, TOKEN_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read().strip() != token:
                return
        os.unlink(path)
        os.unlink(os.path.join(runtime_dir, INFO_FILE))
    except OSError:
        pass


def _bearer(conn: HTTPConnection) -> str | None:
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


class TokenAuth:
    """The gateway's own check: a request is allowed when it carries ``token``."""

    def __init__(self, token: str):
        if not token or not isinstance(token, str):
            raise ValueError("the gateway's token must be a non-empty string")
        self._token = token.encode("utf-8")

    def matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"),
                                                         self._token)

    def __call__(self, conn: HTTPConnection) -> bool:
        given = [_bearer(conn), conn.cookies.get(COOKIE)]
        if conn.scope["type"] == "websocket":
            given.append(conn.query_params.get("token"))
        return any(self.matches(g) for g in given)

    def login(self, conn: HTTPConnection, prefix: str):
        """For ``GET <prefix>/ui?token=...``: a 303 to the clean URL setting the cookie
        when the token is right, False when it is wrong; None for any other request."""
        ui_path = prefix + "/ui"
        if conn.scope["type"] != "http" or conn.scope["method"] not in ("GET", "HEAD") \
                or route_path(conn.scope) != ui_path or "token" not in conn.query_params:
            return None
        if not self.matches(conn.query_params.get("token")):
            return False
        base = conn.scope.get("root_path", "")
        response = RedirectResponse(base + ui_path, status_code=303, headers={
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        response.set_cookie(COOKIE, self._token.decode("utf-8"), path=(base + prefix) or "/",
                            httponly=True, samesite="strict", secure=conn.url.scheme == "https")
        return response
