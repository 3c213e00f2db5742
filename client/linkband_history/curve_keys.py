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
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import zmq
import zmq.auth
from zmq.utils import z85

ENV_SERVER_PUBLIC = "LINKBAND_HISTORY_CURVE_SERVER_PUBLIC"
ENV_CLIENT_SECRET = "LINKBAND_HISTORY_CURVE_CLIENT_SECRET"
Z85_KEY_LEN = 40


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
         environ=None) -> CurveKeys | None:
    """The client's CURVE keys from the arguments, else the environment; None: no CURVE."""
    environ = os.environ if environ is None else environ
    server_public = server_public or environ.get(ENV_SERVER_PUBLIC) or None
    secret_key_file = secret_key_file or environ.get(ENV_CLIENT_SECRET) or None
    if server_public is None and secret_key_file is None:
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
