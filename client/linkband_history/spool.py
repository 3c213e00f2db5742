"""The client's on-disk spool: messages the daemon could not take yet.

:class:`~linkband_history.HistoryClient` uses one when given ``spool_dir``.
The constructor opens it (creates the directory, takes its lock, lists the
segments); every read and write after that happens in the client's sender
thread, so ``store_*`` never waits for the disk.

Layout: ``<spool_dir>/LOCK`` and segment files ``<number>.seg``, numbered in
the order they were started (the directory 0700, the files 0600, whatever the
umask); a segment is ``MAGIC`` followed by records::

    record = size u32 | crc u32 | records u32 | dropped u64 | message   (little-endian)

``message`` is one ingest message exactly as it goes on the wire
(:mod:`.protocol`), ``records`` how many records it holds, ``dropped`` its
header's ``dropped`` field, ``crc`` the CRC32 of everything after it. A record
cut short or failing its CRC (the process or the machine died in the middle of
a write) ends its segment: replay goes on with the next one and counts it in
``torn``. Writes are not fsync'ed: a crash of the process loses nothing, a
power loss may tear the tail.

Identity: every segment has a client id of its own (``<client id>.<number>``)
and numbers its messages 1, 2, 3 ..., with ``rec0`` counting its records. The
daemon counts a gap in a client's sequence as lost records; because no later
message carries a deleted segment's id, deleting the oldest segment leaves no
gap anywhere. Sending a segment twice (a crash between sending it and deleting
it, or a reconnect) repeats (client_id, seq) pairs, which the daemon stores once.

Bound: the segment files never hold more than ``max_bytes``. Before a message
is written the oldest segments are deleted until it fits; their records not
sent yet are counted as dropped, and the count goes into the ``dropped`` field
of the message being written (each segment id reports the drops made while it
was written, plus what a deleted segment had not reported yet), so the
daemon's ``stats`` show, for a spool, stored + dropped = records written.
"""
from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path


from .endpoints import owner
from .protocol import message_from_body

__all__ = ["Spool"]

MAGIC = b"LBHSPL1\n"
_REC = struct.Struct("<IIIQ")            # size, crc, records, dropped
_HEADER_MAX = 128                        # an encoded message header is shorter than this
_BINARY = getattr(os, "O_BINARY", 0)        # Windows: no newline translation


class _Segment:
    __slots__ = ("number", "path", "size", "file", "client_id", "seq", "rec", "dropped")

    def __init__(self, number: int, path: Path, size: int):
        self.number, self.path, self.size = number, path, size
        self.file = None                     # open for appending while it is the one written
        self.client_id, self.seq, self.rec, self.dropped = "", 0, 0, 0


