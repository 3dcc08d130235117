"""The demo city: standard schema, determinism, shape and the imperfections it promises."""

from __future__ import annotations

import itertools
import re
import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gridwatch.tools.demo import generate, special_grids

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 10, 9, 15, 30, tzinfo=TZ)  # a Friday; 40 days back covers National Day
NOW_TEXT = "2026-10-09 15:30:00"
TODAY = "2026-10-09"

COLUMNS = {
    "grids": ["grid_id", "name", "community", "street", "zone"],
    "households": ["household_id", "grid_id", "category"],
    "visits": ["visit_id", "household_id", "grid_id", "worker_id", "visited_at"],
    "patrols": ["patrol_id", "grid_id", "worker_id", "patrolled_at"],
    "incidents": [
        "incident_id",
        "grid_id",
        "category",
        "severity",
        "tier",
        "reported_at",
        "accepted_at",
        "dispatched_at",
        "resolved_at",
        "closed_at",
        "reopened_count",
        "extended",
    ],
    "reports": ["report_id", "grid_id", "kind", "period", "submitted_at", "flag"],
}
TIMESTAMPS = {
    "visits": ["visited_at"],
    "patrols": ["patrolled_at"],
    "incidents": ["reported_at", "accepted_at", "dispatched_at", "resolved_at", "closed_at"],
    "reports": ["submitted_at"],
}
STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def rows(db, table: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def one(con: sqlite3.Connection, sql: str, *params):
    return con.execute(sql, params).fetchone()[0]


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "city.db"
    counts = generate(path, grids=12, seed=3, now=NOW, days=40)
    return path, counts


@pytest.fixture
def con(city):
    c = sqlite3.connect(city[0])
    yield c
    c.close()


def test_standard_schema(con):
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert sorted(t for t in tables if not t.startswith("sqlite_")) == sorted(COLUMNS)
    for table, columns in COLUMNS.items():
        assert [r[1] for r in con.execute(f"PRAGMA table_info({table})")] == columns


def test_counts_match_tables(city, con):
    _, counts = city
    assert set(counts) == set(COLUMNS)
    for table, n in counts.items():
        assert one(con, f"SELECT count(*) FROM {table}") == n > 0


def test_deterministic(city, tmp_path):
    again = tmp_path / "again.db"
    # the same instant given in another timezone is the same `now`
    generate(again, grids=12, seed=3, now=NOW.astimezone(ZoneInfo("UTC")), days=40)
    for table in COLUMNS:
        assert rows(city[0], table) == rows(again, table), table
    other = tmp_path / "other.db"
    generate(other, grids=12, seed=4, now=NOW, days=40)
    assert rows(other, "grids") == rows(city[0], "grids")  # the layout depends on grids only
    assert rows(other, "households") != rows(city[0], "households")


def test_naive_now_is_local(city, tmp_path):
    path = tmp_path / "naive.db"
    generate(path, grids=12, seed=3, now=NOW.replace(tzinfo=None), days=40)
    assert rows(path, "reports") == rows(city[0], "reports")


def test_timestamps_well_formed_and_not_after_now(con):
    start = (NOW - timedelta(days=40)).strftime("%Y-%m-%d %H:%M:%S")
    for table, columns in TIMESTAMPS.items():
        for column in columns:
            values = [r[0] for r in con.execute(f"SELECT {column} FROM {table}") if r[0]]
            assert values, (table, column)
            assert all(STAMP.fullmatch(v) for v in values), (table, column)
            assert max(values) <= NOW_TEXT, (table, column)
            assert min(values) >= start, (table, column)


def test_values_in_vocabulary(con):
    assert {r[0] for r in con.execute("SELECT zone FROM grids")} <= {"red", "yellow", "blue", None}
    assert {r[0] for r in con.execute("SELECT severity FROM incidents")} == {"normal", "major"}
    tiers = {r[0] for r in con.execute("SELECT tier FROM incidents")}
    assert tiers <= {"community", "subdistrict", "department", "special"}
    kinds = {r[0] for r in con.execute("SELECT kind FROM reports")}
    assert "daily" in kinds
    assert kinds <= {"daily", "twice_weekly", "weekly", "monthly", "quarterly", "annual"}
    flags = {r[0] for r in con.execute("SELECT flag FROM reports")}
    assert flags <= {None, "ok", "major_dispute", "early_warning", "petition"}
    assert one(con, "SELECT count(*) FROM incidents WHERE extended NOT IN (0, 1)") == 0
    # a later stage never comes before an earlier one
    stages = ["reported_at", "accepted_at", "dispatched_at", "resolved_at", "closed_at"]
    for a, b in itertools.pairwise(stages):
        assert one(con, f"SELECT count(*) FROM incidents WHERE {b} < {a}") == 0
        assert one(con, f"SELECT count(*) FROM incidents WHERE {a} IS NULL AND {b} NOT NULL") == 0
    assert one(con, "SELECT count(*) FROM incidents WHERE reopened_count > 0") > 0
    assert one(con, "SELECT count(*) FROM incidents WHERE extended = 1") > 0


def test_default_shape(tmp_path):
    path = tmp_path / "city.db"
    counts = generate(path, now=NOW, days=10)
    assert counts["grids"] == 60
    with sqlite3.connect(path) as c:
        assert one(c, "SELECT count(DISTINCT street) FROM grids") == 3
        assert one(c, "SELECT count(DISTINCT community) FROM grids") == 12
        sizes = [r[0] for r in c.execute("SELECT count(*) FROM households GROUP BY grid_id")]
        assert len(sizes) == 60
        assert all(150 <= n <= 300 for n in sizes)
        key = one(c, "SELECT avg(category IS NOT NULL) FROM households")
        assert 0.08 <= key <= 0.12
        assert one(c, "SELECT count(DISTINCT grid_id) FROM grids") == 60
        names = [r[0] for r in c.execute("SELECT name FROM grids")]
        assert len(set(names)) == 60
        assert all(re.fullmatch(r".+街道-.+社区-第\d+网格", n) for n in names)
        assert one(c, "SELECT count(*) FROM grids WHERE zone IS NOT NULL") == 18


def test_imperfections(con):
    special = special_grids(12)
    grid_ids = {r[0] for r in con.execute("SELECT grid_id FROM grids")}
    # a daily report for today flagged as a petition or major dispute
    flagged = con.execute(
        "SELECT grid_id FROM reports WHERE kind = 'daily' AND period = ? "
        "AND flag IN ('petition', 'major_dispute', 'early_warning')",
        (TODAY,),
    ).fetchall()
    assert [r[0] for r in flagged] == list(special["flagged_today"])
    # exactly one open major case
    majors = con.execute(
        "SELECT grid_id, category FROM incidents WHERE severity = 'major' AND closed_at IS NULL"
    ).fetchall()
    assert majors == [(special["major_open"][0], "major_dispute")]
    # grids without a daily report today, and none for the last three days
    reporting = {
        r[0] for r in con.execute("SELECT grid_id FROM reports WHERE kind = 'daily' AND period >= '2026-10-07'")
    }
    assert set(special["silent"]) == grid_ids - reporting
    assert len(special["silent"]) >= 2
    # zoned grids, the missed-patrol grid among the red ones
    zones = dict(con.execute("SELECT grid_id, zone FROM grids"))
    assert {"red", "yellow", "blue"} <= set(zones.values())
    for gid in special["patrol_missed"]:
        assert zones[gid] == "red"
        last = one(con, "SELECT max(patrolled_at) FROM patrols WHERE grid_id = ?", gid)
        assert last < "2026-10-09 14:30:00"
    for gid in special["no_patrol_yesterday"]:
        last = one(con, "SELECT max(patrolled_at) FROM patrols WHERE grid_id = ?", gid)
        assert last < "2026-10-08"
    # every other grid patrolled yesterday
    patrolled = {r[0] for r in con.execute("SELECT grid_id FROM patrols WHERE patrolled_at LIKE '2026-10-08%'")}
    assert patrolled == grid_ids - set(special["no_patrol_yesterday"])


def coverage(con) -> dict[str, float]:
    since = "2026-09-09 15:30:00"
    return dict(
        con.execute(
            "SELECT h.grid_id, avg(EXISTS (SELECT 1 FROM visits v WHERE "
            "v.household_id = h.household_id AND v.visited_at >= ?)) "
            "FROM households h GROUP BY h.grid_id",
            (since,),
        )
    )


def test_visit_coverage_and_key_households(con):
    special = special_grids(12)
    cov = coverage(con)
    weak = set(special["coverage_critical"]) | set(special["coverage_warning"])
    assert all(cov[g] < 0.80 for g in special["coverage_critical"])
    assert all(0.80 < cov[g] < 0.90 for g in special["coverage_warning"])
    assert all(c >= 0.90 for g, c in cov.items() if g not in weak)
    overdue = dict(
        con.execute(
            "SELECT h.grid_id, count(*) FROM households h WHERE h.category IS NOT NULL AND "
            "NOT EXISTS (SELECT 1 FROM visits v WHERE v.household_id = h.household_id "
            "AND v.visited_at >= '2026-09-09 15:30:00') GROUP BY h.grid_id"
        )
    )
    assert set(overdue) == weak | set(special["key_overdue"])


def test_overdue_incidents(con):
    special = special_grids(12)
    # a community case is due 24 h after its report, a department case 72 h
    late = con.execute(
        "SELECT DISTINCT grid_id FROM incidents WHERE closed_at IS NULL AND ("
        "(tier = 'community' AND reported_at < '2026-10-08 15:30:00') OR "
        "(tier = 'department' AND reported_at < '2026-10-06 15:30:00'))"
    ).fetchall()
    assert {r[0] for r in late} == set(special["incidents_overdue"])


def test_special_cases_across_national_day(con):
    cases = con.execute(
        "SELECT grid_id, closed_at FROM incidents WHERE tier = 'special' AND reported_at LIKE '2026-09-30%'"
    ).fetchall()
    # five working days from 30 September end on 13 October (1-7 October off, 10 October on):
    # every one is on time, and the planted ones close after five calendar days
    assert all(closed is None or closed < "2026-10-14" for _, closed in cases)
    crossing = {g for g, closed in cases if closed is None or closed >= "2026-10-06"}
    assert crossing >= set(special_grids(12)["national_day"])


def test_overwrites_atomically(tmp_path):
    path = tmp_path / "city.db"
    path.write_text("not a database")
    counts = generate(path, grids=2, seed=1, now=NOW, days=3)
    assert rows(path, "grids") and counts["grids"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["city.db"]


def test_special_grids_are_distinct():
    special = special_grids(60)
    roles = [ids for role, ids in special.items() if not role.startswith(("zone_", "national"))]
    flat = [g for ids in roles for g in ids]
    assert len(flat) == len(set(flat)) < 60
    assert len(special["major_open"]) == len(special["flagged_today"]) == 1
    assert special == special_grids(60)
