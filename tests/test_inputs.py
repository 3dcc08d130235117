"""Hostile and broken input (issue 18, second round): silences, sources, bytes and dates.

Each test puts gridwatch through one thing that stopped it before: a regex silence that froze
the daemon, a byte that is not UTF-8, a row dated year 1, a correction pushed through ingest,
an HTTP platform that redirects or answers a gzip bomb, JSON nested thousands deep, an ended
silence, a query with a series per row. Real SQLite files, real daemons, real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from gridwatch import config
from gridwatch.api import CheckError, Environment, SourceUnavailable
from gridwatch.pipeline.runtime import Runtime
from gridwatch.sources.http import HttpSource
from gridwatch.sources.ingest import IngestSource
from gridwatch.sources.sql import SqlSource
from gridwatch.sources.sqlite import SqliteSource
from gridwatch.store import Store
from gridwatch.testing import DaemonProcess, free_port, run_check, wait_for, write_standard_db
from tests.test_incremental import _samples

TZ = ZoneInfo("Asia/Shanghai")
NOW = "2026-11-21T12:00:00+08:00"
TOKEN = "operator-token"
GRIDS = [
    {"grid_id": "G1", "name": "东湖一网格", "community": "东湖社区", "street": "东街街道"},
    {"grid_id": "G2", "name": "西河二网格", "community": "西河社区", "street": "西街街道"},
]


def call(d: DaemonProcess, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(d.base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", args[0], "-c", str(cfg), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )


def alert_config(tmp_path: Path, port: int, alerting: str = "") -> Path:
    """A daemon whose one rule fires TestValueHigh for G1 (9 > 8), with a write token."""
    db = write_standard_db(tmp_path / "data.db", {"grids": GRIDS})
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE test_values (grid TEXT, n REAL)")
        conn.executemany("INSERT INTO test_values VALUES (?, ?)", [("G1", 9), ("G2", 1)])
    conn.close()
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        token_sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"
        [state]
        path = "state.db"
        [alerting]
        evaluation_interval = "1s"
        {alerting}
        [grids]
        source = "data"
        [sources.data]
        type = "sqlite"
        path = "data.db"
        [[checks]]
        name = "test_value"
        type = "sql"
        source = "data"
        interval = "1s"
        metric = "gridwatch_test_value"
        value = "n"
        query = "SELECT grid, n FROM test_values"
        [[rules]]
        alert = "TestValueHigh"
        metric = "gridwatch_test_value"
        above = {{ warning = 5, critical = 8 }}
        """),
        encoding="utf-8",
    )
    return cfg


def firing(d: DaemonProcess) -> dict[str, Any] | None:
    return next((a for a in d.json("/api/v1/alerts") if a["labels"].get("grid") == "G1"), None)


def regex_silence(value: str, **extra: Any) -> dict[str, Any]:
    return {"matchers": [{"name": "alertname", "value": value, "isRegex": True}], "createdBy": "ops", **extra}


# --------------------------------------------------------------------------- 2: regex silences


def test_a_backtracking_regex_silence_neither_freezes_the_daemon_nor_outlives_a_restart(tmp_path):
    """``(.*.*.*.*)*X`` against the 13 letters of ``TestValueHigh`` takes Python's backtracking
    engine minutes; RE2 answers in microseconds, so the alerts, /healthz and SIGTERM stay prompt."""
    port = free_port()
    cfg = alert_config(tmp_path, port)
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: (firing(d) or {}).get("state") == "firing", 15, "the alert")
        assert call(d, "POST", "/api/v1/silences", regex_silence("(.*.*.*.*)*X"))[0] == 201
        started = time.monotonic()
        status, alerts = call(d, "GET", "/api/v1/alerts", timeout=5)
        assert status == 200 and [a["silenced"] for a in alerts] == [False]  # the name does not end in X
        assert d.get("/healthz")[0] == 200
        assert time.monotonic() - started < 3
        # a regex that matches still silences, anchored at both ends as in Alertmanager
        assert call(d, "POST", "/api/v1/silences", regex_silence("Test.*High|nothing"))[0] == 201
        wait_for(lambda: firing(d)["silenced"] is True, 5, "the matching regex to silence")
        assert d.stop(timeout=10) == 0  # SIGTERM is not ignored
    with DaemonProcess(cfg, port) as d:  # the stored silences do not freeze the next start either
        wait_for(lambda: (firing(d) or {}).get("silenced") is True, 15, "the alert, silenced")
        assert call(d, "GET", "/api/v1/alerts", timeout=5)[0] == 200
        assert d.stop(timeout=10) == 0


