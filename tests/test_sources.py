"""The built-in sources against real things: SQLite files, PostgreSQL, files, an HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from aiohttp import web
from pydantic import ValidationError

from gridwatch import config
from gridwatch.api import ROW_KEY, CheckError, Environment, Latest, Resync, SourceUnavailable
from gridwatch.rows import parse_ts
from gridwatch.schema import STANDARD_SCHEMA, create_sql
from gridwatch.sources.files import CsvSource, JsonlSource
from gridwatch.sources.http import HttpSource
from gridwatch.sources.ingest import IngestSource
from gridwatch.sources.sql import SqlSource
from gridwatch.sources.sqlite import SqliteSource
from gridwatch.testing import free_port, wait_for, write_standard_db

TZ = ZoneInfo("Asia/Shanghai")
VISIT = ("visit_id", "household_id", "grid_id", "worker_id", "visited_at")


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    return Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


# --------------------------------------------------------------------------- sqlite: folding


def test_sqlite_folds_the_rows_it_can_vouch_for_and_hands_on_every_row_of_the_others(env, tmp_path):
    """read_latest: one (key, latest, rows) line per household whose rows all surely pass the
    bad-row rules; every row of any other household comes back as read_since gives it."""
    rows = [
        ("v1", "h1", "g1", "2026-11-20 09:00:00"),
        ("v2", "h1", "g1", "2026-11-20 10:00:00"),
        ("v3", "h2", "g1", "2026-11-19 08:00:00"),
        ("v4", "h2", "g1", "2026-11-20T11:00:00+08:00"),  # an offset and a T: folded as local time
        ("v4b", "h2b", "g1", "2026-11-20 11:00"),  # no seconds: SQLite does not vouch, h2b is handed on
        ("v5", "h3", "g9", "2026-11-20 08:00:00"),  # an unknown grid
        (None, "h4", "g1", "2026-11-20 08:00:00"),  # no id
        ("", "h4b", "g1", "2026-11-20 08:00:00"),  # an empty id
        ("v7", "h5", "g1", "2026-11-20 12:00:01"),  # after "until"
        ("v8", None, "g1", "2026-11-20 08:00:00"),  # no household: never folded
        ("v9", "h6", "g1", "2026-02-30 10:00:00"),  # no such day
        ("v10", "h7", "g1", "2019-12-31 23:59:59"),  # before "since"
        ("v11", "h8", "g1", "2026-11-20 12:00:00"),  # "until" itself is in
        ("v12", "h8", "g1", "2020-01-01 00:00:00"),  # so is "since"
    ]
    db = write_standard_db(
        tmp_path / "city.db",
        {"visits": [dict(zip(("visit_id", "household_id", "grid_id", "visited_at"), r, strict=True)) for r in rows]},
    )
    source = SqliteSource("city", SqliteSource.Options(path=str(db)), env)
    want = Latest(
        "household_id", "visited_at", "visit_id", "grid_id", ["g1", "g2"],
        datetime(2020, 1, 1), datetime(2026, 11, 20, 12, 0, 0),
    )  # fmt: skip
    groups, odd, cursor = source.read_latest("visits", VISIT, None, want, deadline=soon())
    assert sorted(groups) == [
        ("h1", "2026-11-20 10:00:00", 2),
        ("h2", "2026-11-20 11:00:00", 2),
        ("h8", "2026-11-20 12:00:00", 2),
    ]
    odd = list(odd)
    assert [r["visit_id"] for r in odd] == ["v4b", "v5", None, "", "v7", "v8", "v9", "v10"]
    assert all(set(r) == {ROW_KEY, *VISIT} for r in odd)
    rows_then, cursor_then = source.read_since("visits", VISIT, None, deadline=soon())
    assert cursor == cursor_then and len(list(rows_then)) == len(rows)
    # after the cursor, only what was appended
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO visits (visit_id, household_id, grid_id, visited_at)"
            " VALUES ('v13', 'h1', 'g2', '2026-11-20 11:00:00')"
        )
    conn.close()
    groups, odd, _ = source.read_latest("visits", VISIT, cursor, want, deadline=soon())
    assert groups == [("h1", "2026-11-20 11:00:00", 1)] and list(odd) == []


def test_sqlite_folds_by_a_split_column_and_gives_each_folds_earliest(env, tmp_path):
    """read_latest with split and earliest: one (key pair, latest, rows, earliest) line per grid and
    role, NULL a role of its own; a grid with a row it cannot vouch for is handed on whole."""
    cols = ("patrol_id", "grid_id", "patrolled_at", "role")
    rows = [
        ("p1", "g1", "2026-11-20 09:00:00", None),
        ("p2", "g1", "2026-11-18 10:00:00", None),
        ("p3", "g1", "2026-11-19 08:00:00", "supervisor"),
        ("p4", "g1", "2026-11-20 07:00:00", "supervisor"),
        ("p5", "g1", "2026-11-17 07:00:00", "Supervisor"),  # another value: another fold
        ("p6", "g2", "2026-11-20 08:00:00", "head"),
        ("p7", "g2", "2026-11-20 8:00", None),  # not canonical: all of g2 is handed on
    ]
    db = write_standard_db(tmp_path / "city.db", {"patrols": [dict(zip(cols, r, strict=True)) for r in rows]})
    source = SqliteSource("city", SqliteSource.Options(path=str(db)), env)
    assert {"split", "earliest"} <= source.latest_fields
    want = Latest(
        "grid_id", "patrolled_at", "patrol_id", "grid_id", ["g1", "g2"],
        datetime(2020, 1, 1), datetime(2026, 11, 20, 12, 0, 0), split="role", earliest=True,
    )  # fmt: skip
    groups, odd, _ = source.read_latest("patrols", cols, None, want, deadline=soon())
    assert sorted(groups, key=repr) == sorted(
        [
            (("g1", None), "2026-11-20 09:00:00", 2, "2026-11-18 10:00:00"),  # p1, p2
            (("g1", "supervisor"), "2026-11-20 07:00:00", 2, "2026-11-19 08:00:00"),  # p3, p4
            (("g1", "Supervisor"), "2026-11-17 07:00:00", 1, "2026-11-17 07:00:00"),  # p5
        ],
        key=repr,
    )
    assert [r["patrol_id"] for r in odd] == ["p6", "p7"]


def test_a_source_that_does_not_honour_split_is_not_asked_to_fold_by_it(tmp_path):
    """A source written before ``Latest.split`` existed would fold by grid alone: the feed reads
    its rows instead, and tells the roles apart itself."""
    from gridwatch.api import RunContext, Source
    from gridwatch.feeds import Feed

    asked: list[Latest] = []

    class Old(Source):
        type = "old"

        def read_since(self, table, columns, after=None, *, deadline=float("inf")):
            rows = [
                {"patrol_id": "p1", "grid_id": "g1", "patrolled_at": "2026-11-20 09:00:00", "role": "head"},
                {"patrol_id": "p2", "grid_id": "g1", "patrolled_at": "2026-11-20 08:00:00", "role": None},
            ]
            return rows, None

        def read_latest(self, table, columns, after, want, *, deadline=float("inf")):
            asked.append(want)
            return [("g1", "2026-11-20 09:00:00", 2)], [], None

        def unique(self, table, column):
            return True

    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path)
    feed = Feed(
        Old("old", Old.Options(), env), "patrols", ("patrol_id", "grid_id", "patrolled_at", "role"), "patrol_id"
    )
    ctx = RunContext(now=datetime(2026, 11, 20, 12, tzinfo=TZ), tz=TZ)
    got = [(key, at.hour, n) for key, at, n in feed.latest(ctx, "grid_id", "patrolled_at", {"g1": 1}, split="role")]
    assert got == [(("g1", "head"), 9, 1), (("g1", None), 8, 1)]  # row by row, as read
    assert asked == []
    # without split it folds as before
    assert [k for k, _, _ in feed.latest(ctx, "grid_id", "patrolled_at", {"g1": 1})] == ["g1"] and len(asked) == 1


@pytest.mark.parametrize("stop", [Resync, CheckError])
def test_a_run_stopped_half_way_through_a_sqlite_table_leaves_the_platform_free_to_write(env, tmp_path, stop):
    """A check whose run stops after the first row of a table (it must read everything again,
    twice; or a row fails it) ends its read: the platform writes at once, although the
    exceptions and their tracebacks are still held (a log record keeps one, the caller the
    other). An open read would hold SQLite's read lock: the write would wait, then fail."""
    from gridwatch.api import RunContext
    from gridwatch.feeds import Tracker

    db = tmp_path / "city.db"
    patrols = [{"patrol_id": f"p{i}", "grid_id": "g1", "patrolled_at": "2026-11-20 09:00:00"} for i in range(3)]
    write_standard_db(db, {"grids": [{"grid_id": "g1"}], "patrols": patrols})
    source = SqliteSource("city", SqliteSource.Options(path=str(db)), env)
    tracker = Tracker(resync=None)
    feed = tracker.feed(source, "patrols", ("patrol_id", "grid_id", "patrolled_at"), "patrol_id")
    ctx = RunContext(now=datetime(2026, 11, 20, 12, tzinfo=TZ), tz=TZ)
    held: list[BaseException] = []

    def update(full: bool) -> None:
        rows = feed.rows(ctx, timestamps=("patrolled_at",), grids={"g1": 1})  # a local, as checks keep it
        for _ in rows:
            held.append(stop("stopped after the first row"))
            raise held[-1]

    with pytest.raises(stop) as raised:
        tracker.refresh(ctx, {"g1": 1}, lambda: None, update)
    assert len(held) == (2 if stop is Resync else 1) and raised.value is held[-1]
    writer = sqlite3.connect(db, timeout=0)  # no wait: a lock held says so at once
    try:
        writer.execute(
            "INSERT INTO patrols (patrol_id, grid_id, patrolled_at) VALUES ('p9', 'g1', '2026-11-20 11:00:00')"
        )
        writer.commit()
    finally:
        writer.close()


