"""The tool in a real terminal: tmux runs `status`, `dashboard`, `search 연결`, `logs -f`
and a pager against a real daemon; ``capture-pane -e`` keeps the escapes, so the tests
see the colours and highlights a person sees. The captures are saved under
``tests/artifacts/terminal/`` (gitignored), ``.ansi`` with escapes and ``.txt`` plain
(``cat`` an ``.ansi`` file in a terminal to see it). Needs tmux (installed with
apt-get when missing and possible; the tests skip and say so otherwise)."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from linkband_history.cli.terminal import display_width

ARTIFACTS = Path(__file__).parent / "artifacts" / "terminal"
SGR = re.compile(r"\x1b\[([0-9;]*)m")
WIDTH, HEIGHT = 200, 60


@pytest.fixture(scope="session")
def tmux_bin():
    path = shutil.which("tmux")
    if path:
        return path
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("tmux missing and cannot be installed here; run: apt-get install tmux")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "tmux", "less"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"installing tmux failed ({' '.join(cmd)}): {done.stderr[-300:]}")
    return shutil.which("tmux") or pytest.skip("tmux still missing after apt-get install tmux")


class Tmux:
    """One tmux server of its own (-L), one session per command."""

    def __init__(self, binary: str, daemon):
        self.binary, self.daemon = binary, daemon
        self.socket = f"lbh-{uuid.uuid4().hex[:8]}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def tmux(self, *args, check=True) -> str:
        return subprocess.run([self.binary, "-u", "-L", self.socket, "-f", os.devnull, *args],
                              capture_output=True, text=True, check=check, timeout=30).stdout

    def run(self, name: str, tool_args: str, height: int = HEIGHT, env: dict | None = None) -> str:
        """Start ``linkband-history TOOL_ARGS`` in a session of its own; returns its name.
        The pane stays after the command, with ``[exit N]``."""
        env = {"LINKBAND_HISTORY_QUERY": self.daemon.query, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "TERM": "tmux-256color", "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
        # pytest's environment may hold COLUMNS=80 and LINES=24: the pane's size must count
        unset = " ".join(f"-u {v}" for v in ("NO_COLOR", "PAGER", "LINKBAND_HISTORY_PAGER", "LESS",
                                              "COLUMNS", "LINES") if v not in env)
        assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        cmd = (f"env {unset} {assigns} {shlex.quote(sys.executable)} -m linkband_history.cli "
               f"{tool_args}; printf '\\n[exit %s]\\n' $?; sleep 600")
        self.tmux("new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(height), cmd)
        return name

    def capture(self, name: str, escapes: bool) -> str:
        return self.tmux("capture-pane", "-p", "-t", name, *(["-e"] if escapes else []))

    def wait_for(self, name: str, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            plain = self.capture(name, False)
            if text in plain:
                return plain
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on the screen of {name}:\n{self.capture(name, False)}")

    def save(self, name: str) -> tuple[str, str]:
        """Both captures, saved as artifacts; (with escapes, plain)."""
        ansi, plain = self.capture(name, True), self.capture(name, False)
        (ARTIFACTS / f"{name}.ansi").write_text(ansi)
        (ARTIFACTS / f"{name}.txt").write_text(plain)
        print(f"terminal capture: {ARTIFACTS / name}.ansi and .txt")
        return ansi, plain

    def close(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def term(tmux_bin, daemon):
    t = Tmux(tmux_bin, daemon)
    yield t
    t.close()


LOGGERS = ("DEVICE.manager", "장치.관리자", "STREAM.eeg")


def fill(daemon, n_logs=1234):
    now = time.time()
    with daemon.client() as c:
        c.store_metrics([
            {"metric_type": "disk", "metric_name": "disk_used_gb", "value": 74.67426681518555,
             "unit": "GB", "tags": {"mount": "/"}},
            {"metric_type": "disk", "metric_name": "disk_read_bytes_per_s",
             "value": 2540794.780281628, "unit": "bytes/s"},
            {"metric_type": "cpu", "metric_name": "cpu_percent", "value": 15.4821, "unit": "%"},
            {"metric_type": "memory", "metric_name": "memory_used_mb", "value": 6143.9, "unit": "MB"}])
        c.store_logs([{"timestamp": now - n_logs + i, "level": "INFO", "logger_name": "SDK.core",
                       "message": f"heartbeat {i}"} for i in range(n_logs - 4)])
        c.store_logs([
            {"timestamp": now - 3, "level": "WARNING", "logger_name": LOGGERS[0],
             "message": "디바이스 연결이 끊어졌습니다"},
            {"timestamp": now - 2, "level": "INFO", "logger_name": LOGGERS[1],
             "message": "재연결 시도 중 (1/3)"},
            {"timestamp": now - 1, "level": "ERROR", "logger_name": LOGGERS[2],
             "message": "연결 실패: 장치가 응답하지 않습니다"},
            {"timestamp": now, "level": "INFO", "logger_name": LOGGERS[0],
             "message": "디바이스 연결 성공: LXB-01"}])
        c.store_alerts([{"level": "ERROR", "category": "DEVICE", "title": "배터리 부족"}])
        assert c.flush(30)


def marked(ansi_line: str, text: str) -> set[str]:
    """The SGR parameters in force where ``text`` starts in a captured line (``text``
    holds no escape)."""
    at = ansi_line.index(text)
    on: set[str] = set()
    for m in SGR.finditer(ansi_line[:at]):
        params = m.group(1).split(";") if m.group(1) else ["0"]
        if "0" in params:
            on.clear()
        on.update(p for p in params if p not in ("0", ""))
    return on


def styled(ansi_line: str, want=("1", "31")) -> list[str]:
    """The runs of text shown with every SGR parameter of ``want`` (bold red: the matches)."""
    runs, on, pos = [], set(), 0
    for m in [*SGR.finditer(ansi_line), None]:
        text = ansi_line[pos:m.start() if m else len(ansi_line)]
        if text and set(want) <= on:
            runs.append(text)
        if m is None:
            break
        params = m.group(1).split(";") if m.group(1) else ["0"]
        if "0" in params:
            on.clear()
        on.update(p for p in params if p not in ("0", ""))
        pos = m.end()
    return runs


def line_with(ansi: str, text: str) -> str:
    """The captured line (with escapes) whose plain text holds ``text``."""
    return next(line for line in ansi.splitlines() if text in SGR.sub("", line))


def test_status_and_dashboard_show_humanized_numbers(term, daemon):
    fill(daemon)
    term.run("status", "status")
    term.wait_for("status", "[exit 0]")
    _, plain = term.save("status")
    assert re.search(r"^system_logs +1,234$", plain, re.M), plain
    assert re.search(r"^uptime +\d+ (s|min \d\d s)$", plain, re.M), plain
    assert re.search(r"^database +\S+ +\(\d+\.\d (KB|MB)\)$", plain, re.M), plain

    term.run("dashboard", "dashboard")
    term.wait_for("dashboard", "[exit 0]")
    ansi, plain = term.save("dashboard")
    for name, shown in (("disk_used_gb", "74.7 GB"), ("disk_read_bytes_per_s", "2.4 MB/s"),
                        ("cpu_percent", "15.5%"), ("memory_used_mb", "6.0 GB")):
        assert re.search(rf"^{name} +{re.escape(shown)} ", plain, re.M), (name, plain)
    assert "74.67" not in plain and "2540794" not in plain
    assert re.search(r"^last hour: .*INFO 1,232", plain, re.M), plain
    assert "32" in marked(line_with(ansi, "last hour"), "INFO")          # INFO in green
    assert "배터리 부족" in plain and re.search(r"^storage \d+\.\d (KB|MB)$", plain, re.M)


def test_search_highlights_the_matches_and_aligns_korean_columns(term, daemon):
    fill(daemon)
    term.run("search", "search 연결")
    term.wait_for("search", "[exit 0]")
    ansi, plain = term.save("search")
    rows = [line for line in plain.splitlines() if "연결" in line]
    assert len(rows) == 4, plain
    # the message column starts at the same terminal column on every row, Korean
    # logger names (two cells a syllable) or not
    starts = {display_width(line[:line.index(msg)]) for line, msg in zip(rows, (
        "디바이스 연결 성공", "연결 실패", "재연결 시도", "디바이스 연결이"))}
    assert len(starts) == 1, rows
    header = plain.splitlines()[0]
    assert display_width(header[:header.index("message")]) == starts.pop()
    for line in (ln for ln in ansi.splitlines() if "연결" in ln):
        assert styled(line) == ["연결"], repr(line)            # bold red: the match, only it
    assert "31" in marked(line_with(ansi, "연결 실패"), "ERROR")     # the level coloured too
    assert "33" in marked(line_with(ansi, "디바이스 연결이"), "WARNING")

    term.run("search-no-color", "search 연결", env={"NO_COLOR": "1"})
    term.wait_for("search-no-color", "[exit 0]")
    ansi, _ = term.save("search-no-color")
    assert not SGR.search(ansi.replace("\x1b[39m", "").replace("\x1b[0m", "")), repr(ansi)


def test_plain_text_when_piped_or_json(daemon):
    fill(daemon, n_logs=10)
    env = {**os.environ, "LINKBAND_HISTORY_QUERY": daemon.query}
    env.pop("NO_COLOR", None)
    for args in (["search", "연결"], ["dashboard"], ["--json", "search", "연결"]):
        out = subprocess.run([sys.executable, "-m", "linkband_history.cli", *args],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0 and "\x1b" not in out.stdout, (args, out.stdout)
        assert "연결" in out.stdout or args == ["dashboard"]


def test_logs_follow_colours_levels_and_highlights_grep_matches(term, daemon):
    fill(daemon, n_logs=10)
    term.run("logs-follow", "logs -f --grep 연결 --interval 0.1")
    term.wait_for("logs-follow", "디바이스 연결 성공")
    with daemon.client() as c:
        c.store_logs([{"level": "INFO", "logger_name": "SDK.core", "message": "heartbeat ok"},
                      {"level": "CRITICAL", "logger_name": "장치.관리자",
                       "message": "재연결 포기: 연결 3회 실패"}])
        assert c.flush(10)
    term.wait_for("logs-follow", "연결 3회 실패")
    ansi, plain = term.save("logs-follow")
    assert "heartbeat" not in plain                       # --grep keeps matching lines only
    line = line_with(ansi, "재연결 포기")
    assert styled(line) == ["CRITICAL", "연결", "연결"], repr(line)   # the level, both matches
    assert styled(line, ("1", "7", "31")) == ["CRITICAL"]           # reversed: the level only
    assert styled(line_with(ansi, "디바이스 연결 성공")) == ["연결"]
    term.tmux("send-keys", "-t", "logs-follow", "C-c")
    term.wait_for("logs-follow", "[exit 0]")


def test_long_output_goes_through_a_pager_unless_told_not_to(term, daemon):
    if not shutil.which("less"):
        pytest.skip("less missing: apt-get install less")
    fill(daemon, n_logs=100)
    term.run("pager", "logs --limit 80", height=20)
    screen = term.wait_for("pager", "lines 1-")              # less -M's prompt: paged
    assert "[exit" not in screen
    term.save("pager")
    term.tmux("send-keys", "-t", "pager", "q")
    term.wait_for("pager", "[exit 0]")

    term.run("no-pager", "--no-pager logs --limit 80", height=20)
    screen = term.wait_for("no-pager", "[exit 0]")
    assert "lines 1-" not in screen
    term.run("short", "logs --limit 5", height=20)            # fits the screen: less -F quits
    screen = term.wait_for("short", "[exit 0]")
    assert "heartbeat" in screen and "lines 1-" not in screen
