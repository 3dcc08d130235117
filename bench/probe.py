"""Looking at a server process from outside: HTTP timings, CPU ticks and peak memory.

Plain blocking ``http.client`` on purpose: a client with an event loop of its own would add
its own scheduling delays to the very latencies being measured.
"""

from __future__ import annotations

import http.client
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TICK = 1.0 / os.sysconf("SC_CLK_TCK")  # seconds per /proc CPU tick


def status_kb(name: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of /proc/PID/status (``VmHWM``: peak resident set), or None off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pid: int) -> int:
    """User + system CPU of a process, all threads, in clock ticks (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the whole line)


def tree_ticks(pid: int) -> int:
    """CPU of a server and its children, in clock ticks: its own and its reaped children's
    (``cutime``, ``cstime``), plus every live child's. It only grows, however many children
    (PostgreSQL's backends and parallel workers) come and go in between."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(entry.name) == pid:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        elif int(fields[1]) == pid:  # its parent
            total += int(fields[11]) + int(fields[12])
    return total


def wait_idle(pid: int, quiet: float = 0.3, timeout: float = 600.0) -> int:
    """Wait until the process has used no CPU for ``quiet`` seconds; returns its ticks then."""
    end = time.monotonic() + timeout
    last, since = cpu_ticks(pid), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.02)
        now = cpu_ticks(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise TimeoutError(f"process {pid} did not go idle within {timeout:g}s")


@dataclass
class Timings:
    seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    body: bytes = b""

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def max(self) -> float:
        return max(self.seconds, default=float("nan"))


class Client:
    """One keep-alive connection, as Prometheus keeps one per target."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 120.0) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def get(self, path: str) -> tuple[int, bytes, float]:
        """(status, body, seconds from sending the request to the last byte of the body)."""
        started = time.perf_counter()
        try:
            self.conn.request("GET", path)
            resp = self.conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnect once: the server may have closed an idle connection
            started = time.perf_counter()
            self.conn.request("GET", path)
            resp = self.conn.getresponse()
            body = resp.read()
        return resp.status, body, time.perf_counter() - started

    def timed(self, path: str, n: int) -> Timings:
        out = Timings()
        for _ in range(n):
            status, body, seconds = self.get(path)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
            out.seconds.append(seconds)
            out.sizes.append(len(body))
            out.body = body
        return out

    def close(self) -> None:
        self.conn.close()


class HealthProbe(threading.Thread):
    """Asks ``path`` every ``pause`` seconds from a thread of its own until stopped: how long a
    trivial request waits is how long the server's event loop is busy elsewhere."""

    def __init__(self, port: int, path: str = "/healthz", pause: float = 0.01) -> None:
        super().__init__(daemon=True, name="health-probe")
        self.client = Client(port, timeout=30.0)
        self.path, self.pause = path, pause
        self.seconds: list[float] = []
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                status, _, seconds = self.client.get(self.path)
                if status == 200:
                    self.seconds.append(seconds)
                else:
                    self.failures += 1
            except (OSError, http.client.HTTPException):
                self.failures += 1
            self._halt.wait(self.pause)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.client.close()
