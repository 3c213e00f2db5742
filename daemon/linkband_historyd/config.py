"""Configuration: one table of options, four layers.

Precedence: built-in defaults < TOML file (``--config``) < environment
(``LINKBAND_HISTORY_*``) < command line. Every option is declared once in
``OPTIONS``; ``config/linkband-history.toml`` documents the same defaults and a
test keeps the two in step. A bad value raises :class:`ConfigError` naming the
key and where the value came from, before anything is bound or opened. :func:`load`
returns frozen typed settings (``settings.Settings``; its sections are generated from
``OPTIONS`` here, ``SECTIONS``).
"""
from __future__ import annotations

import glob
import ipaddress
import os
import re
import socket
import stat
import tomllib
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from linkband_history import curve_keys
from linkband_history.endpoints import (
    IPC_SUPPORTED,
    MAX_IPC_PATH,
    default_data_dir,
    default_endpoint,
    owner,
    runtime_dir_for,
)
from linkband_history.protocol import LOG_LEVELS, MAX_MESSAGE_BYTES
from linkband_historyd import values
from linkband_historyd.settings import Settings, make_sections
from linkband_historyd.trends.anomaly_detector import SCORE_THRESHOLD

SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ConfigError(ValueError):
    pass


# How a changed value takes effect on SIGHUP (or the ``reload`` command):
LIVE = "live"          # the running process that uses it applies it
CHILD = "child"        # the child process that uses it is restarted with it
RESTART = "restart"    # only when the daemon restarts; a reload keeps the old value
APPLIES = (LIVE, CHILD, RESTART)
# which child a CHILD option belongs to, by section, or by key where it is several
CHILD_OF_SECTION = {"query": "query", "scheduler": "scheduler", "collector": "scheduler",
                    "trends": "scheduler", "retention": "scheduler", "archive": "scheduler",
                    "http": "http", "security": "http", "dataset": "scheduler"}
CHILDREN_OF_KEY = {"daemon.log_level": ("query", "scheduler", "http"),
                   # the supervisor applies these live; the query process passes them to its
                   # pool of workers when it starts
                   "supervisor.restart_backoff_max_s": ("query",),
                   "supervisor.stop_timeout_s": ("query",),
                   "supervisor.child_hang_s": ("query",)}


@dataclass(frozen=True)
class Option:
    key: str                      # "section.name"
    default: Any
    parse: Callable[[Any], Any]   # raises ValueError with a reason
    env: str                      # LINKBAND_HISTORY_... name
    flag: str | None = None       # command-line flag, if any
    help: str = ""
    applies: str = ""             # LIVE, CHILD or RESTART: every option must say

    def __post_init__(self):
        if self.applies not in APPLIES:
            raise TypeError(f"option {self.key}: applies must be one of {APPLIES}")
        if self.applies == CHILD and not self.children:
            raise TypeError(f"option {self.key}: no child process is known for its section")

    @property
    def children(self) -> tuple[str, ...]:
        """The child processes a reload restarts when this CHILD option changes."""
        if self.key in CHILDREN_OF_KEY:
            return CHILDREN_OF_KEY[self.key]
        section = CHILD_OF_SECTION.get(self.key.split(".")[0])
        return (section,) if section else ()


def _watch_list(v):
    """Watched metrics: 'name' or 'name:threshold' (a score in 0.3..1)."""
    out = values.string_list(v)
    for item in out:
        name, sep, thr = item.rpartition(":")
        if sep and not name:
            raise ValueError(f"{item!r}: must be name or name:threshold")
        if sep:
            try:
                values.score_threshold(thr)
            except ValueError as exc:
                raise ValueError(f"{item!r}: the threshold {exc}") from None
    return out


def _file_name(v):
    """A plain file name: the data directory holds the daemon's lock and archives too,
    so the database lives in it, never elsewhere."""
    s = values.string(v).strip()
    if not s or s in (".", "..") or os.path.basename(s) != s or (os.altsep and os.altsep in s):
        raise ValueError("must be a file name in daemon.data_dir, not a path")
    return s


