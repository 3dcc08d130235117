"""Test kit: run a real gridwatch daemon in a subprocess and look at what it serves.

Shipped with gridwatch so plugin authors test the way the core does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    end = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < end:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_exc = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))


class DaemonProcess:
    """``gridwatch run`` on a config, in a subprocess, with helpers to query it."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.config = config
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **(env or {})}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config.with_suffix(".log")

    def start(self, wait: bool = True) -> DaemonProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gridwatch", *self.args, "run", "-c", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.config.parent,
        )
        if wait:
            wait_for(self._healthy, 30, f"gridwatch to answer /healthz\n{self.log()}")
        return self

    def _healthy(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise AssertionError(f"gridwatch exited with {self.proc.returncode}:\n{self.log()}")
        return self.get("/healthz")[0] == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, f"GET {path} answered {status}: {body[:500]!r}"
        return json.loads(body)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``/metrics`` parsed: {(sample name, sorted labels): value}."""
        status, body = self.get("/metrics")
        assert status == 200
        out = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the daemon and wait; returns its exit code (kills it if it overstays)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"gridwatch did not exit within {timeout}s:\n{self.log()}") from None
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._log.close()


# -- running one check against inline rows ---------------------------------------------------


class CheckResult:
    """What one run of a check produced: samples, rejected rows, and the error if it failed."""

    def __init__(self, samples: list[Any], rejected: dict[tuple[str, str], int], error: str | None):
        self.samples = samples
        self.rejected = rejected
        self.error = error

    def value(self, metric: str, **labels: str) -> float | None:
        """The value of the one series with exactly these labels, or None if absent."""
        want = dict(labels)
        found = [s.value for s in self.samples if s.metric == metric and dict(s.labels) == want]
        assert len(found) <= 1, f"{metric}{want} appears {len(found)} times"
        return found[0] if found else None

    def series(self, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every series of a metric: {sorted label pairs: value}."""
        return {tuple(sorted(s.labels.items())): s.value for s in self.samples if s.metric == metric}

    def by_grid(self, metric: str, **labels: str) -> dict[str, float]:
        """{grid: value} for the series of a metric that also carry ``labels``."""
        return {
            s.labels["grid"]: s.value
            for s in self.samples
            if s.metric == metric and all(s.labels.get(k) == v for k, v in labels.items())
        }


def write_standard_db(path: Path, tables: dict[str, list[dict[str, Any]]]) -> Path:
    """A SQLite file in the standard schema holding ``tables`` (absent columns are NULL)."""
    import sqlite3

    from gridwatch.schema import STANDARD_SCHEMA, create_sql

    with sqlite3.connect(path) as db:
        for table, cols in STANDARD_SCHEMA.items():
            db.execute(create_sql(table))
            rows = tables.get(table, [])
            for row in rows:
                unknown = set(row) - set(cols)
                assert not unknown, f"{table} has no column(s) {sorted(unknown)}"
            db.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [tuple(r.get(c) for c in cols) for r in rows],
            )
    db.close()
    return path


def run_check(
    check_type: str,
    tables: dict[str, list[dict[str, Any]]],
    *,
    now: str | Any,
    tmp_path: Path,
    options: dict[str, Any] | None = None,
    config: str = "",
    timezone: str = "Asia/Shanghai",
    source: str | None = None,
) -> CheckResult:
    """Run one check type once against inline rows in the standard schema, as of ``now``.

    ``now`` is ISO 8601 (local time in ``timezone`` without an offset) or an aware datetime.
    ``config`` is extra TOML appended to the generated file (e.g. a ``[calendar]`` table).
    ``source`` replaces the body of ``[sources.data]`` (default: a SQLite file holding
    ``tables``), to run the check through another source type.
    """
    import asyncio
    import tomllib
    from datetime import datetime

    from gridwatch import config as config_mod
    from gridwatch.results import Results
    from gridwatch.runtime import Runtime
    from gridwatch.store import Store

    db = write_standard_db(tmp_path / "standard.db", tables)
    opts = "".join(f"{k} = {_toml(v)}\n" for k, v in (options or {}).items())
    source_body = source or f'type = "sqlite"\npath = "{db.name}"'

    path = tmp_path / "gridwatch.toml"
    path.write_text(
        f'timezone = "{timezone}"\n[state]\npath = "state.db"\n[grids]\nsource = "data"\n'
        f"[sources.data]\n{source_body}\n"
        f'{config}\n[[checks]]\nname = "{check_type}"\ntype = "{check_type}"\n'
        f'source = "data"\n{opts}',
        encoding="utf-8",
    )
    tomllib.loads(path.read_text(encoding="utf-8"))  # a bad option value fails here, clearly
    settings, host = config_mod.load(path)
    if isinstance(now, str):
        from zoneinfo import ZoneInfo

        now = datetime.fromisoformat(now)
        now = now.replace(tzinfo=ZoneInfo(timezone)) if now.tzinfo is None else now

    async def go() -> CheckResult:
        runtime = Runtime(settings, host, asyncio.get_running_loop())
        store = Store(settings.state_path)
        store.open()
        runtime.state = store
        try:
            results = Results()
            results.replace(*runtime.states())
            outcome = await runtime.run(runtime.runners[check_type], now, results)
            return CheckResult(outcome.samples, dict(results.rejected), outcome.error)
        finally:
            runtime.close()
            store.close()

    return asyncio.run(go())


def _toml(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
