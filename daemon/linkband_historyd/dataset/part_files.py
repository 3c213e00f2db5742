"""Writing the files of one part: a file per UTC date, each atomic.

Every file is written under a temporary name in its own directory, fsync'd, then
renamed to its final name (and the directory fsync'd), so a reader sees a whole
file or none. The files are renamed in the order their dates first appear among
the part's rows, which the export reads in id order: the file of the date of the
part's first row always comes first, so when any file of a part exists, that one
does (``exporter`` looks for it alone to repair a part cut short by a crash).

pyarrow is imported here, so only where a dataset is written (``[dataset]``).
"""
from __future__ import annotations

import errno
import os

import pyarrow as pa
import pyarrow.parquet as pq

from linkband_historyd.dataset import layout

# Fault injection for the tests of crash repair: the path of a file holding a
# count; after that many renames the process exits at once (and the file goes,
# so the restarted process runs normally).
FAULT_ENV = "LINKBAND_HISTORY_FAULT_DATASET_RENAMES"
COMPRESSION = "zstd"
# zstd 9: parts about an eighth smaller than at Arrow's default level, written many
# times faster than the archives' level 19 (bench/dataset.py)
COMPRESSION_LEVEL = 9
_ARROW = {"id": pa.int64(), "int": pa.int64(), "float": pa.float64(), "string": pa.string(),
          "json": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}
_DAY = 86_400


def arrow_schema(kind: str, meta: dict | None = None) -> pa.Schema:
    """The Arrow schema of ``kind``'s files (``layout.COLUMNS``)."""
    return pa.schema([pa.field(name, _ARROW[t], nullable=name not in layout.NOT_NULL)
                      for name, t in layout.COLUMNS[kind].items()], metadata=meta)


def read_metadata(path: str) -> dict[str, str]:
    """The ``linkband.*`` key-value metadata of a part file."""
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()
            if k.decode().startswith(layout.META_PREFIX)}


class PartFiles:
    """The files of one part (``kind`` rows ``first_id..last_id`` of ``host``)
    under ``root``. :meth:`write` takes rows (``id`` then the fields, as SQLite
    gives them) in id order, a row group at a time; :meth:`commit` makes the files
    appear; :meth:`abort` removes what was begun. ``mode``: the permission bits of
    the directories it makes (files get them without the execute bits). A file
    already there is an error unless ``replace`` (the part is being written again,
    after a crash)."""

    def __init__(self, root: str, kind: str, host: str, first_id: int, last_id: int,
                 token: str, mode: int = 0o700, replace: bool = False):
        self.root, self.kind, self.host, self.first_id = root, kind, host, first_id
        self.mode, self.replace = mode, replace
        self.schema = arrow_schema(kind, layout.metadata(kind, host, token, first_id, last_id))
        self.types = list(layout.COLUMNS[kind].values())
        self.open: dict[str, tuple] = {}         # date -> (temp path, final path, file, writer)
        self.rows = 0
        self._dates: dict[int, str] = {}

    # -- writing -----------------------------------------------------------------
    def write(self, rows: list) -> None:
        """One row group per date among ``rows``."""
        by_date: dict[str, list] = {}
        for row in rows:
            by_date.setdefault(self._date(row[1]), []).append(row)
        for date, group in by_date.items():
            self._writer(date).write_table(self._table(group))
        self.rows += len(rows)

    def _date(self, timestamp: float) -> str:
        day = int(timestamp // _DAY)
        date = self._dates.get(day)
        if date is None:
            date = self._dates[day] = layout.date_of(day * _DAY)
        return date

    def _table(self, rows: list) -> pa.Table:
        columns = []
        for values, t in zip(zip(*rows), self.types):
            if t == "timestamp":         # epoch seconds -> whole microseconds
                values = [None if v is None else round(v * 1_000_000) for v in values]
            columns.append(pa.array(values, _ARROW[t]))
        return pa.Table.from_arrays(columns, schema=self.schema)

    def _writer(self, date: str):
        if date not in self.open:
            directory = self._make_dirs(date)
            temp = os.path.join(directory, layout.temp_name(self.first_id))
            final = os.path.join(directory, layout.part_name(self.first_id))
            if not self.replace and os.path.exists(final):
                raise layout.DatasetError(
                    f"{final} is there already: another database wrote into this dataset "
                    f"under the host name {self.host}; give this machine another "
                    "dataset.host, or move those files away")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0),
                         self.mode & 0o666)
            if hasattr(os, "fchmod"):
                os.fchmod(fd, self.mode & 0o666)       # whatever the umask
            f = os.fdopen(fd, "wb")
            names = list(layout.COLUMNS[self.kind])
            # ids and times grow: their differences are small integers
            delta = [n for n in names if n in ("id", "timestamp")]
            writer = pq.ParquetWriter(f, self.schema, compression=COMPRESSION,
                                      compression_level=COMPRESSION_LEVEL,
                                      use_dictionary=[n for n in names if n in layout.REPEATING],
                                      column_encoding={n: "DELTA_BINARY_PACKED" for n in delta})
            self.open[date] = (temp, final, f, writer)
        return self.open[date][3]

    def _make_dirs(self, date: str) -> str:
        path = self.root
        for part in (f"kind={self.kind}", f"host={self.host}", f"date={date}"):
            path = os.path.join(path, part)
            try:
                os.mkdir(path, self.mode)
            except FileExistsError:
                continue
            if os.name == "posix":
                os.chmod(path, self.mode)              # whatever the umask
        return path

    # -- making them appear ------------------------------------------------------------
    def commit(self) -> list[str]:
        """Close, fsync and rename every file, the first date's first; their paths."""
        for temp, _final, f, writer in self.open.values():
            writer.close()
            f.flush()
            os.fsync(f.fileno())
            f.close()
        done = []
        for temp, final, _f, _w in self.open.values():
            os.replace(temp, final)
            _fsync_dir(os.path.dirname(final))
            done.append(final)
            _fault_after_rename()
        self.open.clear()
        return done

    def abort(self) -> None:
        for temp, _final, f, writer in self.open.values():
            try:
                writer.close()
            finally:
                f.close()
                os.remove(temp)
        self.open.clear()


def _fsync_dir(path: str) -> None:
    """Make a rename durable. Windows has no directory fsync; some network file
    systems refuse one (the rename is then as durable as they make it)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fault_after_rename() -> None:
    path = os.environ.get(FAULT_ENV)
    if not path:
        return
    try:
        with open(path) as f:
            left = int(f.read().strip() or 1) - 1
    except (OSError, ValueError):
        return
    if left > 0:
        with open(path, "w") as f:
            f.write(str(left))
        return
    os.remove(path)
    os._exit(70)