def test_a_regex_re2_cannot_compile_is_refused_in_one_line(tmp_path):
    port = free_port()
    cfg = alert_config(tmp_path, port)
    for args, pattern in (
        (("silence", "add", "grid=~G00[", "--author", "ops"), "missing ]"),
        (("silence", "add", r"grid=~(G\d)\1", "--author", "ops"), "backreferences"),
        (("silence", "add", "grid=~(?=G1)", "--author", "ops"), "lookaround"),
    ):
        done = cli(cfg, *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("gridwatch: matcher grid: invalid regex") and pattern in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert cli(cfg, "silence", "list").stdout == ""  # nothing was stored
    with DaemonProcess(cfg, port) as d:
        # 422, as for any well-formed silence that cannot be one (tests/test_openapi.py)
        status, answer = call(d, "POST", "/api/v1/silences", regex_silence(r"(Test)\1"))
        assert status == 422 and answer["error"].startswith("bad silence: matcher alertname: invalid regex")
        assert "RE2 syntax: no backreferences" in answer["error"]
        assert call(d, "GET", "/api/v1/silences")[1] == []


# --------------------------------------------------------------------------- 13: ended and expired silences


def test_ended_silences_are_refused_and_expired_ones_deleted_after_the_retention(tmp_path):
    port = free_port()
    cfg = alert_config(tmp_path, port, alerting='silence_retention = "1h"')
    store = Store(tmp_path / "state.db")
    store.open()
    store.close()
    now = time.time()
    row = ("a", '[{"name": "grid", "value": "G1", "isRegex": false}]', 0.0, 0.0, "ops", "old", 0.0)
    with sqlite3.connect(tmp_path / "state.db") as db:
        # 20,000 silences that ended two hours ago (a 5.5 MB listing before), one 30 minutes ago
        db.executemany(
            "INSERT INTO silences VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(f"old{i}", *row[1:2], now - 3 * 3600, now - 2 * 3600, *row[4:6], now - 3 * 3600) for i in range(20_000)],
        )
        db.execute("INSERT INTO silences VALUES (?, ?, ?, ?, ?, ?, ?)", ("recent", row[1], now - 3600, now - 1800, "ops", "", now))
    db.close()
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: [s["id"] for s in call(d, "GET", "/api/v1/silences")[1]] == ["recent"], 15, "the sweep")
        ended = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        status, answer = call(d, "POST", "/api/v1/silences", regex_silence("Test.*", endsAt=ended))
        assert status == 422 and answer["error"] == "bad silence: it has already ended: its end must be in the future"
        before = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        status, _ = call(d, "POST", "/api/v1/silences", regex_silence("Test.*", startsAt=before, endsAt=ended))
        assert status == 422
        # a start in the past is now, as Alertmanager stores it; its duration counts from then
        status, made = call(d, "POST", "/api/v1/silences", regex_silence("Test.*", startsAt=before, duration="1h"))
        assert status == 201 and made["status"]["state"] == "active"
        assert [s["id"] for s in call(d, "GET", "/api/v1/silences")[1]] == [made["id"], "recent"]
    assert (d.log().count("Traceback"), d.log().count("ERROR")) == (0, 0)


def test_silence_retention_defaults_to_alertmanagers_and_is_checked(tmp_path):
    cfg = alert_config(tmp_path, free_port())
    settings, _ = config.load(cfg)
    assert settings.alerting.silence_retention == 120 * 3600
    cfg.write_text(cfg.read_text().replace("[alerting]", '[alerting]\nsilence_retention = "a week"'))
    done = cli(cfg, "check-config")
    assert done.returncode == 2
    assert done.stderr.startswith(f"{cfg}: alerting.silence_retention: ") and "Traceback" not in done.stderr
