"""The ``sql`` source folds a full read in the database (PostgreSQL, MariaDB, SQLite):
the same samples and the same bad rows, counted by the same reasons, as reading row by row."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from gridwatch.api import Environment, Latest
from gridwatch.sources import sqlfold
from gridwatch.sources.sql import SqlSource
from gridwatch.testing import run_check

TZ = ZoneInfo("Asia/Shanghai")
NOW = "2026-11-20 12:00:00"
VISIT = ("visit_id", "household_id", "grid_id", "worker_id", "visited_at")
PATROL = ("patrol_id", "grid_id", "worker_id", "patrolled_at", "role")
GRIDS = [("g1", "一网格", "东社区", "东街道"), ("g2", "二网格", "东社区", "东街道")]
HOUSEHOLDS = [("h1", "g1"), ("h4", "g1"), ("h5", "g1"), ("h9", "g1"), ("h2", "g2"), ("h10", "g2"), ("h11", "g2")]

# visits as the platform wrote them: (id, household, grid, time)
VISITS = [
    ("v1", "h1", "g1", "2026-11-20 09:00:00"),
    ("v2", "h1", "g1", "2026-11-20T10:30:00.25+08:00"),  # h1's latest: 10:30:00.25
    ("v3", "h2", "g2", "2026-11-20T01:00:00Z"),  # 09:00 here
    ("v4", "h2", "g2", "2026-11-19 21:30:00-05:00"),  # 10:30 here: h2's latest
    ("v5", "h3", "g9", "2026-11-20 08:00:00"),  # unknown grid
    ("v6", "h4", "g1", "yesterday"),  # bad timestamp: all of h4 is read row by row
    ("v14", "h4", "g1", "2026-11-20 07:00:00"),  # h4's good visit
    ("v7", "h5", "g1", "0001-01-01 00:00:00"),  # year 0001: a placeholder, bad
    (None, "h6", "g1", "2026-11-20 08:00:00"),  # NULL id
    ("v9", "h7", "", "2026-11-20 08:00:00"),  # empty grid
    ("v10", "h8", "g1", "2026-02-30 10:00:00"),  # no such day
    ("v11", "h9", "g1", "2026-11-19"),  # a date: midnight
    ("v12", "h10", "g2", "2026-11-20 11:00"),  # no seconds
    ("v13", None, "g1", "2026-11-20 08:00:00"),  # no household
    ("v15", "h11", "g2", "2026-11-20 06:00:00"),  # the one form SQLite vouches for
]
BAD = {"unknown_grid": 1, "bad_timestamp": 3, "null_id": 1, "null_grid": 1}  # v5; v6, v7, v10; v8; v9
ODD = {"v5", "v6", "v14", "v7", None, "v9", "v10", "v13"}  # every row of h3..h8, and the NULL household


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    return Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path / "state")


@pytest.fixture
def sql_source() -> Iterator[Callable[..., SqlSource]]:
    made: list[SqlSource] = []

    def make(env: Environment, url: str) -> SqlSource:
        made.append(SqlSource("city", SqlSource.Options(url=url), env))
        return made[-1]

    yield make
    for source in made:
        source.close()


def want(column: str = "visited_at", **more: Any) -> Latest:
    return Latest(
        "household_id", column, "visit_id", "grid_id", ["g1", "g2"],
        datetime(2022, 1, 1), datetime.fromisoformat(NOW), **more,
    )  # fmt: skip


def soon() -> float:
    return time.monotonic() + 30


def load_postgres(dsn: str, time_type: str, visits: list[tuple[Any, ...]]) -> None:
    """The city in PostgreSQL: ids unique (a UNIQUE constraint lets a NULL id in), times as
    ``time_type``, written in Shanghai time where they carry no offset."""
    with psycopg.connect(dsn) as pg, pg.cursor() as cur:
        cur.execute("SET TIME ZONE 'Asia/Shanghai'")
        cur.execute("CREATE TABLE grids (grid_id text PRIMARY KEY, name text, community text, street text, zone text)")
        cur.execute("CREATE TABLE households (household_id text PRIMARY KEY, grid_id text, category text)")
        cur.execute(
            "CREATE TABLE visits (visit_id text UNIQUE, household_id text, grid_id text, worker_id text,"
            f" visited_at {time_type})"
        )
        cur.executemany("INSERT INTO grids VALUES (%s, %s, %s, %s, NULL)", GRIDS)
        cur.executemany("INSERT INTO households VALUES (%s, %s, NULL)", HOUSEHOLDS)
        cur.executemany("INSERT INTO visits VALUES (%s, %s, %s, 'w1', %s)", visits)


SERVERS = [pytest.param("postgres", marks=pytest.mark.component), pytest.param("mariadb", marks=pytest.mark.component)]


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``server(name)``: the URL of a new, empty database on a real PostgreSQL or MariaDB."""
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres")
        return lambda name: (pg.createdb(name), pg.url_for(name))[1]
    return request.getfixturevalue("mariadb").createdb  # type: ignore[no-any-return]


