"""Log search: user text to a safe FTS5 expression with substring semantics.

A query holds terms separated by spaces; ``"a quoted phrase"`` is one term. A
log line matches when every term occurs in its message, case-insensitively,
also inside a longer word: "연결" finds "디바이스 연결이 끊어졌습니다", "EEG"
finds "[STREAM:EEG]".

The index is FTS5's trigram tokenizer with ``detail=none``: it knows which lines
hold a trigram, not where. A term of three or more characters becomes the AND
of its trigrams (up to ``MAX_TRIGRAMS`` of them, spread over the term); the
lines that hold them all are candidates, and each candidate is checked on its
message (``instr(lbh_fold(message), term)``), so the answer is exact. Shorter terms cannot be asked of it directly, so each
message is indexed with two sentinel characters appended (schema.SENTINEL):
then every occurrence of a one- or two-character term is the *prefix* of an
indexed trigram, and the term becomes an OR of the trigrams in the index's term
list (``logs_fts_terms``) that start with it: still exact, still indexed. A
short term so common that it expands to more than ``MAX_EXPANSION`` trigrams
selects most of the table anyway; it is checked on the rows instead
(``instr(lbh_fold(message), term)``), newest first, where the page fills fast.

The trigrams that start with a short term are found in ``logs_fts_terms``, an
``fts5vocab`` table of type ``instance``: one probe per trigram (the first
instance of the next term at or after a bound), where the ``row`` type would
read every trigram's whole list of lines to count them.

The row check of a term is SQLite's own ``instr(lower(message), term)`` when
that decides the same as the folded message (:func:`row_check`): SQLite's
``lower()`` folds ASCII letters only, so this holds for a term of ASCII and
caseless characters (Hangul, CJK), except in a message that holds one of the
two characters whose lower case is ASCII (``İ``, the Kelvin sign ``K``), which
is checked on its folded message as before.

User text never reaches FTS5 unquoted: every term is a double-quoted string
with its quotes doubled, so no input can raise an FTS syntax error or change
the query's shape.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import apsw

MAX_EXPANSION = 400
MAX_TERMS = 16
# lists intersected per term: each more one is read along the whole range the page or
# the count covers, and removes few candidates the row check would not
MAX_TRIGRAMS = 4
_TOKEN = re.compile(r'"([^"]*)"?|(\S+)')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# the non-ASCII characters whose lower case holds an ASCII character (tests check it)
ASCII_FROM = "\u0130\u212a"
# characters no other character lowers to, besides ASCII: Hangul syllables and jamo,
# CJK ideographs, kana (tests check that nothing lowers into them)
CASELESS = re.compile("[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf"
                      "\u4e00-\u9fff\uac00-\ud7a3]")
TERMS = "SELECT term FROM logs_fts_terms WHERE term >= ? AND term < ? LIMIT 1"


def fold(text):
    """Case folding used on both sides of a row check (SQLite's lower() is ASCII-only)."""
    return text.lower() if isinstance(text, str) else text


def ascii_lower_decides(term: str) -> bool:
    """Whether SQLite's ASCII-only ``lower()`` finds ``term`` in a message exactly where
    :func:`fold` does (for a message without ``ASCII_FROM`` characters)."""
    return all(c.isascii() or CASELESS.match(c) for c in term)


def row_check(term: str, column: str = "l.message") -> tuple:
    """``(sql, *args)``: ``column`` holds ``term`` once folded (``term`` is folded)."""
    slow = f"instr(lbh_fold({column}), ?) > 0"
    if not ascii_lower_decides(term) or not _lower_is_ascii_only():
        return (slow, term)
    return (f"(instr(lower({column}), ?) > 0 OR ({column} GLOB '*[{ASCII_FROM}]*' AND {slow}))",
            term, term)


@functools.cache
def _lower_is_ascii_only() -> bool:
    """SQLite's lower() folds ASCII only unless SQLite was built with ICU."""
    conn = apsw.Connection(":memory:")
    try:
        return conn.execute("SELECT lower('\u00c9A')").fetchall()[0][0] == "\u00c9a"
    finally:
        conn.close()


def expand(conn, term: str, limit: int) -> list[str]:
    """The indexed trigrams that start with ``term``, at most ``limit``, in order."""
    out, low, high = [], term, term + "\U0010ffff"
    while len(out) < limit:
        found = conn.execute(TERMS, (low, high)).fetchall()
        if not found:
            break
        out.append(found[0][0])
        low = found[0][0] + "\x00"
    return out


def parse_terms(q: str) -> list[str]:
    terms = []
    for m in _TOKEN.finditer(q):
        t = m.group(1) if m.group(1) is not None else m.group(2)
        t = _CONTROL.sub("", t).strip().lower()
        if t and t not in terms:
            terms.append(t)
    return terms


def quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def trigrams(term: str) -> list[str]:
    """The distinct trigrams of ``term``, at most MAX_TRIGRAMS, first and last kept."""
    grams = list(dict.fromkeys(term[i:i + 3] for i in range(len(term) - 2)))
    if len(grams) > MAX_TRIGRAMS:
        step = (len(grams) - 1) / (MAX_TRIGRAMS - 1)
        grams = [grams[round(k * step)] for k in range(MAX_TRIGRAMS)]
    return grams


@dataclass
class SearchPlan:
    terms: list[str]
    fts: str | None = None                 # MATCH expression, or None: no index use
    row_checks: list[str] = field(default_factory=list)   # terms checked on the candidates
    impossible: bool = False               # a term that occurs nowhere


def plan(conn, q: str) -> SearchPlan:
    terms = parse_terms(q)
    if not terms:
        raise ValueError("q: give at least one search term")
    if len(terms) > MAX_TERMS:
        raise ValueError(f"q: at most {MAX_TERMS} terms")
    p = SearchPlan(terms)
    parts = []
    for t in terms:
        if len(t) >= 3:
            parts.append(" AND ".join(quote(g) for g in trigrams(t)))
            p.row_checks.append(t)            # the trigrams may lie elsewhere in the line
            continue
        vocab = expand(conn, t, MAX_EXPANSION + 1)
        if not vocab:
            p.impossible = True
            return p
        if len(vocab) > MAX_EXPANSION:
            p.row_checks.append(t)
        else:
            parts.append("(" + " OR ".join(quote(v) for v in vocab) + ")")
    p.fts = " AND ".join(parts) if parts else None
    return p