def _any_iso_city(path: Path) -> Path:
    """A hand-sized platform: ids are INTEGER PRIMARY KEY columns (the rowid: no index of their
    own), and times are every ISO 8601 form the rule book accepts, among bad ones."""
    rows = [
        (1, 1, "g1", "2026-11-20 09:00:00.250000+08:00"),  # 09:00:00.25 local
        (2, 1, "g1", "2026-11-20T01:30:00.5Z"),  # 09:30:00.5 local: h1's latest
        (3, 1, "g1", "2026-11-19 20:00:00-05:00"),  # 09:00 local, the next day
        (4, 2, "g1", "2026-11-20T10:15:00.000001"),  # local, a microsecond after v5: h2's latest
        (5, 2, "g1", "2026-11-20 10:15:00"),
        (6, 3, "g1", "2026-11-20 08:00:00+08:00"),
        (7, 3, "g1", "0001-01-01 00:00:00"),  # a placeholder year: bad, so h3 is read row by row
        (8, 4, "g1", "2026-13-01 10:00:00"),  # no such month
        (9, 4, "g1", "garbage"),
        (10, 4, "g1", ""),  # no time
        (11, 4, "g2", "2026-11-20 11:00:00.9+08:00"),  # h4's latest, its only good row
        (12, 5, "g1", "2026-11-20T04:00:00.5Z"),  # 12:00:00.5 local: after now, left out
        (13, 6, "g9", "2026-11-20 10:00:00"),  # an unknown grid
    ]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TABLE visits (visit_id INTEGER PRIMARY KEY, household_id INTEGER, grid_id TEXT,"
            " worker_id TEXT, visited_at TEXT)"
        )
        conn.executemany("INSERT INTO visits (visit_id, household_id, grid_id, visited_at) VALUES (?, ?, ?, ?)", rows)
        conn.commit()
    return path


