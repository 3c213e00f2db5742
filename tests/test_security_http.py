"""The HTTP gateway under attack, against a real daemon run with ``[http] enabled``:
each attack its own test, made as another local user (uid 65534, with setpriv)
where the tests run as root. Without its token nobody reads or changes anything;
other origins cannot change state; bodies, JSON nesting and WebSocket connections
are bounded; exported CSV cannot carry a spreadsheet formula."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import select
import shutil
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the HTTP gateway needs the [http] extra")
pytest.importorskip("uvicorn", reason="the HTTP gateway needs the [http] extra")
httpx = pytest.importorskip("httpx", reason="the HTTP tests need httpx (the [test] extra)")

from other_user import as_nobody, can_switch_user, open_file, run_python_as_nobody  # noqa: E402

from linkband_history.export import export as cli_export  # noqa: E402
from linkband_history.export import read_back
from linkband_history.http_login import dashboard_url  # noqa: E402
from linkband_historyd.harness import DaemonProcess# noqa: E402
from conftest import free_port, proc_kb

FORMULA = '=HYPERLINK("http://x","y")'
MAX_WS = 4
LOCAL_APP = "http://localhost:5173"
DEEP = 1500                       # past Python's recursion limit when parsed


class Gateway:
    """The daemon, its http child's address, pid and current token."""

    def __init__(self, daemon: DaemonProcess, port: int):
        self.d, self.port = daemon, port
        self.url = f"http://127.0.0.1:{port}/history"
        self.origin = f"http://127.0.0.1:{port}"

    def info(self, timeout: float = 60.0, not_pid: int | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = json.loads((self.d.run_dir / "http.json").read_text())
                if info["pid"] != not_pid:
                    return info
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"the http child did not write http.json:\n{self.d.log()}")

    @property
    def token(self) -> str:
        return (self.d.run_dir / "http.token").read_text().strip()

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def counts(self) -> dict:
        return {kind: self.d.ask(kind, count=True, limit=1)["total"] for kind in ("logs", "metrics")}


@pytest.fixture(scope="module")
def gw():
    # a base other users can walk through, so that only the gateway's own rules stand in the way
    base = Path(tempfile.mkdtemp(prefix="lbh-http-", dir="/tmp"))
    os.chmod(base, 0o755)
    port = free_port()
    d = DaemonProcess(base / "d", env={
        "LINKBAND_HISTORY_COLLECTOR": "false", "LINKBAND_HISTORY_HTTP": "true",
        "LINKBAND_HISTORY_HTTP_PORT": str(port), "LINKBAND_HISTORY_HTTP_MAX_WEBSOCKETS": str(MAX_WS),
        "LINKBAND_HISTORY_HTTP_ALLOWED_ORIGINS": LOCAL_APP})
    try:
        d.start()
        os.chmod(d.base, 0o755)
        g = Gateway(d, port)
        assert g.info()["url"] == g.url
        with d.client() as c:
            c.store_logs([{"timestamp": time.time() - 7200 + i, "level": "WARNING", "logger_name": "SDK.web",
                           "message": FORMULA if i == 0 else f"line {i}"} for i in range(50)])
            c.store_metrics([{"timestamp": time.time() - 7200 + i, "metric_name": "offset",
                              "value": -5.0 - i, "unit": "uV"} for i in range(20)])
            assert c.flush(30)
        yield g
    finally:
        d.close()
        shutil.rmtree(base, ignore_errors=True)


def as_other_user(code: str) -> dict:
    """Run ``code`` (which prints one JSON line) as uid 65534; skip where impossible."""
    if not can_switch_user() or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as another user (uid 65534)")
    done = run_python_as_nobody(code)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the token ---------------------------------------------------------------------------

@pytest.mark.skipif(sys.platform == "win32", reason="file modes and uids")
def test_another_user_cannot_read_the_token_file(gw):
    run = gw.d.run_dir
    for name in ("http.token", "http.json"):
        st = os.lstat(run / name)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, name
        assert st.st_uid == os.getuid()
    if not can_switch_user():
        pytest.skip("needs root to act as another user (uid 65534)")
    checks = {n: open_file(run / n) for n in ("http.token", "http.json")}
    assert as_nobody(checks) == {n: "EACCES" for n in checks}
    os.chmod(run, 0o711)                   # defence in depth: the files' own modes refuse too
    try:
        assert as_nobody(checks) == {n: "EACCES" for n in checks}
    finally:
        os.chmod(run, 0o700)


