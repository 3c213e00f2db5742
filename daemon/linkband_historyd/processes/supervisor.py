"""linkband-historyd: the supervisor of the daemon's processes.

It resolves the configuration (a bad value exits 2 before anything is bound),
starts the writer and waits until it has the database open and its socket
bound, then starts the query process; it restarts a child that dies
unexpectedly, with back-off, kills and restarts one whose heartbeat stopped
(hung: ``supervisor.writer_hang_s``, ``supervisor.child_hang_s``), and on
SIGTERM or SIGINT (or, with ``--stop-with-parent``, the end of its standard input)
stops them in order:
first the query process, then the writer, which drains everything already
received and commits. Signal handlers only set a flag; the one shutdown path
runs in the main loop. No double fork, no pid file: run it in the foreground
under systemd, launchd or the SDK's process manager.

``--stop-with-parent`` is for a daemon started by the program embedding it
(``linkband_history.embed``): that program holds the write end of the daemon's
standard input, so when it exits or dies, even by SIGKILL, the pipe reaches its
end and the daemon stops in order. A pipe, rather than a parent pid or Linux's
PR_SET_PDEATHSIG, because it works the same on Windows and macOS.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import click

from linkband_history.curve_keys import ensure_own_keys
from linkband_historyd import config as config_mod
from linkband_historyd.processes.priority import lower_priority
from linkband_historyd.processes.proctitle import set_title
from linkband_historyd.processes.query_server import QueryServer
from linkband_historyd.processes.scheduler import Scheduler
from linkband_historyd.processes.skeleton import ReadyFlag, run_child, setup_logging
from linkband_historyd.processes.systemd_notify import notify, watchdog_interval
from linkband_historyd.processes.writer import Writer
from linkband_historyd.security import curve_auth
from linkband_historyd.security.sockets import SocketInUse, check_not_live, prepare_runtime_dir
from linkband_historyd.settings import Settings
from linkband_historyd.writer_client import WriterClient

log = logging.getLogger("linkband_historyd.processes.supervisor")

READY_TIMEOUT = 60.0
STABLE_AFTER = 60.0            # a child that ran this long resets its back-off
SELF_STALL_S = 2.0             # the supervisor's own loop paused this long (suspend, SIGSTOP):
                               # no hang verdict until the children had time to beat again


@dataclass
class Slot:
    name: str
    cls: type
    proc: multiprocessing.Process | None = None
    ready: object = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = 0.0
    restart_at: float | None = None
    history: list = field(default_factory=list)
    heartbeat: object = None       # RawValue("d") the child sets to time.monotonic()
    hb_value: float = 0.0          # the last value seen here ...
    hb_seen: float = 0.0           # ... and when it changed (the supervisor's clock)
    hangs: int = 0


class Supervisor:
    def __init__(self, cfg: Settings, reload_config=None):
        self.cfg = cfg
        self.reload_config = reload_config        # () -> a fresh cfg, for SIGHUP
        self.reload_requested = False
        self.mp = multiprocessing.get_context("spawn")
        # start order; stop order is the reverse: the writer starts first and stops last
        self.ORDER = [("writer", Writer), ("query", QueryServer)]
        if cfg.scheduler.enabled:
            self.ORDER.append(("scheduler", Scheduler))
        if cfg.http.enabled:
            from linkband_historyd.http.app import HttpChild# only with the [http] extra installed
            self.ORDER.append(("http", HttpChild))
        self.slots = {name: Slot(name, cls) for name, cls in self.ORDER}
        self.stop_requested = False
        self._last_check = time.monotonic()

    # -- signals become the one stop path ----------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.stop_requested = True

    def _on_hup(self, signum, frame) -> None:
        self.reload_requested = True

    def watch_stdin(self) -> None:
        """Stop once standard input ends: the embedding program is gone."""
        def watch():
            # os.read on the descriptor, not sys.stdin: a thread blocked inside a buffered
            # reader's lock aborts the interpreter's shutdown (_enter_buffered_busy)
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            log.info("the program that started the daemon is gone (end of standard input); stopping")
            self.stop_requested = True
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_hup)

    # -- reload: each changed option as it declares (config.Option.applies) ------------
    def reload(self) -> None:
        self.reload_requested = False
        notify("RELOADING=1", "STATUS=reloading the configuration")
        try:
            new = self.reload_config() if self.reload_config else None
        except config_mod.ConfigError as exc:
            log.error("reload refused, the configuration stays as it was: %s", exc)
            notify("READY=1", f"STATUS=reload refused: {exc}")
            return
        if new is None:
            notify("READY=1")
            return
        plan = config_mod.reload_plan(self.cfg, new)
        if plan.kept:
            log.warning("reload: %s change only with a restart of the daemon; kept as they were",
                        ", ".join(plan.kept))
        self.cfg = plan.applied(self.cfg, new)
        setup_logging(self.cfg.daemon.log_level)
        self.reconfigure_writer()
        for name, keys in plan.children.items():      # the writer keeps ingesting meanwhile
            self.restart_for_reload(name, keys)
        log.info("configuration reloaded: %s live, %s restarted, %s need a daemon restart",
                 ", ".join(plan.live) or "nothing", ", ".join(plan.children) or "no child",
                 ", ".join(plan.kept) or "none")
        notify("READY=1", "STATUS=configuration reloaded")

    def reconfigure_writer(self) -> None:
        c = self.cfg
        try:
            WriterClient(c.daemon.control_endpoint, timeout=10).call(
                "reconfigure", log_level=c.daemon.log_level, batch_size=c.ingest.batch_size,
                batch_wait_ms=c.ingest.batch_wait_ms, max_page_count=c.storage.max_page_count,
                coalesce_ms=c.events.coalesce_ms)
        except Exception as exc:                  # the writer restarts with the new cfg anyway
            log.warning("reload: writer not reconfigured: %s", exc)

    def restart_for_reload(self, name: str, keys: list) -> None:
        slot = self.slots.get(name)
        if slot is None or slot.proc is None or not slot.proc.is_alive():
            return                                # not running: it starts with the new cfg
        log.info("reload: restarting %s for %s", name, ", ".join(keys))
        slot.proc.terminate()
        slot.proc.join(self.cfg.supervisor.stop_timeout_s)
        self.start(slot)
        self.wait_ready(slot)

    # -- children ----------------------------------------------------------------
    def start(self, slot: Slot) -> None:
        slot.ready = ReadyFlag(self.mp)
        # no lock: a frozen child must never block the supervisor reading its heartbeat
        slot.heartbeat = self.mp.RawValue("d", 0.0) if getattr(slot.cls, "beats", False) else None
        slot.proc = self.mp.Process(target=run_child,
                                    args=(slot.cls, self.cfg, slot.ready, slot.heartbeat,
                                          os.getpid()),
                                    name=f"linkband-historyd-{slot.name}", daemon=False)
        slot.proc.start()
        slot.started = slot.hb_seen = time.monotonic()
        slot.hb_value = 0.0
        slot.restart_at = None

    def wait_ready(self, slot: Slot) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and not self.stop_requested:
            if slot.ready.is_set():
                return True
            if not slot.proc.is_alive():
                return False
            time.sleep(0.02)
        return False

    def hang_limit(self, slot: Slot) -> float:
        s = self.cfg.supervisor
        return (s.writer_hang_s if slot.name == "writer" else s.child_hang_s) or 0.0

    def check_hangs(self, now: float) -> None:
        """Kill a child whose heartbeat has not moved for its hang limit; the
        restart path (check_children) then restarts it like any child that died. The time
        is the supervisor's own: it only compares a heartbeat with the last one
        it saw, so no clock is shared; a child still initializing (no beat yet)
        is never judged."""
        stalled = now - self._last_check > SELF_STALL_S
        self._last_check = now
        for slot in self.slots.values():
            hb = slot.heartbeat
            if hb is None or slot.proc is None or slot.restart_at is not None:
                continue
            value = hb.value
            if value != slot.hb_value or stalled:
                slot.hb_value, slot.hb_seen = value, now
                continue
            limit = self.hang_limit(slot)
            if not value or not limit or now - slot.hb_seen <= limit or not slot.proc.is_alive():
                continue
            slot.hangs += 1
            log.error("%s (pid %s) is hung: no heartbeat for %.1fs (limit %gs); killing it with "
                      "SIGKILL", slot.name, slot.proc.pid, now - slot.hb_seen, limit)
            slot.proc.kill()
            slot.proc.join(5)

    def check_children(self) -> None:
        now = time.monotonic()
        self.check_hangs(now)
        for slot in self.slots.values():
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    log.info("restarting %s (restart #%d)", slot.name, slot.restarts)
                    self.start(slot)
                continue
            if slot.proc is not None and not slot.proc.is_alive():
                code = slot.proc.exitcode
                ran = now - slot.started
                slot.backoff = 0.0 if ran > STABLE_AFTER else min(
                    max(slot.backoff * 2, 0.5), self.cfg.supervisor.restart_backoff_max_s)
                slot.restarts += 1
                slot.restart_at = now + (0.0 if slot.restarts == 1 or ran > STABLE_AFTER
                                         else slot.backoff)
                log.error("%s (pid %s) died with exit code %s after %.1fs; restarting in %.1fs",
                          slot.name, slot.proc.pid, code, ran, slot.restart_at - now)

    def stop_children(self) -> None:
        timeout = self.cfg.supervisor.stop_timeout_s
        for name, _ in reversed(self.ORDER):
            proc = self.slots[name].proc
            if proc is None or not proc.is_alive():
                continue
            proc.terminate()                        # SIGTERM: the child drains and stops
            proc.join(timeout)
            if proc.is_alive():
                log.error("%s did not stop within %.0fs; killing it", name, timeout)
                proc.kill()
                proc.join(5)

    # -- the main loop ----------------------------------------------------------
    def run(self) -> int:
        os.umask(0o077)
        self.install_signals()
        if not self.prepare():
            return 1
        try:
            for name, _ in self.ORDER:
                slot = self.slots[name]
                self.start(slot)
                if not self.wait_ready(slot):
                    if self.stop_requested:
                        return 0
                    log.error("%s failed to start (exit code %s)", name, slot.proc.exitcode)
                    return 1
            log.info("linkband-historyd ready: ingest %s, query %s, database %s",
                     self.cfg.ingest.endpoint, self.cfg.query.endpoint,
                     self.cfg.daemon.db_path)
            notify("READY=1", f"STATUS=ingest {self.cfg.ingest.endpoint}, "
                              f"query {self.cfg.query.endpoint}")
            ping_every = watchdog_interval()
            next_ping = 0.0
            while not self.stop_requested:
                time.sleep(0.1)
                self.check_children()
                if self.reload_requested:
                    self.reload()
                if ping_every and time.monotonic() >= next_ping and self.healthy():
                    notify("WATCHDOG=1")
                    next_ping = time.monotonic() + ping_every
            log.info("stopping")
            return 0
        finally:
            notify("STOPPING=1", "STATUS=stopping: draining the writer")
            self.stop_children()
            log.info("stopped")

    def prepare(self) -> bool:
        """The user's own CURVE keys (when a tcp:// endpoint has none configured), the
        runtime and data directories, and no live socket of another daemon in the way."""
        cfg = self.cfg
        try:
            if cfg.security.curve_own:
                ensure_own_keys()
            prepare_runtime_dir(cfg.daemon.runtime_dir)
            os.makedirs(cfg.daemon.data_dir, mode=0o700, exist_ok=True)
            for key in config_mod.SOCKET_KEYS:
                if cfg.lookup(key):
                    check_not_live(cfg.lookup(key))
            curve_auth.configure(cfg)             # the supervisor's own control client (reload)
        except SocketInUse as exc:
            log.error("refusing to start: %s", exc)
            return False
        except (OSError, RuntimeError) as exc:
            log.error("cannot prepare directories: %s", exc)
            return False
        return True

    def healthy(self) -> bool:
        """Worth a watchdog ping: the writer runs (other children restart on their own)."""
        w = self.slots["writer"]
        return w.proc is not None and w.proc.is_alive()


def _cli_options(fn):
    for o in reversed(config_mod.OPTIONS):
        if o.flag:
            fn = click.option(o.flag, o.key.replace(".", "__"), default=None, help=o.help)(fn)
    return fn


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML configuration file (see config/linkband-history.toml)")
@click.option("--print-config", is_flag=True, help="print the resolved configuration and exit")
@click.option("--stop-with-parent", is_flag=True, hidden=True,
              help="stop when standard input ends (the embedding program holds its other end)")
@_cli_options
def main(config_file, print_config, stop_with_parent=False, **cli):
    """Run the linkband-history daemon in the foreground."""
    try:
        cfg = config_mod.load(config_file, cli={k.replace("__", "."): v for k, v in cli.items()})
    except config_mod.ConfigError as exc:
        click.echo(f"linkband-historyd: configuration error: {exc}", err=True)
        sys.exit(2)
    if print_config:
        for key, value in sorted(cfg.items()):
            click.echo(f"{key} = {value!r}")
        return
    if cfg.http.enabled:
        try:
            import starlette  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            click.echo("linkband-historyd: http.enabled needs the HTTP gateway's packages: "
                       "pip install 'linkband-history[http]'", err=True)
            sys.exit(2)
    if cfg.dataset.dir:
        from linkband_historyd.dataset import missing_dependency
        if (why := missing_dependency()) is not None:
            click.echo(f"linkband-historyd: dataset.dir is set, but {why}", err=True)
            sys.exit(2)
    setup_logging(cfg.daemon.log_level)
    lower_priority(cfg.daemon.nice)       # before any child: they inherit it
    set_title("supervisor")          # here, not in Supervisor: an embedding program keeps its own
    # a reload (SIGHUP, or the reload command in the query process) reads the file and
    # command line again
    cfg = cfg.updated({"daemon.started_at": time.time(), "daemon.config_file": config_file,
                       "daemon.cli": {k.replace("__", "."): v for k, v in cli.items()
                                      if v is not None}})
    supervisor = Supervisor(cfg, lambda: config_mod.reload_file(cfg))
    if stop_with_parent:
        supervisor.watch_stdin()
    sys.exit(supervisor.run())


if __name__ == "__main__":
    main()