def test_sqlite_folds_integer_keys_and_every_iso_form_exactly_as_rows_read_one_by_one(env, tmp_path):
    """An INTEGER PRIMARY KEY is unique, so no id is remembered; a `T` or a space, fractional
    seconds, `Z` and offsets are all folded by SQLite, to the microsecond, to the same latest
    instants and rejects as the rows read one by one; a household with a bad row is read so."""
    from gridwatch.api import RunContext
    from gridwatch.feeds import Feed

    db = _any_iso_city(tmp_path / "city.db")
    source = SqliteSource("city", SqliteSource.Options(path=str(db)), env)
    assert source.unique("visits", "visit_id")
    now = datetime(2026, 11, 20, 12, tzinfo=TZ)
    grids = {"g1": 1, "g2": 1}

    def fold(src: SqliteSource) -> tuple[dict[Any, tuple[datetime, int]], RunContext]:
        ctx = RunContext(now=now, tz=TZ)
        feed = Feed(src, "visits", VISIT, "visit_id")
        out: dict[Any, tuple[datetime, int]] = {}
        for key, at, n in feed.latest(ctx, "household_id", "visited_at", grids):
            before = out.get(key, (at, 0))
            out[key] = (max(before[0], at), before[1] + n)
        assert feed.dedupe is False
        return out, ctx

    class OneByOne(SqliteSource):
        def read_latest(self, *args: Any, **kwargs: Any) -> None:
            return None

    folded, ctx = fold(source)
    read, ctx_rows = fold(OneByOne("city", SqliteSource.Options(path=str(db)), env))
    at = lambda *t: datetime(2026, 11, 20, *t, tzinfo=TZ)  # noqa: E731
    assert (
        folded
        == read
        == {
            1: (at(9, 30, 0, 500_000), 3),
            2: (at(10, 15, 0, 1), 2),
            3: (at(8), 1),
            4: (at(11, 0, 0, 900_000), 1),
        }
    )
    assert ctx.rejected == ctx_rows.rejected
    assert dict(ctx.rejected) == {("city", "bad_timestamp"): 4, ("city", "unknown_grid"): 1}
    assert ctx.read == ctx_rows.read == {"city": 13}  # every row was judged
    # SQLite folded h1 and h2 (five rows) into two lines; the other households came as rows
    want = Latest(
        "household_id", "visited_at", "visit_id", "grid_id", sorted(grids),
        datetime(2022, 1, 1), datetime(2026, 11, 20, 12),
    )  # fmt: skip
    groups, odd, _ = source.read_latest("visits", VISIT, None, want)
    assert sorted(groups) == [(1, "2026-11-20 09:30:00.5", 3), (2, "2026-11-20 10:15:00.000001", 2)]
    assert [r["visit_id"] for r in odd] == [6, 7, 8, 9, 10, 11, 12, 13]


@pytest.mark.parametrize(
    ("ddl", "unique"),
    [
        ("visit_id INTEGER PRIMARY KEY, grid_id TEXT", True),  # the rowid
        ("visit_id INTEGER PRIMARY KEY DESC, grid_id TEXT", True),  # not the rowid: an index
        ("visit_id TEXT PRIMARY KEY, grid_id TEXT", True),
        ("visit_id INTEGER, grid_id TEXT, PRIMARY KEY (visit_id)", True),
        ("visit_id TEXT UNIQUE, grid_id TEXT", True),
        ("visit_id INTEGER PRIMARY KEY, grid_id TEXT) WITHOUT ROWID; SELECT (1", True),
        ("visit_id TEXT, grid_id TEXT, PRIMARY KEY (visit_id, grid_id)", False),  # one of two columns
        ("visit_id TEXT, grid_id TEXT, UNIQUE (grid_id, visit_id)", False),
        ("visit_id TEXT, grid_id TEXT PRIMARY KEY", False),  # another column's key
        ("visit_id INTEGER, grid_id TEXT", False),
    ],
)
def test_sqlite_knows_every_unique_key_a_table_declares(env, tmp_path, ddl, unique):
    db = tmp_path / "keys.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(f"CREATE TABLE visits ({ddl});")
    source = SqliteSource("city", SqliteSource.Options(path=str(db)), env)
    assert source.unique("visits", "visit_id") is unique


# --------------------------------------------------------------------------- sql: SQLite


@pytest.fixture
def sql_source() -> Iterator[Callable[..., SqlSource]]:
    """Makes ``sql`` sources and closes them all afterwards (their pools hold connections)."""
    made: list[SqlSource] = []

    def make(env: Environment, url: str, **options: Any) -> SqlSource:
        made.append(SqlSource("griddb", SqlSource.Options(url=url, **options), env))
        return made[-1]

    yield make
    for source in made:
        source.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    db = write_standard_db(
        tmp_path / "grid.db",
        {"visits": [{"visit_id": "v1", "household_id": "h1", "grid_id": "g1", "visited_at": "2026-11-20 09:30:00"}]},
    )
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE 走访记录 (编号 TEXT, 网格 TEXT, 时间 TEXT)")
        conn.execute("INSERT INTO 走访记录 VALUES ('v9', 'g2', '2026-11-21T08:00:00+08:00')")
    conn.close()
    return f"sqlite:///{db}"


def test_sql_reads_a_sqlite_file_with_mapping_and_refuses_writes(env, sqlite_url, sql_source):
    src = sql_source(env, sqlite_url)
    assert src.read("visits", VISIT, deadline=soon()) == [
        {
            "visit_id": "v1",
            "household_id": "h1",
            "grid_id": "g1",
            "worker_id": None,
            "visited_at": "2026-11-20 09:30:00",
        }
    ]
    mapped = sql_source(
        env,
        sqlite_url,
        tables={"visits": "走访记录"},
        columns={"visits": {"visit_id": "编号", "grid_id": "网格", "visited_at": "时间"}},
    )
    assert mapped.read("visits", ["visit_id", "grid_id", "visited_at"]) == [
        {"visit_id": "v9", "grid_id": "g2", "visited_at": "2026-11-21T08:00:00+08:00"}
    ]
    mapped.close()
    with pytest.raises(CheckError, match="query failed: attempt to write a readonly database"):
        src.query("DELETE FROM visits")
    assert len(src.query("SELECT * FROM visits")) == 1


def test_sql_names_what_to_map_when_a_table_or_column_is_missing(env, sqlite_url, tmp_path, sql_source):
    src = sql_source(
        env, sqlite_url, tables={"patrols": "patrol_log"}, columns={"visits": {"visited_at": "visit_time"}}
    )
    with pytest.raises(CheckError) as err:
        src.read("patrols", ["patrol_id"])
    assert str(err.value) == (
        "table 'patrols' not found in source griddb (looked for 'patrol_log'): map it with tables.patrols"
    )
    with pytest.raises(CheckError) as err:
        src.read("visits", VISIT)
    assert str(err.value) == (
        "column 'visited_at' of table 'visits' not found in source griddb "
        "(looked for 'visit_time' in 'visits'): map it with columns.visits.visited_at"
    )
    with pytest.raises(CheckError, match=r"table 'reports' not found in source griddb: map it with tables\.reports"):
        sqlite3.connect(tmp_path / "empty.db").close()
        sql_source(env, f"sqlite:///{tmp_path / 'empty.db'}").read("reports", ["report_id"])


