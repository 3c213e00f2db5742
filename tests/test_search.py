"""logs.search: every term a case-insensitive substring, Korean stems, short terms, phrases."""
from __future__ import annotations

import random

import pytest
import sdkdata
from conftest import all_rows

EXTRA = [
    "디바이스 연결이 끊어졌습니다",
    "재연결 시도 중",
    "연결",
    "ok",
    "a",
    "[STREAM:EEG] stall at 14:03 — 버퍼 usage 97%",
    'Quote "inside" and it\'s OK',
    "MiXeD CaSe Error Occurred",
    "a AND b OR c NOT d NEAR(e f) * ^ : ( )",
    "sensor at 300\u212a ok",                 # the Kelvin sign lowers to an ASCII k
    "ÉCOLE Normale",
]

QUERIES = [
    "연결", "연결이", "끊어", "재연결", "결", "연", "디바이스 연결", '"연결이 끊어"', "버퍼",
    "eeg", "EEG", "stream:eeg", "[STREAM:EEG]", "stall", "ok", "OK", "o", "a", "ab",
    "error", "ERROR occurred", '"mixed case"', "14:03", "97%", "8121", "port 8121",
    '"inside"', 'it\'s', '"', '""', "AND", "NEAR(e", "*", "^", ":", "(", "cpu= memory=",
    "zzz-not-there", "임계값 85.0%", "samples", "address=", "127.0.0.1",
    "사용률", "높은", "회", "중...", "aa:", "fox ok", "300k", "k ok", "école", "cole",
]


def oracle(messages, q):
    from linkband_historyd.query.search import parse_terms
    terms = parse_terms(q)
    return {i for i, m in messages.items() if all(t in m.lower() for t in terms)}


@pytest.fixture(scope="module")
def corpus_daemon(tmp_path_factory):
    from linkband_historyd.harness import DaemonProcess
    d = DaemonProcess(tmp_path_factory.mktemp("search"))
    d.start()
    rng = random.Random(7)
    c = d.client()
    messages = [sdkdata.log_message(rng)[2] for _ in range(3000)] + EXTRA
    c.store_logs([{"timestamp": 1_700_000_000 + i, "level": "INFO", "logger_name": "T",
                   "message": m} for i, m in enumerate(messages)])
    assert c.flush(timeout=30)
    rows = all_rows(d, "logs", limit=5000)
    yield d, {r["id"]: r["message"] for r in rows}
    d.close()


@pytest.mark.parametrize("q", QUERIES)
def test_search_equals_substring_matching(corpus_daemon, q):
    daemon, messages = corpus_daemon
    from linkband_historyd.query.search import parse_terms
    expected = oracle(messages, q)
    if not parse_terms(q):
        reply = daemon.ask("logs.search", q=q)
        assert not reply["ok"] and reply["error"]["code"] == "bad_param"
        return
    got = all_rows(daemon, "logs.search", q=q, limit=700)
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected, q
    assert ids == sorted(ids, reverse=True)          # newest first
    first = daemon.ask("logs.search", q=q, limit=5)
    if first["total_exact"]:
        assert first["total"] == len(expected), q
    else:                                            # the count's time budget ran out
        assert first["total"] == 1000 < len(expected), q


def test_korean_stem_and_two_character_terms(corpus_daemon):
    daemon, _ = corpus_daemon
    found = {r["message"] for r in all_rows(daemon, "logs.search", q="연결")}
    assert "디바이스 연결이 끊어졌습니다" in found and "재연결 시도 중" in found and "연결" in found
    assert "디바이스 연결이 끊어졌습니다" in {r["message"] for r in all_rows(daemon, "logs.search", q="끊")}


def test_search_with_filters_and_hostile_text(corpus_daemon):
    daemon, messages = corpus_daemon
    reply = daemon.ask("logs.search", q="연결", level="ERROR")
    assert reply["ok"] and reply["rows"] == []
    for q in ["'; DROP TABLE system_logs; --", "\") OR 1=1 --", "NEAR(", "a\x00b", "x" * 300]:
        reply = daemon.ask("logs.search", q=q[:256])
        assert reply["ok"] or reply["error"]["code"] == "bad_param", reply
    assert daemon.stats()["tables"]["system_logs"] == len(messages)
