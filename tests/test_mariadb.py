"""MariaDB (Debian's ``mariadb-server``) through the `sql` source: the samples SQLite gives, the
rule book's figures, and the server's troubles (a slow query, a missing table, a stopped server)
reported as such while the rest goes on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from gridwatch import config
from gridwatch.api import CheckError, Environment
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Outcome, Runtime
from gridwatch.sources.sql import SqlSource
from gridwatch.testing import write_standard_db
from gridwatch.tools import demo
from tests.cities import NOW, assert_same_answers, copy_city, once, sql_source, sqlite_source
from tests.components import MariaDBServer

pytestmark = pytest.mark.component

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def demo_city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The demo city in SQLite, and what ``gridwatch once`` answers on it."""
    directory = tmp_path_factory.mktemp("demo")
    demo.generate(directory / "city.db", grids=24, days=45, now=datetime.fromisoformat(NOW))
    return directory / "city.db", once(directory, "lite", sqlite_source("city.db"))


@pytest.mark.parametrize("timestamps", ["DATETIME(6)", "TEXT"])
def test_mariadb_gives_exactly_the_samples_sqlite_gives(mariadb, demo_city, tmp_path, timestamps):
    city, lite = demo_city
    url = mariadb.createdb("city")
    copy_city(city, url, timestamps=timestamps)

    got = once(tmp_path, "my", sql_source(url))

    assert len(lite["samples"]) > 24 * 8
    assert_same_answers(got, lite)


def test_the_rule_books_figures_on_mariadb(mariadb, tmp_path):
    """Fractional seconds kept to the microsecond decide a window's edge; Chinese names come back
    whole (utf8mb4)."""
    write_standard_db(
        tmp_path / "city.db",
        {
            "grids": [{"grid_id": "G1", "name": "一号网格", "community": "幸福社区", "street": "东街街道"}],
            "households": [{"household_id": f"H{i}", "grid_id": "G1"} for i in range(1, 5)],
            "visits": [
                # NOW is 2026-10-13 20:30 in Shanghai; the 30-day window starts 2026-09-13 20:30
                {"visit_id": "V1", "household_id": "H1", "grid_id": "G1", "visited_at": "2026-10-13 08:00:00.5"},
                {"visit_id": "V2", "household_id": "H2", "grid_id": "G1", "visited_at": "2026-09-13 20:30:00"},
                {"visit_id": "V3", "household_id": "H3", "grid_id": "G1", "visited_at": "2026-09-13 20:29:59.999999"},
            ],
            "patrols": [{"patrol_id": "P1", "grid_id": "G1", "patrolled_at": "2026-10-13 18:15:30.25"}],
        },
    )
    url = mariadb.createdb("rules")
    copy_city(tmp_path / "city.db", url)

    got = once(tmp_path, "my", sql_source(url), checks=("visits", "patrols"))

    figures = {s["metric"]: s["value"] for s in got["samples"] if s["labels"] == {"grid": "G1"}}
    assert figures["gridwatch_grid_households"] == 4
    assert figures["gridwatch_visit_visited_households"] == 2  # H1 and H2 (on the window's edge)
    assert figures["gridwatch_visit_unvisited_households"] == 2  # H3 a microsecond early, H4 never
    assert figures["gridwatch_visit_coverage_ratio"] == 0.5
    patrolled = datetime(2026, 10, 13, 10, 15, 30, 250000, UTC)  # 18:15:30.25 in Shanghai
    assert figures["gridwatch_patrol_last_timestamp_seconds"] == patrolled.timestamp()
    assert figures["gridwatch_patrol_overdue"] == 0  # patrolled today
    (grid,) = got["grids"]
    assert (grid["name"], grid["community"], grid["street"]) == ("一号网格", "幸福社区", "东街街道")
    assert got["errors"] == []


# -- the server's troubles ----------------------------------------------------------------------


HALVES = {"G1": 3.5, "G2": 2}  # (3 + 4) / 2 and (1 + 3) / 2: DECIMALs 3.5000 and 2.0000, as numbers


def _runtime(tmp_path: Path, url: str) -> Runtime:
    """A runtime with the registry and two `sql` checks on the MariaDB at ``url``: one slow (a
    second's timeout, a five-second query) and one that computes in DECIMAL (MariaDB's SUM and
    division give one)."""
    path = tmp_path / "gridwatch.toml"
    path.write_text(
        f'[state]\npath = "state.db"\n[grids]\nsource = "my"\n[sources.my]\n{sql_source(url)}\nconnect_timeout = "2s"\n'
        '[[checks]]\nname = "slow"\ntype = "sql"\nsource = "my"\ntimeout = "1s"\n'
        'metric = "gridwatch_test_slow"\nvalue = "n"\nquery = "SELECT grid_id AS grid, SLEEP(5) AS n FROM grids"\n'
        '[[checks]]\nname = "sums"\ntype = "sql"\nsource = "my"\ntimeout = "10s"\nmetric = "gridwatch_test_sum"\n'
        'value = "n"\nquery = "SELECT grid_id AS grid, SUM(n) / 2 AS n FROM counts GROUP BY grid_id"\n',
        encoding="utf-8",
    )
    settings, host = config.load(path)
    return Runtime(settings, host)