def test_sql_sqlite_query_is_bounded_by_the_deadline(env, sqlite_url, sql_source):
    src = sql_source(env, sqlite_url)
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        src.query(slow, deadline=soon(0.3))
    assert time.monotonic() - started < 3
    assert src.query("SELECT 1 AS one") == [{"one": 1}]  # the pooled connection is fine again
    with pytest.raises(TimeoutError):
        src.query("SELECT 1", deadline=time.monotonic() - 1)


def test_sql_bad_url_and_missing_driver_fail_at_construction(env, sql_source, monkeypatch):
    with pytest.raises(CheckError, match="not a SQLAlchemy URL"):
        sql_source(env, "not a url")
    with pytest.raises(CheckError, match="knows no database 'nosuchdb'"):
        sql_source(env, "nosuchdb://u:pw@host/db")
    for driver in ("pymysql", "MySQLdb"):  # neither MySQL driver can be imported
        monkeypatch.setitem(sys.modules, driver, None)
    with pytest.raises(CheckError) as err:
        sql_source(env, "mysql://grid:hunter2@127.0.0.1/grid")
    assert "pip install 'gridwatch[mysql]'" in str(err.value)
    assert "hunter2" not in str(err.value)


# --------------------------------------------------------------------------- sql: PostgreSQL

LEGACY = """
CREATE TABLE "Visit Log" (
    vid text, hh text, grid text, worker text, at timestamp, at_tz timestamptz,
    day date, score numeric(6, 2), n numeric
)
"""


@pytest.fixture(scope="module")
def pg(postgres) -> str:
    """A database with standard tables and a legacy table; returns its SQLAlchemy URL."""
    dsn = postgres.createdb("sources")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in STANDARD_SCHEMA:
            conn.execute(create_sql(table))
        conn.execute(
            "INSERT INTO visits VALUES ('v1', 'h1', 'g1', 'w1', '2026-11-20 09:30:00'),"
            " ('v2', 'h2', 'g1', 'w1', '2026-11-21T10:00:00+08:00'),"
            " ('v3', 'h3', 'g2', NULL, 'not a time')"
        )
        conn.execute("INSERT INTO incidents (incident_id, grid_id, reopened_count, extended) VALUES ('i1', 'g1', 2, 0)")
        conn.execute(LEGACY)
        conn.execute(
            """INSERT INTO "Visit Log" VALUES ('v7', 'h7', 'g3', 'w2', '2026-11-19 08:00',
               '2026-11-19 08:00+08', '2026-11-19', 12.50, 42)"""
        )
    return postgres.url_for("sources")


@pytest.mark.component
def test_postgres_reads_standard_tables(env, pg, sql_source):
    src = sql_source(env, pg, pool_size=2)
    rows = src.read("visits", VISIT, deadline=soon())
    assert [r["visit_id"] for r in rows] == ["v1", "v2", "v3"]
    assert rows[0] == {
        "visit_id": "v1",
        "household_id": "h1",
        "grid_id": "g1",
        "worker_id": "w1",
        "visited_at": "2026-11-20 09:30:00",
    }
    assert rows[2]["visited_at"] == "not a time"  # bad rows pass through for the checks' cleaning
    [inc] = src.read("incidents", ["incident_id", "reopened_count", "extended", "closed_at"])
    assert inc == {"incident_id": "i1", "reopened_count": 2, "extended": 0, "closed_at": None}
    for _ in range(5):  # one engine, pooled connections, all given back
        src.read("visits", ["visit_id"])
    assert src.engine.pool.checkedout() == 0


@pytest.mark.component
def test_postgres_maps_tables_and_columns_and_converts_values(env, pg, sql_source):
    src = sql_source(
        env,
        pg,
        tables={"visits": "Visit Log"},
        columns={
            "visits": {
                "visit_id": "vid",
                "household_id": "hh",
                "grid_id": "grid",
                "worker_id": "worker",
                "visited_at": "at",
            }
        },
    )
    [row] = src.read("visits", VISIT)
    assert row == {
        "visit_id": "v7",
        "household_id": "h7",
        "grid_id": "g3",
        "worker_id": "w2",
        "visited_at": datetime(2026, 11, 19, 8, 0),
    }
    assert parse_ts(row["visited_at"], TZ) == datetime(2026, 11, 19, 8, 0, tzinfo=TZ)
    [values] = src.query('SELECT at_tz, day, score, n FROM "Visit Log"')
    assert parse_ts(values["at_tz"], TZ) == datetime(2026, 11, 19, 8, 0, tzinfo=TZ)
    assert parse_ts(values["day"], TZ) == datetime(2026, 11, 19, tzinfo=TZ)
    assert values["score"] == 12.5 and isinstance(values["score"], float)
    assert values["n"] == 42 and isinstance(values["n"], int)


@pytest.mark.component
def test_postgres_query_binds_parameters_and_is_read_only(env, pg, sql_source):
    src = sql_source(env, pg)
    sql = "SELECT visit_id FROM visits WHERE grid_id = :grid AND visited_at < :now ORDER BY visit_id"
    # the sql check passes more parameters than a query uses: the rest are ignored
    params = {"grid": "g1", "now": "2026-11-21", "now_epoch": 0.0, "today": "2026-11-21"}
    assert src.query(sql, params, deadline=soon()) == [{"visit_id": "v1"}]
    assert src.query(sql, {"grid": "g1' OR '1'='1", "now": "9999"}) == []  # a value, never SQL
    with pytest.raises(CheckError, match="cannot execute DELETE in a read-only transaction"):
        src.query("DELETE FROM visits")
    with pytest.raises(CheckError, match="A value is required for bind parameter 'grid'"):
        src.query(sql, {"now": "x"})
    with pytest.raises(CheckError, match='relation "nope" does not exist'):
        src.query("SELECT * FROM nope")
    assert len(src.read("visits", ["visit_id"])) == 3
    with pytest.raises(CheckError, match="column 'visited_at' of table 'visits' not found"):
        sql_source(env, pg, columns={"visits": {"visited_at": "ts"}}).read("visits", VISIT)


