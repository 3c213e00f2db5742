"""The short fault run: 24 SIGKILLs (the writer 6, the query process 11, the scheduler 1,
the supervisor 6) while 4 clients push (bench/faults.py runs the long one)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import faults  # noqa: E402


def test_sigkill_anything_loses_nothing_acknowledged(tmp_path):
    out = faults.run(tmp_path / "f", kills=24, clients=4, seed=7)
    assert out["integrity"] == "ok"
    assert out["problems"] == []
    # seed 7 draws these 24 kills; every one is made (none skipped while a child restarts)
    assert out["kills"] == {"writer": 6, "query": 11, "scheduler": 1, "supervisor": 6}
    assert all(sum(b - a for a, b in r["acked"]) > 0 for r in out["clients"])
