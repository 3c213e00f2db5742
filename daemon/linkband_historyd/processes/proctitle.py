"""Process titles: ``linkband-historyd: writer`` and its siblings in ps and top.

Every child is started by multiprocessing's spawn, so without a title ``ps``
shows each as ``python -B -c from multiprocessing.spawn import spawn_main ...``
and nobody can tell the writer from the scheduler. ``setproctitle`` (the
``proctitle`` extra) rewrites the command line the system shows; where it is
not installed (it has a C extension) the title is simply not set.
"""
from __future__ import annotations

import multiprocessing

PREFIX = "linkband-historyd"


def set_title(role: str) -> bool:
    """Show this process as ``linkband-historyd: ROLE``; False where that cannot be done."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return False
    setproctitle(f"{PREFIX}: {role}")
    return True


def role_of_this_child() -> str:
    """The role a child plays, from the name its parent gave the multiprocessing
    Process (``linkband-historyd-query-worker-2`` -> ``query worker 2``)."""
    name = multiprocessing.current_process().name
    if name.startswith(PREFIX + "-"):
        name = name[len(PREFIX) + 1:]
    return name.replace("-", " ")