def _endpoint(v):
    s = values.string(v)
    if not s:
        return s                        # empty: the default, resolved later
    parts = urlsplit(s)
    if parts.scheme == "ipc":
        if not IPC_SUPPORTED:
            raise ValueError("ipc:// is not available on this platform; use tcp://127.0.0.1:PORT")
        if not s[len("ipc://"):]:
            raise ValueError("ipc:// needs a path")
        if s.startswith("ipc://@"):
            raise ValueError("an abstract socket (ipc://@...) is open to every local user; "
                             "give a path in an owner-only directory")
        return s
    if parts.scheme == "tcp":
        try:
            parts.port
        except ValueError:
            raise ValueError(f"bad port in {s!r}") from None
        if not parts.hostname or parts.port is None:
            raise ValueError(f"must be tcp://HOST:PORT, got {s!r}")
        return s
    raise ValueError(f"must be an ipc:// or tcp:// endpoint, got {s!r}")


def _url_path(v):
    s = values.string(v)
    if s and (not s.startswith("/") or any(c in s for c in "?# ") or "//" in s):
        raise ValueError(f"must be an absolute URL path like /history/prometheus, or empty, not {s!r}")
    return s.rstrip("/") or s


def _host_name(v):
    """A dataset host name: a path segment every engine reads back as it is."""
    s = values.string(v)
    if s and not HOST_NAME.fullmatch(s):
        raise ValueError("must be letters, digits, '.', '_' or '-' (at most 64)")
    return s


