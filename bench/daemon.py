"""The daemon (bench/clocked.py: ``gridwatch run`` at the steady run's time) on the city:
/metrics, event-loop lag, peak memory, and restart to ``/readyz`` after SIGTERM and SIGKILL.

The scrapes happen once every check has run (``/readyz``), with check intervals long enough
that no check runs meanwhile: what is measured is the scrape. A thread of its own asks
``/healthz`` all along, so a loop blocked by the scrape shows as slow health answers, beside
the daemon's own ``gridwatch_event_loop_lag_seconds``. Then the daemon is stopped with
SIGTERM and started again, and killed with SIGKILL and started again: each time from the
start of the process to ``/readyz``, and its per-grid samples compared with those before.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

from bench.probe import Client, HealthProbe, status_kb

_LAG = re.compile(rb"^gridwatch_event_loop_lag_seconds (\S+)$", re.MULTILINE)
ROOT = Path(__file__).resolve().parent.parent


def series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def grid_samples(body: bytes) -> Iterator[tuple[str, dict[str, str], float]]:
    """Every per-grid series (those with a ``grid`` label): what the checks found."""
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if "grid" in s.labels:
                yield s.name, dict(s.labels), s.value


def settled(client: Client, pause: float = 0.5, timeout: float = 60.0) -> list[tuple[str, dict[str, str], float]]:
    """The per-grid samples once two scrapes ``pause`` apart give the same: the alert rules
    evaluate a moment after the checks' runs, and the lights follow the firing alerts."""
    last = list(grid_samples(client.get("/metrics")[1]))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(pause)
        now = list(grid_samples(client.get("/metrics")[1]))
        if now == last:
            break
        last = now
    return last


class Clocked:
    """One daemon process at a fixed time, its output in a log file beside its config."""

    def __init__(self, config: Path, port: int, now: str) -> None:
        self.config, self.port, self.now = config, port, now
        self.log_path = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> float:
        """Start it; returns the monotonic time of the start."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        argv = [
            sys.executable,
            "-m",
            "bench.clocked",
            self.now,
            "run",
            "-c",
            str(self.config),
            "--log-level",
            "warning",
        ]
        started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        return started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def wait_ready(self, client: Client, started: float, timeout: float) -> float:
        """Seconds from ``started`` to the first 200 of ``/readyz``."""
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gridwatch exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if client.get("/readyz")[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass  # not listening yet
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"gridwatch not ready after {timeout:g}s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def measure(config: Path, port: int, now: str, scrapes: int, settle: float, ready_timeout: float) -> dict[str, Any]:
    """Start the daemon, wait until ready (+ ``settle`` seconds, so the lag gauge's window no
    longer holds start-up), scrape ``scrapes`` times while probing /healthz, then restart it
    after SIGTERM and after SIGKILL."""
    daemon = Clocked(config, port, now)
    client = Client(port)
    try:
        ready = daemon.wait_ready(client, daemon.start(), ready_timeout)
        status = json.loads(client.get("/api/v1/status")[1])
        failed = [f"{c['name']}: {c['error']}" for c in status["checks"] if not c["ok"]]
        if failed:
            raise RuntimeError("checks failed in the daemon: " + "; ".join(failed))
        time.sleep(settle)
        probe = HealthProbe(port)
        probe.start()
        try:
            timings = client.timed("/metrics", scrapes)
        finally:
            probe.stop()
        body = client.get("/metrics")[1]  # the gauge, its window now holding every scrape
        m = _LAG.search(body)
        assert daemon.proc is not None
        out: dict[str, Any] = {
            "ready_seconds": ready,
            "scrape_p50": timings.p50,
            "scrape_max": timings.max,
            "bytes": timings.sizes[-1],
            "series": series(timings.body),
            "lag_gauge": float(m.group(1)) if m else None,
            "healthz_max": max(probe.seconds, default=None),
            "healthz_p50": sorted(probe.seconds)[len(probe.seconds) // 2] if probe.seconds else None,
            "healthz_count": len(probe.seconds),
            "healthz_failures": probe.failures,
            "vmhwm_kb": status_kb("VmHWM", daemon.proc.pid),
            "samples": list(grid_samples(body)),
        }
        for name, sig in (("sigterm", signal.SIGTERM), ("sigkill", signal.SIGKILL)):
            before = settled(client)
            daemon.stop(sig)
            client.close()
            client = Client(port)
            seconds = daemon.wait_ready(client, daemon.start(), ready_timeout)
            out[f"restart_{name}"] = {
                "seconds": seconds,
                "before": before,
                "after": settled(client),
            }
        return out
    finally:
        client.close()
        daemon.stop(timeout=60)
