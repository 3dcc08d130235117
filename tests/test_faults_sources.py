"""Sources that fail under a running daemon: a SQLite file locked, slow, removed, renamed or
replaced by garbage; a PostgreSQL server slow, locked and stopped; a JSON API that hangs, drops
the connection, answers 500, HTML or half a body.

Each fault is injected into a real ``gridwatch run`` process. What must hold every time: the
failing source is reported (``gridwatch_source_up`` 0 and the status API's error, or a timed-out
run for a slow one) within a few seconds, the other checks keep their 1-second schedule,
``/healthz`` answers, the last good samples stay, and the next run after the fault ends recovers.
(Bad answers are counted by tests/test_bad_input.py; here the point is isolation and timing.)
"""

from __future__ import annotations

import signal
import sqlite3
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for, write_standard_db
from tests.faults import FlakyServer, flaky_server, runs, status_of

DETECT = 6.0  # seconds: a 1 s interval, a 1 s timeout, start-up of a worker and the poll, with room
GRIDS = [
    {"grid_id": "G1", "name": "东湖一网格", "community": "东湖社区", "street": "东街街道"},
    {"grid_id": "G2", "name": "西河二网格", "community": "西河社区", "street": "西街街道"},
]

# A check of another team's incident system: needs the grid registry, which lives elsewhere.
CASES_PLUGIN = '''
from gridwatch import hookimpl
from gridwatch.api import Check, Sample


class OpenCases(Check):
    """Open cases per grid of the registry, from a table of the check's own source."""

    type = "open_cases"
    metrics = {"gridwatch_test_open_cases": "Open cases per grid"}

    def run(self, ctx):
        grids = ctx.registry()
        rows = self.source.query(
            "SELECT grid_id, count(*) AS n FROM cases WHERE closed_at IS NULL GROUP BY grid_id",
            deadline=ctx.deadline,
        )
        counts = {r["grid_id"]: r["n"] for r in rows}
        for grid in grids:
            yield Sample("gridwatch_test_open_cases", {"grid": grid}, counts.get(grid, 0))


@hookimpl
def register_check_types():
    return [OpenCases]
'''


def open_cases(d: DaemonProcess, grid: str = "G1") -> float | None:
    return d.metric("gridwatch_test_open_cases", grid=grid)


def source_up(d: DaemonProcess, source: str) -> float | None:
    return d.metric("gridwatch_source_up", source=source)


def keeps_running(d: DaemonProcess, check: str, n: int = 2) -> None:
    """``check`` completes ``n`` more successful runs, on its schedule (at most 1 s)."""
    before = runs(d, check)
    t0 = time.monotonic()
    wait_for(lambda: runs(d, check) >= before + n, n + 4, f"{n} more runs of {check}\n{d.log()[-3000:]}")
    assert time.monotonic() - t0 < n + 3, f"{check} slowed down while another source failed"
    t0 = time.monotonic()
    assert d.get("/healthz")[0] == 200
    assert time.monotonic() - t0 < 1.0, "/healthz was slow"


@contextmanager
def detected(d: DaemonProcess, what: Callable[[], Any], label: str, within: float = DETECT) -> Iterator[None]:
    """The fault injected in the block is reported within ``within`` seconds."""
    t0 = time.monotonic()
    yield
    wait_for(what, within + 10, f"{label} to be reported\n{d.log()[-3000:]}")
    took = time.monotonic() - t0
    print(f"fault: {label}: reported after {took:.2f}s")  # shown with -s
    assert took < within, f"{label} took {took:.1f}s to be reported"


# -- a SQLite source ----------------------------------------------------------------------------


