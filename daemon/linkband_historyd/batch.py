"""Batch: the frames received since the last commit, and their accounting.

Decoding happens per *message*, never per record: the rows of each kind are
extended straight from the decoded payload and handed to SQLite as they are.
Per client, the batch tracks the sequence number, the running record count
(``rec0``) and what happened to each record: stored, rejected (by reason),
lost in a gap, or a duplicate message. Client state is copied on first touch,
so a transaction that fails leaves the committed state untouched.
"""
from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, astuple, replace

from linkband_history.protocol import KINDS, ProtocolError, decode_message


@dataclass
class ClientState:
    client_id: str
    first_seen: float
    last_seen: float
    last_seq: int = 0
    records_next: int = 0
    stored: int = 0
    rejected: int = 0
    lost_records: int = 0
    lost_messages: int = 0
    duplicates: int = 0
    client_dropped: int = 0

    def row(self) -> tuple:
        return astuple(self)


class Batch:
    def __init__(self, clients: dict[str, ClientState]):
        self._committed = clients
        self.clients: dict[str, ClientState] = {}      # touched in this batch (copies)
        self.rows: dict[str, list] = {k: [] for k in KINDS}
        self.stored: Counter = Counter()                # per kind, after rejects
        self._owners: dict[str, tuple[list, list]] = {k: ([], []) for k in KINDS}
        self.rejects: Counter = Counter()               # reason -> records (or frames)
        self.records = 0
        self.messages = 0
        self.sent_at: list[float] = []                  # client send times, for latency
        self.new_alerts: list[dict] = []                # alerts stored by this batch
        self.received_at = time.time()

    def _state(self, client_id: str, now: float) -> ClientState:
        st = self.clients.get(client_id)
        if st is None:
            old = self._committed.get(client_id)
            st = replace(old) if old is not None else ClientState(client_id, now, now)
            self.clients[client_id] = st
        return st

    def add(self, frame: bytes) -> None:
        self.messages += 1
        try:
            header, payload = decode_message(frame)
        except ProtocolError as exc:
            self.rejects[str(exc).split(":", 1)[0]] += 1
            return
        client_id, seq, sent_at, rec0, dropped = header
        st = self._state(client_id, self.received_at)
        st.last_seen = self.received_at
        if seq <= st.last_seq:
            st.duplicates += 1
            self.rejects["duplicate_message"] += 1
            return
        if seq > st.last_seq + 1:
            st.lost_messages += seq - st.last_seq - 1
        if rec0 > st.records_next:
            st.lost_records += rec0 - st.records_next
        n = 0
        for kind, rows in payload.items():
            target = self.rows.get(kind)
            if target is None or not isinstance(rows, list):
                bad = len(rows) if isinstance(rows, list) else 1
                self.rejects["unknown_kind"] += bad
                st.rejected += bad
                n += bad
                continue
            starts, owners = self._owners[kind]
            starts.append(len(target))
            owners.append(st)
            target.extend(rows)
            n += len(rows)
            st.stored += len(rows)
            self.stored[kind] += len(rows)
        self.sent_at.append(sent_at)
        st.last_seq = seq
        st.records_next = rec0 + n
        st.client_dropped = max(st.client_dropped, dropped)
        self.records += n

    def reject(self, kind: str, index: int, reason: str) -> None:
        """Row ``index`` of ``kind`` was refused by the database."""
        starts, owners = self._owners[kind]
        st = owners[bisect.bisect_right(starts, index) - 1]
        st.stored -= 1
        st.rejected += 1
        self.stored[kind] -= 1
        self.rejects[reason] += 1

    def committed(self) -> None:
        """The transaction is durable: make the copies the committed state."""
        self._committed.update(self.clients)