class Spool:
    """Write with :meth:`add`; replay with :meth:`next_message` and :meth:`sent`;
    delete what was committed with :meth:`seal_sent` and :meth:`release`."""

    def __init__(self, directory, max_bytes: int = 64 << 20, *, client_id: str = "spool",
                 segment_bytes: int | None = None):
        if max_bytes < 4096:
            raise ValueError("spool_max_bytes must be at least 4096")
        self.directory = Path(directory)
        _private_dir(self.directory)
        self._lock = _lock(self.directory / "LOCK")
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes or min(max(max_bytes // 8, 64 << 10), 4 << 20),
                                 max_bytes)
        self._id = client_id[:48]
        self._segs: list[_Segment] = sorted(
            (_Segment(int(e.name[:-4]), Path(e.path), e.stat().st_size)
             for e in os.scandir(self.directory) if e.name.endswith(".seg") and e.name[:-4].isdigit()),
            key=lambda s: s.number)
        self.bytes = sum(s.size for s in self._segs)
        self._next = self._segs[-1].number + 1 if self._segs else 1
        self._cur: _Segment | None = None    # the segment being written
        self._rnum = self._segs[0].number if self._segs else self._next   # read position:
        self._roff = len(MAGIC)              # segment number and offset of the next record
        self._rdropped = 0                   # ``dropped`` of the last record sent from _rnum
        self._reader = None                  # (number, file)
        self._peeked = None
        self._written_at = 0.0
        self.dropped = 0                     # records deleted before they were sent
        self.torn = 0                        # segments whose tail was unreadable

    # -- writing ----------------------------------------------------------------
    def add(self, body: bytes, records: int) -> None:
        """Write one message of ``records`` records under the spool's own id;
        ``body`` is its packed payload (``protocol.pack_payload``). Raises
        OSError when the disk refuses (nothing is written then)."""
        size = _REC.size + _HEADER_MAX + len(body)
        refused = 0
        if size + len(MAGIC) > self.max_bytes:  # can never fit: count it, write a marker
            refused, records, body = records, 0, b"\x80"
            size = _REC.size + _HEADER_MAX + 1
        seg = self._room(size)
        seg.dropped += refused
        self.dropped += refused
        self._write(seg, message_from_body(seg.client_id, seg.seq + 1, time.time(), seg.rec,
                                           seg.dropped, body), records)

    def add_message(self, message: bytes, records: int) -> None:
        """Write a message already encoded under another id (kept as it is)."""
        if len(message) + _REC.size + len(MAGIC) > self.max_bytes:
            self.dropped += records
            return
        self._write(self._room(len(message) + _REC.size), message, records, own=False)

    def _room(self, size: int) -> _Segment:
        """The segment to write ``size`` bytes to, after deleting the oldest
        segments as needed (the bound holds at every moment)."""
        seg = self._cur
        if seg is not None and seg.size > len(MAGIC) and seg.size + size > self.segment_bytes:
            self._seal()
            seg = None
        need = size + (len(MAGIC) if seg is None else 0)
        carried = 0
        while self.bytes + need > self.max_bytes and self._segs and self._segs[0] is not seg:
            carried += self._delete_oldest()
        if seg is None:
            seg = self._start()
        seg.dropped += carried
        return seg

    def _start(self) -> _Segment:
        n, self._next = self._next, self._next + 1
        seg = _Segment(n, self.directory / f"{n:012d}.seg", len(MAGIC))
        seg.client_id = f"{self._id}.{n}"
        seg.file = open(os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o600),
                        "wb", buffering=0)
        seg.file.write(MAGIC)
        self._segs.append(seg)
        self.bytes += len(MAGIC)
        self._cur = seg
        return seg

    def _write(self, seg: _Segment, message: bytes, records: int, own: bool = True) -> None:
        """Append one record; ``own``: the message was numbered under ``seg``'s id."""
        dropped = seg.dropped if own else 0
        meta = _REC.pack(0, 0, records, dropped)[8:]
        data = _REC.pack(len(message), zlib.crc32(message, zlib.crc32(meta)), records,
                         dropped) + message
        try:
            if seg.file.write(data) != len(data):
                raise OSError("short write to the spool")
        except OSError:
            try:
                seg.file.truncate(seg.size)
            finally:
                self._seal()                 # never append after a bad spot
            raise
        seg.size += len(data)
        self.bytes += len(data)
        self._written_at = time.monotonic()
        if own:
            seg.seq += 1
            seg.rec += records

    def _seal(self) -> None:
        if self._cur is not None:
            self._cur.file.close()
            self._cur.file = None
            self._cur = None

    def _delete_oldest(self) -> int:
        """Delete the oldest segment; the drops to report in its place."""
        victim = self._segs[0]
        if victim is self._cur:
            self._seal()
        carried = 0
        if victim.number >= self._rnum:      # not (all) sent: count what was not
            start, said = (self._roff, self._rdropped) if victim.number == self._rnum else (len(MAGIC), 0)
            unsent = top = 0
            for _, records, dropped, _ in self._records(victim, start):
                unsent += records
                top = max(top, dropped)
            self.dropped += unsent
            carried = unsent + max(0, top - said)
            self._rnum, self._roff, self._rdropped, self._peeked = victim.number + 1, len(MAGIC), 0, None
        self._unlink(victim)
        return carried

    def _unlink(self, seg: _Segment) -> None:
        if self._reader is not None and self._reader[0] == seg.number:
            self._reader[1].close()
            self._reader = None
        self._segs.remove(seg)
        self.bytes -= seg.size
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass

    # -- replaying --------------------------------------------------------------
    def next_message(self):
        """``(message, records, segment number)`` of the oldest message not sent
        yet, or None; :meth:`sent` moves past it."""
        while True:
            seg = self._segment(self._rnum)
            if seg is None:
                return None
            for message, records, dropped, end in self._records(seg, self._roff, limit=1):
                self._peeked = (end, dropped)
                return message, records, seg.number
            if seg is self._cur and self._roff >= seg.size:
                return None                  # caught up with the writing
            if self._roff < seg.size:
                self.torn += 1
                if seg is self._cur:
                    self._seal()
            self._rnum, self._roff, self._rdropped = seg.number + 1, len(MAGIC), 0

    def sent(self) -> None:
        """The message :meth:`next_message` returned was handed to the socket."""
        if self._peeked is not None:
            self._roff, self._rdropped = self._peeked
            self._peeked = None

    def unsent(self) -> bool:
        """Whether some message (or an unread tail) was not sent yet."""
        last = self._segs[-1] if self._segs else None
        return last is not None and (self._rnum < last.number
                                     or (self._rnum == last.number and self._roff < last.size))

    writing = property(lambda self: self._cur is not None, doc="a segment is open for writing")

    def seal_sent(self, idle: float = 1.0) -> bool:
        """When everything was sent and nothing written for ``idle`` seconds,
        close the segment being written, so that it can be deleted once
        acknowledged; the next message starts a new segment (and id). Waiting
        keeps a client that the daemon refuses now and then (a full queue)
        from starting a segment, and a client id, each time. True if closed."""
        if self._cur is None or self.unsent() or time.monotonic() - self._written_at < idle:
            return False
        # Everything in it was sent: move the read position past it now. release()
        # deletes only segments below _rnum, and next_message() would advance it
        # only on its next call, after the caller's release() (the window may be
        # empty already, so no later ack would call release() again).
        self._rnum, self._roff, self._rdropped, self._peeked = (
            self._cur.number + 1, len(MAGIC), 0, None)
        self._seal()
        return True

    def release(self, before: int | None = None) -> None:
        """Delete the closed segments numbered below ``before`` whose messages
        were all sent (the caller knows the daemon committed them)."""
        limit = self._rnum if before is None else min(before, self._rnum)
        while self._segs and self._segs[0] is not self._cur and self._segs[0].number < limit:
            self._unlink(self._segs[0])

    def _segment(self, number: int) -> _Segment | None:
        return next((seg for seg in self._segs if seg.number == number), None)

    def _records(self, seg: _Segment, offset: int, limit: int = 0):
        """Yield ``(message, records, dropped, end offset)`` from ``offset`` on,
        stopping at the end, at a torn record, or after ``limit`` records."""
        if self._reader is None or self._reader[0] != seg.number:
            if self._reader is not None:
                self._reader[1].close()
            f = open(seg.path, "rb", buffering=0)
            self._reader = (seg.number, f, f.read(len(MAGIC)) == MAGIC)
        _, f, good = self._reader
        if not good:
            return
        count = 0
        while offset + _REC.size <= seg.size:
            f.seek(offset)
            head = f.read(_REC.size)
            size, crc, records, dropped = _REC.unpack(head)
            if offset + _REC.size + size > seg.size:
                return
            message = f.read(size)
            if len(message) != size or zlib.crc32(message, zlib.crc32(head[8:])) != crc:
                return
            offset += _REC.size + size
            yield message, records, dropped, offset
            count += 1
            if count == limit:
                return

    def close(self) -> None:
        self._seal()
        if self._reader is not None:
            self._reader[1].close()
        self._reader = None
        self._lock.close()


def _private_dir(directory: Path) -> None:
    """The spool directory 0700 and its files 0600, whatever the umask: the records
    (log lines) are the user's. Missing levels are made 0700; a directory of another
    user is refused (PermissionError naming the owner)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
    if hasattr(os, "getuid"):
        if st.st_uid != os.getuid():
            raise PermissionError(f"spool directory {directory} belongs to {owner(st.st_uid)}, "
                                  f"not to {owner(os.getuid())}")
        if st.st_mode & 0o077:
            os.chmod(directory, 0o700)
        for e in os.scandir(directory):          # files of an older version, or another umask
            if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mode & 0o077:
                os.chmod(e.path, 0o600)


def _lock(path: Path):
    """An exclusive lock on ``path`` for as long as the returned file is open."""
    f = open(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _BINARY, 0o600), "a+b")
    f.seek(0)
    try:
        if os.name == "nt":
            import msvcrt
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise RuntimeError(f"spool directory {path.parent} is in use by another process") from None
    return f