@pytest.mark.component
def test_postgres_statement_timeout_follows_the_deadline(env, pg, sql_source):
    src = sql_source(env, pg, pool_size=1, max_overflow=0)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="exceeded the check's timeout"):
        src.query("SELECT pg_sleep(5)", deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 2.0
    # the limit was local to that transaction: the same pooled connection has none now
    assert src.query("SHOW statement_timeout") == [{"statement_timeout": "0"}]
    assert src.query("SHOW transaction_read_only") == [{"transaction_read_only": "on"}]


KEYS = {  # table -> (DDL of its columns, is visit_id unique?)
    "k_serial": ("visit_id SERIAL PRIMARY KEY, grid_id TEXT", True),
    "k_text": ("visit_id TEXT PRIMARY KEY, grid_id TEXT", True),
    "k_constraint": ("visit_id TEXT, grid_id TEXT, CONSTRAINT k_once UNIQUE (visit_id)", True),
    "k_index": ("visit_id TEXT, grid_id TEXT", True),  # CREATE UNIQUE INDEX, below
    "k_partial": ("visit_id TEXT, grid_id TEXT", False),  # unique only WHERE grid_id IS NOT NULL
    "k_pair": ("visit_id TEXT, grid_id TEXT, PRIMARY KEY (visit_id, grid_id)", False),
    "k_none": ("visit_id TEXT, grid_id TEXT", False),
}
KEY_INDEXES = (
    "CREATE UNIQUE INDEX k_index_id ON k_index (visit_id)",
    "CREATE UNIQUE INDEX k_partial_id ON k_partial (visit_id) WHERE grid_id IS NOT NULL",
)


@pytest.mark.component
def test_the_sql_source_knows_every_unique_key_postgres_declares(env, postgres, sql_source):
    """A primary key, a unique constraint or a full unique index on the id alone spares
    remembering every id read; a key of two columns or a partial index does not."""
    dsn = postgres.createdb("keys")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, (ddl, _) in KEYS.items():
            conn.execute(f"CREATE TABLE {table} ({ddl})")
        for ddl in KEY_INDEXES:
            conn.execute(ddl)
    src = sql_source(env, postgres.url_for("keys"))
    assert {t: src.unique(t, "visit_id") for t in KEYS} == {t: u for t, (_, u) in KEYS.items()}


def test_the_sql_source_knows_every_unique_key_sqlite_declares(env, tmp_path, sql_source):
    db = tmp_path / "keys.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for table, (ddl, _) in KEYS.items():
            conn.execute(f"CREATE TABLE {table} ({ddl.replace('SERIAL', 'INTEGER')})")
        for ddl in KEY_INDEXES:
            conn.execute(ddl)
    src = sql_source(env, f"sqlite:///{db}")
    assert {t: src.unique(t, "visit_id") for t in KEYS} == {t: u for t, (_, u) in KEYS.items()}


def test_postgres_unreachable_is_unavailable_and_hides_the_password(env, sql_source):
    port = free_port()
    src = sql_source(env, f"postgresql://grid:Sup3r-secret@127.0.0.1:{port}/grid", connect_timeout="2s")
    for attempt in (src.ping, lambda: src.read("visits", VISIT), lambda: src.query("SELECT 1")):
        with pytest.raises(SourceUnavailable) as err:
            attempt()
        assert "Sup3r-secret" not in str(err.value)
        assert str(err.value).startswith(f"cannot connect to postgresql://grid:***@127.0.0.1:{port}/grid: ")


# --------------------------------------------------------------------------- csv / jsonl


def csv_source(env: Environment, **options: Any) -> CsvSource:
    return CsvSource("files", CsvSource.Options(path="data", **options), env)


def write_bytes(path: Path, data: bytes, bump: bool = True) -> None:
    """Write and move the mtime forward, so a rewrite within one clock tick is still a change."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_bytes(data)
    if bump:
        ns = max(path.stat().st_mtime_ns, old + 1_000_000)
        os.utime(path, ns=(ns, ns))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def test_csv_reads_header_rows_and_maps_names(env, data_dir):
    (data_dir / "visits.csv").write_text(
        "\ufeffvisit_id,household_id,grid_id,worker_id,visited_at\n"
        "v1,h1,g1,,2026-11-20 09:30:00\n"
        '"v2","h2","g1","w1","2026-11-21T10:00:00+08:00"\n',
        encoding="utf-8",
    )
    (data_dir / "走访.csv").write_text('编号,网格,时间,备注\nv3,g2,2026-11-19 08:00,"多行\n备注"\n', encoding="utf-8")
    src = csv_source(env)
    rows = src.read("visits", VISIT, deadline=soon())
    assert rows == [
        {
            "visit_id": "v1",
            "household_id": "h1",
            "grid_id": "g1",
            "worker_id": None,
            "visited_at": "2026-11-20 09:30:00",
        },
        {
            "visit_id": "v2",
            "household_id": "h2",
            "grid_id": "g1",
            "worker_id": "w1",
            "visited_at": "2026-11-21T10:00:00+08:00",
        },
    ]
    mapped = csv_source(
        env,
        tables={"visits": "走访"},
        columns={"visits": {"visit_id": "编号", "grid_id": "网格", "visited_at": "时间"}},
    )
    assert mapped.read("visits", ["visit_id", "grid_id", "visited_at"]) == [
        {"visit_id": "v3", "grid_id": "g2", "visited_at": "2026-11-19 08:00"}
    ]
    assert src.drain_rejected() == {} and mapped.drain_rejected() == {}


def test_csv_parses_a_file_again_only_when_it_changed(env, data_dir):
    path = data_dir / "grids.csv"
    write_bytes(path, b"grid_id,name\ng1,One\n")
    src = csv_source(env)
    assert src.read("grids", ["grid_id", "name"]) == [{"grid_id": "g1", "name": "One"}]
    assert src.read("grids", ["grid_id"]) == [{"grid_id": "g1"}]
    assert src.parses == 1
    write_bytes(path, b"grid_id,name\ng1,One\ng2,Two\n")
    assert src.read("grids", ["grid_id"]) == [{"grid_id": "g1"}, {"grid_id": "g2"}]
    assert src.parses == 2
    write_bytes(path, b"grid_id,name\ng9,Six\ng2,Two\n")  # same size, newer mtime
    assert src.read("grids", ["grid_id"])[0] == {"grid_id": "g9"}
    assert src.parses == 3
    src.read("grids", ["grid_id"])
    assert src.parses == 3


def test_csv_skips_and_counts_bad_lines_but_keeps_the_rest(env, data_dir):
    write_bytes(
        data_dir / "patrols.csv",
        b"patrol_id,grid_id,worker_id,patrolled_at\n"
        b"p1,g1,w1,2026-11-20 08:00\n"
        b"p2,g1,w1\n"  # a field short
        b"p3,g\xff\xfe1,w1,2026-11-20 09:00\n"  # not UTF-8
        b"p4,g1,w1,2026-11-20 10:00,extra\n"  # a field too many
        b"\n"
        b"p5,g2,w2,yesterday\n",  # a bad value: passed through for the checks to reject
    )
    src = csv_source(env)
    rows = src.read("patrols", ["patrol_id", "patrolled_at"])
    assert rows == [
        {"patrol_id": "p1", "patrolled_at": "2026-11-20 08:00"},
        {"patrol_id": "p5", "patrolled_at": "yesterday"},
    ]
    assert src.drain_rejected() == {"wrong_field_count": 2, "bad_encoding": 1}
    assert src.drain_rejected() == {}
    src.read("patrols", ["patrol_id"])  # every read that leaves them out counts them, cached or not
    assert src.parses == 1
    assert src.drain_rejected() == {"wrong_field_count": 2, "bad_encoding": 1}


def test_csv_other_encodings_and_delimiters(env, data_dir):
    write_bytes(data_dir / "grids.csv", "grid_id;name\ng1;东湖网格\n".encode("gbk"))
    src = csv_source(env, encoding="gbk", delimiter=";")
    assert src.read("grids", ["grid_id", "name"]) == [{"grid_id": "g1", "name": "东湖网格"}]
    with pytest.raises(ValidationError, match="unknown encoding"):
        CsvSource.Options(path="data", encoding="no-such-codec")


def test_files_missing_directory_file_or_column(env, data_dir):
    gone = CsvSource("files", CsvSource.Options(path="nowhere"), env)
    with pytest.raises(SourceUnavailable, match="directory 'nowhere' does not exist"):
        gone.read("visits", VISIT)
    with pytest.raises(SourceUnavailable):
        gone.ping()
    src = csv_source(env, tables={"patrols": "patrol_export"})
    src.ping()
    with pytest.raises(CheckError) as err:
        src.read("visits", VISIT)
    assert str(err.value) == (
        "table 'visits' not found in source files: there is no file visits.csv in data; map it with tables.visits"
    )
    with pytest.raises(CheckError, match=r"no file patrol_export\.csv in data; map it with tables\.patrols"):
        src.read("patrols", ["patrol_id"])
    (data_dir / "visits.csv").write_text("id,grid_id\n", encoding="utf-8")
    with pytest.raises(CheckError) as err:
        src.read("visits", ["visit_id", "grid_id"])
    assert str(err.value) == (
        "column 'visit_id' of table 'visits' not found in source files (visits.csv has id, grid_id): "
        "map it with columns.visits.visit_id"
    )
    (data_dir / "grids.csv").write_text("", encoding="utf-8")
    assert src.read("grids", ["grid_id"]) == []


def test_jsonl_reads_objects_and_counts_bad_lines(env, data_dir):
    lines = [
        json.dumps({"report_id": "r1", "grid_id": "g1", "kind": "daily", "period": "2026-11-20", "flag": None}),
        '{"report_id": "r2", "grid_id": "g1", "kind": "daily"',  # cut off
        json.dumps(["r3", "g1"]),  # not an object
        json.dumps({"report_id": "r4", "grid_id": "g2", "kind": "weekly", "submitted_at": 12}, ensure_ascii=False),
        "",
    ]
    write_bytes(data_dir / "reports.jsonl", "\n".join(lines).encode() + b"\n\xff\xfe\n")
    src = JsonlSource("pushed", JsonlSource.Options(path="data"), env)
    rows = src.read("reports", ["report_id", "kind", "submitted_at", "flag"])
    assert rows == [
        {"report_id": "r1", "kind": "daily", "submitted_at": None, "flag": None},
        {"report_id": "r4", "kind": "weekly", "submitted_at": 12, "flag": None},
    ]
    assert src.drain_rejected() == {"bad_json": 1, "not_object": 1, "bad_encoding": 1}
    mapped = JsonlSource(
        "pushed",
        JsonlSource.Options(path="data", tables={"reports": "reports.jsonl"}, columns={"reports": {"kind": "grid_id"}}),
        env,
    )
    assert [r["kind"] for r in mapped.read("reports", ["kind"])] == ["g1", "g2"]
    assert src.parses == 1


# --------------------------------------------------------------------------- http


class ApiServer:
    """A real aiohttp server on a loop of its own thread (the loop doubles as 'the daemon's')."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = free_port()
        self.requests: list[dict[str, str]] = []
        self.release: asyncio.Event | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/api/{name}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        name = request.match_info["name"]
        visits = [
            {"visit_id": "v1", "grid_id": "g1", "time": "2026-11-20 09:30:00", "extra": [1]},
            7,
            "text",
            {"visit_id": "v2", "grid_id": "g2"},
        ]
        if name == "visits":
            return web.json_response(visits)
        if name == "wrapped":
            return web.json_response({"code": 0, "data": {"total": 1, "list": visits[:1]}})
        if name == "empty":
            return web.json_response({"code": 0, "data": {"list": None}})
        if name == "envelope":
            return web.json_response({"code": 500, "msg": "服务繁忙"})
        if name == "boom":
            return web.Response(status=502, text="bad gateway")
        if name == "html":
            return web.Response(text="<html><body>登录</body></html>", content_type="text/html")
        if name == "truncated":
            return web.Response(text='[{"visit_id": "v1"}, {"visit_', content_type="application/json")
        if name == "hang":
            assert self.release is not None
            await self.release.wait()
            return web.json_response([])
        if name == "secure":
            if request.headers.get("X-Api-Key") != "Bearer t0k3n":
                return web.Response(status=401)
            return web.json_response([{"visit_id": "s1"}])
        return web.Response(status=404)

    def stop(self) -> None:
        async def _stop() -> None:
            assert self.release is not None
            self.release.set()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


def http_source(env: Environment, api: ApiServer, **options: Any) -> HttpSource:
    options.setdefault("url", f"{api.base}/api/{{table}}")
    return HttpSource("platform", HttpSource.Options(**options), env)


def test_http_reads_a_json_list_and_skips_non_objects(env, api):
    src = http_source(env, api, columns={"visits": {"visited_at": "time"}}, headers={"X-Client": "gridwatch"})
    rows = src.read("visits", ["visit_id", "grid_id", "visited_at"], deadline=soon())
    assert rows == [
        {"visit_id": "v1", "grid_id": "g1", "visited_at": "2026-11-20 09:30:00"},
        {"visit_id": "v2", "grid_id": "g2", "visited_at": None},
    ]
    assert src.drain_rejected() == {"not_object": 2}
    assert api.requests[-1]["X-Client"] == "gridwatch"
    assert api.requests[-1]["Accept"] == "application/json"


def test_http_records_key_and_table_mapping(env, api):
    src = http_source(env, api, records="data.list", tables={"visits": "wrapped", "patrols": "empty"})
    assert src.read("visits", ["visit_id"]) == [{"visit_id": "v1"}]
    assert src.read("patrols", ["patrol_id"]) == []
    plain = http_source(env, api, tables={"visits": "wrapped"})
    with pytest.raises(CheckError, match=r"is a JSON object \(keys: code, data\), not a list of rows: set records"):
        plain.read("visits", ["visit_id"])
    enveloped = http_source(env, api, records="data.list", tables={"visits": "envelope"})
    with pytest.raises(
        CheckError, match=r"has no 'data.list' \(records\); its keys are code, msg \(the server says: 服务繁忙\)"
    ):
        enveloped.read("visits", ["visit_id"])


def test_http_server_errors_and_non_json_bodies_are_unavailable(env, api):
    src = http_source(env, api, url=f"{api.base}/api/{{table}}?token=q-secret", tables={"visits": "boom"})
    with pytest.raises(SourceUnavailable) as err:
        src.read("visits", ["visit_id"])
    assert str(err.value) == f"HTTP 502 from {api.base}/api/boom"
    assert src.drain_rejected() == {}
    src = http_source(env, api, tables={"visits": "html", "patrols": "truncated"})
    with pytest.raises(SourceUnavailable, match=r"is not JSON \(text/html, \d+ bytes\)"):
        src.read("visits", ["visit_id"])
    with pytest.raises(SourceUnavailable, match=r"is not JSON \(application/json, \d+ bytes\): it ends early"):
        src.read("patrols", ["patrol_id"])
    assert src.drain_rejected() == {"bad_json": 2}


def test_http_client_errors_are_check_errors(env, api):
    src = http_source(env, api)
    with pytest.raises(CheckError) as err:
        src.read("incidents", ["incident_id"])
    assert str(err.value) == (
        f"table 'incidents' not found in source platform (HTTP 404 from {api.base}/api/incidents): "
        "map it with tables.incidents"
    )


def test_http_timeouts(env, api):
    src = http_source(env, api, tables={"visits": "hang"})
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer before the check's deadline"):
        src.read("visits", ["visit_id"], deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 2.0
    src = http_source(env, api, tables={"visits": "hang"}, timeout="300ms")
    with pytest.raises(SourceUnavailable, match=r"did not answer within 0\.3s"):
        src.read("visits", ["visit_id"], deadline=soon())


def test_http_unreachable(env):
    src = HttpSource("platform", HttpSource.Options(url=f"http://127.0.0.1:{free_port()}/api/{{table}}"), env)
    with pytest.raises(SourceUnavailable, match="Cannot connect to host"):
        src.read("visits", ["visit_id"])
    with pytest.raises(SourceUnavailable):
        src.ping()


def test_http_auth_header_comes_from_the_environment(env, api, monkeypatch):
    src = http_source(env, api, tables={"visits": "secure"}, auth_header="X-Api-Key", auth_env="GW_TEST_API_KEY")
    monkeypatch.delenv("GW_TEST_API_KEY", raising=False)
    with pytest.raises(CheckError, match=r"environment variable GW_TEST_API_KEY \(auth_env\) is not set"):
        src.read("visits", ["visit_id"])
    monkeypatch.setenv("GW_TEST_API_KEY", "Bearer wrong-one")
    with pytest.raises(CheckError) as err:
        src.read("visits", ["visit_id"])
    assert "HTTP 401" in str(err.value) and "wrong-one" not in str(err.value)
    monkeypatch.setenv("GW_TEST_API_KEY", "Bearer t0k3n")  # read per request: rotation needs no reload
    assert src.read("visits", ["visit_id"]) == [{"visit_id": "s1"}]


def test_http_on_the_daemon_loop(tmp_path, api):
    """With env.loop running, requests share one session on it; close() never blocks the loop."""
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path, loop=api.loop)
    src = http_source(env, api)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: src.read("visits", ["visit_id"], deadline=soon()), range(8)))
    assert all(r == [{"visit_id": "v1"}, {"visit_id": "v2"}] for r in results)
    session = src._session
    assert session is not None and not session.closed

    async def close_on_loop() -> None:
        src.close()  # what the daemon does on reload: from the loop thread itself

    asyncio.run_coroutine_threadsafe(close_on_loop(), api.loop).result(5)
    wait_for(lambda: session.closed, 5, "the session to close")
    src2 = http_source(env, api)
    src2.read("visits", ["visit_id"])
    src2.close()  # from a worker thread: waits for the session to close
    assert src2._session is None