def test_another_user_without_the_token_reads_nothing_and_cleans_nothing(gw):
    before = gw.counts()
    got = as_other_user(f"""
import httpx, json
url = {gw.url!r}
out = {{}}
for path in ("/logs", "/stats", "/ui", "/openapi.json", "/static/app.js"):
    r = httpx.get(url + path)
    out[path] = [r.status_code, r.headers.get("www-authenticate"), r.text]
r = httpx.post(url + "/cleanup", json={{"policy": {{"log": 1e-9, "metric": 1e-9}}, "force": True}})
out["cleanup"] = [r.status_code, r.headers.get("www-authenticate"), r.text]
print(json.dumps(out))
""")
    for what, (status, challenge, body) in got.items():
        assert status == 401 and challenge == "Bearer", (what, status, body)
        assert json.loads(body)["error"]["code"] == "unauthorized", what
        assert "line 1" not in body and str(gw.d.db_path) not in body
    time.sleep(0.5)
    assert gw.counts() == before


def test_the_owner_with_the_token_gets_answers(gw):
    before = gw.counts()
    with httpx.Client(base_url=gw.url, headers=gw.auth(), timeout=30) as http:
        r = http.get("/logs", params={"limit": 5})
        assert r.status_code == 200 and len(r.json()["rows"]) == 5
        r = http.post("/analyze", json={})
        assert r.status_code == 200, r.text
    assert gw.counts() == before


def test_a_wrong_token_is_refused_wherever_it_is_put(gw):
    before = gw.counts()
    wrong = gw.token[:-2] + ("AA" if not gw.token.endswith("AA") else "BB")
    attempts = [{"headers": {"Authorization": f"Bearer {wrong}"}},
                {"headers": {"Authorization": "Bearer"}},
                {"headers": {"Authorization": f"Basic {gw.token}"}},
                {"headers": {"Cookie": f"linkband_history_token={wrong}"}},
                {"headers": {"Authorization": "Bearer 연결".encode("utf-8")}},
                {"params": {"token": gw.token}}]       # a token in the URL logs in only at /ui
    for kw in attempts:
        r = httpx.get(gw.url + "/logs", timeout=30, **kw)
        assert r.status_code == 401, (kw, r.text)
        r = httpx.post(gw.url + "/cleanup", json={"policy": {"log": 1e-9}, "force": True},
                       timeout=30, **kw)
        assert r.status_code == 401, (kw, r.text)
    assert httpx.get(gw.url + "/ui", params={"token": wrong}, timeout=30).status_code == 401
    assert gw.counts() == before


def test_a_new_gateway_start_makes_a_new_token_and_the_old_one_stops_working(gw):
    import psutil
    old_token, old = gw.token, gw.info()
    psutil.Process(old["pid"]).kill()                   # the supervisor starts it again
    new = gw.info(not_pid=old["pid"])
    deadline = time.monotonic() + 60
    while gw.token == old_token and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.token != old_token and new["url"] == gw.url
    r = httpx.get(gw.url + "/health", headers={"Authorization": f"Bearer {old_token}"}, timeout=30)
    assert r.status_code == 401
    assert httpx.get(gw.url + "/health", headers=gw.auth(), timeout=30).status_code == 200
    assert dashboard_url(str(gw.d.run_dir)) == gw.url + "/ui?token=" + gw.token


# -- Origin ------------------------------------------------------------------------------

def test_another_origin_cannot_change_state_even_with_the_token(gw):
    before = gw.counts()
    body = {"policy": {"log": 1e-9, "metric": 1e-9}, "force": True}
    for origin in ("http://attacker.example", f"http://127.0.0.1:{gw.port + 1}", "null"):
        r = httpx.post(gw.url + "/cleanup", json=body, timeout=30,
                       headers={**gw.auth(), "Origin": origin})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (origin, r.text)
    assert gw.counts() == before
    for origin in (gw.origin, LOCAL_APP):                # its own page, an allowed app
        r = httpx.post(gw.url + "/analyze", json={}, timeout=30,
                       headers={**gw.auth(), "Origin": origin})
        assert r.status_code == 200, (origin, r.text)


