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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from aiohttp import web

from gridwatch import config
from gridwatch.api import CheckError, Environment, Latest, SourceUnavailable
from gridwatch.pipeline.runtime import Runtime
from gridwatch.rows import parse_ts
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
        db.execute(
            "INSERT INTO silences VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("recent", row[1], now - 3600, now - 1800, "ops", "", now),
        )
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


# --------------------------------------------------------------------------- 3: bytes that are not UTF-8

PHONE = "13812345678"
GBK = "备注".encode("gbk")  # a stray byte of another encoding: not UTF-8


def city_with_stray_bytes(path: Path) -> Path:
    """Two good grids and one whose name holds GBK bytes; a household and two visits with them.

    G1 has H1 (visited, V1) and H3 (its one visit, V3, has GBK bytes in its id); the household
    ``13812345678<GBK>`` and its visit V2 are not UTF-8 either. SQLite keeps such text as it got it.
    """
    write_standard_db(
        path,
        {
            "grids": GRIDS,
            "households": [{"household_id": "H1", "grid_id": "G1"}, {"household_id": "H3", "grid_id": "G1"}],
            "visits": [{"visit_id": "V1", "household_id": "H1", "grid_id": "G1", "visited_at": "2026-11-20 10:00:00"}],
        },
    )
    bad = (PHONE + "备注").encode("utf-8")[: len(PHONE)] + GBK
    with sqlite3.connect(path) as db:
        text = "CAST(? AS TEXT)"
        db.execute(
            f"INSERT INTO grids (grid_id, name, community, street) VALUES ('G3', {text}, 'c', 's')",
            ["第3网格".encode() + GBK],
        )
        db.execute(f"INSERT INTO households (household_id, grid_id) VALUES ({text}, 'G1')", [bad])
        db.execute(
            f"INSERT INTO visits (visit_id, household_id, grid_id, visited_at) VALUES ('V2', {text}, 'G1', ?)",
            [bad, "2026-11-20 11:00:00"],
        )
        db.execute(
            f"INSERT INTO visits (visit_id, household_id, grid_id, visited_at) VALUES ({text}, 'H3', 'G1', ?)",
            [b"V3" + GBK, "2026-11-20 11:00:00"],
        )
    db.close()
    return path


@pytest.mark.parametrize("kind", ["sqlite", "sql"])
def test_a_byte_that_is_not_utf8_costs_its_row_only(tmp_path, kind):
    db = city_with_stray_bytes(tmp_path / "city.db")
    source = f'type = "sqlite"\npath = "{db}"' if kind == "sqlite" else f'type = "sql"\nurl = "sqlite:///{db}"'
    r = run_check("visits", {}, now=NOW, tmp_path=tmp_path, source=source)
    assert r.error is None
    assert sorted(r.grids) == ["G1", "G2"]  # G3's name does not decode: G3 is left out, the others stay
    # G1: H1 visited, H3 not (its one visit's id does not decode); the household with bytes is out
    r.assert_value("gridwatch_visit_coverage_ratio", 0.5, grid="G1")
    r.assert_value("gridwatch_visit_unvisited_households", 1, grid="G1")
    # the grid, the household, the two visits
    assert r.rejected == {("data", "bad_encoding"): 4}


