"""CurveZMQ on the daemon's tcp:// sockets: server keys and the ZAP authenticator.

When ``security.curve_server_key`` is set, every endpoint (ingest, query,
events, ``security.admin_endpoint``, and the internal control and scheduler
sockets) that is bound on ``tcp://`` becomes a
CURVE server: traffic is encrypted and every connection is checked by the
process's ZAP handler (pyzmq's ``ThreadAuthenticator``, one per ``zmq.Context``).
A client is accepted when its public key is a ``*.key`` certificate in
``security.curve_authorized_dir`` or is the daemon's own key (the collector
pushes with it); on the admin endpoint, when it is in ``security.admin_keys_dir``
(if set). The directories are re-read when they change, so adding or removing a
``.key`` file takes effect for new connections without a restart. ``ipc://``
endpoints keep relying on the owner-only runtime directory and socket files.
With no key configured, ``config.finish`` points these settings at the user's
own keys (``curve_keys.ensure_own_keys``; the supervisor makes them), so a
tcp:// endpoint, loopback included, is never open to another local user.
The daemon's own processes connect to the internal sockets with the server's
key pair (:func:`as_client`, :func:`requester`).

Each child process calls :func:`configure` once; ``sockets.bind`` calls
:func:`secure` before binding; a process that bound a CURVE socket calls
:func:`stop` before terminating its context (the authenticator's sockets would
keep ``Context.term()`` waiting).
"""
from __future__ import annotations

import logging
import os
from collections import Counter

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from linkband_history import rpc
from linkband_historyd.settings import Settings

log = logging.getLogger("linkband_historyd.security.curve_auth")

ENDPOINTS = ("ingest.endpoint", "query.endpoint", "events.endpoint", "security.admin_endpoint",
             "daemon.control_endpoint", "daemon.scheduler_endpoint", "query.backend_endpoint")
ADMIN_DOMAIN = "admin"
LOG_FIRST = 20             # refusals logged one by one, then one line per LOG_EVERY
LOG_EVERY = 1000

denied: Counter = Counter()       # ZAP refusals in this process, by reason


