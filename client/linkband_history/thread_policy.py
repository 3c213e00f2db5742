"""The client's background threads never take the CPU from the thread that logs.

``store_*`` and the logging handler wake the sender thread when a batch is
due. On Linux a woken thread may preempt the thread running on that core:
the SDK's streaming thread, in the middle of its work, for a sender that
then only waits for the GIL the streaming thread holds, and on a busy
machine the core may then go to another runnable task until the next
scheduler tick, milliseconds later (a ``perf sched`` trace of
``bench/logging_cost.py`` showed exactly this chain behind its slowest
``logger.info`` calls). Threads under ``SCHED_BATCH`` never preempt anyone
when they wake: they run when a core is free, when the thread they would
have preempted blocks or sleeps, or at the next tick. Their share of the CPU
is unchanged (the nice value is kept), so a busy sender is never starved.
The sender switches itself to it before it opens its first socket, so the
ZeroMQ I/O thread that socket starts inherits it too.

Where the policy does not exist (macOS, Windows) or is refused, nothing
changes.
"""
from __future__ import annotations

import os

__all__ = ["stay_behind_callers"]


def stay_behind_callers() -> bool:
    """Put the calling thread (and the threads it starts from now on) under
    ``SCHED_BATCH``; whether it is under it now."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:                     # e.g. a libc without it, or a sandbox refusing it
        return False
    return True
