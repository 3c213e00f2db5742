"""FTS segment merging in small steps, paced by the writer, never inside a commit.

FTS5 writes a new segment of ``logs_fts`` at every commit that indexes or
deletes log lines; with ``automerge`` on, the commit that tips a level over
then does the merge work itself. Under maintenance that made single commits
take tens to hundreds of milliseconds: deleting old log lines leaves tombstones
in big segments, and the merge that follows rewrites them (profiled on
``bench/maintenance.py``'s database). So ``automerge`` is 0 (schema migration 5)
and the writer merges here instead: one ``'merge'`` command at a time, in its
own transaction, between two ingest batches, and only while it used less than
``DUTY`` of the wall time since the previous step. A step's pages are sized on
the clock (``pacing.StepSize``: about ``STEP_S`` of work, at most ``MAX_PAGES``),
and a due step gives way to an ingest message that is waiting, for up to
``MAX_DEFER_S`` (so a steady stream cannot put merging off for ever). A merge
that changes nothing (but itself) means the index is merged as far as
``usermerge`` asks; steps resume when log lines are written or deleted again.
FTS5's ``crisismerge`` (16 segments on one level) still merges inside a commit
if these steps ever fall that far behind.
"""
from __future__ import annotations

import time

from linkband_historyd.storage.pacing import StepSize

PAGES = 8            # leaf pages of the first step (then sized on the clock)
MAX_PAGES = 32       # ... and of any step
STEP_S = 0.001       # a step's work
DUTY = 0.2           # at most this share of the writer's time goes to merging
MAX_DEFER_S = 0.25   # a due step waits for waiting ingest at most this long
MERGE = "INSERT INTO logs_fts (logs_fts, rank) VALUES ('merge', ?)"


class FtsMerger:
    def __init__(self, conn, pages: int = PAGES, duty: float = DUTY):
        self.conn = conn
        self.size = StepSize(STEP_S, pages, hi=MAX_PAGES)
        self.duty = duty
        self.pending = True          # merge what an earlier run left, if anything
        self.next_at = 0.0
        self.steps = 0
        self.seconds = 0.0

    def wrote(self) -> None:
        """Log lines were indexed or deleted: segments may need merging."""
        self.pending = True

    def step(self, waiting=None) -> bool:
        """One merge step if one is due and ``waiting()`` (ingest) does not say to give
        way; whether it ran."""
        if not self.pending:
            return False
        now = time.perf_counter()
        if now < self.next_at:
            return False
        if waiting is not None and now < self.next_at + MAX_DEFER_S and waiting():
            return False
        pages = self.size.units()
        before = self.conn.totalchanges()
        with self.conn:
            self.conn.execute(MERGE, (pages,))
        took = time.perf_counter() - now
        self.size.took(pages, took)
        self.steps += 1
        self.seconds += took
        self.next_at = now + took / self.duty
        if self.conn.totalchanges() - before <= 1:     # the command itself counts one
            self.pending = False
        return True