def test_http_options_are_checked():
    with pytest.raises(ValidationError, match=r"the only placeholder a url may hold is \{table\}; found \{grid\}"):
        HttpSource.Options(url="https://platform/api/{grid}")
    with pytest.raises(ValidationError, match="expected an http"):
        HttpSource.Options(url="ftp://platform/{table}")


# --------------------------------------------------------------------------- ingest


def ingest_source(env: Environment, **options: Any) -> IngestSource:
    options.setdefault("token", "s3cret-token")
    return IngestSource("pushed", IngestSource.Options(**options), env)


def test_ingest_stores_rows_and_reads_them_back(env, tmp_path):
    src = ingest_source(env)
    assert list(src.read("visits", VISIT)) == []  # nothing pushed yet: empty, not an error
    rows = [
        {"visit_id": "v1", "household_id": "h1", "grid_id": "g1", "visited_at": "2026-11-20 09:30:00"},
        {"visit_id": "v2", "grid_id": "g1", "worker_id": "w1", "visited_at": "2026-11-21T10:00:00+08:00"},
    ]
    assert src.ingest("visits", rows) == 2
    assert src.ingest("incidents", {"incident_id": "i1", "grid_id": "g1", "extended": True, "reopened_count": 2}) == 1
    assert list(src.read("visits", VISIT, deadline=soon())) == [
        {
            "visit_id": "v1",
            "household_id": "h1",
            "grid_id": "g1",
            "worker_id": None,
            "visited_at": "2026-11-20 09:30:00",
        },
        {
            "visit_id": "v2",
            "household_id": None,
            "grid_id": "g1",
            "worker_id": "w1",
            "visited_at": "2026-11-21T10:00:00+08:00",
        },
    ]
    assert src.query("SELECT count(*) AS n FROM visits WHERE grid_id = :g", {"g": "g1"}) == [{"n": 2}]
    assert list(src.read("incidents", ["incident_id", "extended", "reopened_count"])) == [
        {"incident_id": "i1", "extended": 1, "reopened_count": 2}
    ]
    assert src.ingest("visits", []) == 0
    assert (tmp_path / "state" / "ingest.db").is_file()  # relative paths live in the state dir
    with pytest.raises(CheckError, match="query failed: attempt to write a readonly database"):
        src.query("DELETE FROM visits")
    src.close()


