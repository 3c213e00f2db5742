"""CurveZMQ on the client side, with pyzmq's own ``zmq.auth`` certificates.

A daemon with ``security.curve_server_key`` set makes its ``tcp://`` endpoints
CURVE servers; a client then needs the server's public key and a key pair of
its own whose public half is in the daemon's ``security.curve_authorized_dir``:

    HistoryClient(ingest="tcp://host:5561", query="tcp://host:5562",
                  curve_server_public="server.key",          # or the 40-character z85 key
                  curve_secret_key_file="laptop.key_secret")

or ``LINKBAND_HISTORY_CURVE_SERVER_PUBLIC`` and ``LINKBAND_HISTORY_CURVE_CLIENT_SECRET``
in the environment. The keys apply to ``tcp://`` endpoints only: ``ipc://``
sockets are protected by file permissions and are never CURVE servers.

``keygen`` writes a certificate pair as ``zmq.auth.create_certificates`` does
(``NAME.key`` public, ``NAME.key_secret`` secret), the secret file 0600 in a
0700 directory.

No key is given, yet an endpoint is ``tcp://`` (loopback included: another local
user can connect to a port): then the daemon uses its user's own keys,
:func:`ensure_own_keys` in :func:`own_keys_dir` (``~/.config/linkband-history/curve``
on Linux): a server pair, a client pair, and ``authorized/`` holding the
client's public key. :func:`load` picks them up for the same user's clients,
so the owner's tools work with no argument and nobody else gets in. The
directory must be private (it is checked like the runtime directory): whoever
could change ``server.key`` there could make the clients talk to an impostor.
Whichever runs first, the daemon or a client, makes the keys (under a lock),
so a client started before the daemon's very first start still gets in.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import zmq
import zmq.auth
from zmq.utils import z85

from .endpoints import make_private_dir, user_dir

ENV_SERVER_PUBLIC = "LINKBAND_HISTORY_CURVE_SERVER_PUBLIC"
ENV_CLIENT_SECRET = "LINKBAND_HISTORY_CURVE_CLIENT_SECRET"
Z85_KEY_LEN = 40
OWN_SERVER, OWN_CLIENT, OWN_AUTHORIZED = "server", "client", "authorized"


@dataclass(frozen=True)
class CurveKeys:
    server_public: bytes           # z85
    public: bytes
    secret: bytes


def server_public_key(value: str | bytes) -> bytes:
    """The server's public key (z85) from a certificate file or the key itself."""
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if os.path.exists(value):
        public, _ = zmq.auth.load_certificate(value)
        return public
    if len(value) == Z85_KEY_LEN:
        try:
            z85.decode(value)
        except ValueError:
            pass
        else:
            return value.encode("ascii")
    raise ValueError(f"curve_server_public: {value!r} is neither a certificate file nor a "
                     f"{Z85_KEY_LEN}-character z85 key")


def load(server_public: str | bytes | None = None, secret_key_file: str | None = None,
         environ=None, endpoints=()) -> CurveKeys | None:
    """The client's CURVE keys from the arguments, else the environment, else (when
    one of ``endpoints`` is tcp://) this user's own keys if the daemon made them;
    None: no CURVE."""
    environ = os.environ if environ is None else environ
    server_public = server_public or environ.get(ENV_SERVER_PUBLIC) or None
    secret_key_file = secret_key_file or environ.get(ENV_CLIENT_SECRET) or None
    if server_public is None and secret_key_file is None:
        if any(e and e.startswith("tcp://") for e in endpoints):
            return own_client_keys()
        return None
    if server_public is None or secret_key_file is None:
        raise ValueError("CURVE needs both the server's public key (curve_server_public, "
                         f"{ENV_SERVER_PUBLIC}) and the client's secret certificate "
                         f"(curve_secret_key_file, {ENV_CLIENT_SECRET})")
    public, secret = zmq.auth.load_certificate(secret_key_file)
    if not secret:
        raise ValueError(f"curve_secret_key_file: {secret_key_file} holds no secret key "
                         "(give the .key_secret file)")
    return CurveKeys(server_public_key(server_public), public, secret)


def apply(sock: zmq.Socket, endpoint: str, keys: CurveKeys | None) -> None:
    """Make ``sock`` a CURVE client of ``endpoint`` (before connecting), when it is tcp://."""
    if keys is None or not endpoint.startswith("tcp://"):
        return
    sock.curve_serverkey = keys.server_public
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret


