"""The skeleton every child process of the daemon shares.

initialize -> loop until the stop flag -> shutdown. Signal handlers only set
flags: SIGTERM asks for an orderly stop; SIGINT is ignored, because a Ctrl-C in
a terminal reaches the whole process group and the supervisor decides the
order in which its children stop. A child whose supervisor has died stops by
itself, so no orphan keeps holding the sockets.

Every child proves it is alive: :meth:`Child.beat` stores the time in a
shared ``RawValue`` the supervisor gave it (``run_child``), once per pass of
the loop (at least every ``tick`` while idle) and wherever a long operation
runs (the writer: from SQLite's progress handler). The supervisor kills a child
whose heartbeat stops (``supervisor.writer_hang_s``, ``supervisor.child_hang_s``)
and restarts it. A ``RawValue`` has no lock, so a frozen child can never block
the supervisor reading it.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time

from linkband_historyd.processes.proctitle import role_of_this_child, set_title
from linkband_historyd.security import curve_auth
from linkband_historyd.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format=LOG_FORMAT, force=True)


class Child:
    """Subclasses set ``name`` and implement initialize / loop_once / shutdown.

    ``loop_once`` must return within about ``tick`` seconds so the flags are
    seen promptly.
    """

    name = "child"
    tick = 0.1
    beats = True                           # the supervisor watches its heartbeat
    heartbeat = None                       # a multiprocessing RawValue("d"), set by run_child

    def __init__(self, cfg: Settings, ready=None):
        self.cfg = cfg
        self.ready = ready                 # a ReadyFlag set after initialize
        self.stop_requested = False
        self.log = logging.getLogger(f"linkband_historyd.{self.name}")
        self._parent = os.getppid()

    # -- the skeleton ------------------------------------------------------
    def run(self) -> None:
        setup_logging(self.cfg.daemon.log_level)
        os.umask(0o077)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            curve_auth.configure(self.cfg)              # before any public socket is bound
            self.initialize()
        except (OSError, RuntimeError) as exc:     # a refused bind, a locked data dir...
            self.log.error("%s cannot start: %s", self.name, exc)
            raise SystemExit(1) from None
        self.beat()
        if self.ready is not None:
            self.ready.set()
        self.log.debug("%s ready (pid %d)", self.name, os.getpid())
        try:
            while not self.stop_requested:
                if self.parent_gone():
                    self.log.warning("supervisor is gone; stopping")
                    break
                self.beat()
                self.loop_once()
        finally:
            self.shutdown()
            self.log.debug("%s stopped", self.name)

    def beat(self) -> None:
        """Tell the supervisor this process is alive (cheap: one shared double)."""
        hb = self.heartbeat
        if hb is not None:
            hb.value = time.monotonic()

    def parent_gone(self) -> bool:
        if os.getppid() != self._parent:
            return True
        # Windows never reparents an orphan (getppid goes on naming the dead parent):
        # multiprocessing's sentinel of the parent process tells on every platform
        parent = multiprocessing.parent_process()
        return parent is not None and not parent.is_alive()

    def _on_term(self, signum, frame) -> None:
        self.stop_requested = True

    # -- to implement ------------------------------------------------------
    def initialize(self) -> None:
        raise NotImplementedError

    def loop_once(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass


class ReadyFlag:
    """Set by a child once it serves, polled by the supervisor: one shared byte, no
    lock. (A multiprocessing.Event's set() blocked forever in a child whose
    supervisor had been killed inside Event.wait(): bench/faults.py --kills 200.)"""

    def __init__(self, ctx):
        self._value = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)


def run_child(cls, cfg: Settings, ready=None, heartbeat=None, parent: int | None = None) -> None:
    """multiprocessing target: build the child in the new process and run it.
    ``parent``: the supervisor's pid, given by the supervisor itself: a child whose
    supervisor was killed while starting it would otherwise take init for its parent
    and never notice (bench/faults.py --kills 200 found such an orphan)."""
    set_title(role_of_this_child())
    child = cls(cfg, ready)
    if parent is not None:
        child._parent = parent
    if heartbeat is not None:
        child.heartbeat = heartbeat
    child.run()
