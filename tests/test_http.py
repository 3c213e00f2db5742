"""The HTTP gateway against a real daemon and a real uvicorn server on loopback."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import msgpack
import pytest
import zmq

pytest.importorskip("starlette", reason="the HTTP gateway needs the [http] extra")
uvicorn = pytest.importorskip("uvicorn", reason="the HTTP gateway needs the [http] extra")

from conftest import all_rows, free_port, proc_kb  # noqa: E402

from linkband_history import protocol  # noqa: E402
from linkband_history.export import read_back  # noqa: E402
from linkband_historyd.commands import routes  # noqa: E402
from linkband_historyd.http import app as hg  # noqa: E402

NOW = time.time()
T0 = NOW - 3000.0
TOKEN = "test-token-" + "x" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOCAL_APP = "http://localhost:5173"          # a local app's page, in allowed_origins


class GatewayServer:
    """uvicorn serving ``app`` on a free loopback port, in a thread."""

    def __init__(self, app):
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on",
                                                    log_level="warning", ws=hg.ws_protocol()))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "GatewayServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/history"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive(), "uvicorn did not stop"


def fill(daemon) -> None:
    """Some of every kind, Korean text included; alerts open and resolved."""
    with daemon.client() as c:
        c.store_metrics([{"timestamp": T0 + i, "metric_type": "cpu" if i % 2 else "stream",
                          "metric_name": ("cpu_percent", "eeg_rate", "memory_mb")[i % 3],
                          "value": float(i % 97), "unit": "%",
                          "tags": {"device": "LXB-%d" % (i % 2), "ch": "Fp1"}}
                         for i in range(2400)])
        c.store_logs([{"timestamp": T0 + i, "level": ("INFO", "WARNING", "ERROR", "DEBUG")[i % 4],
                       "logger_name": ("DEVICE.manager", "STREAM.eeg")[i % 2],
                       "message": ("디바이스 연결이 끊어졌습니다", "재연결 시도 중 #%d" % i,
                                   "[STREAM:EEG] buffer overflow", "heartbeat ok")[i % 4]}
                      for i in range(400)])
        c.store_performance([{"timestamp": T0 + i, "component": ("stream", "device")[i % 2],
                              "operation": "decode", "duration_ms": 1.0 + (i % 13),
                              "throughput": 250.0, "error_count": int(i % 5 == 0)}
                             for i in range(300)])
        c.store_alerts([{"timestamp": T0 + i, "alert_id": f"a{i}", "level": "WARNING",
                         "category": "DEVICE", "title": f"배터리 부족 {i}", "description": "low",
                         "source_component": "device",
                         "resolved_at": T0 + i + 5 if i % 2 else None} for i in range(10)])
        assert c.flush(30)


@pytest.fixture
def events_pub(tmp_path):
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/ev.sock"
    pub.bind(endpoint)
    yield pub, endpoint
    pub.close(0)
    ctx.term()


@pytest.fixture
def gateway(daemon, events_pub):
    srv = GatewayServer(hg.create_app(daemon.query, events_pub[1], token=TOKEN,
                                      allowed_origins=[LOCAL_APP])).start()
    yield srv
    srv.stop()


def as_json(value):
    return json.loads(hg.dumps(value))


# (HTTP path, query string items, command, parameters for the query socket)
S, U = str(T0 + 100), str(T0 + 1900)
GETS = [
    ("/metrics", [], "metrics", {}),
    ("/metrics", [("metric_name", "cpu_percent"), ("metric_name", "eeg_rate"), ("since", S),
                  ("until", U), ("order", "desc"), ("limit", "50")],
     "metrics", dict(metric_name=["cpu_percent", "eeg_rate"], since=T0 + 100, until=T0 + 1900,
                     order="desc", limit=50)),
    ("/metrics", [("tag.device", "LXB-1"), ("fields", "value,unit"), ("count", "true")],
     "metrics", dict(tags={"device": "LXB-1"}, fields=["value", "unit"], count=True)),
    ("/metrics", [("tags", '{"ch": "Fp1", "device": "LXB-0"}'), ("metric_type", "stream")],
     "metrics", dict(tags={"ch": "Fp1", "device": "LXB-0"}, metric_type="stream")),
    ("/metrics", [("since", "2h"), ("metric_name", "memory_mb")], "metrics",
     dict(since="2h", metric_name="memory_mb")),
    ("/metrics/summary", [("since", S)], "metrics.summary", dict(since=T0 + 100)),
    ("/metrics/aggregate", [("bucket", "5m"), ("functions", "min"), ("functions", "max"),
                            ("functions", "p95"), ("group_by", "metric_name"),
                            ("group_by", "tag:device"), ("since", S)],
     "metrics.aggregate", dict(bucket="5m", functions=["min", "max", "p95"],
                               group_by=["metric_name", "tag:device"], since=T0 + 100)),
    ("/logs", [("level", "ERROR"), ("level", "WARNING"), ("limit", "30")], "logs",
     dict(level=["ERROR", "WARNING"], limit=30)),
    ("/logs", [("min_level", "warning"), ("logger_name", "STREAM.eeg")], "logs",
     dict(min_level="warning", logger_name="STREAM.eeg")),
    ("/logs/search", [("q", "연결")], "logs.search", dict(q="연결")),
    ("/logs/search", [("q", "eeg buffer"), ("limit", "5"), ("mark", "<b>"), ("mark", "</b>")],
     "logs.search", dict(q="eeg buffer", limit=5, mark=["<b>", "</b>"])),
    ("/logs/stats", [("bucket", "10m"), ("top", "3")], "logs.stats", dict(bucket="10m", top=3)),
    ("/logs/context", [("id", "10"), ("before", "2"), ("after", "3")], "logs.context",
     dict(id=10, before=2, after=3)),
    ("/performance", [("component", "stream"), ("limit", "20")], "performance",
     dict(component="stream", limit=20)),
    ("/performance/analysis", [], "performance.analysis", {}),
    ("/performance/compare", [("a_since", str(T0)), ("a_until", str(T0 + 150)),
                              ("b_since", str(T0 + 150)), ("b_until", str(T0 + 300))],
     "performance.compare", dict(a_since=T0, a_until=T0 + 150, b_since=T0 + 150, b_until=T0 + 300)),
    ("/alerts", [("open", "true")], "alerts", dict(open=True)),
    ("/alerts", [("open", "false"), ("level", "WARNING")], "alerts", dict(open=False, level="WARNING")),
    ("/dashboard", [("top", "5")], "dashboard", dict(top=5)),
    ("/stats", [], "stats", {}),
    ("/health", [], "ping", {}),
    ("/commands", [], "commands", {}),
]
VOLATILE = {"dashboard": ("time", "storage"), "stats": ("uptime_s", "writer", "ingest_latency_ms", "clients",
                                              "client_count", "database",
                                              "query_worker_pid", "query"),
            "ping": ("time",)}


def test_get_endpoints_answer_like_the_query_socket(daemon, gateway):
    fill(daemon)
    with httpx.Client(base_url=gateway.url, timeout=30, headers=AUTH) as http:
        for path, items, command, params in GETS:
            r = http.get(path, params=items)
            assert r.status_code == 200, (path, r.text)
            assert r.headers["content-type"].startswith("application/json")
            got, want = r.json(), as_json(daemon.ask(command, **params))
            assert want["ok"], (command, want)
            for key in VOLATILE.get(command, ()):
                for doc in (got, want):
                    for row in doc["rows"]:
                        row.pop(key, None)
            assert got == want, (path, items)
            assert got["rows"] or command in ("performance.compare",), (path, "no rows to compare")


def test_cursor_pages_over_http_make_the_whole_listing(daemon, gateway):
    fill(daemon)
    rows, cursor = [], None
    with httpx.Client(base_url=gateway.url, timeout=30, headers=AUTH) as http:
        while True:
            r = http.get("/logs", params={"limit": 70, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            rows += r.json()["rows"]
            cursor = r.json()["next"]
            if not cursor:
                break
    assert rows == as_json(all_rows(daemon, "logs"))
    assert len(rows) == 400


BAD = [
    ("GET", "/metrics?limit=abc", "bad_param", "limit"),
    ("GET", "/metrics?limit=0", "bad_param", "limit"),
    ("GET", "/metrics?limit=5&limit=6", "bad_param", "limit"),
    ("GET", "/metrics?no_such_param=1", "bad_param", "no_such_param"),
    ("GET", "/metrics?since=yesterday-ish", "bad_param", "since"),
    ("GET", "/metrics?tags=notjson", "bad_param", "tags"),
    ("GET", "/metrics?tag.bad%20key=1", "bad_param", "tags"),
    ("GET", "/logs?level=LOUD", "bad_param", "level"),
    ("GET", "/logs/search", "bad_param", "q"),
    ("GET", "/logs/context?id=999999", "bad_param", "id"),
    ("GET", "/metrics/aggregate?bucket=7x", "bad_param", "bucket"),
    ("GET", "/metrics?command=x", "bad_param", "command"),
    ("GET", "/performance/compare?a_since=1h", "bad_param", "required"),
    ("POST", "/metrics/export", "bad_param", "format"),
    ("POST", "/logs/export", "bad_param", "limit"),
    ("POST", "/metrics/export", "bad_request", "JSON"),
]


def test_bad_parameters_are_4xx_json(daemon, gateway):
    with httpx.Client(base_url=gateway.url, timeout=30, headers=AUTH) as http:
        bodies = iter([{"format": "xml"}, {"limit": 5}])
        for method, path, code, word in BAD:
            if method == "GET":
                r = http.get(path)
            elif code == "bad_request":
                r = http.post(path, content=b"[1, 2]", headers={"content-type": "application/json"})
            else:
                r = http.post(path, json=next(bodies))
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
            err = r.json()["error"]
            assert err["code"] == code and word in err["message"], (path, err)
        r = http.post("/analyze", content=b"{}")                      # no JSON content type
        assert r.status_code == 415 and r.json()["error"]["code"] == "bad_request"
        r = http.post("/analyze", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
        r = http.get("/health", headers={"host": "attacker.example:80"})   # DNS rebinding
        assert r.status_code == 400 and "not allowed" in r.json()["error"]["message"]


def test_maintenance_and_alert_commands_have_routes_now(daemon, gateway):
    c = daemon.client()
    c.store_alerts([{"alert_id": "http-1", "level": "WARNING", "title": "메모리 경고"}])
    assert c.flush()
    with httpx.Client(base_url=gateway.url, timeout=30, headers=AUTH) as http:
        r = http.post("/summarize", json={})
        assert r.status_code == 200 and r.json()["rows"][0]["job"] == "summarize", r.text
        run_id = r.json()["rows"][0]["id"]
        r = http.get("/jobs", params={"id": run_id})
        assert r.status_code == 200 and r.json()["rows"][0]["id"] == run_id, r.text
        r = http.post("/restore", json={"kind": "metric", "month": "1999-01"})
        assert r.status_code == 200 and r.json()["rows"][0]["job"] == "restore", r.text
        r = http.post("/restore", json={"kind": "metric", "month": "1999"})
        assert r.status_code == 400 and "YYYY-MM" in r.json()["error"]["message"]
        r = http.get("/archives", params={"kind": "metric"})
        assert r.status_code == 200 and r.json()["rows"] == []
        r = http.post("/alerts/ack", json={"alert_id": "http-1"})
        assert r.status_code == 200, r.text
        r = http.post("/alerts/resolve", json={"alert_id": "http-1"})
        assert r.status_code == 200, r.text
        assert http.get("/alerts", params={"open": "true"}).json()["rows"] == []
        r = http.post("/alerts/ack", json={"alert_id": "nope"})
        assert r.status_code == 400 and "no alert" in r.json()["error"]["message"]
        r = http.post("/vacuum", json={})
        assert r.status_code == 200 and r.json()["rows"][0]["job"] == "vacuum", r.text
        assert http.get("/vacuum").status_code == 405          # what acts is POSTed


def test_open_alerts_are_counted_per_level_over_http_openapi_and_the_tool(daemon, gateway):
    c = daemon.client()
    c.store_alerts([{"alert_id": f"a{i}", "level": level, "category": cat, "title": "t"}
                    for i, (level, cat) in enumerate([("ERROR", "cpu"), ("ERROR", "disk"),
                                                      ("WARNING", "cpu"), ("INFO", "cpu")])])
    assert c.flush()
    daemon.ask("alerts.ack", alert_id="a0")
    daemon.ask("alerts.resolve", alert_id="a3")
    with httpx.Client(base_url=gateway.url, timeout=30, headers=AUTH) as http:
        rows = http.get("/alerts/open_count").json()["rows"]
        assert rows == [{"level": "CRITICAL", "open": 0, "acknowledged": 0},
                        {"level": "ERROR", "open": 2, "acknowledged": 1},
                        {"level": "WARNING", "open": 1, "acknowledged": 0},
                        {"level": "INFO", "open": 0, "acknowledged": 0}]
        rows = http.get("/alerts/open_count", params={"category": "disk"}).json()["rows"]
        assert [r["open"] for r in rows] == [0, 1, 0, 0]
        op = http.get("/openapi.json").json()["paths"]["/history/alerts/open_count"]["get"]
        assert op["x-daemon-command"] == "alerts.open_count"
        assert op["parameters"] == [{"name": "category", "in": "query",
                                     "schema": {"type": "array", "items": {"type": "string"}}}]
    env = {**os.environ, "LINKBAND_HISTORY_QUERY": daemon.query}
    out = subprocess.run([sys.executable, "-m", "linkband_history.cli", "query", "alerts.open_count"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["level", "open", "acknowledged"] and lines[2].split() == ["ERROR", "2", "1"]


def fake_daemon(endpoint: str, replies: dict, stop: threading.Event):
    """A REP socket that answers each command with ``replies[command]`` (None: no reply)."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)

    def serve():
        while not stop.is_set():
            if not sock.poll(50):
                continue
            command, params = protocol.decode_request(sock.recv())
            reply = replies.get(command, protocol.ok([{"echo": params}]))
            if reply is None:                    # hang: the gateway must time out
                stop.wait(3)
                return
            sock.send(protocol.encode_reply(reply))
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t, sock


