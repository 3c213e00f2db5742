"""The Prometheus exposition: a real daemon with its HTTP child, scraped over HTTP with its
token, parsed by prometheus_client's own parser, and scraped by a real Prometheus server
(Debian's package; the test that needs it skips, saying why, where it is missing)."""
from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import time

import httpx
import pytest

pytest.importorskip("starlette", reason="the HTTP gateway needs the [http] extra")
parser = pytest.importorskip("prometheus_client.parser",
                             reason="the exposition is checked with prometheus_client's parser "
                                    "(the test extras install it)")

from conftest import free_port, wait_for  # noqa: E402

from linkband_historyd.harness import DaemonProcess  # noqa: E402
from linkband_historyd.http import app as hg  # noqa: E402
from linkband_historyd.http.prometheus import Exposition  # noqa: E402

PER_METRIC, MAX_SERIES = 5, 12
CORES = {"0": 11.5, "1": 42.25, "2": 87.0}          # the newest cpu_percent of each core
WEIRD_TAGS = {"1st": "a\"b\\c\nd", "__meta": "x", "dev-id": "LXB-01"}


class Gateway:
    def __init__(self, daemon: DaemonProcess, port: int):
        self.d, self.port = daemon, port
        self.url = f"http://127.0.0.1:{port}/history/prometheus"
        self.token_file = daemon.run_dir / "http.token"

    def scrape(self, token: str | None = "own") -> httpx.Response:
        token = self.token_file.read_text().strip() if token == "own" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url, headers=headers, timeout=30)

    def samples(self) -> dict:
        """{(name, frozenset(labels)): value} of one scrape."""
        r = self.scrape()
        assert r.status_code == 200, r.text
        return {(s.name, frozenset(s.labels.items())): s.value
                for fam in parser.text_string_to_metric_families(r.text) for s in fam.samples}


def push(d: DaemonProcess) -> int:
    """SDK-shaped metrics, newest value of each series last; returns how many were stored."""
    now = time.time()
    rows = [{"timestamp": now - 60 + i, "metric_type": "cpu", "metric_name": "cpu_percent",
             "value": float(i), "unit": "%", "tags": {"core": core}}
            for i in range(30) for core in CORES]
    rows += [{"timestamp": now - 5, "metric_type": "cpu", "metric_name": "cpu_percent",
              "value": v, "unit": "%", "tags": {"core": core}} for core, v in CORES.items()]
    rows += [{"timestamp": now - 5, "metric_type": "streaming", "metric_name": "eeg.rate-hz",
              "value": 250.0, "unit": "Hz", "tags": WEIRD_TAGS},
             {"timestamp": now - 3600, "metric_type": "buffer", "metric_name": "stale_metric",
              "value": 1.0}]
    # more series than the bounds allow: 8 of one metric, then 5 of a last one by name
    rows += [{"timestamp": now - 5, "metric_type": "buffer", "metric_name": "many_tags",
              "value": float(i), "tags": {"sensor": f"s{i}"}} for i in range(8)]
    rows += [{"timestamp": now - 5, "metric_type": "batch", "metric_name": "zz_last",
              "value": float(i), "tags": {"n": i}} for i in range(5)]
    with d.client() as c:
        c.store_metrics(rows)
        c.store_metrics([{"metric_type": "cpu", "metric_name": "bad", "value": math.nan}])
        c.flush(30)
    return len(rows)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    port = free_port()
    d = DaemonProcess(tmp_path_factory.mktemp("prom") / "d", env={
        "LINKBAND_HISTORY_COLLECTOR": "false", "LINKBAND_HISTORY_HTTP": "true",
        "LINKBAND_HISTORY_HTTP_PORT": str(port),
        "LINKBAND_HISTORY_HTTP_METRICS_MAX_SERIES_PER_METRIC": str(PER_METRIC),
        "LINKBAND_HISTORY_HTTP_METRICS_MAX_SERIES": str(MAX_SERIES)})
    try:
        d.start()
        g = Gateway(d, port)
        g.pushed = push(d)
        wait_for(lambda: g.token_file.exists() and (d.run_dir / "http.json").exists(), 60)
        yield g
    finally:
        d.close()


# -- the exposition ------------------------------------------------------------------------

