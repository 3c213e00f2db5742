"""Fault run: SIGKILL the daemon's processes at random moments while clients push.

    .venv/bin/python bench/faults.py [--kills 200] [--clients 4] [--seed 1]

Four client processes push numbered metric records (value = the client's record
number) and call ``flush()`` every few hundred records, remembering what each
successful flush acknowledged. Meanwhile the writer, the query process, the
scheduler and the supervisor itself are killed with SIGKILL at random moments
(a killed supervisor is started again, as systemd or launchd would). At the
end every client flushes once more, and the run checks:

- ``PRAGMA integrity_check`` is ok;
- every record acknowledged by a successful ``flush()`` is stored exactly once;
- for every client, lost + stored == sent (``stats``: lost counted from gaps);
- every hourly summary of the log lines and performance records that a fifth client
  pushes meanwhile (the summary job runs every second, and is killed with the
  scheduler) counts exactly the rows up to the id it says it holds (``_upto``):
  a run cut short neither loses nor doubles a row.

``make test`` runs a short version (tests/test_faults.py: 24 kills); this script
runs a long one and prints the figures.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time

import apsw
import psutil

from linkband_history import HistoryClient
from linkband_historyd.harness import DaemonProcess


def client_main(ingest, query, who, stop, result):
    """Push until told to stop; report sent, acknowledged and the client id."""
    c = HistoryClient(ingest=ingest, query=query, max_queue=10_000_000, query_timeout=2.0)
    acked = []                                # [from, to): what each successful flush covered
    n = since = 0
    t0 = time.time()                         # recent: retention must not take these away
    while not stop.is_set():
        c.store_metrics([{"metric_type": "fault", "metric_name": f"c{who}", "value": float(n + k),
                          "timestamp": t0 + (n + k) * 1e-4} for k in range(50)])
        n += 50
        if n % 500 == 0:
            # True: everything sent since the previous flush() is committed
            if c.flush(timeout=2.0):
                acked.append((since, n))
            since = n
        time.sleep(0.005)
    ok = False
    deadline = time.monotonic() + 90          # the daemon may be restarting right now
    while time.monotonic() < deadline:
        ok = c.flush(timeout=5.0)
        try:
            state = c.query("client.ack", client_id=c.client_id)["rows"]
        except TimeoutError:
            continue
        if state and state[0]["records_next"] == c.stats()["sent_records"] and not c.stats()["queued"]:
            break                             # the daemon has seen (stored or counted lost) it all
    if ok:
        acked.append((since, n))
    result.put({"who": who, "client_id": c.client_id, "sent": c.stats()["sent_records"],
                "queued": c.stats()["queued"], "dropped": c.stats()["dropped"], "acked": acked,
                "final_flush": ok})
    c.close(timeout=2.0)


def events_main(ingest, query, stop):
    """Log lines and performance records, for the summaries' check."""
    c = HistoryClient(ingest=ingest, query=query, max_queue=10_000_000, query_timeout=2.0)
    n = 0
    while not stop.is_set():
        t = time.time()
        c.store_logs([{"timestamp": t, "level": ("INFO", "WARNING", "ERROR")[(n + k) % 3],
                       "logger_name": f"STREAM.s{k % 2}", "message": f"[STREAM:EEG] 패킷 {n + k}"}
                      for k in range(5)])
        c.store_performance([{"timestamp": t, "component": "stream", "operation": f"op{n % 3}",
                              "duration_ms": 0.5 + (n % 97) / 7}])
        n += 5
        time.sleep(0.01)
    c.flush(timeout=10.0)
    c.close(timeout=2.0)


def summary_problems(conn) -> list[str]:
    """Hourly summaries that do not count exactly the rows up to their ``_upto``."""
    problems = []
    for kind, table, key_sql in (("log", "system_logs", "'all'"),
                                 ("performance", "performance_data", "component || '/' || operation")):
        for key, start, data in conn.execute(
                "SELECT summary_key, period_start, summary_data FROM data_summaries "
                "WHERE summary_type = 'hourly' AND data_type = ?", (kind,)).fetchall():
            d = json.loads(data)
            n = conn.execute(f"SELECT count(*) FROM {table} WHERE timestamp >= ? AND timestamp < ? "
                             f"AND id <= ? AND {key_sql} = ?",
                             (start, start + 3600, d["_upto"], key)).fetchall()[0][0]
            if n != d["count"]:
                problems.append(f"{kind} {key} hour {start:.0f}: summary counts {d['count']}, "
                                f"{n} rows up to id {d['_upto']}")
    return problems


def _children(d):
    try:
        return {p.pid: p for p in psutil.Process(d.proc.pid).children()}
    except psutil.Error:
        return {}