def test_ingest_replaces_a_resent_row(env):
    src = ingest_source(env)
    src.ingest("patrols", {"patrol_id": "p1", "grid_id": "g1", "worker_id": "w1", "patrolled_at": "2026-11-20 08:00"})
    src.ingest(
        "patrols",
        [{"patrol_id": "p1", "grid_id": "g1", "patrolled_at": "2026-11-20 09:00"}, {"patrol_id": 2, "grid_id": "g2"}],
    )
    assert list(src.read("patrols", ["patrol_id", "worker_id", "patrolled_at"])) == [
        {"patrol_id": "p1", "worker_id": None, "patrolled_at": "2026-11-20 09:00"},
        {"patrol_id": "2", "worker_id": None, "patrolled_at": None},
    ]
    src.ingest("patrols", {"patrol_id": "2", "grid_id": "g3"})  # the same id, as text
    assert [r["grid_id"] for r in src.read("patrols", ["grid_id"])] == ["g1", "g3"]
    src.close()


@pytest.mark.parametrize(
    ("table", "payload", "message"),
    [
        ("people", [{"id": 1}], "unknown table 'people': expected one of grids, households, visits"),
        ("visits", "v1", "the body must be a JSON object or a list of JSON objects"),
        ("visits", [{"visit_id": "ok"}, 5], "row 1 is not a JSON object"),
        (
            "visits",
            [{"visit_id": "ok"}, {"visit_id": "v", "name": "x"}],
            "row 1: unknown column(s) name for table visits",
        ),
        ("visits", {"visit_id": "v", "grid_id": {"id": "g1"}}, "the row: grid_id must be a string, a finite number"),
        ("visits", [{"visit_id": "v", "grid_id": ["g1"]}], "row 0: grid_id must be a string"),
        ("visits", [{"visit_id": "ok"}, {"grid_id": "g1"}], "row 1: visit_id is required"),
        ("visits", [{"visit_id": "ok"}, {"visit_id": ""}], "row 1: visit_id is required"),
        ("visits", [{"visit_id": str(i)} for i in range(4)], "4 rows in one request; the limit is 3"),
        ("incidents", [{"incident_id": "i", "reopened_count": 2**70}], "row 0: reopened_count must be"),
        ("incidents", [{"incident_id": "i", "reopened_count": float("nan")}], "row 0: reopened_count must be"),
    ],
)
def test_ingest_rejects_bad_payloads_and_stores_nothing(env, table, payload, message):
    src = ingest_source(env, max_rows=3)
    with pytest.raises(ValueError) as err:
        src.ingest(table, payload)
    assert message in str(err.value)
    for t, cols in STANDARD_SCHEMA.items():
        assert list(src.read(t, cols)) == []
    src.close()