def test_the_exposition_holds_the_daemons_health_in_prometheus_text(gw):
    r = gw.scrape()
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in parser.text_string_to_metric_families(r.text)}
    s = gw.samples()
    assert s[("linkband_history_records_stored_total", frozenset({("kind", "metric")}))] == gw.pushed
    assert s[("linkband_history_records_stored_total", frozenset({("kind", "log")}))] == 0
    assert s[("linkband_history_ingest_rejects_total",
              frozenset({("reason", "non_finite_value")}))] == 1
    assert s[("linkband_history_records_rejected_total", frozenset())] == 1
    for name in ("records_lost_total", "records_dropped_total"):
        assert s[("linkband_history_" + name, frozenset())] == 0
    assert s[("linkband_history_database_size_bytes", frozenset())] > 0
    assert ("linkband_history_wal_size_bytes", frozenset()) in s
    assert families["linkband_history_ingest_latency_seconds"].type == "histogram"
    assert families["linkband_history_query_latency_seconds"].type == "histogram"
    assert families["linkband_history_job_runs"].type == "counter"
    assert {dict(k[1])["job"] for k in s if k[0] == "linkband_history_job_failures_total"} >= {
        "summarize", "retention", "archive", "optimize"}


def _buckets(samples: dict, name: str, labels=frozenset()) -> list[tuple[float, float]]:
    return sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                  if k[0] == name + "_bucket" and k[1] - {("le", dict(k[1])["le"])} == labels)


def test_latency_histograms_have_cumulative_buckets_ending_in_their_count(gw):
    s = gw.samples()
    for name, labels in (("linkband_history_ingest_latency_seconds", frozenset()),
                         ("linkband_history_query_latency_seconds", frozenset({("lane", "light")}))):
        buckets = _buckets(s, name, labels)
        assert len(buckets) >= 10 and buckets[-1][0] == math.inf
        counts = [n for _, n in buckets]
        assert counts == sorted(counts) and counts[-1] == s[(name + "_count", labels)] > 0
        assert s[(name + "_sum", labels)] > 0


def test_query_latency_counts_each_answered_query_in_its_lane(gw):
    heavy = ("linkband_history_query_latency_seconds_count", frozenset({("lane", "heavy")}))
    before = gw.samples()[heavy]
    assert gw.d.ask("metrics.aggregate", metric_name="cpu_percent", since="2h")["ok"]
    assert gw.samples()[heavy] >= before + 1


def test_job_runs_are_counted_per_job(gw):
    runs = ("linkband_history_job_runs_total", frozenset({("job", "summarize")}))
    before = gw.samples()[runs]
    assert gw.d.ask("summarize")["ok"]
    wait_for(lambda: gw.samples()[runs] >= before + 1, 60, 0.2)


def test_sdk_metrics_are_gauges_of_their_newest_value_with_tags_as_labels(gw):
    r = gw.scrape()
    families = {f.name: f for f in parser.text_string_to_metric_families(r.text)}
    assert families["linkband_cpu_percent"].type == "gauge"
    assert "cpu_percent (cpu, %)" in families["linkband_cpu_percent"].documentation
    s = gw.samples()
    for core, value in CORES.items():
        assert s[("linkband_cpu_percent", frozenset({("core", core)}))] == value
    assert not any(k[0] == "linkband_stale_metric" for k in s)      # older than the window


def test_names_and_labels_are_sanitized_and_values_escaped(gw):
    s = gw.samples()
    labels = {"_1st": WEIRD_TAGS["1st"], "tag__meta": "x", "dev_id": "LXB-01"}
    assert s[("linkband_eeg_rate_hz", frozenset(labels.items()))] == 250.0


def test_series_past_the_bounds_are_left_out_and_counted(gw):
    def dropped(samples, reason):
        return samples[("linkband_history_exposition_series_dropped_total",
                        frozenset({("reason", reason)}))]

    first, second = gw.samples(), gw.samples()
    series = [k for k in second if k[0].startswith("linkband_") and
              not k[0].startswith("linkband_history_")]
    assert len(series) == second[("linkband_history_exposition_sdk_series", frozenset())] == MAX_SERIES
    assert sum(1 for k in series if k[0] == "linkband_many_tags") == PER_METRIC
    # in name and tags order: cpu 3, eeg 1, many_tags 5 (3 left out), zz_last 3 of 5
    assert {dict(k[1])["n"] for k in series if k[0] == "linkband_zz_last"} == {"0", "1", "2"}
    assert dropped(second, "per_metric") - dropped(first, "per_metric") == 3
    assert dropped(second, "total") - dropped(first, "total") == 2


