"""The real daemon in a subprocess: endpoints, isolation of bad checks, reload, shutdown."""

import json
import shutil
import signal
import sqlite3
import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for

FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


def make_db(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE cases (street TEXT, closed_at TEXT)")
        db.executemany(
            "INSERT INTO cases VALUES (?, ?)",
            [
                ("东街街道", None),
                ("东街街道", None),
                ("西街街道", None),
                ("西街街道", "2026-11-01 10:00:00"),
            ],
        )


def write_config(tmp_path: Path, port: int, checks: str) -> Path:
    path = tmp_path / "gridwatch.toml"
    path.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [plugins]
        dirs = ["plugins"]
        [sources.griddb]
        type = "sqlite"
        path = "grid.db"
        """)
        + textwrap.dedent(checks),
        encoding="utf-8",
    )
    return path


SQL_CHECK = """
    [[checks]]
    name = "open_cases_by_street"
    type = "sql"
    source = "griddb"
    interval = "1s"
    timeout = "5s"
    metric = "gridwatch_custom_open_cases"
    help = "Open cases per street"
    value = "n"
    query = "SELECT street, count(*) AS n FROM cases WHERE closed_at IS NULL GROUP BY street"
    """

FAULTY = """
    [[checks]]
    name = "raises"
    type = "boom"
    interval = "1s"

    [[checks]]
    name = "hangs"
    type = "sleepy"
    interval = "1s"
    timeout = "500ms"
    seconds = 30
    """


@pytest.fixture
def setup(tmp_path):
    make_db(tmp_path / "grid.db")
    shutil.copytree(FIXTURE_PLUGINS, tmp_path / "plugins")
    port = free_port()
    return tmp_path, port


def runs(d: DaemonProcess, check: str, outcome: str) -> float:
    return d.metric("gridwatch_check_runs_total", check=check, outcome=outcome) or 0


def test_endpoints_samples_and_isolation_of_failing_checks(setup):
    tmp_path, port = setup
    cfg = write_config(tmp_path, port, SQL_CHECK + FAULTY)
    with DaemonProcess(cfg, port) as d:
        assert d.json("/healthz") == {"status": "ok"}
        wait_for(lambda: d.get("/readyz")[0] == 200, 15, "/readyz to turn 200 once every check ran")

        m = d.metrics()
        assert m[("gridwatch_build_info", (("version", "0.1.0"),))] == 1
        # 东街: two open cases; 西街: one open, one closed
        assert m[("gridwatch_custom_open_cases", (("street", "东街街道"),))] == 2
        assert m[("gridwatch_custom_open_cases", (("street", "西街街道"),))] == 1
        assert m[("gridwatch_source_up", (("source", "griddb"),))] == 1
        assert m[("gridwatch_config_last_reload_successful", ())] == 1

        status = d.json("/api/v1/status")
        assert set(status) == {"version", "started_at", "checks", "sources", "state_database"}
        assert status["state_database"] == {"writable": True, "error": None}
        checks = {c["name"]: c for c in status["checks"]}
        assert set(checks["raises"]) == {
            "name",
            "type",
            "last_run",
            "duration_seconds",
            "ok",
            "error",
        }
        assert checks["raises"]["ok"] is False and "boom on purpose" in checks["raises"]["error"]
        assert checks["hangs"]["ok"] is False and "timed out" in checks["hangs"]["error"]
        assert checks["open_cases_by_street"]["ok"] is True
        # a custom SQL check reads no standard table: none to say how it is followed
        assert status["sources"] == [{"name": "griddb", "type": "sqlite", "up": True, "error": None, "tables": []}]

        assert runs(d, "raises", "failure") >= 1
        assert runs(d, "hangs", "timeout") == 1
        # the hung worker is still busy: the next runs are skipped, never stacked up
        wait_for(lambda: runs(d, "hangs", "skipped") >= 1, 10, "the hung check to be skipped")
        # while both misbehave, the sql check keeps its 1s schedule
        before = runs(d, "open_cases_by_street", "success")
        t0 = time.monotonic()
        wait_for(lambda: runs(d, "open_cases_by_street", "success") >= before + 3, 10, "three more runs")
        assert time.monotonic() - t0 < 5

        status, body = d.get("/no/such/page")
        assert status == 404 and json.loads(body) == {"error": "Not Found", "status": 404}

        # SIGTERM with a worker thread still hung: exit 0 within 10 seconds
        t0 = time.monotonic()
        assert d.stop(signal.SIGTERM, timeout=10) == 0
        assert time.monotonic() - t0 < 10


def test_sighup_applies_a_valid_config_and_keeps_the_old_one_on_a_broken_one(setup):
    tmp_path, port = setup
    cfg = write_config(tmp_path, port, SQL_CHECK)
    with DaemonProcess(cfg, port) as d:
        wait_for(
            lambda: d.metric("gridwatch_custom_open_cases", street="东街街道") == 2,
            10,
            "first samples",
        )

        write_config(
            tmp_path,
            port,
            """
            [[checks]]
            name = "constant"
            type = "constant"
            interval = "1s"
            value = 7
            """,
        )
        d.send(signal.SIGHUP)
        wait_for(lambda: d.metric("gridwatch_test_constant", check="constant") == 7, 10, "the new check")
        names = [c["name"] for c in d.json("/api/v1/status")["checks"]]
        assert names == ["constant"]
        # the removed check's series disappear with it
        assert d.metric("gridwatch_custom_open_cases", street="东街街道") is None
        assert d.metric("gridwatch_config_last_reload_successful") == 1

        cfg.write_text(cfg.read_text() + '\n[[checks]]\nname = "x"\ntype = "constant"\ninterval = "often"\n')
        d.send(signal.SIGHUP)
        wait_for(lambda: d.metric("gridwatch_config_last_reload_successful") == 0, 10, "reload failure")
        assert [c["name"] for c in d.json("/api/v1/status")["checks"]] == ["constant"]
        assert d.metric("gridwatch_test_constant", check="constant") == 7
        assert "checks[1].interval" in d.log()
        assert d.stop() == 0


def test_readyz_is_503_until_every_check_has_run(setup):
    tmp_path, port = setup
    cfg = write_config(
        tmp_path,
        port,
        SQL_CHECK.replace('interval = "1s"', 'interval = "1h"')
        + '\n[[checks]]\nname = "slow"\ntype = "sleepy"\ninterval = "1h"\n'
        + 'timeout = "20s"\nseconds = 3\n',
    )
    with DaemonProcess(cfg, port) as d:
        status, body = d.get("/readyz")
        assert status == 503 and "slow" in json.loads(body)["waiting_for"]
        wait_for(lambda: d.get("/readyz")[0] == 200, 20, "readiness after the slow first run")


def test_a_missing_database_marks_the_source_down_and_recovers(setup):
    tmp_path, port = setup
    (tmp_path / "grid.db").rename(tmp_path / "away.db")
    cfg = write_config(tmp_path, port, SQL_CHECK)
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: d.metric("gridwatch_source_up", source="griddb") == 0, 10, "source down")
        src = d.json("/api/v1/status")["sources"][0]
        assert src["up"] is False and "no such file" in src["error"]
        (tmp_path / "away.db").rename(tmp_path / "grid.db")
        wait_for(lambda: d.metric("gridwatch_source_up", source="griddb") == 1, 20, "source back up")
        wait_for(lambda: d.metric("gridwatch_custom_open_cases", street="东街街道") == 2, 10, "samples")


def test_promtool_accepts_the_metrics(setup):
    from tests.components import require

    promtool = require("promtool", "prometheus")
    tmp_path, port = setup
    cfg = write_config(tmp_path, port, SQL_CHECK + FAULTY)
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: d.get("/readyz")[0] == 200, 15, "readiness")
        _, body = d.get("/metrics")
    res = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res


PROCESS = (
    "process_cpu_seconds_total",
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
)


def test_process_metrics_and_a_gzip_scrape_pass_promtool(setup):
    import gzip

    from tests.components import require

    promtool = require("promtool", "prometheus")
    tmp_path, port = setup
    cfg = write_config(tmp_path, port, SQL_CHECK + FAULTY)
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: d.get("/readyz")[0] == 200, 15, "readiness")
        _, plain = d.get("/metrics")
        req = urllib.request.Request(d.base + "/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            encoding, vary, packed = resp.headers["Content-Encoding"], resp.headers["Vary"], resp.read()
        om = urllib.request.Request(
            d.base + "/metrics",
            headers={"Accept-Encoding": "gzip", "Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(om, timeout=10) as resp:
            openmetrics = gzip.decompress(resp.read())
    assert (encoding, vary) == ("gzip", "Accept-Encoding")
    unpacked = gzip.decompress(packed)
    assert len(packed) < len(unpacked)
    for body in (plain, unpacked):
        res = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
        assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res
        names = {line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE ")}
        assert names >= set(PROCESS)
    # the same series: the checks' (rendered once per change) equal, the live ones present in both
    lines = lambda body: [x for x in body.decode().splitlines() if x.startswith("gridwatch_custom_open_cases")]  # noqa: E731
    assert (
        lines(unpacked)
        == lines(plain)
        == [
            'gridwatch_custom_open_cases{street="东街街道"} 2.0',
            'gridwatch_custom_open_cases{street="西街街道"} 1.0',
        ]
    )
    series = lambda body: {x.split(" ")[0] for x in body.decode().splitlines() if not x.startswith("#")}  # noqa: E731
    assert series(unpacked) == series(plain)
    assert openmetrics.endswith(b"# EOF\n") and openmetrics.count(b"# EOF") == 1


def test_openmetrics_when_asked(setup):
    tmp_path, port = setup
    cfg = write_config(tmp_path, port, SQL_CHECK)
    with DaemonProcess(cfg, port) as d:
        status, body = d.get("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
        assert status == 200 and body.rstrip().endswith(b"# EOF")
