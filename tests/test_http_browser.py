"""The dashboard page in headless Chromium, driven by selenium, on a real daemon and a
real uvicorn server. Needs Debian's chromium and chromium-driver (and fonts-noto-cjk for
Korean glyphs in screenshots); the test installs them when it runs as root and they are
missing, and skips only when that is impossible:

    apt-get update && apt-get install -y chromium chromium-driver fonts-noto-cjk
"""
from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the HTTP gateway needs the [http] extra")
pytest.importorskip("uvicorn", reason="the HTTP gateway needs the [http] extra")
pytest.importorskip("selenium", reason="the browser test needs selenium (the [test] extra)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_http import TOKEN, GatewayServer  # noqa: E402

from linkband_history.humanize import format_value  # noqa: E402
from linkband_historyd.http import app as hg  # noqa: E402

PACKAGES = ["chromium", "chromium-driver", "fonts-noto-cjk"]
INSTALL = "apt-get update && apt-get install -y " + " ".join(PACKAGES)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000", "--lang=ko-KR"]
XSS = '<img src=x onerror="window.__xss=1">연결 <b>bold</b>'
ARTIFACTS = Path(__file__).parent / "artifacts"
CORES = 4


def _which():
    return (shutil.which("chromium") or shutil.which("chromium-browser"),
            shutil.which("chromedriver"))


@pytest.fixture(scope="session")
def chromium():
    browser, driver = _which()
    if browser and driver:
        return browser, driver
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip(f"chromium / chromedriver missing and cannot be installed here; run: {INSTALL}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
            if done.returncode != 0:
                pytest.skip(f"installing chromium failed ({' '.join(cmd)}): "
                            f"{(done.stderr or done.stdout)[-500:]}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"installing chromium failed: {exc}")
    browser, driver = _which()
    if not (browser and driver):
        pytest.skip(f"chromium still missing after: {INSTALL}")
    return browser, driver


@pytest.fixture
def browser(chromium, tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium[0]
    for flag in FLAGS:
        opts.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=chromium[1], log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def fill(daemon, now):
    with daemon.client() as c:
        c.store_metrics([{"timestamp": now - 3500 + i * 10, "metric_type": "cpu",
                          "metric_name": "cpu_percent", "unit": "%",
                          "value": 40 + 25 * math.sin(i / 40.0)} for i in range(350)])
        c.store_metrics([{"timestamp": now - 3500 + i * 10, "metric_type": "stream",
                          "metric_name": "eeg_sample_rate", "unit": "Hz",
                          "value": 250 - (i % 7) * 0.4} for i in range(350)])
        c.store_metrics([{"timestamp": now - 3500 + i * 10, "metric_type": "cpu",
                          "metric_name": "cpu_core_percent", "unit": "%",
                          "tags": {"host": "lab-1", "core": str(k)},
                          "value": 10 + 20 * k + 5 * math.sin(i / 30.0)}
                         for i in range(350) for k in range(CORES)])
        c.store_metrics([{"timestamp": now - 60, "metric_type": "disk", "metric_name": "disk_used_gb",
                          "unit": "GB", "value": 74.67426681518555},
                         {"timestamp": now - 60, "metric_type": "network",
                          "metric_name": "network_recv_bytes_per_s", "unit": "bytes/s",
                          "value": 8.84e7}])
        c.store_logs([{"timestamp": now - 3000 + i * 20, "level": lv, "logger_name": lg,
                       "message": msg} for i, (lv, lg, msg) in enumerate([
                           ("WARNING", "DEVICE.manager", "디바이스 연결이 끊어졌습니다"),
                           ("INFO", "DEVICE.manager", "재연결 시도 중 (1/3)"),
                           ("INFO", "DEVICE.manager", "디바이스 연결 성공: LXB-01"),
                           ("ERROR", "STREAM.eeg", "[STREAM:EEG] buffer overflow"),
                           ("INFO", "SDK.core", "heartbeat ok"),
                           ("WARNING", "SDK.web", XSS)] * 5)])
        c.store_alerts([{"level": "WARNING", "category": "DEVICE", "title": "배터리 부족",
                         "description": "LXB-01 battery 12%", "source_component": "device"},
                        {"level": "ERROR", "category": "STREAM", "title": "EEG stream stalled",
                         "description": "no samples for 30 s", "source_component": "stream"}])
        assert c.flush(30)


ACCENT_PIXELS = """
const c = document.querySelector('canvas.chart[data-metric="cpu_percent"]');
if (!c || !c.width) return -1;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;   // the series colour #2563eb (37, 99, 235), anti-aliasing allowed
for (let i = 0; i < d.length; i += 4)
  if (d[i + 3] > 200 && d[i] < 90 && d[i + 1] > 60 && d[i + 1] < 140 && d[i + 2] > 190) n++;
return n;
"""
# pixels of each line colour of a chart: [blue #2563eb, red #dc2626, green #16a34a, amber #d97706]
LINE_PIXELS = """
const c = document.querySelector(`canvas.chart[data-metric="${arguments[0]}"]`);
if (!c || !c.width) return null;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
const want = [[37, 99, 235], [220, 38, 38], [22, 163, 74], [217, 119, 6]], n = [0, 0, 0, 0];
for (let i = 0; i < d.length; i += 4)
  want.forEach(([r, g, b], k) => {
    if (d[i + 3] > 200 && Math.abs(d[i] - r) < 30 && Math.abs(d[i + 1] - g) < 30 && Math.abs(d[i + 2] - b) < 30) n[k]++;
  });
return n;
"""


def number_cases(n=400):
    """Values and units for the page's fmtValue against the tool's format_value."""
    rnd = random.Random(18)
    units = [None, "", "%", "ms", "Hz", "B", "bytes", "KB", "MB", "GB", "bytes/s", "MB/s", "count",
             "ops/s", "uV"]
    fixed = [74.67426681518555, 2540794.780281628, 8.84e7, 1234, 0.25, 0.125, 2.5, 1023.95, 1024,
             0.005, -0.004, 999.995, 1e16, 0.0, -2.5]
    values = fixed + [rnd.choice((1, -1)) * 10 ** rnd.uniform(-8, 17) for _ in range(n)]
    return [[v, units[i % len(units)]] for i, v in enumerate(values)] + [[v, "GB"] for v in fixed]


def push_until(daemon, browser, store, seen, timeout=30):
    """Store through the daemon (``store(client)``) until ``seen(browser)``: the page
    refreshes on the daemon's own events over /history/ws, nothing else prompts it."""
    deadline = time.monotonic() + timeout
    while True:
        with daemon.client() as c:
            store(c)
            assert c.flush(10)
        until = time.monotonic() + 3
        while time.monotonic() < until:
            if seen(browser):
                return
            time.sleep(0.1)
        assert time.monotonic() < deadline, "the page did not refresh on the daemon's events"


def test_dashboard_in_chromium(daemon, browser, tmp_path):
    now = time.time()
    fill(daemon, now)
    # the gateway forwards the daemon's own events socket: no test-owned publisher
    srv = GatewayServer(hg.create_app(daemon.query, daemon.events, token=TOKEN)).start()
    wait = WebDriverWait(browser, 20, poll_frequency=0.1)
    try:
        browser.get(srv.url + "/ui")                  # without the token: refused
        assert "unauthorized" in browser.find_element(By.TAG_NAME, "body").text
        browser.get_log("browser")                    # its 401 is not the dashboard's error
        # logged in as `linkband-history ui` prints it: the cookie, then the clean URL
        browser.get(srv.url + "/ui?token=" + TOKEN)
        assert browser.current_url == srv.url + "/ui"
        cookie = browser.get_cookie("linkband_history_token")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/history"
        assert browser.execute_script("return document.cookie") == ""     # not readable by scripts
        # a chart is drawn: the series colour covers a good number of pixels
        pixels = wait.until(lambda d: (n := d.execute_script(ACCENT_PIXELS)) > 300 and n)
        assert pixels > 300
        wait.until(lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class"))
        alerts = browser.find_element(By.ID, "alerts").text
        assert "배터리 부족" in alerts and "EEG stream stalled" in alerts
        assert browser.find_element(By.ID, "storage").text.startswith("DB ")

        # numbers as the tool prints them: the page's fmtValue is the tool's format_value
        tiles = {t.find_element(By.CLASS_NAME, "name").text: t.find_element(By.CLASS_NAME, "val").text
                 for t in browser.find_elements(By.CSS_SELECTOR, "#latest .tile")}
        assert tiles["disk_used_gb"] == "74.7 GB" and tiles["network_recv_bytes_per_s"] == "84.3 MB/s"
        assert tiles["eeg_sample_rate"].endswith(" Hz") and tiles["cpu_percent"].endswith("%")
        cases = number_cases()
        page = browser.execute_script(
            "return arguments[0].map(([v, u]) => window.lbhFormat.fmtValue(v, u))", cases)
        assert page == [format_value(v, u) for v, u in cases]
        assert browser.find_element(By.ID, "storage").text == \
            "DB " + format_value(daemon.ask("dashboard")["rows"][0]["storage"]["size_bytes"], "B")

        # search for a Korean term: the matches are <mark>ed, log text never becomes HTML
        browser.find_element(By.ID, "q").send_keys("연결")
        browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) >= 20)
        marks = browser.find_elements(By.CSS_SELECTOR, "#results mark")
        assert marks and {m.text for m in marks} == {"연결"}
        first = browser.find_element(By.CSS_SELECTOR, "#results li .msg")
        assert "<mark>연결</mark>" in first.get_attribute("innerHTML")
        assert "20 of 20 matching lines" in browser.find_element(By.ID, "search-status").text
        hostile = [li for li in browser.find_elements(By.CSS_SELECTOR, "#results li .msg")
                   if "onerror" in li.text]
        assert hostile and hostile[0].text == XSS
        assert not browser.find_elements(By.CSS_SELECTOR, "#results img, #results b")
        assert browser.execute_script("return window.__xss") is None

        # live: a record pushed through the daemon -> its history_data_updated event ->
        # /history/ws -> the page refreshes by itself
        picker = "#metric-picker option[value=battery_level]"
        push_until(daemon, browser,
                   lambda c: c.store_metrics([{"metric_name": "battery_level", "value": 87.0,
                                               "unit": "%"}]),
                   lambda b: b.find_elements(By.CSS_SELECTOR, picker))
        # and a stored alert (alert_stored) shows up among the open alerts
        push_until(daemon, browser,
                   lambda c: c.store_alerts([{"alert_id": "live-1", "level": "CRITICAL",
                                              "category": "DEVICE", "title": "전극 접촉 불량"}]),
                   lambda b: "전극 접촉 불량" in b.find_element(By.ID, "alerts").text)
        assert browser.find_element(By.ID, "alert-count").text == "3"

        # choosing from the picker adds a chart; per-core CPU is one line per core
        for name in ("battery_level", "cpu_core_percent"):
            browser.execute_script("const s = document.getElementById('metric-picker');"
                                   f"s.value = '{name}'; s.dispatchEvent(new Event('change'));")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'canvas[data-metric="{name}"]'))
        cores = browser.find_element(By.CSS_SELECTOR, 'canvas[data-metric="cpu_core_percent"]')
        assert cores.get_attribute("data-series") == str(CORES)
        legend = cores.find_element(By.XPATH, "following-sibling::div[@class='legend']").text
        assert legend.split() == [f"core={k}" for k in range(CORES)]
        lines = wait.until(lambda d: (n := d.execute_script(LINE_PIXELS, "cpu_core_percent"))
                           and min(n) > 100 and n)
        assert min(lines) > 100, lines                       # every core's colour is drawn
        browser.find_element(By.CSS_SELECTOR, "#ranges button[data-range='6h']").click()
        wait.until(lambda d: d.execute_script(ACCENT_PIXELS) > 300)

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        if os.environ.get("LINKBAND_SCREENSHOT"):
            browser.save_screenshot(os.environ["LINKBAND_SCREENSHOT"])
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
        print(f"dashboard screenshot: {shot}")
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, [e["message"] for e in errors]
    finally:
        srv.stop()
