"""The daemon's CPU priority: below the programs whose history it keeps.

On a laptop the SDK streams and processes EEG in real time, and the daemon only
stores what it is sent: when both want a core, the SDK's threads should win, and
the daemon catch up a moment later (records wait in ZeroMQ's queues, nothing is
lost). Netdata takes the same stance (it runs niced, or at the idle policy, by
default). The supervisor lowers its own priority once, at start, before it starts
any child: every child inherits it, on POSIX (the nice value) as on Windows (the
below-normal and idle priority classes are inherited by child processes).

Only ever lowered: a daemon started at a lower priority than asked keeps it, and
no privilege is needed.
"""
from __future__ import annotations

import os

import psutil


def lower_priority(nice: int) -> int | None:
    """Lower this process's CPU priority to the POSIX nice value ``nice`` (0: leave
    it); on Windows, any ``nice`` > 0 is the below-normal priority class and
    ``nice`` >= 15 the idle class. Returns the nice value now in force (None on
    Windows)."""
    if hasattr(os, "getpriority"):
        now = os.getpriority(os.PRIO_PROCESS, 0)
        if nice > now:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        return os.getpriority(os.PRIO_PROCESS, 0)
    if nice > 0 and hasattr(psutil, "BELOW_NORMAL_PRIORITY_CLASS"):
        wanted = psutil.IDLE_PRIORITY_CLASS if nice >= 15 else psutil.BELOW_NORMAL_PRIORITY_CLASS
        me = psutil.Process()
        if me.nice() not in (psutil.IDLE_PRIORITY_CLASS, wanted):    # never raise it
            me.nice(wanted)
    return None