def load_server(url: str, visits: list[tuple[Any, ...]]) -> None:
    """The city on a server, times as text (``VARCHAR`` on MariaDB, whose ``TEXT`` cannot be
    declared unique), ids unique (a UNIQUE constraint lets a NULL id in)."""
    engine = sa.create_engine(url)
    text = "VARCHAR(191)" if engine.dialect.name == "mysql" else "text"
    try:
        with engine.begin() as db:
            db.exec_driver_sql(f"CREATE TABLE grids (grid_id {text} PRIMARY KEY, name {text}, community {text},"
                               f" street {text}, zone {text})")  # fmt: skip
            db.exec_driver_sql(f"CREATE TABLE households (household_id {text} PRIMARY KEY, grid_id {text},"
                               f" category {text})")  # fmt: skip
            db.exec_driver_sql(f"CREATE TABLE visits (visit_id {text} UNIQUE, household_id {text}, grid_id {text},"
                               f" worker_id {text}, visited_at {text})")  # fmt: skip
            db.execute(sa.text("INSERT INTO grids VALUES (:g, :n, :c, :s, NULL)"),
                       [dict(zip("gncs", g, strict=True)) for g in GRIDS])  # fmt: skip
            db.execute(sa.text("INSERT INTO households VALUES (:h, :g, NULL)"),
                       [{"h": h, "g": g} for h, g in HOUSEHOLDS])  # fmt: skip
            db.execute(sa.text("INSERT INTO visits VALUES (:v, :h, :g, 'w1', :t)"),
                       [dict(zip("vhgt", v, strict=True)) for v in visits])  # fmt: skip
    finally:
        engine.dispose()


def load_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE grids (grid_id TEXT PRIMARY KEY, name TEXT, community TEXT, street TEXT, zone TEXT)")
        db.execute("CREATE TABLE households (household_id TEXT PRIMARY KEY, grid_id TEXT, category TEXT)")
        db.execute(
            "CREATE TABLE visits (visit_id TEXT UNIQUE, household_id TEXT, grid_id TEXT, worker_id TEXT,"
            " visited_at TEXT)"
        )
        db.executemany("INSERT INTO grids VALUES (?, ?, ?, ?, NULL)", GRIDS)
        db.executemany("INSERT INTO households VALUES (?, ?, NULL)", HOUSEHOLDS)
        db.executemany("INSERT INTO visits VALUES (?, ?, ?, 'w1', ?)", VISITS)
    db.close()
    return path


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


# --------------------------------------------------------------------------- the source's answer


@pytest.mark.component
def test_postgresql_folds_text_times_with_offsets_and_hands_on_every_row_of_a_doubtful_household(
    postgres, env, sql_source
):
    load_postgres(postgres.createdb("fold_text"), "text", VISITS)
    source = sql_source(env, postgres.url_for("fold_text"))
    assert source.unique("visits", "visit_id") and not source.unique("visits", "household_id")
    groups, odd, cursor = source.read_latest("visits", VISIT, None, want(), deadline=soon())
    # the latest instant of each household, as the local time it names
    assert sorted(groups) == [
        ("h1", datetime(2026, 11, 20, 10, 30, 0, 250000), 2),
        ("h10", datetime(2026, 11, 20, 11, 0), 1),
        ("h11", datetime(2026, 11, 20, 6, 0), 1),
        ("h2", datetime(2026, 11, 20, 10, 30), 2),
        ("h9", datetime(2026, 11, 19, 0, 0), 1),
    ]
    assert {r["visit_id"] for r in odd} == ODD and cursor is None


