"""Where the daemon's sockets are: shared by the daemon and every client.

Default: ``ipc://`` sockets in an owner-only runtime directory,
``$XDG_RUNTIME_DIR/linkband-history``, else ``<user cache dir>/linkband-history/run``
(``~/.cache/...`` on Linux, ``~/Library/Caches/...`` on macOS,
``%LOCALAPPDATA%\\linkband-history\\run`` on Windows): never inside a world-writable
directory such as ``/tmp``, where another user could create it first. Where
libzmq has no ``ipc://`` (older Windows builds), loopback TCP, which the daemon
then protects with CurveZMQ keys of its user (``curve_keys.own_keys``).

One runtime directory per data directory (:func:`runtime_dir_for`): the default
data directory uses the default runtime directory, another one a subdirectory
named by a short hash of its absolute path, so two daemons never share sockets
and a client can find a given data directory's daemon from this module alone.

Clients check a socket's directory before connecting (:func:`check_ipc_endpoint`),
the daemon before binding: ``lstat`` (a symbolic link is refused, not followed),
owned by this user, no group or other permission bits, and no directory above
it that another user could change (:func:`check_ancestors`).
``LINKBAND_HISTORY_INGEST`` and ``LINKBAND_HISTORY_QUERY`` override the
endpoints for clients (and the daemon).
"""
from __future__ import annotations

import hashlib
import os
import stat
import sys

import zmq

APP = "linkband-history"
IPC_SUPPORTED = sys.platform != "win32" or zmq.has("ipc")
DEFAULT_TCP_PORTS = {"ingest": 5561, "query": 5562, "events": 5563, "control": 5564,
                     "scheduler": 5565}
ENV_PREFIX = "LINKBAND_HISTORY_"
# A unix socket path must fit sun_path: 104 bytes on macOS, 108 on Linux, with the
# terminating NUL. A longer path cannot be bound or connected at all, so the daemon
# refuses it at start with an error naming it (config.finish); the way out is a
# shorter --runtime-dir (or XDG_RUNTIME_DIR, XDG_CACHE_HOME).
MAX_IPC_PATH = 103


def user_dir(kind: str) -> str:
    """This user's ``data``, ``config`` or ``cache`` directory of the app, as
    platformdirs would give it (the client may use the stdlib only)."""
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(base, APP)
    if sys.platform == "darwin":
        sub = "Caches" if kind == "cache" else "Application Support"
        return os.path.join(home, "Library", sub, APP)
    var, fallback = {"data": ("XDG_DATA_HOME", ".local/share"), "config": ("XDG_CONFIG_HOME", ".config"),
                     "cache": ("XDG_CACHE_HOME", ".cache")}[kind]
    base = os.environ.get(var, "").strip() or os.path.join(home, fallback)
    return os.path.join(base, APP)


def default_data_dir() -> str:
    return user_dir("data")


def default_runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base) and os.path.isdir(base):
        return os.path.join(base, APP)
    return os.path.join(user_dir("cache"), "run")


def runtime_dir_for(data_dir: str | None = None) -> str:
    """The default runtime directory of the daemon of ``data_dir`` (None: the default one)."""
    base = default_runtime_dir()
    if not data_dir:
        return base
    path = os.path.abspath(os.path.expanduser(data_dir))
    if path == os.path.abspath(default_data_dir()):
        return base
    return os.path.join(base, hashlib.sha256(os.fsencode(path)).hexdigest()[:12])


def default_endpoint(name: str, runtime_dir: str | None = None) -> str:
    if not IPC_SUPPORTED:
        return f"tcp://127.0.0.1:{DEFAULT_TCP_PORTS[name]}"
    return "ipc://" + os.path.join(runtime_dir or default_runtime_dir(), f"{name}.sock")


def resolve_endpoint(name: str, explicit: str | None = None, data_dir: str | None = None) -> str:
    """An explicit endpoint, else ``LINKBAND_HISTORY_<NAME>``, else the default (of
    ``data_dir``'s daemon, when given)."""
    return (explicit or os.environ.get(ENV_PREFIX + name.upper())
            or default_endpoint(name, runtime_dir_for(data_dir)))


# -- who owns a socket's directory ---------------------------------------------------