def test_error_codes_map_to_statuses(tmp_path):
    endpoint = f"ipc://{tmp_path}/fake.sock"
    stop = threading.Event()
    err = protocol.error
    thread, sock = fake_daemon(endpoint, {
        "metrics.trends": err("unknown_command", "unknown command 'metrics.trends'"),
        "reports": err("unavailable", "database not available yet"),
        "storage": err("query_failed", "storage: disk I/O error"),
        "optimize": err("internal", "optimize: boom"),
        "stats": None,
    }, stop)
    srv = GatewayServer(hg.create_app(endpoint, None, timeout=1.0, token=TOKEN)).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30, headers=AUTH) as http:
            for method, path, status, code in [("GET", "/metrics/trends", 501, "unknown_command"),
                                               ("GET", "/reports", 503, "unavailable"),
                                               ("GET", "/storage", 500, "query_failed"),
                                               ("POST", "/optimize", 500, "internal")]:
                r = http.request(method, path, json={} if method == "POST" else None)
                assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
            # query-string values are typed by the command's parsers; unknown ones stay text
            r = http.get("/metrics?limit=5&count=true&metric_name=7&metric_name=b&zz=1")
            assert r.status_code == 200 and r.json()["rows"] == [{"echo": {
                "limit": 5, "count": True, "metric_name": ["7", "b"], "zz": "1"}}]
            # the POST body and the query string both become parameters
            r = http.post("/analyze?zz_days=7", json={"kinds": ["metric"], "n": 2})
            assert r.status_code == 200 and r.json()["rows"] == [
                {"echo": {"zz_days": "7", "kinds": ["metric"], "n": 2}}]
            r = http.get("/stats")                       # no reply at all
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    finally:
        srv.stop()
        stop.set()
        thread.join(5)
        sock.close(0)