@pytest.mark.component
def test_postgresql_folds_a_timestamptz_column_as_instants(postgres, env, sql_source):
    # what the type can hold (year 1 a day in, so that the driver can hand it over in UTC)
    good = [(*v[:3], "0001-01-02 00:00:00" if v[0] == "v7" else v[3]) for v in VISITS if v[0] not in ("v6", "v10")]
    load_postgres(postgres.createdb("fold_tz"), "timestamptz", good)
    source = sql_source(env, postgres.url_for("fold_tz"))
    groups, odd, _ = source.read_latest("visits", VISIT, None, want(earliest=True), deadline=soon())
    assert sorted((k, at.timestamp(), n, first.timestamp()) for k, at, n, first in groups) == [
        ("h1", local("2026-11-20 10:30:00.25").timestamp(), 2, local("2026-11-20 09:00").timestamp()),
        ("h10", local("2026-11-20 11:00").timestamp(), 1, local("2026-11-20 11:00").timestamp()),
        ("h11", local("2026-11-20 06:00").timestamp(), 1, local("2026-11-20 06:00").timestamp()),
        ("h2", local("2026-11-20 10:30").timestamp(), 2, local("2026-11-20 09:00").timestamp()),
        ("h4", local("2026-11-20 07:00").timestamp(), 1, local("2026-11-20 07:00").timestamp()),
        ("h9", local("2026-11-19 00:00").timestamp(), 1, local("2026-11-19 00:00").timestamp()),
    ]
    assert {r["visit_id"] for r in odd} == {"v5", "v7", None, "v9", "v13"}


@pytest.mark.component
def test_postgresql_folds_by_a_split_column_with_each_folds_earliest(postgres, env, sql_source):
    dsn = postgres.createdb("fold_split")
    with psycopg.connect(dsn) as pg:
        pg.execute("CREATE TABLE patrols (patrol_id integer PRIMARY KEY, grid_id text, worker_id text,"
                   " patrolled_at timestamp, role text)")  # fmt: skip
        pg.cursor().executemany(
            "INSERT INTO patrols VALUES (%s, %s, 'w', %s, %s)",
            [
                (1, "g1", "2026-11-20 09:00", None),
                (2, "g1", "2026-11-18 10:00", None),
                (3, "g1", "2026-11-19 08:00", "supervisor"),
                (4, "g1", "2026-11-20 07:00", "supervisor"),
                (5, "g1", "2026-11-17 07:00", "Supervisor"),  # another value: another fold
                (6, "g2", "2026-11-20 08:00", "head"),
                (7, "g2", "2026-11-20 13:00", None),  # after now: all of g2 is handed on
            ],
        )
    source = sql_source(env, postgres.url_for("fold_split"))
    latest = Latest(
        "grid_id", "patrolled_at", "patrol_id", "grid_id", ["g1", "g2"],
        datetime(2022, 1, 1), datetime.fromisoformat(NOW), split="role", earliest=True,
    )  # fmt: skip
    groups, odd, _ = source.read_latest("patrols", PATROL, None, latest, deadline=soon())
    t = datetime.fromisoformat
    assert sorted(groups, key=repr) == sorted(
        [
            (("g1", None), t("2026-11-20 09:00"), 2, t("2026-11-18 10:00")),
            (("g1", "supervisor"), t("2026-11-20 07:00"), 2, t("2026-11-19 08:00")),
            (("g1", "Supervisor"), t("2026-11-17 07:00"), 1, t("2026-11-17 07:00")),
        ],
        key=repr,
    )
    assert sorted(r["patrol_id"] for r in odd) == [6, 7]