@pytest.fixture
def sqlite_daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, Path]]:
    """The grid platform (registry and patrols) in grid.db; an incident system in cases.db."""
    write_standard_db(
        tmp_path / "grid.db",
        {
            "grids": GRIDS,
            "patrols": [{"patrol_id": "P1", "grid_id": "G1", "worker_id": "W1", "patrolled_at": "2026-01-05 09:00:00"}],
        },
    )
    casedb = tmp_path / "cases.db"
    with sqlite3.connect(casedb) as db:
        db.execute("CREATE TABLE cases (case_id TEXT, grid_id TEXT, closed_at TEXT)")
        db.executemany("INSERT INTO cases VALUES (?, ?, NULL)", [(f"C{i}", "G1") for i in range(1, 6)])
    db.close()
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "cases.py").write_text(CASES_PLUGIN, encoding="utf-8")
    port = free_port()
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [plugins]
        dirs = ["plugins"]
        [grids]
        source = "griddb"
        refresh = "1s"
        [sources.griddb]
        type = "sqlite"
        path = "grid.db"
        [sources.casedb]
        type = "sqlite"
        path = "cases.db"
        busy_timeout = "200ms"
        [[checks]]
        name = "patrols"
        type = "patrols"
        source = "griddb"
        interval = "500ms"
        [[checks]]
        name = "cases"
        type = "open_cases"
        source = "casedb"
        interval = "500ms"
        timeout = "400ms"
        """),
        encoding="utf-8",
    )
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: open_cases(d) == 5, 15, f"first samples\n{d.log()}")
        yield d, casedb


def test_a_sqlite_source_locked_slow_removed_renamed_or_garbled_is_reported_isolated_and_recovers(sqlite_daemon):
    d, casedb = sqlite_daemon

    def close_case(conn: sqlite3.Connection | None = None) -> None:
        """Close one more case: the next good run must show it (fresh data, not the old samples)."""
        db = conn or sqlite3.connect(casedb)
        db.execute(
            "UPDATE cases SET closed_at = '2026-01-05 10:00:00' WHERE case_id = "
            "(SELECT min(case_id) FROM cases WHERE closed_at IS NULL)"
        )
        if conn is None:
            db.commit()
            db.close()

    def back(label: str, expect: int) -> None:
        wait_for(lambda: source_up(d, "casedb") == 1, DETECT, f"casedb back after {label}\n{d.log()[-3000:]}")
        wait_for(lambda: open_cases(d) == expect, DETECT, f"fresh samples after {label}")
        assert status_of(d, "checks", "cases")["ok"] is True

    # locked: another program holds an exclusive lock (and closes a case meanwhile)
    locker = sqlite3.connect(casedb, isolation_level=None)
    with detected(d, lambda: source_up(d, "casedb") == 0, "the lock"):
        locker.execute("BEGIN EXCLUSIVE")
    assert "locked" in status_of(d, "sources", "casedb")["error"]
    assert open_cases(d) == 5  # the last good samples stay
    keeps_running(d, "patrols")
    close_case(locker)
    locker.execute("COMMIT")
    locker.close()
    back("the lock", 4)

    # slow: the table became a view that never ends; the query is interrupted at the 400 ms timeout
    timeouts = runs(d, "cases", "timeout")
    with sqlite3.connect(casedb) as db:
        db.executescript("""
            ALTER TABLE cases RENAME TO cases_kept;
            CREATE VIEW cases AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
                SELECT 'C' || i AS case_id, 'G1' AS grid_id, NULL AS closed_at FROM n;
        """)
    db.close()
    wait_for(lambda: runs(d, "cases", "timeout") >= timeouts + 2, DETECT + 2, "two timed-out runs")
    st = status_of(d, "checks", "cases")
    assert st["ok"] is False and "timed out after 0.4s" in st["error"]
    assert st["duration_seconds"] < 0.9  # bounded by the timeout: the query was interrupted,
    assert runs(d, "cases", "skipped") == 0  # and its worker freed for the next run
    assert open_cases(d) == 4
    keeps_running(d, "patrols")
    with sqlite3.connect(casedb) as db:
        db.executescript("DROP VIEW cases; ALTER TABLE cases_kept RENAME TO cases;")
    db.close()
    close_case()
    back("the slow query", 3)

    expect = 3
    for fault in ("removed", "renamed", "garbled"):
        kept = casedb.read_bytes()
        with detected(d, lambda: source_up(d, "casedb") == 0, fault):
            if fault == "removed":
                casedb.unlink()
            elif fault == "renamed":
                casedb.rename(casedb.with_suffix(".old"))
            else:
                casedb.write_bytes(b"this is not a database" * 100)
        error = status_of(d, "sources", "casedb")["error"]
        assert ("not a database" if fault == "garbled" else "no such file") in error, error
        assert open_cases(d) == expect
        keeps_running(d, "patrols")
        if fault == "renamed":
            casedb.with_suffix(".old").rename(casedb)
        else:
            casedb.write_bytes(kept)
        close_case()
        expect -= 1
        back(fault, expect)

    # the registry's own source gone: its checks fail, a check on another source goes on with the
    # grids last read, and only the registry's source is reported down
    griddb = casedb.with_name("grid.db")
    with detected(d, lambda: source_up(d, "griddb") == 0, "the registry's source gone"):
        griddb.rename(griddb.with_suffix(".old"))
    assert "no such file" in status_of(d, "sources", "griddb")["error"]
    wait_for(lambda: status_of(d, "checks", "patrols")["ok"] is False, DETECT, "patrols failing")
    keeps_running(d, "cases", 3)
    assert source_up(d, "casedb") == 1 and status_of(d, "sources", "casedb")["error"] is None
    assert status_of(d, "checks", "cases")["ok"] is True and open_cases(d) == expect
    griddb.with_suffix(".old").rename(griddb)
    wait_for(lambda: source_up(d, "griddb") == 1, DETECT, "griddb back")
    wait_for(lambda: status_of(d, "checks", "patrols")["ok"] is True, DETECT, "patrols back")
    assert d.stop() == 0


# -- a PostgreSQL source ------------------------------------------------------------------------


@pytest.mark.component
@pytest.mark.soak  # a server of its own, stopped and started: ~25 s
def test_a_postgresql_source_slow_locked_or_stopped_is_reported_isolated_and_recovers(tmp_path):
    psycopg = pytest.importorskip("psycopg")
    from tests.components import PostgresServer

    with PostgresServer() as pg:  # its own server: this test stops it
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE test_values (grid text, n integer)")
            conn.execute("INSERT INTO test_values VALUES ('G1', 3), ('G2', 1)")
        write_standard_db(tmp_path / "grid.db", {"grids": GRIDS})
        port = free_port()
        cfg = tmp_path / "gridwatch.toml"
        cfg.write_text(
            textwrap.dedent(f"""
            [server]
            listen = "127.0.0.1:{port}"
            [state]
            path = "state.db"
            [grids]
            source = "griddb"
            [sources.griddb]
            type = "sqlite"
            path = "grid.db"
            [sources.pg]
            type = "sql"
            url = "{pg.url}"
            connect_timeout = "2s"
            [[checks]]
            name = "pg_values"
            type = "sql"
            source = "pg"
            interval = "1s"
            timeout = "1s"
            metric = "gridwatch_test_value"
            value = "n"
            query = "SELECT grid, n FROM test_values"
            [[checks]]
            name = "local"
            type = "sql"
            source = "griddb"
            interval = "1s"
            metric = "gridwatch_test_grids"
            value = "n"
            query = "SELECT count(*) AS n FROM grids"
            """),
            encoding="utf-8",
        )

        def value() -> float | None:
            return d.metric("gridwatch_test_value", grid="G1")

        def set_value(n: int) -> None:
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute("UPDATE test_values SET n = %s WHERE grid = 'G1'", [n])

        with DaemonProcess(cfg, port) as d:
            wait_for(lambda: value() == 3, 15, f"first samples\n{d.log()}")

            # slow: every row now costs a 30 s sleep; the statement_timeout cancels the query
            timeouts = runs(d, "pg_values", "timeout")
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute("ALTER TABLE test_values RENAME TO kept")
                conn.execute("CREATE VIEW test_values AS SELECT grid, n FROM kept, pg_sleep(30)")
            wait_for(lambda: runs(d, "pg_values", "timeout") >= timeouts + 2, DETECT + 2, "timed-out runs")
            st = status_of(d, "checks", "pg_values")
            assert "timed out after 1s" in st["error"] and st["duration_seconds"] < 1.5
            assert value() == 3
            keeps_running(d, "local")
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute("DROP VIEW test_values")
                conn.execute("ALTER TABLE kept RENAME TO test_values")
            set_value(4)
            wait_for(lambda: value() == 4, DETECT, "fresh samples after the slow query")

            # locked: a migration holds an exclusive lock on the table
            timeouts = runs(d, "pg_values", "timeout")
            locker = psycopg.connect(pg.dsn)
            locker.execute("LOCK TABLE test_values IN ACCESS EXCLUSIVE MODE")
            wait_for(lambda: runs(d, "pg_values", "timeout") >= timeouts + 2, DETECT + 2, "timed-out runs")
            keeps_running(d, "local")
            locker.execute("UPDATE test_values SET n = 5 WHERE grid = 'G1'")
            locker.commit()
            locker.close()
            wait_for(lambda: value() == 5, DETECT, "fresh samples after the lock")

            # stopped: connections are refused; the source is down until the server is back
            pg.stop()
            with detected(d, lambda: source_up(d, "pg") == 0, "the stopped server"):
                pass
            assert status_of(d, "sources", "pg")["error"]
            assert value() == 5
            keeps_running(d, "local")
            pg.start()
            set_value(6)
            wait_for(lambda: source_up(d, "pg") == 1, DETECT + 4, f"pg back\n{d.log()[-3000:]}")
            wait_for(lambda: value() == 6, DETECT, "fresh samples after the restart")
            assert d.stop() == 0


# -- a JSON API source --------------------------------------------------------------------------


def http_config(tmp_path: Path, port: int, api: FlakyServer) -> Path:
    write_standard_db(tmp_path / "grid.db", {"grids": GRIDS})
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [grids]
        source = "platform"
        refresh = "1s"
        [sources.platform]
        type = "http"
        url = "{api.url}/api/{{table}}"
        records = "data"
        timeout = "2s"
        [sources.local]
        type = "sqlite"
        path = "grid.db"
        [[checks]]
        name = "patrols"
        type = "patrols"
        source = "platform"
        interval = "500ms"
        timeout = "10s"
        [[checks]]
        name = "local"
        type = "sql"
        source = "local"
        interval = "500ms"
        metric = "gridwatch_test_grids"
        value = "n"
        query = "SELECT count(*) AS n FROM grids"
        """),
        encoding="utf-8",
    )
    return cfg