def test_commands_being_built_are_501_until_the_daemon_has_them(daemon, gateway):
    known = {r["command"] for r in daemon.ask("commands")["rows"]}
    with httpx.Client(base_url=gateway.url, timeout=30, headers=AUTH) as http:
        for path, command in [("/metrics/trends", "metrics.trends"), ("/reports", "reports"),
                              ("/storage", "storage")]:
            r = http.get(path)
            if command in known:
                assert r.status_code in (200, 400), r.text
            else:
                assert r.status_code == 501, r.text
                assert r.json()["error"]["code"] == "unknown_command"
        r = http.get("/metrics/nonexistent")
        assert r.status_code == 404


def test_openapi_lists_routes_parameters_and_errors(daemon, gateway, tmp_path):
    doc = httpx.get(gateway.url + "/openapi.json", timeout=30, headers=AUTH).json()
    assert doc["openapi"].startswith("3.")
    for method, path, command in routes():
        op = doc["paths"]["/history" + path][method.lower()]
        assert op["x-daemon-command"] == command
        assert op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"] \
            == "#/components/schemas/Error"
    params = {p["name"]: p["schema"] for p in doc["paths"]["/history/metrics"]["get"]["parameters"]}
    assert {"metric_name", "since", "until", "limit", "cursor", "tags"} <= set(params)
    assert params["limit"]["type"] == "integer" and params["metric_name"]["type"] == "array"
    assert "/history/metrics/export" in doc["paths"] and "/history/logs/export" in doc["paths"]
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    # no daemon: the static list from the installed package
    srv = GatewayServer(hg.create_app(f"ipc://{tmp_path}/nobody.sock", None, timeout=0.5,
                                      token=TOKEN)).start()
    try:
        doc2 = httpx.get(srv.url + "/openapi.json", timeout=30, headers=AUTH).json()
        names = {p["name"] for p in doc2["paths"]["/history/logs/search"]["get"]["parameters"]}
        assert {"q", "level", "since"} <= names
    finally:
        srv.stop()