@pytest.mark.component
def test_postgresql_hands_on_the_rows_of_integer_keys_and_epoch_numbers(postgres, env, sql_source):
    """Integer households, times as epoch seconds: a bad row (NaN, a grid unknown) sends its
    household's rows on, by an integer key."""
    dsn = postgres.createdb("fold_epoch")
    at = int(local("2026-11-20 09:00").timestamp())
    with psycopg.connect(dsn) as pg:
        pg.execute("CREATE TABLE visits (visit_id bigint PRIMARY KEY, household_id integer, grid_id text,"
                   " worker_id text, visited_at double precision)")  # fmt: skip
        pg.cursor().executemany(
            "INSERT INTO visits VALUES (%s, %s, %s, 'w', %s)",
            [(1, 7, "g1", at), (2, 7, "g1", at + 3600.5), (3, 8, "g1", float("nan")), (4, 8, "g1", at),
             (5, 9, "g9", at), (6, None, "g1", at)],
        )  # fmt: skip
    source = sql_source(env, postgres.url_for("fold_epoch"))
    groups, odd, _ = source.read_latest("visits", VISIT, None, want(format="epoch"), deadline=soon())
    assert groups == [(7, at + 3600.5, 2)]
    assert sorted(r["visit_id"] for r in odd) == [3, 4, 5, 6]


def test_the_sql_source_on_sqlite_folds_as_the_sqlite_source_does(env, sql_source, tmp_path):
    """On SQLite, the ``sqlite`` source's rules: every ISO form with a date and a time to the
    second is vouched for (a ``T`` or a space, fractions, ``Z`` or an offset), its latest given
    as local text; a date alone or a time without seconds is not."""
    db = load_sqlite(tmp_path / "city.db")
    source = sql_source(env, f"sqlite:///{db}")
    assert source.unique("visits", "visit_id") and not source.unique("visits", "grid_id")
    groups, odd, _ = source.read_latest("visits", VISIT, None, want(), deadline=soon())
    assert sorted(groups) == [
        ("h1", "2026-11-20 10:30:00.25", 2),  # its own offset: local as written
        ("h11", "2026-11-20 06:00:00", 1),
        ("h2", "2026-11-20 10:30:00", 2),  # -05:00 is 10:30 here
    ]
    folded = {"v1", "v2", "v3", "v4", "v15"}
    assert sorted(r["visit_id"] or "" for r in odd) == sorted(v[0] or "" for v in VISITS if v[0] not in folded)


# --------------------------------------------------------------------------- the checks' answer


def visits_check(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, fold: bool, check: str = "visits", now: str = NOW
) -> tuple[Any, list[int]]:
    """A check (the visits check) once through the ``sql`` source, folding or row by row; with
    the rows each folded read handed to Python."""
    handed: list[int] = []
    real = SqlSource.read_latest

    def spy(self: SqlSource, *args: Any, **kwargs: Any) -> Any:
        plan = real(self, *args, **kwargs) if fold else None
        if plan is not None:
            groups, odd, cursor = plan
            odd = list(odd)
            handed.append(len(odd))
            return groups, odd, cursor
        return plan

    with monkeypatch.context() as m:
        m.setattr(SqlSource, "read_latest", spy)
        directory = tmp_path / f"{check}-{'fold' if fold else 'rows'}"
        directory.mkdir()
        result = run_check(
            check, {}, now=now, tmp_path=directory, source=f'type = "sql"\nurl = "{url}"',
            options={"max_rejected_ratio": 1},
        )  # fmt: skip
    assert result.error is None
    return result, handed


def assert_hand_worked(result: Any) -> None:
    # g1: h1, h4 and h9 visited, h5 only by a bad row; g2: h2, h10 and h11
    assert result.value("gridwatch_visit_coverage_ratio", grid="g1") == 3 / 4
    assert result.value("gridwatch_visit_coverage_ratio", grid="g2") == 1
    assert result.value("gridwatch_visit_unvisited_households", grid="g1") == 1


def samples(result: Any) -> list[tuple[Any, ...]]:
    return sorted((s.metric, sorted(s.labels.items()), s.value) for s in result.samples)


