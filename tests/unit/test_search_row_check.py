"""The search's row check by SQLite's ASCII ``lower()`` decides as the folded message
does, and the short-term expansion by ``logs_fts_terms`` finds every trigram the
index's row vocabulary lists, on real SQLite (the daemon's own schema and writer path)."""
from __future__ import annotations

import random
import sys

import apsw

from linkband_historyd.query import search
from linkband_historyd.storage import schema
from linkband_historyd.storage.row_store import RowStore


def test_the_characters_whose_lower_case_is_ascii_are_the_two_named():
    found = {chr(i) for i in range(128, sys.maxunicode + 1)
             if any(x.isascii() for x in chr(i).lower())}
    assert found == set(search.ASCII_FROM)


def test_no_character_lowers_into_the_caseless_ranges():
    into = {x for i in range(sys.maxunicode + 1) if chr(i).lower() != chr(i)
            for x in chr(i).lower()}
    assert not [x for x in into if search.CASELESS.match(x)]
    assert search.ascii_lower_decides("stream:eeg 연결 漢字") and not search.ascii_lower_decides("école")


PIECES = ["a", "A", "k", "K", "\u212a", "i", "I", "\u0130", "\u0307", "é", "É", "연", "결",
          "EEG", "eeg", ":", " ", "ß", "ẞ", "σ", "Σ", "ς"]


def test_the_row_check_decides_as_the_folded_message_on_random_text():
    conn = apsw.Connection(":memory:")
    conn.createscalarfunction("lbh_fold", search.fold, 1, deterministic=True)
    rng = random.Random(16)
    messages = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8))) for _ in range(400)]
    terms = sorted({search.fold("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3))))
                    for _ in range(300)} | {"k", "300k", "i", "eeg", "연결", "é"})
    fast = 0
    for term in terms:
        sql, *args = search.row_check(term, "m")
        fast += "lower(m)" in sql
        for m in messages:
            got = conn.execute(f"SELECT {sql} FROM (SELECT ? AS m)", args + [m]).fetchall()[0][0]
            assert bool(got) == (term in m.lower()), (term, m)
    assert fast > 30                                  # the fast form was the one checked


def test_a_short_term_expands_to_the_trigrams_the_row_vocabulary_lists(tmp_path):
    conn = schema.open_writer(str(tmp_path / "h.db"))
    rng = random.Random(3)
    words = ["연결이", "연결 ", "버퍼", "eeg", "EEG", "ab", "a", "é", "\u212a", "x y"]
    rows = [[1.7e9 + i, "INFO", "T", "".join(rng.choice(words) for _ in range(4)),
             None, None, None, None, None, None] for i in range(500)]
    with conn:
        RowStore(conn).add("log", rows)
    for term in ["연", "연결", "버", "e", "ee", "a", "ab", "x", "k", " ", "zz", "é"]:
        listed = [r[0] for r in conn.execute(
            "SELECT term FROM logs_fts_vocab WHERE term >= ? AND term < ?", (term, term + "\U0010ffff"))]
        assert search.expand(conn, term, 1000) == listed, term
        assert search.expand(conn, term, 2) == listed[:2]
    conn.close()