def test_ui_and_static_files(gateway):
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        assert http.get("/ui").status_code == 401
        assert http.get("/ui?token=wrong").status_code == 401
        login = http.get("/ui", params={"token": TOKEN})          # sets the cookie, then the clean URL
        assert login.status_code == 303 and login.headers["location"] == "/history/ui"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/history" in cookie
        page = http.get("/ui")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert 'data-base="/history"' in page.text and "{{BASE}}" not in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for name, ctype in [("app.js", "javascript"), ("app.css", "text/css")]:
            r = http.get("/static/" + name)
            assert r.status_code == 200 and ctype in r.headers["content-type"]
        r = http.get("/ui/", follow_redirects=True)
        assert r.status_code == 200 and str(r.url).endswith("/history/ui")


def test_mounted_in_a_host_app(daemon):
    """As the SDK's FastAPI server does it: app.mount(path, create_app(...)), the host
    deciding who may (auth=) or giving the gateway a token."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    host_decides = lambda conn: conn.headers.get("x-sdk-session") == "s3cret"   # noqa: E731
    gateways = [hg.create_app(daemon.query, token=TOKEN), hg.create_app(daemon.query, auth=host_decides)]
    host = Starlette(routes=[Mount("/sdk", app=gateways[0]), Mount("/", app=gateways[1])])
    srv = GatewayServer(host).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=30,
                          headers={**AUTH, "X-SDK-Session": "s3cret"}) as http:
            login = http.get("/sdk/history/ui", params={"token": TOKEN})
            assert login.status_code == 303 and "Path=/sdk/history" in login.headers["set-cookie"]
            for base in ("/sdk/history", "/history"):
                assert http.get(base + "/health").json()["rows"][0]["pong"] is True
                page = http.get(base + "/ui")
                assert f'data-base="{base}"' in page.text
                assert http.get(base + "/static/app.js").status_code == 200
                assert http.get(base + "/ui/", follow_redirects=True).url.path == base + "/ui"
        assert httpx.get(f"http://127.0.0.1:{srv.port}/history/health", headers=AUTH).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{srv.port}/sdk/history/health").status_code == 401
    finally:
        srv.stop()
        for g in gateways:                   # a mounted app gets no lifespan of its own
            g.state.gateway.close()


def test_create_app_will_not_serve_everyone_unless_told_so(daemon):
    with pytest.raises(ValueError, match="allow_unauthenticated"):
        hg.create_app(daemon.query)
    with pytest.raises(ValueError, match="not both"):
        hg.create_app(daemon.query, token=TOKEN, auth=lambda conn: True)
    open_app = hg.create_app(daemon.query, allow_unauthenticated=True)   # the host authenticates
    srv = GatewayServer(open_app).start()
    try:
        assert httpx.get(srv.url + "/health", timeout=30).status_code == 200
    finally:
        srv.stop()


# -- export --------------------------------------------------------------------------

N_EXPORT = 100_000


def push_many(daemon, n=N_EXPORT):
    with daemon.client() as c:
        for start in range(0, n, 10_000):
            c.store_metrics([{"timestamp": T0 + i * 0.01, "metric_type": "eeg",
                              "metric_name": "ch%d" % (i % 8), "value": i * 0.5, "unit": "uV",
                              "tags": {"device": "LXB-01", "seq": i}}
                             for i in range(start, min(n, start + 10_000))])
        assert c.flush(60)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the RSS")
def test_export_of_100k_rows_streams_with_bounded_memory(daemon, tmp_path):
    push_many(daemon)
    port = free_port()
    log = open(tmp_path / "gateway.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "linkband_historyd.http.app", "--query",
                             daemon.query, "--port", str(port), "--log-level", "WARNING",
                             "--runtime-dir", str(tmp_path / "gw-run")],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/history"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                auth = {"Authorization": "Bearer " + (tmp_path / "gw-run/http.token").read_text().strip()}
                if httpx.get(url + "/health", timeout=2, headers=auth).status_code == 200:
                    break
            except FileNotFoundError:
                pass
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
            time.sleep(0.1)
        with httpx.Client(timeout=120, headers=auth) as http:
            # warm up: one page through every code path, so the baseline holds one page
            r = http.post(url + "/metrics/export", json={"format": "csv", "metric_name": "ch1"})
            assert r.status_code == 200, r.text
            assert r.text.count("\n") == N_EXPORT // 8 + 1
            base = proc_kb(proc.pid, "VmRSS")
            pieces, size = 0, 0
            path = tmp_path / "all.csv"
            with http.stream("POST", url + "/metrics/export", json={"format": "csv"}) as r, \
                    open(path, "wb") as f:
                assert r.status_code == 200, r.read()
                assert "content-length" not in r.headers                 # streamed, chunked
                assert r.headers["x-total-count"] == str(N_EXPORT)
                for chunk in r.iter_bytes():
                    pieces += 1
                    size += len(chunk)
                    f.write(chunk)
            peak = proc_kb(proc.pid, "VmHWM")
        growth_mb = (peak - base) / 1024
        what = f"RSS base {base / 1024:.1f} MB, growth {growth_mb:.1f} MB, {pieces} pieces, {size} bytes"
        print(what)
        # Measured here: streaming page by page grows ~16 MB (about two pages of decoded
        # rows); a server that buffers the whole CSV (~9 MB) before sending grows ~45 MB,
        # one that lists every row first ~140 MB.
        assert size > 8_000_000 and pieces > 10, what
        assert growth_mb < 30, what
        listed = as_json(all_rows(daemon, "metrics"))
        assert read_back(str(path), "csv", "metrics") == listed
    finally:
        proc.terminate()
        code = proc.wait(30)
        log.close()
        assert code == 0, (tmp_path / "gateway.log").read_text()[-3000:]


def test_export_jsonl_round_trips_and_pages_in_step(daemon, gateway):
    """Each page is handed to the server before the next page is asked for."""
    push_many(daemon, 25_000)
    gw = gateway.app.state.gateway
    seen = []
    with httpx.Client(timeout=120, headers=AUTH) as http:
        r = http.post(gateway.url + "/metrics/export", json={"format": "jsonl", "order": "desc",
                                                             "metric_name": ["ch1", "ch2", "ch3"]})
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert rows == as_json(all_rows(daemon, "metrics", order="desc",
                                    metric_name=["ch1", "ch2", "ch3"]))

    # In step, on the ASGI level: when chunk k is sent, exactly k pages were fetched.
    async def run():
        start = gw.export_pages
        body = json.dumps({"format": "csv"}).encode()
        scope = {"type": "http", "method": "POST", "path": "/history/metrics/export",
                 "raw_path": b"/history/metrics/export", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                             (b"authorization", f"Bearer {TOKEN}".encode())],
                 "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
                 "http_version": "1.1", "asgi": {"version": "3.0"}}
        sent = []

        async def receive():
            if not sent:
                sent.append(None)
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)

        async def send(msg):
            if msg["type"] == "http.response.body" and msg.get("body"):
                seen.append(gw.export_pages - start)
                await asyncio.sleep(0.01)             # a slow reader
        await gateway.app(scope, receive, send)
    asyncio.run(run())
    assert seen == [1, 2, 3]                          # 25,000 rows: pages of 10,000


def test_export_of_logs_alerts_and_performance(daemon, gateway, tmp_path):
    fill(daemon)
    with httpx.Client(base_url=gateway.url, timeout=60, headers=AUTH) as http:
        r = http.post("/logs/export", json={"format": "csv", "min_level": "WARNING"})
        assert r.status_code == 200 and r.headers["x-total-count"] == "200"
        (tmp_path / "logs.csv").write_bytes(r.content)
        assert read_back(str(tmp_path / "logs.csv"), "csv", "logs") == as_json(all_rows(daemon, "logs", min_level="WARNING"))
        assert "재연결 시도 중 #1," in r.content.decode("utf-8")
        r = http.post("/performance/export", json={"format": "csv", "fields": "duration_ms"})
        assert r.text.splitlines()[0] == "id,timestamp,duration_ms" and len(r.text.splitlines()) == 301
        r = http.post("/alerts/export?open=true", json={"format": "jsonl"})
        assert [json.loads(x) for x in r.text.splitlines()] == as_json(all_rows(daemon, "alerts", open=True))


# -- WebSocket ---------------------------------------------------------------------------

def test_websocket_forwards_events_filtered_by_topic(gateway, events_pub):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    pub, _ = events_pub
    ws_url = gateway.url.replace("http://", "ws://") + "/ws"

    def publish(topic, data):
        pub.send_multipart([topic.encode(), msgpack.packb(data, use_bin_type=True)])

    def receive_until(ws, want_topic, others, timeout=10.0):
        deadline = time.monotonic() + timeout
        got = []
        while time.monotonic() < deadline:
            for t, d in others:
                publish(t, d)
            publish(want_topic, {"counts": {"metric": 3}, "note": "연결"})
            try:
                msg = json.loads(ws.recv(timeout=0.1))
            except TimeoutError:
                continue
            got.append(msg)
            if msg.get("topic") == want_topic:
                return got
        raise AssertionError(f"no {want_topic} event within {timeout}s: {got}")

    with connect(ws_url + "?topics=history_data", open_timeout=10, additional_headers=AUTH) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"subscribed": ["history_data"]}
        got = receive_until(ws, "history_data_updated", [("alert_stored", {"title": "x"})])
        assert got[-1] == {"topic": "history_data_updated",
                           "data": {"counts": {"metric": 3}, "note": "연결"}}
        assert all(m["topic"].startswith("history_data") for m in got)
        ws.send(json.dumps({"subscribe": ["alert"], "unsubscribe": ["history_data"]}))
        got = receive_until(ws, "alert_stored", [("storage_warning", {"x": 1})])
        topics = {m.get("topic") for m in got} - {None}
        # until the unsubscribe took effect, history_data_updated may still come
        assert topics <= {"alert_stored", "history_data_updated"}
        assert {"subscribed": ["alert"]} in got
    with connect(ws_url + "?token=" + TOKEN, open_timeout=10) as ws:   # no topics: everything
        assert json.loads(ws.recv(timeout=10)) == {"subscribed": [""]}
        receive_until(ws, "storage_warning", [])
    for origin in ("http://attacker.example", "http://localhost:5174"):   # other pages
        with pytest.raises(InvalidStatus) as refused:
            with connect(ws_url, origin=origin, open_timeout=10, additional_headers=AUTH):
                pass
        assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:                      # no token
        with connect(ws_url, open_timeout=10):
            pass
    assert refused.value.response.status_code == 401
    with connect(ws_url + "?topics=", origin=LOCAL_APP, open_timeout=10, additional_headers=AUTH) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"subscribed": []}   # a local app's page


def test_main_refuses_a_remote_host_without_allow_remote(capsys):
    assert hg.main(["--host", "0.0.0.0", "--port", "1"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert hg.is_loopback_host("127.0.0.1") and hg.is_loopback_host("::1")
    assert hg.is_loopback_host("localhost") and not hg.is_loopback_host("192.168.1.10")


def test_http_child_runs_like_a_daemon_child(daemon, tmp_path):
    """What the supervisor does with a child class: run_child(cls, settings, ready) in a
    spawned process, the settings pickled; ready once the port is bound; SIGTERM stops
    it with exit code 0."""
    import multiprocessing

    from linkband_historyd import config
    from linkband_historyd.processes.skeleton import run_child
    port = free_port()
    cfg = config.load(None, environ={}, cli={
        "query.endpoint": daemon.query, "events.endpoint": f"ipc://{tmp_path}/ev.sock",
        "http.host": "127.0.0.1", "http.port": port, "daemon.log_level": "WARNING",
        "daemon.runtime_dir": str(tmp_path / "gw-run"), "daemon.data_dir": str(tmp_path / "gw-data")})
    mp = multiprocessing.get_context("spawn")
    ready = mp.Event()
    proc = mp.Process(target=run_child, args=(hg.HttpChild, cfg, ready))
    proc.start()
    try:
        assert ready.wait(30), "the http child did not become ready"
        token = (tmp_path / "gw-run/http.token").read_text().strip()
        info = json.loads((tmp_path / "gw-run/http.json").read_text())
        assert info["url"] == f"http://127.0.0.1:{port}/history"
        r = httpx.get(info["url"] + "/health", timeout=10, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["rows"][0]["pong"] is True
    finally:
        proc.terminate()
        proc.join(20)
    assert proc.exitcode == 0
    assert not (tmp_path / "gw-run/http.token").exists()     # removed at exit