def _role_pids(d):
    """pid of each child role, from the daemon's own answers."""
    roles = {}
    try:
        roles["writer"] = d.writer_pid()
        roles["scheduler"] = d.ask("jobs")["pid"]
        roles["query"] = d.stats()["pid"]
    except Exception:
        pass
    return roles


def _running_pid(d, role, timeout=60.0):
    """The pid of ``role``'s child once it runs (it may still be starting after the
    previous kill): every planned kill is made, none is skipped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _role_pids(d).get(role)
        if pid is not None and pid in _children(d):
            return pid
        time.sleep(0.1)
    raise AssertionError(f"the {role} did not come back within {timeout:.0f} s")


def run(base, kills=24, clients=4, seed=1, log=print) -> dict:
    rng = random.Random(seed)
    env = {"LINKBAND_HISTORY_COLLECTOR": "false", "LINKBAND_HISTORY_SUMMARIES_INTERVAL_S": "1"}
    d = DaemonProcess(base, env=env).start()
    ctx = mp.get_context("spawn")
    stop, result = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=client_main, args=(d.ingest, d.query, w, stop, result))
             for w in range(clients)]
    procs.append(ctx.Process(target=events_main, args=(d.ingest, d.query, stop)))
    for p in procs:
        p.start()
    time.sleep(1.0)
    done = {"writer": 0, "query": 0, "scheduler": 0, "supervisor": 0}
    for i in range(kills):
        time.sleep(rng.uniform(0.05, 0.6))
        role = rng.choice(list(done))
        if role == "supervisor":
            kids = _children(d)
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait(10)
            psutil.wait_procs(list(kids.values()), timeout=60)     # orphans stop by themselves
            left = [p.pid for p in kids.values() if p.is_running()]
            if left:
                raise AssertionError(f"orphans still running: {left}")
            for _ in range(50):
                try:
                    d.start(timeout=30)
                    break
                except RuntimeError:
                    time.sleep(0.2)                               # the old writer still held the lock
        else:
            os.kill(_running_pid(d, role), signal.SIGKILL)
        done[role] += 1
        d.wait_ready(60)
    time.sleep(0.5)
    stop.set()
    reports = [result.get(timeout=120) for _ in range(clients)]
    for p in procs:
        p.join(30)
    stats = d.stats()
    d.stop()
    conn = apsw.Connection(str(d.db_path))
    integrity = conn.execute("PRAGMA integrity_check").fetchall()[0][0]
    values = {}
    for name, value in conn.execute("SELECT metric_name, value FROM system_metrics "
                                    "WHERE metric_type = 'fault'"):
        values.setdefault(name, []).append(int(value))
    clients_state = {r[0]: r for r in conn.execute(
        "SELECT client_id, stored, lost_records, rejected FROM ingest_clients")}
    problems = summary_problems(conn)
    summarized = conn.execute("SELECT count(*) FROM data_summaries WHERE summary_type = 'hourly' "
                              "AND data_type IN ('log', 'performance')").fetchall()[0][0]
    conn.close()
    if not summarized:
        problems.append("no hourly summaries of logs or performance records")
    for r in reports:
        got = values.get(f"c{r['who']}", [])
        if len(got) != len(set(got)):
            problems.append(f"client {r['who']}: {len(got) - len(set(got))} rows stored twice")
        missing = {i for a, b in r["acked"] for i in range(a, b)} - set(got)
        if missing:
            problems.append(f"client {r['who']}: {len(missing)} acknowledged rows missing")
        _, stored, lost, rejected = clients_state[r["client_id"]]
        if stored != len(got):
            problems.append(f"client {r['who']}: stats say {stored} stored, table has {len(got)}")
        if lost + stored + rejected != r["sent"]:
            problems.append(f"client {r['who']}: lost {lost} + stored {stored} != sent {r['sent']}")
    out = {"kills": done, "integrity": integrity, "clients": reports, "problems": problems,
           "lost_total": stats["lost_records_total"], "stored_total": stats["stored_total"]}
    out["hourly_summaries_checked"] = summarized
    log(f"kills {done}; integrity {integrity}; stored {out['stored_total']:,}, "
        f"lost {out['lost_total']:,}; hourly summaries checked {summarized}; "
        f"problems: {problems or 'none'}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="lbh-faults-")
    t = time.monotonic()
    out = run(base, a.kills, a.clients, a.seed)
    for r in out["clients"]:
        print(f"client {r['who']}: sent {r['sent']:,}, "
              f"acknowledged {sum(b - a for a, b in r['acked']):,}, "
              f"dropped {r['dropped']:,}, final flush {r['final_flush']}")
    print(f"total time {time.monotonic() - t:.0f} s")
    return 1 if out["problems"] or out["integrity"] != "ok" else 0


if __name__ == "__main__":
    sys.exit(main())