def test_a_websocket_from_another_origin_is_refused(gw):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    ws_url = gw.url.replace("http://", "ws://") + "/ws"
    for origin in ("http://attacker.example", "http://localhost:5174"):
        with pytest.raises(InvalidStatus) as refused:
            with connect(ws_url, origin=origin, additional_headers=gw.auth(), open_timeout=10):
                pass
        assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        with connect(ws_url, origin=gw.origin, open_timeout=10):     # its own origin, no token
            pass
    assert refused.value.response.status_code == 401
    with connect(ws_url + "?token=" + gw.token, origin=gw.origin, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"subscribed": [""]}


# -- bounds ------------------------------------------------------------------------------

def post_chunked(port: int, path: str, headers: dict, total: int, piece: int = 64 * 1024):
    """POST ``total`` bytes with no Content-Length (chunked) until the server answers;
    returns (status, bytes sent)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
            "Transfer-Encoding: chunked", *(f"{k}: {v}" for k, v in headers.items())]
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    chunk = f"{piece:x}\r\n".encode() + b'{"pad": "' + b"x" * (piece - 9) + b"\r\n"
    sent, data = 0, b""
    try:
        while sent < total and not select.select([s], [], [], 0)[0]:
            s.sendall(chunk)
            sent += piece
        while b"\r\n" not in data:
            more = s.recv(65536)
            if not more:
                break
            data += more
    except OSError:
        pass
    finally:
        s.close()
    return (int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None), sent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the RSS")
def test_a_body_over_one_mib_is_refused_without_being_read(gw):
    pid = gw.info()["pid"]
    base = proc_kb(pid, "VmHWM")
    r = httpx.post(gw.url + "/analyze", content=b"{" + b" " * (1 << 20) + b"}", timeout=30,
                   headers={**gw.auth(), "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    status, sent = post_chunked(gw.port, "/history/analyze", gw.auth(), 150 << 20)
    assert status == 413
    growth_mb = (proc_kb(pid, "VmHWM") - base) / 1024
    print(f"gateway peak RSS grew {growth_mb:.1f} MB; {sent / 2**20:.1f} MiB sent before the 413")
    assert growth_mb < 20 and sent < 100 << 20
    # a Content-Length that says too much: refused before anything is read
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    s.sendall((f"POST /history/cleanup HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n"
               f"Authorization: Bearer {gw.token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {150 << 20}\r\n\r\n{{").encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 413")
    s.close()
    assert httpx.get(gw.url + "/health", headers=gw.auth(), timeout=30).status_code == 200


def test_deeply_nested_json_is_a_400_not_a_500(gw):
    deep = "[" * DEEP + "]" * DEEP
    with httpx.Client(base_url=gw.url, headers=gw.auth(), timeout=30) as http:
        for path, params in [("/logs", {"logger_name": deep}), ("/metrics", {"tags": deep}),
                             ("/metrics/aggregate", {"functions": "[" * 40 + "]" * 40})]:
            r = http.get(path, params=params)
            assert r.status_code == 400, (path, r.status_code, r.text[:300])
            assert "nested deeper" in r.json()["error"]["message"]
        for body in ('{"kinds": ' + "[" * 100_000 + "]" * 100_000 + "}",
                     '{"kinds": ' + "[" * 40 + "]" * 40 + "}"):
            r = http.post("/analyze", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and "nested deeper" in r.json()["error"]["message"], r.text[:300]
    from websockets.sync.client import connect
    with connect(gw.url.replace("http://", "ws://") + "/ws", additional_headers=gw.auth(),
                 open_timeout=10) as ws:
        ws.recv(timeout=10)
        ws.send("[" * 30_000 + "]" * 30_000)           # under the 64 KiB message limit
        assert json.loads(ws.recv(timeout=10))["error"]["code"] == "bad_request"
        ws.send(json.dumps({"subscribe": ["alert"]}))                  # still open and working
        assert json.loads(ws.recv(timeout=10)) == {"subscribed": ["", "alert"]}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts the gateway's fds in /proc")
def test_websocket_connections_past_the_cap_are_refused_and_leave_nothing_open(gw):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    ws_url = gw.url.replace("http://", "ws://") + "/ws"
    pid = gw.info()["pid"]
    fds = lambda: len(os.listdir(f"/proc/{pid}/fd"))        # noqa: E731
    before = fds()
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(connect(ws_url, additional_headers=gw.auth(), open_timeout=10))
                  for _ in range(MAX_WS)]
        for ws in opened:
            assert json.loads(ws.recv(timeout=10)) == {"subscribed": [""]}
        for _ in range(3 * MAX_WS):
            with pytest.raises(InvalidStatus) as refused:
                with connect(ws_url, additional_headers=gw.auth(), open_timeout=10):
                    pass
            assert refused.value.response.status_code == 503
        opened[0].close()
        deadline = time.monotonic() + 20           # room for one again, once the gateway saw the close
        while True:
            try:
                with connect(ws_url, additional_headers=gw.auth(), open_timeout=10) as ws:
                    assert json.loads(ws.recv(timeout=10)) == {"subscribed": [""]}
                break
            except InvalidStatus:
                assert time.monotonic() < deadline, "a closed WebSocket still counts"
                time.sleep(0.1)
    deadline = time.monotonic() + 20
    while fds() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fds() <= before


# -- CSV ---------------------------------------------------------------------------------

def test_a_formula_in_a_log_line_is_exported_escaped(gw, tmp_path):
    r = httpx.post(gw.url + "/logs/export", json={"format": "csv"}, headers=gw.auth(), timeout=60)
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["message"] for x in rows if "HYPERLINK" in x["message"]] == ["'" + FORMULA]
    r = httpx.post(gw.url + "/metrics/export", json={"format": "csv"}, headers=gw.auth(), timeout=60)
    values = [x["value"] for x in csv.DictReader(io.StringIO(r.text))]
    assert values and all(v.startswith("-") for v in values)          # numbers stay numbers
    # the tool's export escapes the same way, and reads back what was stored
    path = tmp_path / "logs.csv"
    with gw.d.client() as c:
        cli_export(c, "logs", {}, "csv", str(path))
    text = path.read_text(encoding="utf-8")
    assert "'" + FORMULA.replace('"', '""') in text and "\n" + FORMULA not in text
    assert FORMULA in [x["message"] for x in read_back(str(path), "csv", "logs")]


# -- linkband-history ui ------------------------------------------------------------------

def test_the_ui_command_prints_a_url_that_logs_the_browser_in(gw):
    import subprocess
    done = subprocess.run([sys.executable, "-m", "linkband_history.cli", "ui"], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "LINKBAND_HISTORY_RUNTIME_DIR": str(gw.d.run_dir)})
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url == f"{gw.url}/ui?token={gw.token}"
    with httpx.Client(timeout=30, follow_redirects=True) as browser:
        page = browser.get(url)
        assert page.status_code == 200 and str(page.url) == gw.url + "/ui"
        assert "text/html" in page.headers["content-type"]
        assert browser.get(gw.url + "/logs", params={"limit": 1}).status_code == 200   # the cookie


@pytest.mark.skipif(sys.platform == "win32", reason="file modes and uids")
def test_the_ui_command_refuses_token_files_others_could_have_changed(tmp_path):
    from linkband_history.http_login import LoginError
    (tmp_path / "http.json").write_text(json.dumps({"url": "http://127.0.0.1:1/history"}))
    os.chmod(tmp_path / "http.json", 0o600)
    (tmp_path / "elsewhere").write_text("planted\n")
    os.chmod(tmp_path / "elsewhere", 0o600)
    os.symlink(tmp_path / "elsewhere", tmp_path / "http.token")
    with pytest.raises(LoginError, match="not a regular file"):
        dashboard_url(str(tmp_path))
    os.unlink(tmp_path / "http.token")
    (tmp_path / "http.token").write_text("tok\n")
    os.chmod(tmp_path / "http.token", 0o644)
    with pytest.raises(LoginError, match="accessible by other users"):
        dashboard_url(str(tmp_path))
    os.chmod(tmp_path / "http.token", 0o600)
    assert dashboard_url(str(tmp_path)) == "http://127.0.0.1:1/history/ui?token=tok"
    if can_switch_user():
        os.chown(tmp_path / "http.token", 65534, 65534)
        with pytest.raises(LoginError, match="belongs to uid 65534"):
            dashboard_url(str(tmp_path))
    with pytest.raises(LoginError, match="does not exist"):
        dashboard_url(str(tmp_path / "none"))
