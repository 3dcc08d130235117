"""A city of 2,000 grids under 200 concurrent clients: nothing fails, checks keep time, memory is flat.

A command centre's wall, a Prometheus scraping and people with the board open all read while the
checks run. The demo city is generated at 2,000 grids (about 450,000 households) with 45 days of
history: every window the checks look at (30 days of visits, KPIs and report ratios) is full, as
in production, while generation stays around ten seconds — 90 days would double the file and the
first full read without changing what a steady-state run reads. A real daemon runs all four domain
checks every few seconds; 200 clients request ``/metrics``, ``/api/v1/grids`` and ``/`` in a closed
loop. Measured: every request succeeds; each check starts within a second of its schedule (the
start times come from the daemon's own run history in the state database); the daemon's resident
memory at the end is within 10 % of what it was after warm-up.

``GW_LOAD_SECONDS`` sets the measured duration (default 60 under CI, 30 elsewhere) and
``GW_LOAD_CLIENTS`` the number of clients (default 200); the figures are printed and written to
``tests/_artifacts/load.json``. Requests still in flight when the clients stop are waited for
(up to five minutes each) and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.components import in_ci

pytestmark = pytest.mark.soak

GRIDS = 2000
DAYS = 45
CLIENTS = int(os.environ.get("GW_LOAD_CLIENTS") or 200)
INTERVAL = 5.0  # seconds between runs of each check
WARM_UP = 10.0  # seconds of load before measuring: caches, pools and buffers reach their size
ENDPOINTS = ("/metrics", "/api/v1/grids", "/")
CHECKS = ("visits", "patrols", "incidents", "reports")
MAX_SLIP = 1.0  # seconds
MAX_GROWTH = 0.10  # of resident memory, last third of the run against the first
DRAIN = 300.0  # seconds a request may take before it counts as failed
ARTIFACTS = Path(__file__).parent / "_artifacts"


def duration() -> float:
    return float(os.environ.get("GW_LOAD_SECONDS") or (60 if in_ci() else 30))


def rss_kib(pid: int) -> int:
    """The process's resident set size, from the kernel."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.fixture(scope="module")
def big_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("load")
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gridwatch",
            "demo",
            "--db",
            str(d / "city.db"),
            "--grids",
            str(GRIDS),
            "--days",
            str(DAYS),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    print(f"\ndemo city of {GRIDS} grids, {DAYS} days: generated in {time.monotonic() - started:.1f}s")
    yield d