def newer_than(d: DaemonProcess, last: float) -> Callable[[], float | None]:
    """A predicate: the last patrol of G1 is later than ``last`` (returns it)."""

    def newer() -> float | None:
        value = d.metric("gridwatch_patrol_last_timestamp_seconds", grid="G1")
        return value if value is not None and value > last else None

    return newer


ERRORS = {
    "hang": "did not answer within 2s",
    "cut": "broke off",
    "500": "HTTP 500",
    "html": "is not JSON (text/html",
    "truncated": "ends early",
}


def test_a_json_api_that_hangs_cuts_off_or_answers_garbage_is_bounded_reported_isolated_and_recovers(tmp_path):
    with flaky_server() as api:
        api.tables = {
            "grids": GRIDS,
            "patrols": [{"patrol_id": "P1", "grid_id": "G1", "worker_id": "W1", "patrolled_at": "2026-01-05T09:00:00"}],
        }
        api.set_mode("hang")
        port = free_port()
        d = DaemonProcess(http_config(tmp_path, port, api), port)
        try:
            # the platform hangs as gridwatch starts: start-up does not wait for it
            t0 = time.monotonic()
            d.start()
            assert time.monotonic() - t0 < 3.5, "start-up waited for a hanging source"
            wait_for(lambda: runs(d, "local") >= 2, 5, "the local check running")
            assert d.get("/readyz")[0] == 503  # patrols has not finished a run yet
            wait_for(lambda: source_up(d, "platform") == 0, DETECT + 4, "the hanging platform reported")
            assert ERRORS["hang"] in status_of(d, "sources", "platform")["error"]

            # a reload waits for the run in flight (at most its source's 2 s timeout), not for the source
            t0 = time.monotonic()
            d.send(signal.SIGHUP)
            wait_for(lambda: "config reloaded" in d.log(), 10, "the reload")
            assert time.monotonic() - t0 < 3.5, "a reload was held up by a hanging source"

            api.set_mode("ok")
            wait_for(lambda: source_up(d, "platform") == 1, DETECT + 4, f"platform up\n{d.log()[-3000:]}")
            wait_for(lambda: d.get("/readyz")[0] == 200, DETECT, "ready")
            last = d.metric("gridwatch_patrol_last_timestamp_seconds", grid="G1")
            assert last is not None

            for mode, error in ERRORS.items():
                within = DETECT + 2 if mode == "hang" else DETECT  # the 2 s timeout must pass first
                with detected(d, lambda: source_up(d, "platform") == 0, mode, within):
                    api.set_mode(mode)
                got = status_of(d, "sources", "platform")["error"]
                assert error in got, (mode, got)
                assert d.metric("gridwatch_patrol_last_timestamp_seconds", grid="G1") == last
                keeps_running(d, "local")
                if mode == "hang":  # each run gives up at the source's timeout, none stacks up
                    dur = status_of(d, "checks", "patrols")["duration_seconds"]
                    assert 1.9 < dur < 3.5, dur
                    assert runs(d, "patrols", "timeout") == 0
                api.set_mode("ok")
                api.tables["patrols"].append(
                    {
                        "patrol_id": f"P-{mode}",
                        "grid_id": "G1",
                        "worker_id": "W1",
                        "patrolled_at": f"2026-01-05T{10 + len(api.tables['patrols']):02d}:00:00",
                    }
                )
                wait_for(lambda: source_up(d, "platform") == 1, DETECT + 4, f"platform back after {mode}")
                last = wait_for(newer_than(d, last), DETECT, f"fresh samples after {mode}")
            assert d.stop() == 0
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
