"""Search accuracy on 100,000 generated mixed Korean/English log lines: precision
and recall against case-insensitive substring matching must both be 100 %.

The expected lines come from an oracle written here from the README's rule (terms
separated by spaces, a double-quoted run is one term, every term occurs in the
message ignoring case), not from the daemon's own parser."""
from __future__ import annotations

import random
import time

import pytest
import sdkdata

from linkband_historyd.harness import DaemonProcess

N = 100_000

QUERIES = {
    "english word": ["connected", "samples", "overflow", "broadcast", "started"],
    "english fragment": ["connec", "oadca", "verfl", "amp", "sdk"],
    "case variant": ["CONNECTED", "Samples", "eRRoR", "Link Band", "OK"],
    "korean stem with particle": ["연결", "연결이", "사용률", "임계값", "버퍼"],
    "two-character korean": ["연결", "감지", "발생", "시도", "초과"],
    "one character": ["회", "끊", "x", "%"],
    "multi-term": ["연결 address", "STREAM samples dropped", "cpu memory", "재연결 회"],
    "phrase": ['"연결이 끊어"', '"samples broadcast"', '"server started on"', '"127.0.0.1:"'],
    "bracket tag": ["STREAM:EEG", "[STREAM:PPG]", "[DEVICE_MGR:CONNECT]", "MONITORING_BROADCAST"],
    "number": ["8121", "85.0", "127.0.0.1", "42", "7"],
    "hostile": ['AND OR', "NEAR(x", '"', "a*", "'; --", "(", "^"],
}
LISTED = 53                 # every query above
REFUSED = ['"']             # no term at all: a bad_param, not a search
MATCHING = 45               # the scored queries that match at least one generated line


def oracle_terms(q: str) -> list[str]:
    """Split ``q`` by hand: whitespace separates terms; a double quote opens a phrase
    that runs to the next double quote (or the end) and is one term; case is folded."""
    terms, i = [], 0
    while i < len(q):
        if q[i].isspace():
            i += 1
        elif q[i] == '"':
            end = q.find('"', i + 1)
            end = len(q) if end < 0 else end
            terms.append(q[i + 1:end])
            i = end + 1
        else:
            j = i
            while j < len(q) and not q[j].isspace():
                j += 1
            terms.append(q[i:j])
            i = j
    return [t.strip().casefold() for t in terms if t.strip()]


def test_the_oracle_splits_as_the_readme_says():
    assert oracle_terms('"연결이 끊어" Address') == ["연결이 끊어", "address"]
    assert oracle_terms("  a   B ") == ["a", "b"]
    assert oracle_terms('"unclosed phrase') == ["unclosed phrase"]
    assert oracle_terms('"') == [] and oracle_terms('""  ') == []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # the lines are of 2023: retention (first run 30 s after the start) must keep them
    d = DaemonProcess(tmp_path_factory.mktemp("accuracy"),
                      env={"LINKBAND_HISTORY_LOG_DAYS": "0"}).start()
    rng = random.Random(2026)
    messages = [sdkdata.log_message(rng)[2] for _ in range(N)]
    c = d.client(max_queue=N)
    # the last 20 minutes: lines years old would be deleted by the scheduler's
    # retention run, 30 s after the start, while the queries run
    t0 = time.time() - 1200
    for i in range(0, N, 5000):
        c.store_logs([{"timestamp": t0 + (i + k) * 0.01, "level": "INFO",
                       "logger_name": "STREAM.eeg", "message": m}
                      for k, m in enumerate(messages[i:i + 5000])])
    assert c.flush(timeout=120)
    first_id = d.ask("logs", limit=1)["rows"][0]["id"]
    yield d, {first_id + i: m.casefold() for i, m in enumerate(messages)}
    d.close()


def search_ids(d, q):
    ids, cursor = [], None
    while True:
        params = {"q": q, "limit": 20_000, **({"cursor": cursor} if cursor else {})}
        r = d.ask("logs.search", **params)
        assert r["ok"], r
        ids += [row["id"] for row in r["rows"]]
        cursor = r["next"]
        if not cursor:
            return ids


def test_every_query_kind_has_full_precision_and_recall(corpus):
    d, folded = corpus
    report, refused = [], []
    for kind, queries in QUERIES.items():
        for q in queries:
            terms = oracle_terms(q)
            if not terms:
                r = d.ask("logs.search", q=q)
                assert not r["ok"] and r["error"]["code"] == "bad_param", (q, r)
                refused.append(q)
                continue
            want = {i for i, m in folded.items() if all(t in m for t in terms)}
            got = search_ids(d, q)
            assert len(got) == len(set(got)), q
            tp = len(want & set(got))
            precision = tp / len(got) if got else 1.0
            recall = tp / len(want) if want else 1.0
            report.append((kind, q, len(want), precision, recall))
    assert sum(map(len, QUERIES.values())) == LISTED and len(QUERIES) == 11
    assert refused == REFUSED and len(report) == LISTED - len(REFUSED)
    bad = [r for r in report if r[3] < 1.0 or r[4] < 1.0]
    assert not bad, bad
    assert sum(1 for r in report if r[2] > 0) == MATCHING, [r[:3] for r in report if not r[2]]