def test_without_the_token_the_exposition_is_refused(gw):
    for token in (None, "not-the-token"):
        r = gw.scrape(token)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "linkband_history_" not in r.text and "linkband_cpu" not in r.text


def test_the_path_is_configurable_and_collides_with_no_other_route(gw):
    token = gw.token_file.read_text().strip()
    default = hg.create_app(gw.d.query, token=token)
    moved = hg.create_app(gw.d.query, token=token, prometheus=Exposition("/custom/metrics"))
    off = hg.create_app(gw.d.query, token=token, prometheus=None)
    paths = [r.path for r in default.routes]
    assert paths.count("/history/prometheus") == 1
    assert "/metrics" not in paths            # the SDK's server has routes there
    auth = {"Authorization": f"Bearer {token}"}

    async def status(app, path):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1", timeout=30) as c:
            return (await c.get(path, headers=auth)).status_code

    try:
        assert asyncio.run(status(moved, "/custom/metrics")) == 200
        assert asyncio.run(status(moved, "/history/prometheus")) == 404
        assert asyncio.run(status(off, "/history/prometheus")) == 404
        assert asyncio.run(status(default, "/history/prometheus")) == 200
    finally:
        for app in (default, moved, off):
            app.state.gateway.close()


def test_a_daemon_that_does_not_answer_makes_the_scrape_a_503(tmp_path):
    silent = f"ipc://{tmp_path}/nobody-answers.sock"
    app = hg.create_app(silent, token="t" * 32, timeout=0.5)

    async def scrape():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1", timeout=30) as c:
            return await c.get("/history/prometheus", headers={"Authorization": "Bearer " + "t" * 32})

    try:
        r = asyncio.run(scrape())
    finally:
        app.state.gateway.close()
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert "counters" in r.json()["error"]["message"]


# -- the command behind the gauges ---------------------------------------------------------

def test_metrics_latest_answers_each_series_once_within_its_window(gw):
    reply = gw.d.ask("metrics.latest", metric_name="cpu_percent")
    assert reply["ok"], reply
    assert {json.loads(r["tags"])["core"]: r["value"] for r in reply["rows"]} == CORES
    assert gw.d.ask("metrics.latest", metric_name="stale_metric")["rows"] == []
    old = gw.d.ask("metrics.latest", metric_name="stale_metric", since="2h")["rows"]
    assert [r["value"] for r in old] == [1.0]
    bounded = gw.d.ask("metrics.latest", per_name=2, limit=3)
    assert len(bounded["rows"]) == 3 and bounded["dropped"]["per_name"] > 0
    assert bounded["dropped"]["limit"] > 0


# -- a real Prometheus ---------------------------------------------------------------------

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: linkband-history
    metrics_path: /history/prometheus
    authorization:
      type: Bearer
      credentials_file: {token_file}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@pytest.fixture
def prometheus(gw, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary (.ci/run installs Debian's package when it runs as root)")
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(token_file=gw.token_file, port=gw.port))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", tmp_path / "prometheus.log", proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_a_real_prometheus_scrapes_the_gateway_with_its_token(gw, prometheus):
    url, log, proc = prometheus

    def query(expr: str):
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=5)
        except httpx.HTTPError:
            return None
        result = r.json()["data"]["result"] if r.status_code == 200 else []
        return float(result[0]["value"][1]) if result else None

    try:
        stored = wait_for(lambda: query('linkband_history_records_stored_total{kind="metric"}'), 90, 0.5)
        assert stored == gw.pushed
        assert query('linkband_cpu_percent{core="1"}') == CORES["1"]
        assert query('up{job="linkband-history"}') == 1.0
        # a new gateway makes a new token: Prometheus reads the file again at each scrape
        old_token, pid = gw.token_file.read_text(), json.loads((gw.d.run_dir / "http.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: gw.token_file.exists() and gw.token_file.read_text() != old_token, 60, 0.1)
        with gw.d.client() as c:
            c.store_metrics([{"metric_type": "cpu", "metric_name": "cpu_percent", "value": 55.5,
                              "unit": "%", "tags": {"core": "1"}}])
            assert c.flush(30)
        wait_for(lambda: query('linkband_cpu_percent{core="1"}') == 55.5, 90, 0.5)
    except AssertionError:
        print(log.read_text()[-3000:])
        raise