def test_a_byte_that_is_not_utf8_reaches_no_message(tmp_path):
    city_with_stray_bytes(tmp_path / "city.db")
    port = free_port()
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [grids]
        source = "city"
        refresh = "1s"
        [sources.city]
        type = "sqlite"
        path = "city.db"
        [[checks]]
        name = "visits"
        type = "visits"
        source = "city"
        interval = "1s"
        """),
        encoding="utf-8",
    )
    with DaemonProcess(cfg, port, args=("--log-level", "debug")) as d:
        wait_for(lambda: d.metric("gridwatch_visit_coverage_ratio", grid="G1") == 0.5, 15, "the visits")
        assert [g["grid"] for g in d.json("/api/v1/grids")] == ["G1", "G2"]
        status = d.json("/api/v1/status")
        assert [(c["ok"], c["error"]) for c in status["checks"]] == [(True, None)]
        assert [(s["up"], s["error"]) for s in status["sources"]] == [(True, None)]
        assert d.metric("gridwatch_source_rows_rejected_total", source="city", reason="bad_encoding") >= 4
        seen = [d.get(p)[1].decode("utf-8", "replace") for p in ("/api/v1/status", "/api/v1/grids", "/metrics", "/")]
    for text in (*seen, d.log()):
        assert PHONE not in text and "Could not decode" not in text


def test_sqlite_folds_only_rows_whose_text_decodes(tmp_path):
    """read_latest (the folded full read) hands on every row of a household with a row that does
    not decode, and gives up folding (None) when a key it would return does not decode."""
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
    rows = [("V1", "H1", "2026-11-20 10:00:00"), ("V4", "H3", "2026-11-20 09:00:00")]
    db = write_standard_db(
        tmp_path / "city.db",
        {"visits": [{"visit_id": v, "household_id": h, "grid_id": "G1", "visited_at": t} for v, h, t in rows]},
    )
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO visits (visit_id, household_id, grid_id, visited_at) VALUES (CAST(? AS TEXT), 'H3', 'G1', ?)",
            [b"V3" + GBK, "2026-11-20 11:00:00"],
        )
    conn.close()
    source = SqliteSource("city", SqliteSource.Options(path=str(db)), env)
    columns = ("visit_id", "household_id", "grid_id", "visited_at")
    want = Latest(
        "household_id", "visited_at", "visit_id", "grid_id", ["G1"], datetime(2026, 1, 1), datetime(2026, 11, 21)
    )
    plan = source.read_latest("visits", columns, None, want)
    assert plan is not None
    groups, odd, _ = plan
    assert list(groups) == [("H1", "2026-11-20 10:00:00", 1)]
    assert [r["visit_id"] for r in odd] == ["V4"]  # H3's rows are handed on; V3 does not decode
    assert source.drain_rejected() == {"bad_encoding": 1}
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO visits (visit_id, household_id, grid_id, visited_at) VALUES ('V2', CAST(? AS TEXT), 'G1', ?)",
            [PHONE.encode() + GBK, "2026-11-20 11:00:00"],
        )
    conn.close()
    assert source.read_latest("visits", columns, None, want) is None  # a key that does not decode
    rows_read, _ = source.read_since("visits", columns)
    assert [r["visit_id"] for r in rows_read] == ["V1", "V4"]
    assert source.drain_rejected() == {"bad_encoding": 2}


def test_a_streamed_read_goes_on_after_rows_that_do_not_decode(tmp_path):
    """Rows already handed on are not handed on again when the read switches to decoding value by
    value (here past the first batch of 5,000), and none is lost."""
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
    db = write_standard_db(
        tmp_path / "city.db",
        {"patrols": [{"patrol_id": f"P{i}", "grid_id": "G1", "worker_id": "W"} for i in range(12_000)]},
    )
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE patrols SET worker_id = CAST(? AS TEXT) WHERE patrol_id IN ('P7000', 'P11000')", [GBK])
    conn.close()
    source = SqliteSource("city", SqliteSource.Options(path=str(db)), env)
    got = [r["patrol_id"] for r in source.read("patrols", ["patrol_id", "worker_id"])]
    assert got == [f"P{i}" for i in range(12_000) if i not in (7000, 11000)]
    assert source.drain_rejected() == {"bad_encoding": 2}


# --------------------------------------------------------------------------- 4: rows dated year 1 or 9999

PLACEHOLDERS = [
    "0001-01-01 00:00:00",  # local: 0000-12-31 in UTC, before the calendar begins
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-12:00",
    "9999-12-31 23:59:59",
    "9999-12-31T23:59:59+14:00",
    "9999-12-31T23:59:59-12:00",  # 10000-01-01 in UTC, after the calendar ends
]


def _dated(check: str, at: str) -> tuple[dict[str, list[dict[str, Any]]], int, Callable[[Any], None]]:
    """Rows for ``check`` with ``at`` in its timestamps beside good rows: (tables, rows dated
    ``at``, what the good rows make of it, checked by hand)."""
    one = [{"grid_id": "G1", "name": "一", "community": "c", "street": "s"}]
    if check == "patrols":
        rows = [("P1", at), ("P2", "2026-11-21 09:00:00")]
        tables = {"patrols": [{"patrol_id": p, "grid_id": "G1", "patrolled_at": t} for p, t in rows]}
        # 09:00 in Shanghai is 01:00 UTC
        epoch = datetime(2026, 11, 21, 1, 0, tzinfo=UTC).timestamp()
        return (
            {"grids": one, **tables},
            1,
            lambda r: r.assert_value("gridwatch_patrol_last_timestamp_seconds", epoch, grid="G1"),
        )
    if check == "visits":
        tables = {
            "households": [{"household_id": "H1", "grid_id": "G1"}, {"household_id": "H2", "grid_id": "G1"}],
            "visits": [
                {"visit_id": "V1", "household_id": "H1", "grid_id": "G1", "visited_at": at},
                {"visit_id": "V2", "household_id": "H2", "grid_id": "G1", "visited_at": "2026-11-20 10:00:00"},
            ],
        }
        return {"grids": one, **tables}, 1, lambda r: r.assert_value("gridwatch_visit_coverage_ratio", 0.5, grid="G1")
    if check == "incidents":
        case = {"grid_id": "G1", "severity": "normal", "tier": "community"}
        tables = {
            "incidents": [
                {**case, "incident_id": "I1", "reported_at": at},
                {**case, "incident_id": "I2", "reported_at": "2026-11-21 08:00:00"},  # open for 4 h
                {**case, "incident_id": "I3", "reported_at": "2026-11-20 08:00:00", "closed_at": at},
            ]
        }

        def incidents(r: Any) -> None:
            r.assert_value("gridwatch_incidents_open", 1, grid="G1", severity="normal", stage="reported")
            r.assert_value("gridwatch_incident_oldest_open_age_seconds", 4 * 3600, grid="G1")

        return {"grids": one, **tables}, 2, incidents
    rows = [("R1", "2026-11-20", at), ("R2", "2026-11-21", "2026-11-21 10:00:00")]
    tables = {
        "reports": [
            {"report_id": i, "grid_id": "G1", "kind": "daily", "period": p, "submitted_at": t} for i, p, t in rows
        ]
    }
    # today's daily report came in at 10:00, before the 20:00 cutoff: 0 (ok)
    return {"grids": one, **tables}, 1, lambda r: r.assert_value("gridwatch_report_daily_status", 0, grid="G1")


@pytest.mark.parametrize("kind", ["sqlite", "sql"])
@pytest.mark.parametrize("at", PLACEHOLDERS)
@pytest.mark.parametrize("check", ["patrols", "visits", "incidents", "reports"])
def test_a_row_dated_year_1_or_9999_is_a_bad_timestamp(tmp_path, check, at, kind):
    tables, dated, expect = _dated(check, at)
    source = None if kind == "sqlite" else f'type = "sql"\nurl = "sqlite:///{tmp_path / "standard.db"}"'
    r = run_check(check, tables, now=NOW, tmp_path=tmp_path, source=source)
    assert r.error is None
    assert r.rejected == {("data", "bad_timestamp"): dated}
    expect(r)


def test_timestamps_are_read_between_years_1000_and_8999():
    assert parse_ts("1000-01-01 00:00:00", TZ) == datetime(1000, 1, 1, tzinfo=TZ)
    assert parse_ts("8999-12-31T23:59:59-12:00", TZ).astimezone(UTC).year == 9000
    for text in ("0999-12-31 23:59:59", "9000-01-01 00:00:00", "0001-01-01T00:00:00+14:00"):
        with pytest.raises(ValueError, match="outside"):
            parse_ts(text, TZ)


# --------------------------------------------------------------------------- 7: corrections through ingest

INGEST_TOKEN = "ingest-token"


def ingest_config(tmp_path: Path, port: int) -> Path:
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [grids]
        source = "inbox"
        refresh = "1s"
        [sources.inbox]
        type = "ingest"
        token = "{INGEST_TOKEN}"
        [[checks]]
        name = "patrols"
        type = "patrols"
        source = "inbox"
        interval = "1s"
        """),
        encoding="utf-8",
    )
    return cfg