def state_id(client_id: str, keys: CurveKeys | None, ingest_endpoint: str) -> str:
    """The id under which the daemon keeps a client's sequence state: its own id,
    and under CURVE (a tcp:// ingest endpoint with keys) ``<id>@<public key>``,
    the key the daemon's ZAP handler authenticated, so that no client can touch
    another one's state by sending its id. Over ipc:// the peers are the
    daemon's own user, trusted: the id alone."""
    if keys is None or not ingest_endpoint.startswith("tcp://"):
        return client_id
    return peer_state_id(client_id, keys.public)


def peer_state_id(client_id: str, user_id: str | bytes | None) -> str:
    """The daemon's side of :func:`state_id`: ``user_id`` is the ZAP User-Id (None: no CURVE)."""
    if not user_id:
        return client_id
    if isinstance(user_id, bytes):
        user_id = user_id.decode("ascii", "replace")
    return f"{client_id}@{user_id}"


def keygen(directory: str, name: str, force: bool = False) -> tuple[str, str]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (0600) into ``directory`` (0700);
    returns their paths. Existing files are kept unless ``force``."""
    if not name or os.sep in name or (os.altsep and os.altsep in name) or name.startswith("."):
        raise ValueError(f"bad key name {name!r}")
    directory = os.path.abspath(os.path.expanduser(directory))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.stat(directory)
    if hasattr(os, "getuid"):
        if st.st_uid != os.getuid():
            raise PermissionError(f"{directory} belongs to uid {st.st_uid}, not to us")
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise PermissionError(f"{directory} is accessible by other users (mode "
                                  f"{stat.S_IMODE(st.st_mode):o}); use a private directory "
                                  f"or chmod 700 it")
    paths = (os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.key_secret"))
    for p in paths:
        if os.path.lexists(p):
            if not force:
                raise FileExistsError(f"{p} exists (give --force to replace the key pair)")
            os.remove(p)             # never write a new secret into an old file's permissions
    old = os.umask(0o077)
    try:
        public_file, secret_file = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret_file, 0o600)
    os.chmod(public_file, 0o644)         # a public key: meant to be copied to the other side
    return public_file, secret_file


# -- this user's own keys (tcp:// endpoints without configured keys) ------------------

def own_keys_dir() -> str:
    return os.path.join(user_dir("config"), "curve")


def own_paths(directory: str | None = None) -> dict:
    d = directory or own_keys_dir()
    return {"dir": d, "server_secret": os.path.join(d, f"{OWN_SERVER}.key_secret"),
            "server_public": os.path.join(d, f"{OWN_SERVER}.key"),
            "client_secret": os.path.join(d, f"{OWN_CLIENT}.key_secret"),
            "client_public": os.path.join(d, f"{OWN_CLIENT}.key"),
            "authorized": os.path.join(d, OWN_AUTHORIZED)}


def own_client_keys(directory: str | None = None) -> CurveKeys | None:
    """The client half of this user's own keys, made now when missing (a client may
    start before the daemon ever did); None when they cannot be made (no home)."""
    p = own_paths(directory)
    try:
        ensure_own_keys(directory)
    except OSError:
        if os.path.lexists(p["dir"]):
            raise                      # there, but not private: never use it
        return None
    try:
        server_public, _ = zmq.auth.load_certificate(p["server_public"])
        public, secret = zmq.auth.load_certificate(p["client_secret"])
    except (OSError, ValueError):
        return None
    return CurveKeys(server_public, public, secret) if secret else None


def ensure_own_keys(directory: str | None = None) -> dict:
    """Make this user's key pairs (server and client) and authorize the client key,
    where they are missing; returns :func:`own_paths`. The daemon and the clients
    both call it (whichever runs first makes them), under a lock."""
    p = own_paths(directory)
    make_private_dir(p["dir"], "key directory")
    with _locked(os.path.join(p["dir"], ".lock")):
        _make_own_keys(p)
    return p


def _make_own_keys(p: dict) -> None:
    for name in (OWN_SERVER, OWN_CLIENT):
        secret = os.path.join(p["dir"], f"{name}.key_secret")
        try:
            if not zmq.auth.load_certificate(secret)[1]:
                raise ValueError("no secret key")
        except (OSError, ValueError):
            keygen(p["dir"], name, force=True)
    make_private_dir(p["authorized"], "key directory")
    target = os.path.join(p["authorized"], f"{OWN_CLIENT}.key")
    with open(p["client_public"], "rb") as f:
        public = f.read()
    try:
        with open(target, "rb") as f:
            current = f.read()
    except FileNotFoundError:
        current = None
    if current != public:
        tmp = target + ".new"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(public)
        os.replace(tmp, target)


class _locked:
    """An exclusive lock on ``path`` (waits for it) for the ``with`` block."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.name == "nt":
            import msvcrt
            msvcrt.locking(self.fd, msvcrt.LK_LOCK, 1)
        else:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)                # closing releases the lock
