"""Where the HTTP gateway leaves its access token and its address, and the
dashboard URL made of them (``linkband-history ui``).

At each start the gateway writes ``<runtime_dir>/http.token`` (a new random
token) and ``<runtime_dir>/http.json`` (``{"url", "pid"}``), both 0600 in the
owner-only runtime directory: the owner's tools read them, another local user
cannot. Reading refuses a file that is a symlink, belongs to someone else or
that others may read or write, since its content is handed to a browser.
"""
from __future__ import annotations

import json
import os
import stat
from urllib.parse import quote

TOKEN_FILE = "http.token"
INFO_FILE = "http.json"


class LoginError(RuntimeError):
    pass


def read_private(path: str) -> str:
    """The text of a file only its owner (this user) can read or change."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise LoginError(f"{path} does not exist: is the HTTP gateway running "
                         "([http] enabled = true, or linkband-history-http)?") from None
    if not stat.S_ISREG(st.st_mode):
        raise LoginError(f"{path} is not a regular file; refusing it")
    if hasattr(os, "getuid"):
        if st.st_uid != os.getuid():
            raise LoginError(f"{path} belongs to uid {st.st_uid}, not to this user; refusing it")
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise LoginError(f"{path} is accessible by other users (mode "
                             f"{stat.S_IMODE(st.st_mode):o}); refusing it")
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def dashboard_url(runtime_dir: str, url: str | None = None) -> str:
    """``<gateway>/ui?token=...``: opening it logs the browser in (a cookie) and
    leads to the dashboard. ``url``: the gateway's base (``http://HOST:PORT/history``),
    else the one the gateway wrote into ``http.json``."""
    token = read_private(os.path.join(runtime_dir, TOKEN_FILE))
    if url is None:
        try:
            url = json.loads(read_private(os.path.join(runtime_dir, INFO_FILE)))["url"]
        except (ValueError, KeyError, TypeError):
            raise LoginError(f"{os.path.join(runtime_dir, INFO_FILE)} holds no url; give --url")
    return url.rstrip("/") + "/ui?token=" + quote(token, safe="")