def push(d: DaemonProcess, table: str, rows: Any) -> int:
    req = urllib.request.Request(
        f"{d.base}/api/v1/ingest/{table}",
        data=json.dumps(rows).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {INGEST_TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


def test_a_corrected_row_pushed_again_counts_at_the_next_run(tmp_path):
    """The patrol's time is corrected from 09:00 to 10:00 by pushing the row again; before, the
    correction kept its rowid behind the cursor and waited for the hourly resync."""
    port = free_port()
    with DaemonProcess(ingest_config(tmp_path, port), port) as d:
        assert push(d, "grids", GRIDS) == 201
        assert push(d, "patrols", {"patrol_id": "P1", "grid_id": "G1", "patrolled_at": "2026-11-21 09:00:00"}) == 201
        nine = datetime(2026, 11, 21, 9, tzinfo=TZ).timestamp()
        wait_for(lambda: d.metric("gridwatch_patrol_last_timestamp_seconds", grid="G1") == nine, 15, "the patrol")
        wait_for(lambda: d.metric("gridwatch_check_runs_total", check="patrols", outcome="success") >= 2, 15, "a run")
        assert push(d, "patrols", {"patrol_id": "P1", "grid_id": "G1", "patrolled_at": "2026-11-21 10:00:00"}) == 201
        ten = datetime(2026, 11, 21, 10, tzinfo=TZ).timestamp()
        wait_for(lambda: d.metric("gridwatch_patrol_last_timestamp_seconds", grid="G1") == ten, 10, "the correction")
        # moved to another grid: G1 has no patrol left, G2 has it
        assert push(d, "patrols", {"patrol_id": "P1", "grid_id": "G2", "patrolled_at": "2026-11-21 10:00:00"}) == 201
        wait_for(lambda: d.metric("gridwatch_patrol_last_timestamp_seconds", grid="G2") == ten, 10, "the move")
        assert d.metric("gridwatch_patrol_last_timestamp_seconds", grid="G1") is None


def _ingest_checks_config(tmp_path: Path, name: str, resync: str) -> Path:
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "inbox"\nresync = "{resync}"\ntimeout = "60s"\n{extra}\n'
        for c, extra in (
            ("visits", 'window = "7d"\nkey_interval = "3d"\n'),
            ("patrols", ""),
            ("incidents", 'window = "5d"\n'),
            ("reports", 'window = "9d"\nexpect = ["daily", "weekly"]\n'),
        )
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(
        'timezone = "Asia/Shanghai"\n'
        # figures, not verdicts: a small early step may be mostly bad rows (tests/test_rejected.py)
        "max_rejected_ratio = 1\n"
        f'[state]\npath = "{name}-state.db"\n[grids]\nsource = "inbox"\n'
        f'[sources.inbox]\ntype = "ingest"\npath = "{tmp_path / "inbox.db"}"\ntoken = "{INGEST_TOKEN}"\n' + checks,
        encoding="utf-8",
    )
    return path


class Pushes:
    """A platform that pushes new rows and, as often, corrections of rows it pushed before."""

    def __init__(self, inbox: IngestSource, rnd: random.Random) -> None:
        self.inbox, self.rnd, self.n = inbox, rnd, 0
        self.sent: dict[str, dict[str, dict[str, Any]]] = {
            t: {} for t in ("households", "visits", "patrols", "reports", "incidents")
        }
        inbox.ingest("grids", [{"grid_id": g, "name": g, "community": "C", "street": "S"} for g in ("G1", "G2", "G3")])

    def _at(self, now: datetime, hours: float) -> str:
        at = now - timedelta(hours=self.rnd.uniform(-2, hours))  # now and then after now
        return at.strftime("%Y-%m-%d %H:%M:%S")

    def _row(self, table: str, now: datetime, rid: str) -> dict[str, Any]:
        rnd, grid = self.rnd, self.rnd.choice(["G1", "G2", "G3", "G9"])
        if table == "households":
            return {"household_id": rid, "grid_id": grid, "category": rnd.choice([None, "elderly"])}
        if table == "visits":
            household = rnd.choice([*self.sent["households"], "H-unknown"])
            return {"visit_id": rid, "household_id": household, "grid_id": grid, "visited_at": self._at(now, 100)}
        if table == "patrols":
            return {"patrol_id": rid, "grid_id": grid, "patrolled_at": self._at(now, 30)}
        if table == "reports":
            kind = rnd.choice(["daily", "weekly"])
            at = self._at(now, 150)
            period = at[:10] if kind == "daily" else None
            return {"report_id": rid, "grid_id": grid, "kind": kind, "period": period, "submitted_at": at}
        reported = self._at(now, 100)
        closed = rnd.choice([None, None, max(reported, self._at(now, 20))])
        return {
            "incident_id": rid,
            "grid_id": grid,
            "severity": rnd.choice(["normal", "major"]),
            "tier": rnd.choice(["community", "department"]),
            "reported_at": reported,
            "closed_at": closed,
            "reopened_count": 0,
            "extended": rnd.choice([0, 1]),
        }

    def step(self, now: datetime) -> None:
        for table, sent in self.sent.items():
            batch = []
            for _ in range(self.rnd.randint(0, 6)):
                self.n += 1
                batch.append(self._row(table, now, f"{table[0].upper()}{self.n}"))
            for rid in self.rnd.sample(sorted(sent), min(len(sent), self.rnd.randint(0, 4))):
                # a correction (any column may change), or the same row once more
                batch.append(self._row(table, now, rid) if self.rnd.random() < 0.7 else sent[rid])
            if batch:
                self.inbox.ingest(table, batch)
                sent.update({next(iter(r.values())): r for r in batch})


@pytest.mark.parametrize("seed", range(4))
def test_incremental_runs_on_an_ingest_source_equal_full_recomputation_despite_corrections(tmp_path, seed):
    rnd = random.Random(seed)
    settings, host = config.load(_ingest_checks_config(tmp_path, "kept", resync="3650d"))
    kept = Runtime(settings, host)
    kept.state = kept_state = Store(settings.state_path)
    kept_state.open()
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path)
    pusher = IngestSource("inbox", IngestSource.Options(path=str(tmp_path / "inbox.db"), token=INGEST_TOKEN), env)
    pushes = Pushes(pusher, rnd)
    now = datetime(2026, 11, 16, 9, 0, tzinfo=TZ)
    pushes.step(now)
    try:
        for step in range(10):
            full_settings, _ = config.load(_ingest_checks_config(tmp_path, f"full{step}", resync="0s"), host)
            full = Runtime(full_settings, host)
            full.state = full_state = Store(full_settings.state_path)
            full_state.open()
            try:
                expected = _samples(full, now)
            finally:
                full.close()
                full_state.close()
            got = _samples(kept, now)
            for name in expected:
                assert got[name] == expected[name], f"seed {seed}, step {step}, check {name}"
            assert any(expected.values())
            now += timedelta(minutes=rnd.choice([1, 30, 200]))
            pushes.step(now)
    finally:
        pusher.close()
        kept.close()
        kept_state.close()


# --------------------------------------------------------------------------- 8 and 12: what an HTTP platform answers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Site:
    """A real aiohttp server on loopback, on a loop of its own thread; it records what it got."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes, self.port = routes, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.got: list[tuple[str, dict[str, str]]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.got.append((request.path, dict(request.headers)))
        return await self.routes[request.path](request)

    async def _start(self) -> None:
        app = web.Application()
        for path in self.routes:
            app.router.add_get(path, self._handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Site:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def rows_of(*rows: dict[str, Any]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(list(rows))

    return handler


def redirect(to: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(to)

    return handler


def body(data: bytes, encoding: str | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Encoding": encoding} if encoding else {}
        return web.Response(body=data, headers=headers, content_type="application/json")

    return handler


SECRET = "s3cret-platform-credential"
KEY = "k3y-in-a-header"


def platform_source(tmp_path: Path, url: str, **options: Any) -> HttpSource:
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
    opts = HttpSource.Options(url=url, headers={"X-Api-Key": KEY}, auth_env="GW_TEST_SECRET", **options)
    return HttpSource("platform", opts, env)


def test_a_redirect_to_another_origin_is_refused_unless_allowed_and_never_gets_the_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", SECRET)
    grid = {"grid_id": "G1", "name": "一"}
    with Site({"/api/grids": rows_of(grid)}) as elsewhere:
        routes = {
            "/api/away": redirect(f"{elsewhere.base}/api/grids"),  # another port: another origin
            "/api/moved": redirect("/api/here"),  # the same origin
            "/api/here": rows_of(grid),
            "/api/loop": redirect("/api/loop"),
        }
        with Site(routes) as platform:
            src = platform_source(tmp_path, f"{platform.base}/api/{{table}}", tables={"grids": "away"})
            with pytest.raises(
                CheckError,
                match=r"redirects to another origin \(http://127\.0\.0\.1:\d+\); set follow_redirects = true",
            ):
                src.read("grids", ["grid_id"])
            assert elsewhere.got == []
            # within the origin a redirect is followed, with the headers
            src = platform_source(tmp_path, f"{platform.base}/api/{{table}}", tables={"grids": "moved"})
            assert src.read("grids", ["grid_id"]) == [{"grid_id": "G1"}]
            assert [(p, h.get("X-Api-Key"), h.get("Authorization")) for p, h in platform.got[-2:]] == [
                ("/api/moved", KEY, SECRET),
                ("/api/here", KEY, SECRET),
            ]
            # followed to another origin only when allowed, and without a configured header or secret
            src = platform_source(
                tmp_path, f"{platform.base}/api/{{table}}", tables={"grids": "away"}, follow_redirects=True
            )
            assert src.read("grids", ["grid_id"]) == [{"grid_id": "G1"}]
            [(path, headers)] = elsewhere.got
            assert path == "/api/grids" and "X-Api-Key" not in headers and "Authorization" not in headers
            assert SECRET not in json.dumps(headers) and KEY not in json.dumps(headers)
            src = platform_source(tmp_path, f"{platform.base}/api/{{table}}", tables={"grids": "loop"})
            with pytest.raises(CheckError, match="redirects more than 10 times"):
                src.read("grids", ["grid_id"])


def test_an_answer_larger_than_body_size_limit_once_decompressed_fails_the_read_and_is_not_kept(tmp_path, monkeypatch):
    """A gzip answer of about 80 KB that unpacks to 80 MiB (before: read whole, then parsed)."""
    monkeypatch.setenv("GW_TEST_SECRET", SECRET)
    bomb = gzip.compress(b"[" + b" " * (80 * 1024 * 1024) + b"]", compresslevel=9)
    small = gzip.compress(json.dumps([{"grid_id": "G1"}]).encode())
    with Site({"/api/bomb": body(bomb, "gzip"), "/api/grids": body(small, "gzip")}) as platform:
        assert len(bomb) < 100_000
        url = f"{platform.base}/api/{{table}}"
        assert platform_source(tmp_path, url).options.body_size_limit == 64 * 1024 * 1024  # the default
        src = platform_source(tmp_path, url, tables={"visits": "bomb"}, body_size_limit="1MiB")
        assert src.read("grids", ["grid_id"]) == [{"grid_id": "G1"}]  # under the limit: read
        tracemalloc.start()
        try:
            with pytest.raises(
                SourceUnavailable, match=r"larger than body_size_limit \(1048576 bytes once decompressed\)"
            ):
                src.read("visits", ["visit_id"])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 * 1024 * 1024, peak
        with pytest.raises(SourceUnavailable, match="body_size_limit"):  # the default stops it too
            platform_source(tmp_path, url, tables={"visits": "bomb"}).read("visits", ["visit_id"])
        unlimited = platform_source(tmp_path, url, tables={"visits": "bomb"}, body_size_limit=0)
        assert unlimited.read("visits", ["visit_id"]) == []  # 0: no limit


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_an_answer_nested_too_deep_fails_the_read_as_the_sources_fault(tmp_path):
    patrol = {"patrol_id": "P1", "grid_id": "G1", "patrolled_at": "2026-11-21 09:00:00"}
    routes = {"/api/grids": rows_of(*GRIDS), "/api/patrols": body(DEEP), "/api/ok": rows_of(patrol)}
    with Site(routes) as platform:
        env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
        src = HttpSource("platform", HttpSource.Options(url=f"{platform.base}/api/{{table}}"), env)
        with pytest.raises(SourceUnavailable, match=r"is nested too deep to parse \(200000 bytes\)"):
            src.read("patrols", ["patrol_id"])
        assert src.drain_rejected() == {"bad_json": 1}
        r = run_check(
            "patrols", {}, now=NOW, tmp_path=tmp_path, source=f'type = "http"\nurl = "{platform.base}/api/{{table}}"'
        )
    assert r.error is not None and r.error.startswith("source data unavailable: the response from")
    assert "nested too deep" in r.error and "plugin" not in r.error and "RecursionError" not in r.error


def test_a_jsonl_line_nested_too_deep_is_skipped_and_counted(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "grids.jsonl").write_text("\n".join(json.dumps(g, ensure_ascii=False) for g in GRIDS), encoding="utf-8")
    lines = [
        json.dumps({"patrol_id": "P1", "grid_id": "G1", "patrolled_at": "2026-11-21 09:00:00"}).encode(),
        b'{"patrol_id": "P2", "grid_id": "G1", "note": ' + DEEP + b"}",
        b"[" * 5000,  # broken and deep
    ]
    (files / "patrols.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    r = run_check("patrols", {}, now=NOW, tmp_path=tmp_path, source='type = "jsonl"\npath = "files"')
    assert r.error is None
    assert r.rejected == {("data", "bad_json"): 2}
    r.assert_value(
        "gridwatch_patrol_last_timestamp_seconds", datetime(2026, 11, 21, 1, tzinfo=UTC).timestamp(), grid="G1"
    )


# --------------------------------------------------------------------------- 14: a series per row, without end

# one row per number: a label value each, 300,000 of them (518 MB before: every row was kept)
SERIES = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows) SELECT i AS grid, 1 AS v FROM n"
)
ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i AS grid, 1 AS v FROM n"


def series_check(tmp_path: Path, kind: str, rows: int, **options: Any) -> Any:
    directory = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    source = None if kind == "sqlite" else f'type = "sql"\nurl = "sqlite:///{directory / "standard.db"}"'
    opts = {"metric": "gridwatch_test_series", "value": "v", "query": SERIES, "params": {"rows": rows}, **options}
    return run_check("sql", {"grids": GRIDS}, now=NOW, tmp_path=directory, source=source, options=opts)


@pytest.mark.parametrize("kind", ["sqlite", "sql"])
def test_a_sql_check_stops_at_its_sample_limit(tmp_path, kind):
    r = series_check(tmp_path, kind, 300_000)  # the default limit: 100,000
    assert r.samples == [] and r.error == (
        "check sql: the query returned more than 100000 rows (sample_limit); "
        "group it by fewer labels, or raise sample_limit (0: no limit)"
    )
    r = series_check(tmp_path, kind, 1001, sample_limit=1000)
    assert r.error is not None and "more than 1000 rows (sample_limit)" in r.error
    r = series_check(tmp_path, kind, 1000, sample_limit=1000)  # exactly the limit: fine
    assert r.error is None and len(r.samples) == 1000
    r = series_check(tmp_path, kind, 100_001, sample_limit=0)  # 0: no limit
    assert r.error is None and len(r.samples) == 100_001


@pytest.mark.parametrize("kind", ["sqlite", "sql"])
def test_a_query_is_streamed_and_stops_when_its_reader_does(tmp_path, kind):
    """The check stops reading at its limit: an endless query ends at once, its connection free."""
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
    db = write_standard_db(tmp_path / "city.db", {})
    if kind == "sqlite":
        src: Any = SqliteSource("city", SqliteSource.Options(path=str(db)), env)
    else:
        src = SqlSource("city", SqlSource.Options(url=f"sqlite:///{db}", pool_size=1, max_overflow=0), env)
    try:
        for _ in range(3):  # the one connection comes back each time
            rows = src.query_iter(ENDLESS, deadline=time.monotonic() + 30)
            assert [next(rows)["grid"] for _ in range(5)] == [1, 2, 3, 4, 5]
            rows.close()
        opts = {"metric": "gridwatch_test_series", "value": "v", "query": ENDLESS, "sample_limit": 50, "timeout": "60s"}
        source = f'type = "sqlite"\npath = "{db}"' if kind == "sqlite" else f'type = "sql"\nurl = "sqlite:///{db}"'
        started = time.monotonic()
        r = run_check("sql", {}, now=NOW, tmp_path=tmp_path, source=source, options=opts)
        assert r.error is not None and "more than 50 rows (sample_limit)" in r.error
        assert time.monotonic() - started < 20
    finally:
        src.close()


@pytest.mark.component
def test_a_postgres_query_is_streamed_through_a_server_side_cursor(tmp_path, postgres):
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
    postgres.createdb("streamed")
    src = SqlSource("pg", SqlSource.Options(url=postgres.url_for("streamed"), pool_size=1, max_overflow=0), env)
    try:
        for _ in range(3):
            rows = src.query_iter(ENDLESS, deadline=time.monotonic() + 30)  # endless: only a cursor ends it
            assert [next(rows)["grid"] for _ in range(5)] == [1, 2, 3, 4, 5]
            rows.close()
        assert src.query("SELECT 1 AS one") == [{"one": 1}]
    finally:
        src.close()


@pytest.mark.component
def test_postgres_text_that_does_not_decode_fails_the_read_without_the_value(tmp_path, postgres):
    """PostgreSQL keeps UTF-8 databases valid; a SQL_ASCII one stores any byte. Its driver's
    complaints name neither the value nor the row, and do not blame the check's plugin."""
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
    dsn = postgres.createdb("utf8_check")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE ascii_db ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    url = postgres.url_for("ascii_db")
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("CREATE TABLE grids (grid_id text, name text)")
        conn.execute(r"INSERT INTO grids VALUES ('G1', E'13812345678\xb1\xb8')")
    for u, message in (
        (url, "if the database's encoding is SQL_ASCII, add client_encoding=utf8 to the url"),
        (f"{url}?client_encoding=utf8", 'invalid byte sequence for encoding "UTF8"'),
    ):
        src = SqlSource("pg", SqlSource.Options(url=u), env)
        try:
            with pytest.raises(CheckError, match=message) as raised:
                src.read("grids", ["grid_id", "name"], deadline=time.monotonic() + 30)
            assert PHONE not in str(raised.value)
        finally:
            src.close()