def test_ingest_token_check(env):
    for src in (
        ingest_source(env, token="s3cret-token"),
        ingest_source(env, token=None, token_sha256=hashlib.sha256(b"s3cret-token").hexdigest().upper()),
    ):
        assert src.authorized("Bearer s3cret-token")
        assert src.authorized("bearer   s3cret-token ")
        for bad in (None, "", "Bearer", "Bearer wrong", "Basic s3cret-token", "s3cret-token", "Bearer s3cret-token2"):
            assert not src.authorized(bad), bad
    with pytest.raises(ValidationError, match="set exactly one of token and token_sha256"):
        IngestSource.Options()
    with pytest.raises(ValidationError, match="set exactly one of token and token_sha256"):
        IngestSource.Options(token="a", token_sha256="0" * 64)
    with pytest.raises(ValidationError, match="64 hex digits"):
        IngestSource.Options(token_sha256="abc")
    with pytest.raises(ValidationError, match="token is empty"):
        IngestSource.Options(token="")


def test_ingest_is_thread_safe(env):
    src = ingest_source(env)

    def push(worker: int) -> int:
        return sum(
            src.ingest("visits", [{"visit_id": f"{worker}-{batch}-{i}", "grid_id": "g1"} for i in range(10)])
            for batch in range(5)
        )

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(push, range(8))) == 400
    assert src.query("SELECT count(*) AS n FROM visits") == [{"n": 400}]
    src.close()


# --------------------------------------------------------------------------- through the config


def test_the_new_source_types_load_from_config(tmp_path, monkeypatch, api, sqlite_url):
    monkeypatch.setenv("GW_TEST_INGEST_TOKEN", "from-the-env")
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "grids.csv").write_text("grid_id,name,community,street,zone\ng1,一网格,东湖,南街,red\n")
    path = tmp_path / "gridwatch.toml"
    path.write_text(
        textwrap.dedent(f"""
        [sources.db]
        type = "sql"
        url = "{sqlite_url}"
        pool_size = 2

        [sources.exports]
        type = "csv"
        path = "exports"

        [sources.feed]
        type = "jsonl"
        path = "exports"

        [sources.platform]
        type = "http"
        url = "{api.base}/api/{{table}}"
        timeout = "5s"
        records = "data.list"
        tables = {{ visits = "wrapped" }}

        [sources.pushed]
        type = "ingest"
        token = "${{GW_TEST_INGEST_TOKEN}}"
        """),
        encoding="utf-8",
    )
    settings, host = config.load(path)
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "var")
    built = {name: host.source_type(spec.type)(name, spec.options, env) for name, spec in settings.sources.items()}
    try:
        assert list(built["db"].read("visits", ["visit_id"])) == [{"visit_id": "v1"}]
        assert built["exports"].read("grids", ["grid_id", "zone"]) == [{"grid_id": "g1", "zone": "red"}]
        assert built["platform"].read("visits", ["visit_id"]) == [{"visit_id": "v1"}]
        assert built["platform"].options.timeout == 5.0
        assert built["pushed"].authorized("Bearer from-the-env")
        for source in built.values():
            if source.type != "jsonl":
                source.ping()
    finally:
        for source in built.values():
            source.close()