def owner(uid: int) -> str:
    try:
        import pwd
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_private_dir(path: str, what: str = "runtime directory") -> None:
    """Refuse ``path`` unless it is a real directory (``lstat``: a symbolic link is
    not followed) of this user with no group or other permission bits. Raises
    PermissionError naming the path and its owner; FileNotFoundError when absent."""
    check_ancestors(path, what)
    st = os.lstat(path)
    mine = os.getuid() if hasattr(os, "getuid") else None
    if stat.S_ISLNK(st.st_mode):
        raise PermissionError(f"{what} {path} is a symbolic link (owned by {owner(st.st_uid)}); "
                              "refusing to follow it: remove it")
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{what} {path} is not a directory (owned by {owner(st.st_uid)})")
    if mine is None:                   # Windows: the per-user profile's ACL protects it
        return
    if st.st_uid != mine:
        raise PermissionError(f"{what} {path} belongs to {owner(st.st_uid)}, not to {owner(mine)} "
                              "(another user may have created it first): refusing to use it; "
                              "remove it or choose another directory")
    if st.st_mode & 0o077:
        raise PermissionError(f"{what} {path} is open to other users (mode "
                              f"{stat.S_IMODE(st.st_mode):o}, owner {owner(st.st_uid)}); chmod 700 it")


def check_ancestors(path: str, what: str = "runtime directory") -> None:
    """Every existing directory above ``path`` must belong to this user or root, and
    be writable by others only with the sticky bit (like /tmp): else another user
    could rename ``path`` away and put a directory (or a symbolic link) of theirs
    in its place. A symbolic link of this user or root is followed."""
    if not hasattr(os, "getuid"):
        return
    mine = os.getuid()
    parent = os.path.dirname(os.path.abspath(path))
    chain = []
    while True:
        chain.append(parent)
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    for a in reversed(chain):
        try:
            st = os.lstat(a)
            # a link is judged, then what it leads to (the next lstat goes through it)
            sts = (st, os.stat(a)) if stat.S_ISLNK(st.st_mode) else (st,)
        except FileNotFoundError:
            return
        for st in sts:
            if st.st_uid not in (0, mine):
                kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a directory"
                raise PermissionError(f"{what} {path}: {a} above it is {kind} of "
                                      f"{owner(st.st_uid)}, not of {owner(mine)} or root: "
                                      "refusing to use it")
            if (stat.S_ISDIR(st.st_mode) and st.st_mode & 0o022
                    and not st.st_mode & stat.S_ISVTX):
                raise PermissionError(f"{what} {path}: {a} above it is writable by other users "
                                      f"(mode {stat.S_IMODE(st.st_mode):o}): refusing to use it")


def check_creatable(path: str, what: str = "runtime directory") -> None:
    """For a directory that does not exist yet: refuse when another user could
    create it first, i.e. its nearest existing ancestor is writable by others or
    belongs to another user than this one or root."""
    check_ancestors(path, what)
    if not hasattr(os, "getuid"):
        return
    parent = os.path.dirname(os.path.abspath(path))
    while True:
        try:
            st = os.stat(parent)
            break
        except FileNotFoundError:
            if os.path.dirname(parent) == parent:
                return
            parent = os.path.dirname(parent)
    if st.st_uid not in (0, os.getuid()) or st.st_mode & 0o022:
        raise PermissionError(f"{what} {path} does not exist and {parent} (owner "
                              f"{owner(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):o}) lets other "
                              "users create it first: choose a directory of your own")


def check_ipc_endpoint(endpoint: str) -> None:
    """Before connecting to an ``ipc://`` endpoint: its directory must be private
    (or not exist yet where only this user could create it). Abstract sockets
    (``ipc://@name``) have no permissions at all and are refused."""
    if not endpoint.startswith("ipc://"):
        return
    path = endpoint[len("ipc://"):]
    if path.startswith("@"):
        raise PermissionError(f"{endpoint}: an abstract socket is open to every local user; "
                              "use a path in an owner-only directory")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        check_private_dir(directory, "socket directory")
    except FileNotFoundError:
        check_creatable(directory, "socket directory")


def make_private_dir(path: str, what: str = "runtime directory") -> None:
    """Create ``path`` 0700 where it is missing, each missing parent 0700 too (one
    created by us is ours, whatever its parent), then check it (:func:`check_private_dir`)."""
    path = os.path.abspath(path)
    check_ancestors(path, what)               # before creating anything under another's directory
    missing = []
    p = path
    while not os.path.lexists(p) and os.path.dirname(p) != p:
        missing.append(p)
        p = os.path.dirname(p)
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass                       # made meanwhile: the check below judges the leaf
    check_private_dir(path, what)