def test_visits_on_a_server_give_the_same_samples_and_bad_rows_folded_as_row_by_row(server, tmp_path, monkeypatch):
    url = server("check_text")
    load_server(url, VISITS)
    folded, handed = visits_check(tmp_path, url, monkeypatch, fold=True)
    rows, _ = visits_check(tmp_path, url, monkeypatch, fold=False)
    assert handed == [len(ODD)]  # of 14 visits, only the doubtful households' rows reached Python
    assert samples(folded) == samples(rows)
    assert_hand_worked(folded)
    # v13 (no household) passes the table's rules, and is the check's own unknown_household
    expected = {("data", reason): n for reason, n in {**BAD, "unknown_household": 1}.items()}
    assert folded.rejected == rows.rejected == expected


def test_visits_on_sqlite_through_the_sql_source_give_the_same_samples_folded_as_row_by_row(tmp_path, monkeypatch):
    db = load_sqlite(tmp_path / "city.db")
    folded, handed = visits_check(tmp_path, f"sqlite:///{db}", monkeypatch, fold=True)
    rows, _ = visits_check(tmp_path, f"sqlite:///{db}", monkeypatch, fold=False)
    assert handed == [len(VISITS) - 5]  # all but the visits of h1, h2 and h11: every time to the second
    assert samples(folded) == samples(rows)
    assert_hand_worked(folded)
    expected = {("data", reason): n for reason, n in {**BAD, "unknown_household": 1}.items()}
    assert folded.rejected == rows.rejected == expected


# --------------------------------------------------------------------------- MySQL, compiled


def test_the_mysql_fold_compiles_with_exact_comparisons_and_list_parameters():
    """Not run on a server here: the SQL is compiled by SQLAlchemy's MySQL dialect."""
    d = sqlfold._DIALECTS["mysql"]
    at = sqlfold._iso_local(d, "`visited_at`", 480)
    assert "REGEXP" in at and "TIMESTAMPADD(MINUTE, 480 - (" in at and "CAST(`visited_at` AS DATETIME(6))" in at
    where, bind = d.among(d.exact("`grid_id`"), "grids", "text")
    assert bind is not None
    stmt = sa.text(f"SELECT 1 FROM visits WHERE {where} AND {at} >= :since").bindparams(
        sa.bindparam(bind.key, value=["g1", "g2"], expanding=True), since=datetime(2022, 1, 1)
    )
    compiled = stmt.compile(dialect=mysql.dialect(), compile_kwargs={"render_postcompile": True})
    sql = str(compiled)
    assert "CAST(CONVERT(`grid_id` USING utf8mb4) AS BINARY) IN (" in sql
    assert "%%" not in at and sql.count("(") == sql.count(")")
    assert sqlfold._pattern_local(d, "`t`", "%Y/%m/%d %H:%M:%S", 480) is not None
    assert sqlfold._pattern_local(d, "`t`", "%d %b %Y", 480) is None  # a month's name: rows are read


# --------------------------------------------------------------------------- a whole city


def test_the_demo_city_with_declared_keys_folds_on_a_server_to_exactly_sqlites_samples(server, tmp_path, monkeypatch):
    """tests/test_postgres.py's city, with the keys a platform declares: visits and patrols (by
    grid and role) fold in PostgreSQL or MariaDB, and every sample is still SQLite's."""
    from gridwatch.tools import demo
    from tests.cities import NOW as CITY_NOW
    from tests.cities import copy_city, once, sql_source, sqlite_source

    demo.generate(tmp_path / "city.db", grids=24, days=45, now=datetime.fromisoformat(CITY_NOW))
    url = server("city_keys")
    copy_city(tmp_path / "city.db", url)
    engine = sa.create_engine(url)
    with engine.begin() as db:
        for table, key in (("visits", "visit_id"), ("patrols", "patrol_id"), ("reports", "report_id")):
            db.exec_driver_sql(f"CREATE UNIQUE INDEX {table}_key ON {table} ({key})")
        counts = {t: db.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in ("visits", "patrols")}
    engine.dispose()
    lite = once(tmp_path, "lite", sqlite_source("city.db"))
    out = once(tmp_path, "server", sql_source(url))

    def key(s: dict[str, Any]) -> tuple[Any, ...]:
        return s["check"], s["metric"], sorted(s["labels"].items())

    assert sorted(out["samples"], key=key) == sorted(lite["samples"], key=key)
    assert out["grids"] == lite["grids"] and out["errors"] == []
    # and the fold was taken: of thousands of visits and patrols, a few rows reached Python
    for check in ("visits", "patrols"):
        _, handed = visits_check(tmp_path, url, monkeypatch, True, check, CITY_NOW)
        assert len(handed) == 1 and handed[0] < counts[check] / 20, (check, handed, counts)