def write_config(d: Path, port: int) -> Path:
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "city"\ninterval = "{INTERVAL:g}s"\ntimeout = "120s"\n'
        for c in CHECKS
    )
    cfg = d / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        timezone = "Asia/Shanghai"
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [alerting]
        evaluation_interval = "{INTERVAL:g}s"
        [grids]
        source = "city"
        [sources.city]
        type = "sqlite"
        path = "city.db"
        """)
        + checks,
        encoding="utf-8",
    )
    return cfg


class Load:
    """200 clients in a closed loop over the endpoints, and what they saw."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.failures: list[str] = []
        self.recording = False
        self.stopped = 0.0  # wall clock when the last request was sent
        self.healthz: list[float] = []  # latency of a trivial request: how late the event loop runs

    async def client(self, session: aiohttp.ClientSession, i: int, stop: float) -> None:
        n = i
        while time.monotonic() < stop:
            path = ENDPOINTS[n % len(ENDPOINTS)]
            n += 1
            started = time.monotonic()
            try:
                async with session.get(self.base + path) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            if status != 200:
                self.failures.append(f"{path}: HTTP {status}")
            elif self.recording:
                self.latencies[path].append(time.monotonic() - started)

    async def run(self, warm_up: float, seconds: float, sample: Any) -> None:
        """Load for ``warm_up + seconds``, calling ``sample`` twice a second while measuring; then
        let the requests in flight finish (their latency counts too)."""
        connector = aiohttp.TCPConnector(limit=CLIENTS + 10)
        # a slow answer is measured, not failed; one not answered within DRAIN is a failure
        timeout = aiohttp.ClientTimeout(total=DRAIN, sock_connect=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            stop = time.monotonic() + warm_up + seconds
            clients = [asyncio.create_task(self.client(session, i, stop)) for i in range(CLIENTS)]
            await asyncio.sleep(warm_up)
            self.recording = True
            probe = asyncio.create_task(self.probe(stop))
            while time.monotonic() < stop:
                sample()
                await asyncio.sleep(0.5)
            self.stopped = time.time()
            await asyncio.gather(*clients, probe)

    async def probe(self, stop: float) -> None:
        """``/healthz`` four times a second on a connection of its own: its answer waits only for
        the daemon's event loop, so its latency is how long the loop was busy with other work."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DRAIN)) as session:
            while time.monotonic() < stop:
                started = time.monotonic()
                async with session.get(self.base + "/healthz") as resp:
                    await resp.read()
                    if resp.status != 200:
                        self.failures.append(f"/healthz: HTTP {resp.status}")
                self.healthz.append(time.monotonic() - started)
                await asyncio.sleep(0.25)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def runs(state_db: Path, since: float, until: float) -> dict[str, list[tuple[float, float, str]]]:
    """(started, duration, outcome) of each check's runs that started in [since, until]."""
    with sqlite3.connect(f"{state_db.as_uri()}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT check_name, started_at, duration, outcome FROM check_runs"
            " WHERE started_at BETWEEN ? AND ? ORDER BY id",
            (since, until),
        ).fetchall()
    conn.close()
    out: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for name, started, took, outcome in rows:
        out[name].append((started, took, outcome))
    return out


def test_2000_grids_200_clients(big_city: Path) -> None:
    seconds = duration()
    port = free_port()
    cfg = write_config(big_city, port)
    with DaemonProcess(cfg, port) as gw:
        assert gw.proc is not None
        pid = gw.proc.pid
        # the first runs read everything; the schedule is measured from the steady state on
        wait_for(lambda: gw.get("/readyz")[0] == 200, 300, f"every check to run once\n{gw.log()[-3000:]}")
        first = {c["name"]: c["last_run"] for c in gw.json("/api/v1/status")["checks"]}
        wait_for(
            lambda: all(c["last_run"] != first[c["name"]] for c in gw.json("/api/v1/status")["checks"]),
            300,
            "every check to run a second time",
        )
        skipped_before = {c: gw.metric("gridwatch_check_runs_total", check=c, outcome="skipped") or 0 for c in CHECKS}
        unloaded = {}
        for path in ENDPOINTS:  # one request at a time, for comparison
            started = time.monotonic()
            assert gw.get(path)[0] == 200
            unloaded[path] = round(time.monotonic() - started, 3)

        load = Load(gw.base)
        rss: list[int] = []
        t0 = time.time()
        asyncio.run(load.run(WARM_UP, seconds, lambda: rss.append(rss_kib(pid))))
        drained = time.time() - load.stopped
        measured_from = t0 + WARM_UP
        skipped = {
            c: (gw.metric("gridwatch_check_runs_total", check=c, outcome="skipped") or 0) - skipped_before[c]
            for c in CHECKS
        }
        assert gw.proc.poll() is None, gw.log()[-3000:]
        # the runs that started while the clients were sending, and the one before each
        history = runs(big_city / "state.db", measured_from - INTERVAL - MAX_SLIP, load.stopped)

    # -- the figures ------------------------------------------------------------------------
    served = {p: len(v) for p, v in load.latencies.items()}
    figures: dict[str, Any] = {
        "grids": GRIDS,
        "days": DAYS,
        "clients": CLIENTS,
        "seconds": seconds,
        "check_interval_seconds": INTERVAL,
        "requests_served": served,
        "requests_per_second": round(sum(served.values()) / seconds, 1),
        "failed_requests": len(load.failures),
        "seconds_to_answer_the_requests_in_flight_at_the_end": round(drained, 1),
        "latency_seconds_unloaded": unloaded,
        "healthz_latency_seconds": {
            "p50": round(statistics.median(load.healthz), 3),
            "p99": round(percentile(load.healthz, 0.99), 3),
            "max": round(max(load.healthz), 3),
        },
        "latency_seconds": {
            p: {"p50": round(statistics.median(v), 3), "p99": round(percentile(v, 0.99), 3), "max": round(max(v), 3)}
            for p, v in load.latencies.items()
        },
        "check_runs": {},
        "rss_mib": {"first_third_max": 0.0, "last_third_max": 0.0, "start": 0.0, "end": 0.0},
    }
    slips: dict[str, list[float]] = {}
    for name in CHECKS:
        starts = history.get(name, [])
        slips[name] = [b[0] - a[0] - INTERVAL for a, b in itertools.pairwise(starts)]
        figures["check_runs"][name] = {
            "runs": len(starts),
            "skipped_including_the_drain": skipped[name],
            "failed": sum(1 for r in starts if r[2] != "success"),
            "max_slip_seconds": round(max(slips[name], default=float("nan")), 3),
            "duration_seconds_p50": round(statistics.median([r[1] for r in starts]), 3) if starts else None,
            "duration_seconds_max": round(max((r[1] for r in starts), default=float("nan")), 3),
        }
    third = max(1, len(rss) // 3)
    figures["rss_mib"] = {
        "start": round(rss[0] / 1024, 1),
        "end": round(rss[-1] / 1024, 1),
        "first_third_max": round(max(rss[:third]) / 1024, 1),
        "last_third_max": round(max(rss[-third:]) / 1024, 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print("\n" + json.dumps(figures, indent=2))

    # -- what must hold -----------------------------------------------------------------------
    assert not load.failures, f"{len(load.failures)} failed requests, e.g. {load.failures[:5]}"
    assert set(served) == set(ENDPOINTS), served
    for name in CHECKS:
        runs_ = figures["check_runs"][name]
        assert runs_["failed"] == 0, (name, runs_)
    assert figures["rss_mib"]["last_third_max"] <= figures["rss_mib"]["first_third_max"] * (1 + MAX_GROWTH), figures[
        "rss_mib"
    ]
    # a skipped run shows as a slip of a whole interval
    late = {
        name: [round(s, 3) for s in slips[name]]
        for name in CHECKS
        if max(slips[name], default=math.inf) >= MAX_SLIP or len(slips[name]) < seconds / INTERVAL - 1
    }
    assert not late, f"check schedules slip under load: {late}"
