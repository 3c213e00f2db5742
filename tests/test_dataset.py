"""Parquet datasets for many machines: real daemons write one shared directory,
DuckDB reads it with Hive partitioning, a crash between a part's files and its
watermark is repaired, and the daemon's optional dependency is checked at start."""
from __future__ import annotations

import glob
import math
import os
import subprocess
import sys
import time

import pytest

from conftest import wait_for
from linkband_historyd.dataset import exporter, part_files
from linkband_historyd.storage import schema

duckdb = pytest.importorskip("duckdb")

DAY = 86_400.0
# two UTC days back from a midnight, so each host's rows span two date partitions
T0 = (time.time() // DAY - 1) * DAY - 3600.0


def dataset_env(root, host, **more):
    return {"LINKBAND_HISTORY_DATASET_DIR": str(root), "LINKBAND_HISTORY_DATASET_HOST": host,
            **more}


def run_export(d, **params):
    """The dataset job, started by hand, followed to its end; its run."""
    reply = d.ask("dataset.export", **params)
    assert reply["ok"], reply
    job = reply["rows"][0]["id"]
    wait_for(lambda: d.ask("jobs", id=job)["rows"][0]["state"] in ("done", "failed"), timeout=120)
    return d.ask("jobs", id=job)["rows"][0]


def push_metrics(d, n, offset=0):
    """n rows of three metrics, an hour on either side of a UTC midnight."""
    c = d.client(max_queue=n + 10)
    c.store_metrics([{"timestamp": T0 + (offset + i) * 7200.0 / n, "metric_type": "sdk",
                      "metric_name": f"m{i % 3}", "value": float((offset + i) % 101) / 4,
                      "tags": {"ch": i % 2}} for i in range(n)])
    assert c.flush(timeout=60)


def duck(sql, *args):
    return duckdb.connect().execute(sql, list(args)).fetchall()


def test_three_machines_write_one_dataset_that_duckdb_reads_as_each_daemon_answers(
        daemon_factory, tmp_path):
    fleet = tmp_path / "fleet"
    fleet.mkdir(mode=0o750)
    os.chmod(fleet, 0o750)
    hosts = {"lab-a": 3000, "lab-b": 4500, "lab-c": 6000}
    daemons = {h: daemon_factory(name=h, env=dataset_env(fleet, h)) for h in hosts}
    for h, n in hosts.items():
        push_metrics(daemons[h], n)
        c = daemons[h].client()
        c.store_logs([{"timestamp": T0 + i, "level": "INFO", "message": f"{h} line {i}"}
                      for i in range(200)])
        c.store_alerts([{"alert_id": f"{h}-1", "level": "WARNING", "title": "battery low"}])
        assert c.flush(timeout=30)
    for h, d in daemons.items():
        run = run_export(d)
        assert run["state"] == "done", run
        assert run["result"]["kinds"]["metric"]["rows"] == hosts[h]
        assert run["result"]["kinds"]["metric"]["files"] == 2          # two UTC dates

    metric = str(fleet / "kind=metric" / "**" / "*.parquet")
    got = dict(duck("SELECT host, count(*) FROM read_parquet(?, hive_partitioning=true) "
                    "GROUP BY host", metric))
    window = {"since": T0 - 1, "until": T0 + 3 * DAY, "tier": "detail", "bucket": "none",
              "group_by": ["metric_name"], "functions": ["count", "sum", "min", "max"]}
    answers = {h: d.ask("metrics.aggregate", **window) for h, d in daemons.items()}
    assert all(a["ok"] for a in answers.values()), answers
    assert got == {h: sum(r["count"] for r in a["rows"]) for h, a in answers.items()} == hosts

    # the fleet's aggregate per metric equals the daemons' answers put together
    fleet_agg = {name: (n, s, lo, hi) for name, n, s, lo, hi in duck(
        "SELECT metric_name, count(*), sum(value), min(value), max(value) "
        "FROM read_parquet(?, hive_partitioning=true) GROUP BY metric_name", metric)}
    for name in ("m0", "m1", "m2"):
        rows = [r for a in answers.values() for r in a["rows"] if r["metric_name"] == name]
        n, s, lo, hi = fleet_agg[name]
        assert n == sum(r["count"] for r in rows)
        assert math.isclose(s, sum(r["sum"] for r in rows), rel_tol=1e-12)
        assert (lo, hi) == (min(r["min"] for r in rows), max(r["max"] for r in rows))
    # partitions and types as documented
    assert duck("SELECT DISTINCT kind, typeof(timestamp), typeof(date) FROM "
                "read_parquet(?, hive_partitioning=true)", metric) == \
        [("metric", "TIMESTAMP WITH TIME ZONE", "DATE")]
    assert dict(duck("SELECT host, count(*) FROM read_parquet(?, hive_partitioning=true) "
                     "GROUP BY host", str(fleet / "kind=log" / "**" / "*.parquet"))) == \
        {h: 200 for h in hosts}

    # a second run writes only what is new: every row once, per host
    push_metrics(daemons["lab-b"], 500, offset=hosts["lab-b"])
    assert run_export(daemons["lab-b"])["result"]["kinds"]["metric"]["rows"] == 500
    assert run_export(daemons["lab-a"])["result"]["kinds"]["metric"]["rows"] == 0
    assert duck("SELECT host, count(*), count(DISTINCT id) FROM read_parquet(?, "
                "hive_partitioning=true) GROUP BY host ORDER BY host", metric) == \
        [("lab-a", 3000, 3000), ("lab-b", 5000, 5000), ("lab-c", 6000, 6000)]
    # what the daemon made takes the dataset root's permissions (no execute bits on files)
    part = glob.glob(metric, recursive=True)[0]
    assert os.stat(os.path.dirname(part)).st_mode & 0o777 == 0o750
    assert os.stat(part).st_mode & 0o777 == 0o640


@pytest.mark.parametrize("renames", [1, 2])
def test_a_kill_between_a_parts_files_and_its_watermark_leaves_no_duplicate_and_no_gap(
        daemon_factory, tmp_path, renames):
    """renames=1: killed with one of the part's two files renamed; 2: with both."""
    root, trigger = tmp_path / "ds", tmp_path / "crash-after"
    trigger.write_text(str(renames))
    d = daemon_factory(env=dataset_env(root, "crashy", **{part_files.FAULT_ENV: str(trigger)}))
    push_metrics(d, 4000)
    pid = d.ask("jobs")["pid"]
    d.ask("dataset.export", kind="metric")
    wait_for(lambda: (lambda r: r.get("ok") and r.get("pid") not in (None, pid))(d.ask("jobs")),
             timeout=60)
    assert not trigger.exists(), "the fault did not fire"
    files = glob.glob(str(root / "kind=metric" / "**" / "part-*.parquet"), recursive=True)
    assert len(files) == renames
    conn = schema.open_reader(str(d.db_path))
    state = schema.read_state(conn, exporter.STATE_KEY)
    conn.close()
    assert [t["watermarks"] for t in state["targets"].values()] == [{}], "watermark moved"

    push_metrics(d, 1000, offset=4000)                 # more rows arrive meanwhile
    run = run_export(d, kind="metric")
    assert run["state"] == "done", run
    assert run["result"]["kinds"]["metric"]["repaired"] == 1
    ids = [r[0] for r in duck("SELECT id FROM read_parquet(?) ORDER BY id",
                              str(root / "kind=metric" / "**" / "*.parquet"))]
    assert ids == list(range(1, 5001)), "a row is missing or written twice"
    assert not glob.glob(str(root / "**" / ".part-*"), recursive=True)


def test_files_another_database_left_under_the_same_host_stop_the_export_with_the_reason(
        daemon_factory, tmp_path):
    root = tmp_path / "ds"
    first = daemon_factory(name="a", env=dataset_env(root, "same"))
    push_metrics(first, 100)
    assert run_export(first)["state"] == "done"
    second = daemon_factory(name="b", env=dataset_env(root, "same"))
    push_metrics(second, 100)
    run = run_export(second)
    assert run["state"] == "failed"
    assert "another database" in run["error"] and "dataset.host" in run["error"]
    assert duck("SELECT count(*) FROM read_parquet(?)",
                str(root / "kind=metric" / "**" / "*.parquet")) == [(100,)]


def test_the_tool_exports_by_hand_from_since_and_refuses_an_earlier_since_later(
        daemon_factory, tmp_path):
    d = daemon_factory()                       # no dataset.dir: nothing runs on its own
    push_metrics(d, 2000)
    out_dir = tmp_path / "by-hand"
    env = {**os.environ, "LINKBAND_HISTORY_QUERY": d.query}

    def tool(*args):
        return subprocess.run([sys.executable, "-m", "linkband_history.cli", "dataset", "export",
                               *args], capture_output=True, text=True, timeout=120, env=env)

    since = T0 + 3600.0                        # the second half of the rows
    out = tool("--dir", str(out_dir), "--since", str(since))
    assert out.returncode == 0, out.stderr
    assert "dataset done" in out.stdout
    (n, lo), = duck("SELECT count(*), min(epoch(timestamp)) FROM read_parquet(?)",
                    str(out_dir / "kind=metric" / "**" / "*.parquet"))
    assert n == 1000 and lo >= since
    out = tool("--dir", str(out_dir), "--since", str(T0))
    assert out.returncode == 1 and "earlier --since" in out.stdout
    reply = d.ask("dataset.export")
    assert not reply["ok"] and "dataset.dir" in reply["error"]["message"]


def test_a_relative_dir_is_refused_and_nothing_lands_in_the_daemons_working_directory(
        daemon_factory):
    d = daemon_factory()
    push_metrics(d, 10)
    name = f"relative-dataset-{os.getpid()}"
    reply = d.ask("dataset.export", dir=name)
    assert not reply["ok"] and reply["error"]["code"] == "bad_param"
    assert "absolute path" in reply["error"]["message"]
    assert not os.path.exists(name)       # the daemon runs in this test's working directory


def test_a_daemon_without_pyarrow_and_a_dataset_dir_refuses_to_start_with_exit_2(tmp_path):
    fake = tmp_path / "no-pyarrow" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('pyarrow is not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent),
           **dataset_env(tmp_path / "ds", "h")}
    out = subprocess.run([sys.executable, "-m", "linkband_historyd", "--data-dir",
                          str(tmp_path / "data"), "--runtime-dir", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert "dataset.dir" in out.stderr and "linkband-history[dataset]" in out.stderr
    assert not (tmp_path / "data" / "history.db").exists()
