"""The real daemon (``gridwatch run``) on the dataset: /metrics, event-loop lag, peak memory.

The scrapes happen once every check has run (``/readyz``), with check intervals long enough
that no check runs meanwhile: what is measured is the scrape. A thread of its own asks
``/healthz`` all along, so a loop blocked by the scrape shows as slow health answers, beside
the daemon's own ``gridwatch_event_loop_lag_seconds``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from bench.probe import Client, HealthProbe, status_kb
from gridwatch.testing import DaemonProcess

_LAG = re.compile(rb"^gridwatch_event_loop_lag_seconds (\S+)$", re.MULTILINE)


def series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def measure(config: Path, port: int, scrapes: int, settle: float, ready_timeout: float) -> dict[str, Any]:
    """Start the daemon, wait until ready (+ ``settle`` seconds, so the lag gauge's window no
    longer holds start-up), scrape ``scrapes`` times while probing /healthz, then stop it."""
    daemon = DaemonProcess(config, port)
    daemon.start(wait=True)
    assert daemon.proc is not None
    client = Client(port)
    try:
        started = time.monotonic()
        while client.get("/readyz")[0] != 200:
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"gridwatch exited with {daemon.proc.returncode}:\n{daemon.log()[-3000:]}")
            if time.monotonic() - started > ready_timeout:
                raise TimeoutError(f"gridwatch not ready after {ready_timeout:g}s:\n{daemon.log()[-3000:]}")
            time.sleep(0.5)
        ready = time.monotonic() - started
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
        return {
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
        }
    finally:
        client.close()
        daemon.stop(timeout=60)