def is_loopback(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    if parts.scheme == "ipc":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


OPTIONS: tuple[Option, ...] = (
    Option("daemon.data_dir", "", values.string, "LINKBAND_HISTORY_DATA_DIR", "--data-dir",
           "directory of the database; empty: the per-OS user data directory", applies=RESTART),
    Option("daemon.runtime_dir", "", values.string, "LINKBAND_HISTORY_RUNTIME_DIR", "--runtime-dir",
           "owner-only directory of the ipc:// sockets; empty: the per-user default of the "
           "data directory (endpoints.runtime_dir_for)", applies=RESTART),
    Option("daemon.log_level", "INFO", values.choice(LOG_LEVELS), "LINKBAND_HISTORY_LOG_LEVEL",
           "--log-level", "level of the daemon's own log (stderr); on reload the supervisor "
           "and the writer apply it live, the other children restart", applies=CHILD),
    Option("daemon.database_file", "history.db", _file_name, "LINKBAND_HISTORY_DATABASE_FILE",
           "--database-file", "name of the database file in the data directory", applies=RESTART),
    Option("daemon.nice", 10, values.integer(0, 19), "LINKBAND_HISTORY_NICE", "--nice",
           "CPU priority of the daemon and its children as a POSIX nice value, only ever "
           "lowered (0: as started); on Windows > 0 is below-normal, >= 15 idle", applies=RESTART),
    Option("ingest.endpoint", "", _endpoint, "LINKBAND_HISTORY_INGEST", "--ingest",
           "PULL socket for records; empty: ipc://<runtime_dir>/ingest.sock", applies=RESTART),
    Option("ingest.batch_size", 5000, values.integer(1, 1_000_000), "LINKBAND_HISTORY_BATCH_SIZE",
           "--batch-size", "most records in one transaction", applies=LIVE),
    Option("ingest.batch_wait_ms", 0.0, values.number(0, 10_000), "LINKBAND_HISTORY_BATCH_WAIT_MS",
           "--batch-wait-ms", "wait this long for more records before committing; 0: commit "
           "as soon as the socket is drained", applies=LIVE),
    Option("ingest.max_message_bytes", MAX_MESSAGE_BYTES + 65_536, values.integer(1024),
           "LINKBAND_HISTORY_MAX_MESSAGE_BYTES", None, "larger ingest messages are refused by "
           "ZeroMQ (MAXMSGSIZE); the client library sends at most 2 MiB", applies=RESTART),
    Option("ingest.batch_max_bytes", 8 * 1024 * 1024, values.integer(65_536), "LINKBAND_HISTORY_BATCH_MAX_BYTES",
           None, "a transaction takes no more frames once they hold this many bytes", applies=RESTART),
    Option("ingest.receive_hwm", 128, values.integer(1, 100_000), "LINKBAND_HISTORY_RECEIVE_HWM", None,
           "messages ZeroMQ queues per client before the client waits: at most this times "
           "max_message_bytes per sending process (256 MiB by default)", applies=RESTART),
    Option("ingest.max_records_per_message", 10_000, values.integer(1), "LINKBAND_HISTORY_MAX_RECORDS_PER_MESSAGE",
           None, "a message with more records is refused whole (too_many_records)", applies=RESTART),
    Option("ingest.max_string_bytes", 65_536, values.integer(64), "LINKBAND_HISTORY_MAX_STRING_BYTES", None,
           "a longer string (UTF-8 bytes) is cut and marked, the record kept (truncated_string)", applies=RESTART),
    Option("ingest.max_json_bytes", 65_536, values.integer(64), "LINKBAND_HISTORY_MAX_JSON_BYTES", None,
           "a record whose tags/metadata/extra_data JSON is longer is refused (json_too_large)", applies=RESTART),
    Option("ingest.max_json_depth", 32, values.integer(1, 500), "LINKBAND_HISTORY_MAX_JSON_DEPTH", None,
           "a record whose JSON nests deeper is refused (json_too_deep)", applies=RESTART),
    Option("ingest.min_timestamp", 946_684_800.0, values.number(0), "LINKBAND_HISTORY_MIN_TIMESTAMP", None,
           "a record with an earlier time (epoch seconds; default 2000-01-01) is refused "
           "(timestamp_out_of_range)", applies=RESTART),
    Option("ingest.max_future_s", 86_400.0, values.number(0), "LINKBAND_HISTORY_MAX_FUTURE_S", None,
           "a record with a time more than this far ahead of its arrival is refused "
           "(timestamp_out_of_range)", applies=RESTART),
    Option("query.endpoint", "", _endpoint, "LINKBAND_HISTORY_QUERY", "--query",
           "REP socket for queries; empty: ipc://<runtime_dir>/query.sock", applies=RESTART),
    Option("query.default_limit", 1000, values.integer(1, 1_000_000), "LINKBAND_HISTORY_DEFAULT_LIMIT", None,
           "rows per page when a query gives no limit", applies=CHILD),
    Option("query.max_limit", 100_000, values.integer(1, 10_000_000), "LINKBAND_HISTORY_MAX_LIMIT", None,
           "largest page a query may ask for", applies=CHILD),
    Option("query.max_page_bytes", 8 * 1024 * 1024, values.integer(65_536), "LINKBAND_HISTORY_MAX_PAGE_BYTES",
           None, "a listing page stops once its text passes this many bytes; next continues",
           applies=CHILD),
    Option("query.search_total_ms", 0, values.integer(0, 60_000), "LINKBAND_HISTORY_SEARCH_TOTAL_MS", None,
           "a search counts its matches past 1,000 (up to 10,000) for at most this long; "
           "0: it does not (the first page comes first)", applies=CHILD),
    Option("query.workers", 0, values.integer(0, 64), "LINKBAND_HISTORY_QUERY_WORKERS", None,
           "query worker processes behind the query endpoint; 0: the CPU count, at least 2, "
           "at most 4", applies=CHILD),
    Option("query.max_seconds", 10.0, values.number(0.1, 3600), "LINKBAND_HISTORY_QUERY_MAX_SECONDS", None,
           "time budget of one query: a statement still running past it is interrupted and the "
           "reply says what to ask instead; a request may ask less (max_seconds), only an "
           "admin more", applies=CHILD),
    Option("query.queue_wait_s", 3.0, values.number(0, 60), "LINKBAND_HISTORY_QUERY_QUEUE_WAIT_S", None,
           "a request waits at most this long for a free worker, then gets a 'busy' error "
           "(under the client's 5 s timeout)", applies=CHILD),
    Option("query.max_queued", 256, values.integer(1, 100_000), "LINKBAND_HISTORY_QUERY_MAX_QUEUED", None,
           "requests waiting for a worker; one more gets 'busy' at once", applies=CHILD),
    Option("query.worker_max_mb", 512, values.integer(0, 1_000_000), "LINKBAND_HISTORY_QUERY_WORKER_MAX_MB", None,
           "a worker whose private memory passes this after a reply is replaced (0: never)",
           applies=CHILD),
    Option("query.parallel", 2, values.integer(1, 16), "LINKBAND_HISTORY_QUERY_PARALLEL", None,
           "a worker cuts a long per-bucket aggregate of detail rows into this many parts "
           "run at once on its own side connections (1: never cut)", applies=CHILD),
    Option("events.endpoint", "", _endpoint, "LINKBAND_HISTORY_EVENTS", "--events",
           "PUB socket of the daemon's events; empty: ipc://<runtime_dir>/events.sock", applies=RESTART),
    Option("events.coalesce_ms", 500.0, values.number(0, 60_000), "LINKBAND_HISTORY_EVENTS_COALESCE_MS", None,
           "history_data_updated is published at most once per this many milliseconds", applies=LIVE),
    Option("storage.synchronous", "NORMAL", values.choice(SYNC_MODES), "LINKBAND_HISTORY_SYNCHRONOUS",
           None, "SQLite synchronous mode: NORMAL survives a crash of any process; FULL also "
           "survives power loss, at a cost", applies=RESTART),
    Option("storage.max_page_count", 0, values.integer(0), "LINKBAND_HISTORY_MAX_PAGE_COUNT", None,
           "a hard cap on the database's pages (0: none); when it is reached the writer "
           "stops storing new records until there is room again", applies=LIVE),
    Option("storage.checkpoint_interval_s", 0.25, values.number(0.05, 3600), "LINKBAND_HISTORY_CHECKPOINT_INTERVAL_S",
           None, "WAL checkpoints run this often on their own connection, off the writer's path", applies=RESTART),
    Option("storage.wal_max_mb", 16, values.integer(1, 65536), "LINKBAND_HISTORY_WAL_MAX_MB", None,
           "past this the writer starts the WAL over; a WAL file past 4x this is cut back", applies=RESTART),
    Option("scheduler.enabled", True, values.boolean, "LINKBAND_HISTORY_SCHEDULER", None,
           "run the scheduler process (summaries, retention, archives, optimize)", applies=RESTART),
    Option("scheduler.summaries_interval_s", 60.0, values.number(1, 86400), "LINKBAND_HISTORY_SUMMARIES_INTERVAL_S",
           None, "how often new rows are folded into the summary tiers", applies=CHILD),
    Option("scheduler.retention_interval_s", 3600.0, values.number(10, 7 * 86400),
           "LINKBAND_HISTORY_RETENTION_INTERVAL_S", None, "how often retention and archiving run", applies=CHILD),
    Option("scheduler.budget_interval_s", 60.0, values.number(1, 86400), "LINKBAND_HISTORY_BUDGET_INTERVAL_S",
           None, "how often the size budget and free disk are checked", applies=CHILD),
    Option("scheduler.optimize_at", "03:30", values.clock, "LINKBAND_HISTORY_OPTIMIZE_AT", None,
           "local time of the daily optimize (ANALYZE, FTS merge, incremental vacuum)", applies=CHILD),
    Option("collector.enabled", True, values.boolean, "LINKBAND_HISTORY_COLLECTOR", None,
           "sample system metrics with psutil (a job of the scheduler process)", applies=CHILD),
    Option("collector.interval_s", 1.0, values.number(0.1, 3600), "LINKBAND_HISTORY_COLLECTOR_INTERVAL_S", None,
           "seconds between two samples", applies=CHILD),
    Option("collector.process_names", [], values.string_list, "LINKBAND_HISTORY_COLLECTOR_PROCESSES", None,
           "SDK processes to follow by name (cpu, rss, threads, open files)", applies=CHILD),
    Option("collector.pids", [], values.integer_list, "LINKBAND_HISTORY_COLLECTOR_PIDS", None,
           "SDK processes to follow by pid", applies=CHILD),
    Option("collector.mounts", [], values.string_list, "LINKBAND_HISTORY_COLLECTOR_MOUNTS", None,
           "mount points whose usage is sampled; empty: every physical mount", applies=CHILD),
    Option("trends.watch", [], _watch_list, "LINKBAND_HISTORY_TREND_WATCH", None,
           "metrics the trend watch scores as they arrive, each 'name' or 'name:threshold' "
           "(alert + trend_alert once per episode)", applies=CHILD),
    Option("trends.bucket_s", 300, values.integer(60, 86400), "LINKBAND_HISTORY_TREND_BUCKET_S", None,
           "bucket of the watched series, and how often the watch runs (seconds)", applies=CHILD),
    Option("trends.history_days", 14.0, values.number(1, 365), "LINKBAND_HISTORY_TREND_HISTORY_DAYS", None,
           "history a watched metric's detector learns from when it has no saved state", applies=CHILD),
    Option("trends.threshold", SCORE_THRESHOLD, values.score_threshold, "LINKBAND_HISTORY_TREND_THRESHOLD", None,
           "anomaly score (0.3..1) at which a watched metric alerts; higher: fewer alerts", applies=CHILD),
    Option("retention.metric_days", 30.0, values.number(0), "LINKBAND_HISTORY_METRIC_DAYS", None,
           "metric detail rows are kept this many days (0: for ever)", applies=CHILD),
    Option("retention.performance_days", 30.0, values.number(0), "LINKBAND_HISTORY_PERFORMANCE_DAYS", None,
           "performance detail rows are kept this many days (0: for ever)", applies=CHILD),
    Option("retention.log_days", 30.0, values.number(0), "LINKBAND_HISTORY_LOG_DAYS", None,
           "log lines are kept this many days (0: for ever)", applies=CHILD),
    Option("retention.alert_days", 30.0, values.number(0), "LINKBAND_HISTORY_ALERT_DAYS", None,
           "alerts are kept this many days (0: for ever)", applies=CHILD),
    Option("retention.minute_days", 90.0, values.number(0), "LINKBAND_HISTORY_MINUTE_DAYS", None,
           "the minute tier of metric summaries is kept this many days", applies=CHILD),
    Option("retention.summary_days", 365.0, values.number(0), "LINKBAND_HISTORY_SUMMARY_DAYS", None,
           "hourly, daily, weekly and monthly summaries are kept this many days", applies=CHILD),
    Option("retention.max_db_bytes", 4 * 1024 ** 3, values.integer(0), "LINKBAND_HISTORY_MAX_DB_BYTES", None,
           "size budget of the database; over it the oldest detail goes first (0: none)", applies=CHILD),
    Option("retention.min_free_percent", 5.0, values.number(0, 100), "LINKBAND_HISTORY_MIN_FREE_PERCENT", None,
           "keep at least this share of the disk free; under it the oldest detail goes first", applies=CHILD),
    Option("archive.enabled", True, values.boolean, "LINKBAND_HISTORY_ARCHIVE", None,
           "move detail past its retention into compressed monthly archive files before deleting", applies=CHILD),
    Option("archive.dir", "", values.string, "LINKBAND_HISTORY_ARCHIVE_DIR", None,
           "where archives go; empty: <data_dir>/archives", applies=CHILD),
    Option("archive.level", 19, values.integer(1, 22), "LINKBAND_HISTORY_ARCHIVE_LEVEL", None,
           "zstandard compression level of archives", applies=CHILD),
    Option("archive.restore_days", 7.0, values.number(0.01), "LINKBAND_HISTORY_RESTORE_DAYS", None,
           "a restored month stays queryable this many days before it is removed again", applies=CHILD),
    Option("http.enabled", False, values.boolean, "LINKBAND_HISTORY_HTTP", None,
           "run the HTTP gateway (REST API, WebSocket events, /history/ui); needs the [http] extra", applies=RESTART),
    Option("http.host", "127.0.0.1", values.string, "LINKBAND_HISTORY_HTTP_HOST", None,
           "address of the HTTP gateway (loopback unless security.allow_remote)", applies=CHILD),
    Option("http.port", 8765, values.integer(1, 65535), "LINKBAND_HISTORY_HTTP_PORT", None,
           "port of the HTTP gateway", applies=CHILD),
    Option("http.allowed_origins", [], values.string_list, "LINKBAND_HISTORY_HTTP_ALLOWED_ORIGINS", None,
           "browser origins (scheme://host:port) beyond the gateway's own whose pages may "
           "change state and open WebSockets", applies=CHILD),
    Option("http.max_websockets", 32, values.integer(1, 10_000), "LINKBAND_HISTORY_HTTP_MAX_WEBSOCKETS", None,
           "open WebSocket connections at most; past it a handshake is refused (503)", applies=CHILD),
    Option("http.metrics_path", "/history/prometheus", _url_path, "LINKBAND_HISTORY_HTTP_METRICS_PATH", None,
           "path of the Prometheus exposition on the gateway; empty: none", applies=CHILD),
    Option("http.metrics_window_s", 600.0, values.number(1, 86_400), "LINKBAND_HISTORY_HTTP_METRICS_WINDOW_S",
           None, "an SDK metric series is exposed with its newest value of this window", applies=CHILD),
    Option("http.metrics_max_series_per_metric", 100, values.integer(1, 100_000),
           "LINKBAND_HISTORY_HTTP_METRICS_MAX_SERIES_PER_METRIC", None,
           "series (tag sets) exposed per SDK metric at most; the rest are counted as dropped",
           applies=CHILD),
    Option("http.metrics_max_series", 2000, values.integer(1, 1_000_000),
           "LINKBAND_HISTORY_HTTP_METRICS_MAX_SERIES", None,
           "SDK metric series exposed in all at most; the rest are counted as dropped", applies=CHILD),
    Option("security.allow_remote", False, values.boolean, "LINKBAND_HISTORY_ALLOW_REMOTE", None,
           "allow the HTTP gateway on a non-loopback http.host (it needs its token, but "
           "plain HTTP carries the token in clear)", applies=CHILD),
    Option("security.curve_server_key", "", values.string, "LINKBAND_HISTORY_CURVE_SERVER_KEY", None,
           "the server's CurveZMQ secret certificate (linkband-history keygen); tcp:// endpoints "
           "then use CURVE, and a non-loopback one may be bound", applies=RESTART),
    Option("security.curve_authorized_dir", "", values.string, "LINKBAND_HISTORY_CURVE_AUTHORIZED_DIR", None,
           "directory of the *.key public certificates of the clients CURVE accepts", applies=RESTART),
    Option("security.admin_endpoint", "", _endpoint, "LINKBAND_HISTORY_ADMIN_ENDPOINT", None,
           "a second query socket for the administrative commands, which the query endpoint "
           "then refuses; empty: none", applies=RESTART),
    Option("security.admin_keys_dir", "", values.string, "LINKBAND_HISTORY_ADMIN_KEYS_DIR", None,
           "with CURVE: only clients whose *.key is here may run administrative commands", applies=RESTART),
    Option("supervisor.restart_backoff_max_s", 30.0, values.number(0.1, 3600),
           "LINKBAND_HISTORY_RESTART_BACKOFF_MAX_S", None,
           "a child that keeps dying is restarted after at most this long", applies=CHILD),
    Option("supervisor.stop_timeout_s", 30.0, values.number(0.1, 3600), "LINKBAND_HISTORY_STOP_TIMEOUT_S",
           None, "how long a child may take to drain and stop before it is killed", applies=CHILD),
    Option("supervisor.writer_hang_s", 30.0, values.number(0, 86400), "LINKBAND_HISTORY_WRITER_HANG_S", None,
           "a writer without a heartbeat this long is hung: killed (SIGKILL) and restarted; 0: never", applies=LIVE),
    Option("supervisor.child_hang_s", 120.0, values.number(0, 86400), "LINKBAND_HISTORY_CHILD_HANG_S", None,
           "the same for the query process and the scheduler; 0: never", applies=CHILD),
    Option("dataset.dir", "", values.string, "LINKBAND_HISTORY_DATASET_DIR", None,
           "root of the Parquet dataset the scheduler writes every kind into (shared by many "
           "machines); empty: no dataset. Needs the [dataset] extra", applies=CHILD),
    Option("dataset.host", "", _host_name, "LINKBAND_HISTORY_DATASET_HOST", None,
           "this machine's name in the dataset (host=<name>); empty: the host name", applies=CHILD),
    Option("dataset.interval_s", 3600.0, values.number(10, 7 * 86400), "LINKBAND_HISTORY_DATASET_INTERVAL_S",
           None, "how often new rows go into the dataset", applies=CHILD),
    Option("dataset.rows_per_part", 1_000_000, values.integer(1000, 100_000_000),
           "LINKBAND_HISTORY_DATASET_ROWS_PER_PART", None, "most rows in one part file", applies=CHILD),
)
BY_KEY = {o.key: o for o in OPTIONS}
# the typed sections (settings.py), bound here so a spawned child can unpickle them
SECTIONS = make_sections({o.key: o.default for o in OPTIONS}, __name__)
globals().update({cls.__name__: cls for cls in SECTIONS.values()})


def defaults() -> dict:
    return {o.key: o.default for o in OPTIONS}


def flatten_toml(data: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(flatten_toml(v, key + "."))
        else:
            flat[key] = v
    return flat


def load(config_file: str | None = None, environ: dict | None = None,
         cli: dict | None = None) -> Settings:
    """Resolve the configuration into frozen settings; raise ConfigError on the first
    bad value."""
    environ = os.environ if environ is None else environ
    given: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_file:
        try:
            with open(config_file, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from None
        for key, v in flatten_toml(data).items():
            if key not in BY_KEY:
                raise ConfigError(f"{key}: unknown key (in {config_file})")
            given[key], sources[key] = v, f"in {config_file}"
    for o in OPTIONS:
        if o.env in environ:
            given[o.key], sources[o.key] = environ[o.env], f"from environment {o.env}"
    for key, v in (cli or {}).items():
        if v is not None:
            o = BY_KEY[key]
            given[key], sources[key] = v, f"from command line {o.flag or key}"
    cfg = defaults()
    for key, v in given.items():
        try:
            cfg[key] = BY_KEY[key].parse(v)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}, got {v!r} ({sources[key]})") from None
    return Settings.from_flat(finish(cfg), SECTIONS)


def finish(cfg: dict) -> dict:
    """Fill in the derived defaults (``settings.DERIVED`` and the empty options that
    default to a place) of the resolved ``"section.name"`` values and check the
    combination."""
    # under systemd, StateDirectory= and RuntimeDirectory= name the places
    if not cfg["daemon.data_dir"]:
        cfg["daemon.data_dir"] = os.environ.get("STATE_DIRECTORY") or default_data_dir()
    # one runtime directory per data directory: a client finds it with
    # endpoints.runtime_dir_for(data_dir), and two daemons never share sockets
    if not cfg["daemon.runtime_dir"]:
        cfg["daemon.runtime_dir"] = (os.environ.get("RUNTIME_DIRECTORY")
                                     or runtime_dir_for(cfg["daemon.data_dir"]))
    for name in ("ingest", "query", "events"):
        key = f"{name}.endpoint"
        if not cfg[key]:
            cfg[key] = default_endpoint(name, cfg["daemon.runtime_dir"])
    if cfg["http.enabled"] and not cfg["security.allow_remote"] and \
            not is_loopback(f"tcp://{cfg['http.host']}:{cfg['http.port']}"):
        raise ConfigError(f"http.host: {cfg['http.host']} is not a loopback address; set "
                          "security.allow_remote = true to bind it")
    # internal sockets between the daemon's own processes: never configurable to
    # anything but the owner-only runtime directory (or loopback, with CURVE, where
    # libzmq has no ipc://)
    cfg["daemon.control_endpoint"] = default_endpoint("control", cfg["daemon.runtime_dir"])
    cfg["daemon.scheduler_endpoint"] = default_endpoint("scheduler", cfg["daemon.runtime_dir"])
    _check_security(cfg)
    seen = {}
    for key in ("ingest.endpoint", "query.endpoint", "events.endpoint", "security.admin_endpoint"):
        if not cfg[key]:
            continue
        if cfg[key] in seen:
            raise ConfigError(f"{key}: must differ from {seen[cfg[key]]}")
        seen[cfg[key]] = key
    _check_ipc_paths(cfg)
    cfg["daemon.db_path"] = os.path.join(cfg["daemon.data_dir"], cfg["daemon.database_file"])
    if not cfg["archive.dir"]:
        cfg["archive.dir"] = os.path.join(cfg["daemon.data_dir"], "archives")
    if cfg["dataset.dir"]:
        cfg["dataset.dir"] = os.path.abspath(cfg["dataset.dir"])
    if not cfg["dataset.host"]:
        # a host name with other characters (spaces, unicode) keeps its safe ones
        name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-._")[:64]
        cfg["dataset.host"] = name or "host"
    return cfg


SOCKET_KEYS = ("ingest.endpoint", "query.endpoint", "events.endpoint", "security.admin_endpoint",
               "daemon.control_endpoint", "daemon.scheduler_endpoint")


def _check_ipc_paths(cfg: dict) -> None:
    # the query process's socket to its workers has the longest name in the runtime dir
    workers = "ipc://" + os.path.join(cfg["daemon.runtime_dir"], "query-workers.sock")
    for key, value in [*((k, cfg.get(k) or "") for k in SOCKET_KEYS),
                       ("daemon.runtime_dir", workers if IPC_SUPPORTED else "")]:
        if value.startswith("ipc://") and len(os.fsencode(value[len("ipc://"):])) > MAX_IPC_PATH:
            raise ConfigError(f"{key}: the socket path {value[len('ipc://'):]} is longer than the "
                              f"{MAX_IPC_PATH} bytes a unix socket path may have; give a shorter "
                              "--runtime-dir (daemon.runtime_dir)")


def _check_security(cfg: dict) -> None:
    """A non-loopback endpoint needs CurveZMQ keys; the keys must be usable and private.
    A tcp:// endpoint without configured keys gets the user's own (``security.curve_own``)."""
    server_key, authorized = cfg["security.curve_server_key"], cfg["security.curve_authorized_dir"]
    public = ("ingest.endpoint", "query.endpoint", "events.endpoint", "security.admin_endpoint")
    for key in public:
        if cfg[key] and not is_loopback(cfg[key]) and not (server_key and authorized):
            raise ConfigError(
                f"{key}: {cfg[key]} is not a loopback or ipc:// address; binding it needs CurveZMQ "
                "keys: set security.curve_server_key and security.curve_authorized_dir "
                "(linkband-history keygen writes them)")
    if not server_key and (authorized or cfg["security.admin_keys_dir"]):
        which = "curve_authorized_dir" if authorized else "admin_keys_dir"
        raise ConfigError(f"security.{which} needs security.curve_server_key")
    cfg["security.curve_own"] = False
    if not server_key:
        if not any((cfg.get(k) or "").startswith("tcp://") for k in SOCKET_KEYS):
            return
        # loopback tcp:// is reachable by every local user: CURVE with the user's own
        # keys (made by the supervisor at start, picked up by the user's clients)
        own = curve_keys.own_paths()
        cfg["security.curve_server_key"] = own["server_secret"]
        cfg["security.curve_authorized_dir"] = own["authorized"]
        cfg["security.curve_own"] = True
        return
    if not authorized:
        raise ConfigError("security.curve_server_key needs security.curve_authorized_dir "
                          "(the public keys of the clients to accept)")
    import zmq
    import zmq.auth
    if not zmq.has("curve"):
        raise ConfigError("security.curve_server_key: this libzmq has no CURVE support")
    path = cfg["security.curve_server_key"] = os.path.abspath(server_key)
    try:
        st = os.stat(path)
        _, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"security.curve_server_key: {path}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    if not secret:
        raise ConfigError(f"security.curve_server_key: {path} holds no secret key (give the "
                          ".key_secret file)")
    if hasattr(os, "getuid") and st.st_mode & 0o077:
        raise ConfigError(f"security.curve_server_key: {path} is accessible by other users "
                          f"(mode {st.st_mode & 0o777:o}); chmod 600 it")
    for key in ("security.curve_authorized_dir", "security.admin_keys_dir"):
        if not cfg[key]:
            continue
        cfg[key] = os.path.abspath(cfg[key])
        _check_key_dir(key, cfg[key])
        try:
            zmq.auth.load_certificates(cfg[key])
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{key}: {exc}") from None


def _check_key_dir(key: str, path: str) -> None:
    """Whoever may write a key directory (or a key in it) decides who gets in: only
    its owner (this user or root) may."""
    if not hasattr(os, "getuid"):
        return
    for p in [path, *glob.glob(os.path.join(glob.escape(path), "*.key"))]:
        try:
            st = os.stat(p)
        except OSError as exc:
            raise ConfigError(f"{key}: {p}: {exc.strerror}") from None
        if st.st_uid not in (0, os.getuid()):
            raise ConfigError(f"{key}: {p} belongs to {owner(st.st_uid)}; it must be yours")
        if st.st_mode & 0o022:
            raise ConfigError(f"{key}: {p} is writable by other users (mode "
                              f"{stat.S_IMODE(st.st_mode):o}): anyone could authorize a key; "
                              "chmod go-w it")


def reload_file(settings: Settings) -> Settings:
    """The configuration as a reload reads it: the same file and command line the
    daemon started with (``daemon.config_file``, ``daemon.cli``), the environment now."""
    return load(settings.daemon.config_file, cli=settings.daemon.cli)


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload from one configuration to the next does, as each option declares."""
    live: tuple[str, ...]                   # applied in the running processes
    children: dict                          # child name -> the changed options it restarts for
    kept: tuple[str, ...]                   # need a daemon restart; their old values stay

    def applied(self, old: Settings, new: Settings) -> Settings:
        """``old`` with every changed option but the ``kept`` ones taken from ``new``."""
        changed = self.live + tuple(k for keys in self.children.values() for k in keys)
        return old.updated({key: new.lookup(key) for key in changed})

    def as_reply(self) -> dict:
        return {"applied_live": list(self.live),
                "restarted": {name: list(keys) for name, keys in self.children.items()},
                "need_restart": list(self.kept)}


def reload_plan(old: Settings, new: Settings) -> ReloadPlan:
    live, kept, children = [], [], {}
    for o in OPTIONS:
        if old.lookup(o.key) == new.lookup(o.key):
            continue
        if o.applies == RESTART:
            kept.append(o.key)
        elif o.applies == LIVE:
            live.append(o.key)
        else:
            for name in o.children:
                children.setdefault(name, []).append(o.key)
    return ReloadPlan(tuple(live), children, tuple(kept))