def _run(runtime: Runtime, name: str) -> Outcome:
    async def go() -> Outcome:
        return await runtime.run(runtime.runners[name], datetime.now(UTC), Results())

    return asyncio.run(go())


def _sums(outcome: Outcome) -> dict[str, float]:
    assert outcome.outcome == "success", outcome.error
    return {s.labels["grid"]: s.value for s in outcome.samples}


def _load_counts(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE grids (grid_id VARCHAR(20), name VARCHAR(50))")
        conn.exec_driver_sql("INSERT INTO grids VALUES ('G1', '一号网格'), ('G2', '二号网格')")
        conn.exec_driver_sql("CREATE TABLE counts (grid_id VARCHAR(20), n INTEGER)")
        conn.exec_driver_sql("INSERT INTO counts VALUES ('G1', 3), ('G1', 4), ('G2', 1), ('G2', 3)")
    engine.dispose()


def _sleeping(server: MariaDBServer) -> list[Any]:
    with contextlib.closing(server.admin()) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT grid_id AS grid, SLEEP%'")
        return list(cur.fetchall())


def test_a_slow_query_on_mariadb_times_out_on_the_server_and_the_rest_goes_on(mariadb, tmp_path):
    url = mariadb.createdb("slow")
    _load_counts(url)
    runtime = _runtime(tmp_path, url)
    try:
        for _ in range(2):
            began = time.monotonic()
            slow = _run(runtime, "slow")
            assert slow.outcome == "timeout", slow.error
            assert slow.error == "timed out after 1s"
            assert time.monotonic() - began < 4  # not the five seconds the query asked for
            # the server gave up too (max_statement_time): no query left sleeping there
            deadline = time.monotonic() + 5
            while _sleeping(mariadb) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _sleeping(mariadb) == []
            assert _sums(_run(runtime, "sums")) == HALVES
    finally:
        runtime.close()


def test_a_stopped_mariadb_is_a_source_unavailable_and_a_restarted_one_is_read_again(tmp_path):
    with MariaDBServer() as server:  # its own server: this test stops it
        url = server.createdb("down")
        _load_counts(url)
        runtime = _runtime(tmp_path, url)
        try:
            assert _sums(_run(runtime, "sums")) == HALVES
            server.stop()
            down = _run(runtime, "sums")
            assert down.outcome == "failure"
            assert down.error is not None and down.error.startswith("source my unavailable: ")
            assert server.password not in down.error
            server.start()
            assert _sums(_run(runtime, "sums")) == HALVES
        finally:
            runtime.close()


def test_a_missing_table_on_mariadb_names_the_table_and_how_to_map_it(mariadb, tmp_path):
    url = mariadb.createdb("missing")
    _load_counts(url)
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
    src = SqlSource("my", SqlSource.Options(url=url, tables={"visits": "visit_log"}), env)
    try:
        with pytest.raises(CheckError) as raised:
            src.read("visits", ["visit_id", "visited_at"], deadline=time.monotonic() + 30)
        assert str(raised.value) == (
            "table 'visits' not found in source my (looked for 'visit_log'): map it with tables.visits"
        )
        with pytest.raises(CheckError) as raised:
            src.read("grids", ["grid_id", "zone"], deadline=time.monotonic() + 30)
        assert str(raised.value) == (
            "column 'zone' of table 'grids' not found in source my: map it with columns.grids.zone"
        )
    finally:
        src.close()


def test_names_in_a_binary_column_are_read_as_text_and_bad_bytes_are_a_counted_bad_row(mariadb, tmp_path):
    """A platform keeping names in VARBINARY hands gridwatch bytes: UTF-8 ones are the name (not
    ``b'\\xe4...'`` on the board), others make the row a ``bad_encoding`` row, never shown."""
    url = mariadb.createdb("binary")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE grids (grid_id VARCHAR(20), name VARBINARY(50))")
        conn.exec_driver_sql(
            "INSERT INTO grids VALUES ('G1', X'E4B880E58FB7E7BD91E6A0BC'), ('G2', X'3133383132333435363738B1B8')"
        )  # 一号网格; a phone number with two GBK bytes after it
    engine.dispose()
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
    src = SqlSource("my", SqlSource.Options(url=url), env)
    try:
        assert src.read("grids", ["grid_id", "name"], deadline=time.monotonic() + 30) == [
            {"grid_id": "G1", "name": "一号网格"}
        ]
        assert src.drain_rejected() == {"bad_encoding": 1}
    finally:
        src.close()


def test_a_query_that_writes_is_refused_on_mariadb_as_the_checks_fault(mariadb, tmp_path):
    """Every query runs in a read-only transaction; the refusal is the check's error, not the
    server's trouble (the source stays up)."""
    url = mariadb.createdb("readonly")
    _load_counts(url)
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")
    src = SqlSource("my", SqlSource.Options(url=url), env)
    try:
        with pytest.raises(CheckError, match="READ ONLY transaction"):
            src.query("INSERT INTO counts VALUES ('G3', 1)", deadline=time.monotonic() + 30)
        assert src.query("SELECT COUNT(*) AS n FROM counts") == [{"n": 4}]
    finally:
        src.close()