class KeyDir:
    """The public keys of the ``*.key`` certificates in a directory (z85 bytes),
    re-read whenever the directory's mtime changes."""

    def __init__(self, path: str, extra: tuple = ()):
        self.path = path
        self.extra = frozenset(extra)
        self._mtime = None
        self._keys: frozenset = frozenset()
        self.refresh()

    def refresh(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as exc:
            log.error("CURVE key directory %s: %s; no key accepted", self.path, exc.strerror)
            self._keys, self._mtime = frozenset(), None
            return
        if mtime != self._mtime:
            try:
                self._keys = frozenset(zmq.auth.load_certificates(self.path))
            except (OSError, ValueError) as exc:
                log.error("CURVE key directory %s: %s; keeping the previous keys", self.path, exc)
                return
            self._mtime = mtime

    def __contains__(self, key) -> bool:
        if isinstance(key, str):
            key = key.encode("ascii", "replace")
        self.refresh()
        return key in self._keys or key in self.extra

    def callback(self, domain: str, key: bytes) -> bool:     # configure_curve_callback's API
        return key in self


class CurveSettings:
    """The CURVE part of the settings as this process uses it: its key pair, the
    accepted client keys, the daemon's own endpoints."""

    def __init__(self, cfg: Settings):
        self.server_public, self.server_secret = zmq.auth.load_certificate(
            cfg.security.curve_server_key)
        if not self.server_secret:
            raise ValueError(f"{cfg.security.curve_server_key} holds no secret key")
        self.authorized = KeyDir(cfg.security.curve_authorized_dir, (self.server_public,))
        admin_dir = cfg.security.admin_keys_dir
        self.admin = KeyDir(admin_dir) if admin_dir else None
        self.admin_endpoint = cfg.security.admin_endpoint or None
        self.endpoints = {cfg.lookup(k) for k in ENDPOINTS} - {""}


_settings: CurveSettings | None = None
_auths: dict[int, "_Authenticator"] = {}


def configure(cfg: Settings) -> None:
    """Read this process's CURVE settings (none unless security.curve_server_key is set)."""
    global _settings
    try:
        _settings = CurveSettings(cfg) if cfg.security.curve_server_key else None
    except ValueError as exc:                      # the file changed since config.finish checked it
        raise RuntimeError(f"security.curve_server_key: {exc}") from None


def applies(endpoint: str) -> bool:
    """Whether ``endpoint`` is (or would be) bound as a CURVE server."""
    return (_settings is not None and endpoint in _settings.endpoints
            and endpoint.startswith("tcp://"))


def add_internal(endpoint: str) -> None:
    """An internal endpoint chosen at run time (the query pool's loopback port where
    there is no ipc://): CURVE like every tcp:// endpoint of the daemon."""
    if _settings is not None:
        _settings.endpoints.add(endpoint)


def admin_keys() -> KeyDir | None:
    return _settings.admin if _settings is not None else None


def secure(sock: zmq.Socket, endpoint: str) -> bool:
    """Make ``sock`` a CURVE server checked by ZAP, if ``endpoint`` calls for it.
    Called before binding; returns whether it did."""
    if not applies(endpoint):
        return False
    s = _settings
    _authenticator(sock.context)
    sock.curve_secretkey = s.server_secret
    sock.curve_publickey = s.server_public
    sock.curve_server = True
    if endpoint == s.admin_endpoint:
        sock.zap_domain = ADMIN_DOMAIN.encode()
    return True


def as_client(sock: zmq.Socket, endpoint: str) -> None:
    """Make ``sock`` (of one of the daemon's own processes) a CURVE client of
    ``endpoint`` with the server's key pair, when that endpoint is a CURVE server."""
    if applies(endpoint):
        s = _settings
        sock.curve_serverkey = s.server_public
        sock.curve_publickey = s.server_public
        sock.curve_secretkey = s.server_secret


def requester(ctx: zmq.Context, endpoint: str, timeout: float) -> rpc.Requester:
    """A requester to another process of the daemon: a CURVE client where the
    endpoint is a CURVE server; values msgpack lacks travel as text."""
    return rpc.Requester(ctx, endpoint, timeout, prepare=lambda s: as_client(s, endpoint),
                         lenient=True)


def stop(ctx: zmq.Context) -> None:
    """Stop the ZAP authenticator of ``ctx`` (before ``ctx.term()``)."""
    auth = _auths.pop(id(ctx), None)
    if auth is not None:
        auth.stop()


def self_client_options(cfg: Settings) -> dict:
    """HistoryClient keyword arguments for the daemon's own clients (the collector):
    they authenticate with the server's key pair."""
    if not cfg.security.curve_server_key:
        return {}
    public, _ = zmq.auth.load_certificate(cfg.security.curve_server_key)
    return {"curve_server_public": public.decode("ascii"),
            "curve_secret_key_file": cfg.security.curve_server_key}


def _authenticator(ctx: zmq.Context) -> "_Authenticator":
    auth = _auths.get(id(ctx))
    if auth is None:
        s = _settings
        auth = _Authenticator(ctx, log=logging.getLogger("linkband_historyd.zap"))
        auth.start()
        auth.configure_curve_callback("*", s.authorized)
        auth.configure_curve_callback(ADMIN_DOMAIN, s.admin or s.authorized)
        _auths[id(ctx)] = auth
    return auth


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, counting and logging the connections it refuses."""

    _address = "?"
    _mechanism = "?"

    async def handle_zap_message(self, msg):
        if len(msg) >= 6:
            self._address = msg[3].decode("utf-8", "replace")
            self._mechanism = msg[5].decode("ascii", "replace")
        await super().handle_zap_message(msg)

    def _send_zap_reply(self, request_id, status_code, status_text, user_id="anonymous"):
        if status_code != b"200":
            reason = status_text.decode("utf-8", "replace")
            denied[reason] += 1
            n = sum(denied.values())
            if n <= LOG_FIRST or n % LOG_EVERY == 0:
                log.warning("refused a %s connection from %s: %s (%d refused so far)",
                            self._mechanism, self._address, reason, n)
        super()._send_zap_reply(request_id, status_code, status_text, user_id)
