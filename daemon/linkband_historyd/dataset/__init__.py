"""Open datasets: every kind of record as Parquet in a Hive-partitioned tree.

``layout`` names the tree and the columns of its files (no third-party import),
``part_files`` writes the files of one part atomically (pyarrow), ``exporter``
moves the rows past each kind's watermark into new parts and repairs a part a
crash left without its watermark. pyarrow is an optional dependency (the
``[dataset]`` extra): it is imported only when a dataset is written, and
:func:`missing_dependency` tells the supervisor at start whether it is there.
"""
from __future__ import annotations

INSTALL_HINT = "pip install 'linkband-history[dataset]'"


def missing_dependency() -> str | None:
    """Why a dataset cannot be written here, or None when it can."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        return f"the dataset needs pyarrow ({exc}): {INSTALL_HINT}"
    return None
