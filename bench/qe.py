"""The nearest peer, query-exporter, running the floor's queries on the same database.

query-exporter re-runs every query in full each interval; gridwatch should do far less work
per cycle once it keeps state between runs. It is installed from the package index into a
virtual environment of its own under the bench's work directory (kept between runs), given
the floor's queries with the same parameters as gridwatch's steady run, and watched from
outside: CPU per evaluation cycle from /proc, rows visited per cycle from the queries' plans
(bench/floor.py), and the time of a /metrics scrape.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

from bench import floor
from bench.probe import TICK, Client, Timings, cpu_ticks, wait_idle
from gridwatch.testing import free_port

REQUIREMENT = "query-exporter>=5,<6"
DATABASE = "city"
_QUERIES = re.compile(rb"^queries_total\{([^}]*)\} (\S+)$", re.MULTILINE)


def install(work: Path) -> Path:
    """The query-exporter command of the bench's own virtual environment, installed if needed."""
    venv = work / "qe-venv"
    exe = venv / "bin" / "query-exporter"
    stamp = venv / ".installed"
    if not (exe.exists() and stamp.exists()):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, REQUIREMENT], check=True)
        stamp.write_text(REQUIREMENT + "\n")
    return exe


def version(exe: Path) -> str:
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"[0-9]+\.[0-9]+[^\s]*", out)
    return found.group(0) if found else out.strip()


def write_config(path: Path, db: Path, params: dict[str, Any], interval: int) -> None:
    """The floor's queries as a query-exporter config. JSON is YAML, so no YAML writer is needed."""
    metrics: dict[str, Any] = {}
    queries: dict[str, Any] = {}
    for q in floor.queries(db):
        for m in q.metrics:
            metrics[m] = {"type": "gauge", "description": f"{m} (plain SQL)", "labels": list(q.labels)}
        queries[q.name] = {
            "interval": interval,
            "databases": [DATABASE],
            "metrics": list(q.metrics),
            "sql": q.sql,
            "parameters": [floor.used_params(q.sql, params)],
        }
    config = {"databases": {DATABASE: {"dsn": f"sqlite:///{db.resolve()}"}}, "metrics": metrics, "queries": queries}
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def successes(body: bytes) -> tuple[int, int]:
    """(successful, failed) query executions so far, from query-exporter's ``queries_total``."""
    ok = bad = 0
    for labels, value in _QUERIES.findall(body):
        if b'status="success"' in labels:
            ok += int(float(value))
        else:
            bad += int(float(value))
    return ok, bad


def values(body: bytes) -> Iterator[tuple[str, dict[str, str], float]]:
    """The floor metrics query-exporter serves, without its ``database`` label."""
    for fam in text_string_to_metric_families(body.decode()):
        if fam.name in floor.METRICS:
            for s in fam.samples:
                yield s.name, {k: v for k, v in s.labels.items() if k != "database"}, s.value


def measure(
    exe: Path, db: Path, now: datetime, tz: ZoneInfo, work: Path, *, cycles: int, scrapes: int, interval: int
) -> dict[str, Any]:
    """Run query-exporter until ``cycles`` whole evaluation cycles have been watched, scrape it
    ``scrapes`` times between cycles, and stop it."""
    params = floor.params(now, tz, floor.history_start(db))
    config = work / "query-exporter.yaml"
    write_config(config, db, params, interval)
    port = free_port()
    log = work / "query-exporter.log"
    argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    client = Client(port)
    n = len(floor.QUERIES)
    try:

        def executions() -> int:
            if proc.poll() is not None:
                raise RuntimeError(f"query-exporter exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            ok, bad = successes(client.get("/metrics")[1])
            if bad:
                raise RuntimeError(f"query-exporter queries failed:\n{log.read_text()[-3000:]}")
            return ok

        deadline = time.monotonic() + max(120.0, 20.0 * interval)
        while True:  # the first cycle: start-up, not measured
            try:
                if executions() >= n:
                    break
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"query-exporter did not finish a cycle:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

        # The CPU window opens and closes while the exporter is idle, between cycles, and holds
        # no scrape; the executions counted just outside it are the ones inside.
        while True:
            wait_idle(proc.pid)
            before = executions()
            mark = cpu_ticks(proc.pid)
            cpu0, t0 = wait_idle(proc.pid), time.monotonic()
            if cpu0 - mark <= 1:  # else a cycle began right after the count: count again
                break
        bursts = _watch(proc.pid, t0 + cycles * interval)
        cpu1 = wait_idle(proc.pid)
        after = executions()
        ran = (after - before) / n
        if ran <= 0:
            raise RuntimeError("query-exporter ran no cycle while watched")

        timings = _scrapes_between_cycles(client, proc.pid, scrapes, bursts, interval)
        return {
            "version": version(exe),
            "interval": interval,
            "cycles": ran,
            "cpu_per_cycle": (cpu1 - cpu0) * TICK / ran,
            "rows_per_cycle": floor.rows_visited(db, now, tz)[0],
            "scrape_p50": timings.p50,
            "scrape_max": timings.max,
            "bytes": timings.sizes[-1],
            "samples": list(values(timings.body)),
        }
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _watch(pid: int, until: float, quiet: float = 0.3) -> list[float]:
    """Poll the process's CPU until ``until``; returns when each burst of work (a cycle: CPU
    used after ``quiet`` seconds without) began."""
    starts: list[float] = []
    last, changed = cpu_ticks(pid), time.monotonic()
    while time.monotonic() < until:
        time.sleep(0.02)
        ticks, now = cpu_ticks(pid), time.monotonic()
        if ticks != last:
            if now - changed >= quiet:
                starts.append(now)
            last, changed = ticks, now
    return starts


def _scrapes_between_cycles(client: Client, pid: int, n: int, bursts: list[float], interval: int) -> Timings:
    """Scrape ``n`` times, never into the next cycle (known from when the last bursts began),
    so the scrape is timed alone, as gridwatch's is."""
    out = Timings()
    phase = bursts[-1] if bursts else None
    while len(out.seconds) < n:
        if phase is not None:
            nxt = phase + math.ceil((time.monotonic() - phase) / interval) * interval
            need = 2 * max(out.seconds, default=0.5) + 0.1
            if need < interval / 2 and nxt - time.monotonic() < need:
                time.sleep(max(0.0, nxt - time.monotonic()))
                wait_idle(pid)
                continue
        one = client.timed("/metrics", 1)
        out.seconds += one.seconds
        out.sizes += one.sizes
        out.body = one.body
    return out