# --------------------------------------------------------------------------- vouching, value by value


def iso_texts() -> list[str]:
    """Valid and nearly valid ISO times: every date, time, zone and separator crossed."""
    dates = ["2026-11-20", "2024-02-29", "2025-02-29", "1900-02-29", "2000-02-29", "2026-04-31", "2026-13-01",
             "2026-00-10", "0001-01-01", "9999-12-31", "2026-1-20"]  # fmt: skip
    times = ["10:00", "23:59:59", "24:00:00", "12:60", "10:00:60", "10:00:00.5", "10:00:00.123456",
             "10:00:00.1234567", "9:00", "10", "10:00:00,5"]  # fmt: skip
    zones = ["", "Z", "z", "+08:00", "-05:30", "+14:00", "+14:59", "+15:00", "+08", "+0800", "-00:00"]
    texts = [d for d in dates] + [f"{d}{s}{t}{z}" for d in dates for s in (" ", "T", "t") for t in times for z in zones]
    return [*texts, "yesterday", "", " 2026-11-20 10:00:00", "2026-11-20 10:00:00 ", "2026-11-20 10:00:00\n",
            "２０２６-11-20 10:00", "2026-11-20+08:00", "20261120T100000"]  # fmt: skip


def test_a_server_vouches_only_for_iso_text_python_reads_and_names_the_same_instant(server, env, sql_source):
    """Each text the SQL turns into a time, Python reads as the same instant; none makes it fail."""
    from datetime import timedelta, timezone

    from gridwatch.rows import parse_ts

    url = server("iso_texts")
    texts = iso_texts()
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.exec_driver_sql("CREATE TABLE texts (v VARCHAR(64))")
        db.execute(sa.text("INSERT INTO texts VALUES (:v)"), [{"v": t} for t in texts])
    engine.dispose()
    source = sql_source(env, url)
    at = sqlfold._iso_local(sqlfold._DIALECTS[source.backend], "v", 480)
    with source.transaction(soon()) as conn:
        got = dict(conn.execute(sa.text(f"SELECT v, {at} FROM texts")).all())
    assert sorted(got) == sorted(texts)  # each text came back as it was written
    vouched = 0
    for text in texts:
        try:
            python = parse_ts(text, TZ)
        except ValueError:
            python = None
        if got[text] is not None:
            vouched += 1
            assert python is not None, text
            assert python.astimezone(timezone(timedelta(hours=8))).replace(tzinfo=None) == got[text], text
    # 3 real days (2026-11-20, 2024-02-29, 2000-02-29), alone or with " " or "T" and one of 4 times
    # (10:00, 23:59:59, 10:00:00.5, 10:00:00.123456) and one of 7 zones ("", Z, +08:00, -05:30,
    # +14:00, +14:59, -00:00); the rest Python reads ("t", "10", "+08", seven digits, +15:00) is
    # handed on, never vouched for wrongly
    assert vouched == 3 * (1 + 2 * 4 * 7)


def test_the_groups_and_the_odd_rows_come_from_one_snapshot(server, env, sql_source):
    """A row committed after the groups were read, before the odd rows are, is in neither: the
    two parts cannot disagree (say, a household both folded and handed on)."""
    url = server("fold_snapshot")
    load_server(url, VISITS)
    source = sql_source(env, url)
    groups, odd, _ = source.read_latest("visits", VISIT, None, want(), deadline=soon())
    engine = sa.create_engine(url)
    with engine.begin() as db:  # h1 (folded) gets a bad row, h4 (handed on) a good one
        db.exec_driver_sql(
            "INSERT INTO visits VALUES ('v30', 'h1', 'g1', 'w1', 'garbage'), ('v31', 'h4', 'g1', 'w1', NULL)"
        )
    engine.dispose()
    assert {r["visit_id"] for r in odd} == ODD
    assert ("h1", datetime(2026, 11, 20, 10, 30, 0, 250000), 2) in groups
