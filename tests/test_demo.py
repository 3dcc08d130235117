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

# the standard schema, with its optional pieces (grids.since, patrols.role, household_categories)
COLUMNS = {
    "grids": ["grid_id", "name", "community", "street", "zone", "since"],
    "households": ["household_id", "grid_id", "category"],
    "household_categories": ["household_id", "category"],
    "visits": ["visit_id", "household_id", "grid_id", "worker_id", "visited_at"],
    "patrols": ["patrol_id", "grid_id", "worker_id", "patrolled_at", "role"],
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


# --------------------------------------------------------------------------------------------
# The rule book's optional data: who patrolled, when a grid began, reports without a period,
# second registers, and open cases at every escalation level. The 12-grid city has its history
# from 2026-08-31 (40 days up to NOW, 2026-10-09 15:30).

WEEK_AGO = "2026-10-02 15:30:00"  # NOW - 7 × 24 h


def test_patrols_say_who_patrolled(con):
    special = special_grids(12)
    roles = dict(con.execute("SELECT role, count(*) FROM patrols GROUP BY role"))
    assert set(roles) == {None, "", "worker", "supervisor", "head"}
    worker = roles[None] + roles[""] + roles["worker"]
    assert worker > 0.85 * sum(roles.values())  # most patrols are the grid worker's
    assert 0 < roles["head"] < roles["supervisor"]
    # one supervisor per street, never the grid's worker
    sups = {r[0] for r in con.execute("SELECT worker_id FROM patrols WHERE role = 'supervisor'")}
    workers = {r[0] for r in con.execute("SELECT worker_id FROM patrols WHERE role IS NULL OR role IN ('', 'worker')")}
    assert len(sups) == 1 and not sups & workers
    # supervisor overdue: 7 × 24 h since the later of the last supervisor patrol and the grid's start
    last = dict(
        con.execute(
            "SELECT g.grid_id, max(coalesce(max(p.patrolled_at), ''), coalesce(g.since, '')) FROM grids g "
            "LEFT JOIN patrols p ON p.grid_id = g.grid_id AND p.role = 'supervisor' GROUP BY g.grid_id"
        )
    )
    assert {g for g, t in last.items() if t <= WEEK_AGO} == set(special["supervisor_overdue"])
    for gid in special["supervisor_overdue"]:
        # it stopped 8-12 days before today and came every sixth day: last seen 8-18 days ago
        assert "2026-09-21" <= last[gid] < "2026-10-02", last[gid]


def test_grids_since(con):
    since = dict(con.execute("SELECT grid_id, since FROM grids"))
    recent = [g for g, d in since.items() if d == "2026-09-29"]  # ten days before 9 October
    month = [g for g, d in since.items() if d == "2026-10-05"]  # the 1st + (9 - 1) // 2 days
    assert len(recent) == len(month) == 1
    assert [g for g, d in since.items() if d is None] == ["G0010"]  # every tenth grid
    old = [d for g, d in since.items() if d is not None and g not in recent + month]
    assert len(old) == 9 and all(d <= "2025-08-01" for d in old)  # a year before the history
    held = special_grids(12)
    for gid in recent + month:
        assert gid not in held["incidents_overdue"] + held["supervisor_overdue"] + held["national_day"]
        for table, column in (
            ("visits", "visited_at"),
            ("patrols", "patrolled_at"),
            ("reports", "submitted_at"),
            ("incidents", "reported_at"),
        ):
            first = one(con, f"SELECT min({column}) FROM {table} WHERE grid_id = ?", gid)
            assert first is None or first >= since[gid], (gid, table)
        assert one(con, "SELECT min(period) FROM reports WHERE grid_id = ? AND kind = 'daily'", gid) == since[gid]
    # the new grid's worker called on its households in the first week (29 September - 5 October),
    # once each: the next round is 20-29 days later
    visits = con.execute("SELECT household_id, visited_at FROM visits WHERE grid_id = ?", recent[:1]).fetchall()
    assert len(visits) == len({h for h, _ in visits}) > 100
    assert max(t for _, t in visits) < "2026-10-06"
    # September ends after 29 September: that grid owes and sent it; the one begun in October
    # owes nothing for September and sent nothing
    monthly = "SELECT count(*) FROM reports WHERE grid_id = ? AND kind = 'monthly' AND period = '2026-09'"
    assert one(con, monthly, recent[0]) == 1
    assert one(con, "SELECT count(*) FROM reports WHERE grid_id = ? AND kind != 'daily'", month[0]) == 0


def plausible_period(kind: str, submitted: str, reported: set[str]) -> str:
    """The rule book's period of a report without one, worked out with the calendar by hand."""
    at = datetime.fromisoformat(submitted)
    if kind == "monthly":  # the last month ended
        first = at.date().replace(day=1) - timedelta(days=1)
        return f"{first:%Y-%m}"
    if kind == "quarterly":
        q = (at.month - 1) // 3  # the quarter before the current one (0 = last year's Q4)
        return f"{at.year}-Q{q}" if q else f"{at.year - 1}-Q4"
    # weekly: due Friday 24:00; twice_weekly: due Tuesday and Friday 20:00
    days, hour = ((4,), 24) if kind == "weekly" else ((1, 4), 20)
    due = [at.date() - timedelta(days=k) for k in range(-7, 8)]
    due = [d for d in due if d.weekday() in days]
    ends = [(datetime.combine(d, datetime.min.time()) + timedelta(hours=hour), d) for d in due]
    before = max(d for end, d in ends if end < at)
    after = min(d for end, d in ends if end >= at)

    def name(d) -> str:
        y, w, _ = d.isocalendar()
        return f"{y}-W{w:02d}" if kind == "weekly" else d.isoformat()

    return name(before) if name(before) not in reported else name(after)


def test_reports_without_a_period(con):
    blank = con.execute(
        "SELECT grid_id, kind, period, submitted_at FROM reports WHERE period IS NULL OR period = '' ORDER BY rowid"
    ).fetchall()
    assert {p for _, _, p, _ in blank} == {None, ""}
    assert "daily" not in {k for _, k, _, _ in blank}
    for gid, kind, _, submitted in blank:
        reported = {
            r[0]
            for r in con.execute(
                "SELECT period FROM reports WHERE grid_id = ? AND kind = ? AND period != '' AND submitted_at < ?",
                (gid, kind, submitted),
            )
        }
        period = plausible_period(kind, submitted, reported)
        # the period it stands for has no other report: it fills its place, not a second one
        others = one(
            con, "SELECT count(*) FROM reports WHERE grid_id = ? AND kind = ? AND period = ?", gid, kind, period
        )
        assert others == 0, (gid, kind, submitted, period)


def test_plausible_period_by_hand():
    assert plausible_period("monthly", "2026-10-03 09:00:00", set()) == "2026-09"
    assert plausible_period("monthly", "2026-10-10 09:00:00", set()) == "2026-09"
    assert plausible_period("quarterly", "2026-01-12 09:00:00", set()) == "2025-Q4"
    # a Friday report sent on Saturday is Friday's, late
    assert plausible_period("weekly", "2026-10-10 09:00:00", set()) == "2026-W41"
    # sent on Thursday after last Friday's came in: this Friday's
    assert plausible_period("weekly", "2026-10-08 09:00:00", {"2026-W40"}) == "2026-W41"
    # a report sent on Monday after Friday's came in is Tuesday's
    assert plausible_period("twice_weekly", "2026-10-12 09:00:00", {"2026-10-09"}) == "2026-10-13"
    assert plausible_period("twice_weekly", "2026-10-09 20:30:00", set()) == "2026-10-09"


def test_a_month_never_sent_while_the_next_was(con):
    # August's monthly report was due on 5 September, September's on 5 October
    gaps = con.execute(
        "SELECT g.grid_id FROM grids g WHERE (g.since IS NULL OR g.since < '2026-08-01') "
        "AND EXISTS (SELECT 1 FROM reports r WHERE r.grid_id = g.grid_id AND kind = 'monthly' AND period = '2026-09') "
        "AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.grid_id = g.grid_id AND kind = 'monthly' "
        "AND (period = '2026-08' OR (coalesce(period, '') = '' AND submitted_at LIKE '2026-09%')))"
    ).fetchall()
    assert len(gaps) == 1


KEY = {"elderly_alone", "floating", "pregnant", "disabled", "community_correction"}


def test_household_categories(con):
    assert (
        one(
            con,
            "SELECT count(*) FROM household_categories WHERE household_id NOT IN (SELECT household_id FROM households)",
        )
        == 0
    )
    assert {r[0] for r in con.execute("SELECT DISTINCT category FROM household_categories")} <= KEY
    pairs = set(
        con.execute("SELECT h.category, c.category FROM households h JOIN household_categories c USING (household_id)")
    )
    assert ("elderly_alone", "disabled") in pairs  # an elderly person living alone, also disabled
    assert ("elderly_alone", "elderly_alone") in pairs  # a register that repeats the main category
    only_there = one(
        con,
        "SELECT count(DISTINCT household_id) FROM households h JOIN household_categories c USING (household_id) "
        "WHERE h.category IS NULL",
    )
    assert 0 < only_there < 0.01 * one(con, "SELECT count(*) FROM households WHERE category IS NULL")
    # with every register the grids with an overdue key household are the same ones
    special = special_grids(12)
    overdue = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT h.grid_id FROM households h WHERE (h.category IS NOT NULL OR EXISTS "
            "(SELECT 1 FROM household_categories c WHERE c.household_id = h.household_id)) AND NOT EXISTS "
            "(SELECT 1 FROM visits v WHERE v.household_id = h.household_id AND v.visited_at >= '2026-09-09 15:30:00')"
        )
    }
    assert overdue == set(special["coverage_critical"] + special["coverage_warning"] + special["key_overdue"])


# Each open case's deadline, by hand: 1, 2 or 3 days after the report, doubled when extended.
# Special cases (5 working days) are left out: the city's open ones were reported on or after
# 30 September, and five working days from 30 September end on 13 October, after NOW.
LATE_DAYS = """
SELECT i.grid_id, g.street, julianday(?) - julianday(i.reported_at)
    - (CASE i.tier WHEN 'community' THEN 1 WHEN 'subdistrict' THEN 2 ELSE 3 END) * (1 + i.extended)
FROM incidents i JOIN grids g USING (grid_id)
WHERE i.closed_at IS NULL AND i.tier != 'special'
"""


def levels(con, now: str) -> list[tuple[str, str, str, float]]:
    """(grid, street, level, days past the deadline) of every overdue open case."""
    out = []
    for gid, street, late in con.execute(LATE_DAYS, (now,)):
        if late > 0:
            level = "overdue" if late <= 7 else "re_reported" if late <= 14 else "supervised"
            out.append((gid, street, level, late))
    return out


def test_open_cases_at_every_escalation_level(con):
    specials = one(con, "SELECT min(reported_at) FROM incidents WHERE closed_at IS NULL AND tier = 'special'")
    assert specials >= "2026-09-30"
    found = levels(con, NOW_TEXT)
    first, second = special_grids(12)["incidents_overdue"]
    # the 1st grid of the role: one case by 1-2 days and one by 15-20; the 2nd: 1-2 and 8-13
    assert sorted((g, lv) for g, _, lv, _ in found) == sorted(
        [(first, "overdue"), (first, "supervised"), (second, "overdue"), (second, "re_reported")]
    )
    bands = {"overdue": (1, 2), "re_reported": (8, 13), "supervised": (15, 20)}
    for _, _, level, late in found:
        lo, hi = bands[level]
        assert lo <= late < hi, (level, late)
    # a resolved case awaiting verification is open: the 2nd grid's 8-13-day case is one
    assert (
        one(
            con,
            "SELECT count(*) FROM incidents WHERE grid_id = ? AND closed_at IS NULL AND resolved_at IS NOT NULL "
            "AND tier = 'community'",
            second,
        )
        == 1
    )


@pytest.fixture(scope="module")
def city60(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo60") / "city.db"
    generate(path, grids=60, seed=1, now=NOW, days=25)  # 25 days: room for cases 15-20 days late
    c = sqlite3.connect(path)
    yield c
    c.close()


def test_escalation_levels_across_grids_and_streets(city60):
    found = levels(city60, NOW_TEXT)
    special = special_grids(60)
    # five grids: by place in the role, levels {1, 3}, {1, 2}, {1, 2, 3}, {1, 3}, {1, 2}
    assert len(special["incidents_overdue"]) == 5
    assert {g for g, *_ in found} == set(special["incidents_overdue"])
    count = {lv: sum(1 for *_, x, _ in found if x == lv) for lv in ("overdue", "re_reported", "supervised")}
    assert count == {"overdue": 5, "re_reported": 3, "supervised": 3}
    for level in count:
        assert len({s for _, s, lv, _ in found if lv == level}) >= 2, level
    # the 3rd grid's 15-20-day case had its deadline extended (2 × 2 days)
    assert (
        one(city60, "SELECT count(*) FROM incidents WHERE closed_at IS NULL AND extended = 1 AND tier = 'subdistrict'")
        == 1
    )


def test_the_larger_city_has_the_optional_data_too(city60):
    since = [r[0] for r in city60.execute("SELECT since FROM grids")]
    assert since.count("2026-09-29") == 2  # round(60 / 30) grids new ten days ago
    assert since.count("2026-10-05") == 1
    assert since.count(None) == 6  # G0010, G0020, … G0060: none of them new
    assert len(special_grids(60)["supervisor_overdue"]) == 2
    last = dict(
        city60.execute("SELECT grid_id, max(patrolled_at) FROM patrols WHERE role = 'supervisor' GROUP BY grid_id")
    )
    assert {g for g, t in last.items() if t <= WEEK_AGO} == set(special_grids(60)["supervisor_overdue"])


# --------------------------------------------------------------------------- overwriting


def demo(db, *more: str) -> int:
    from gridwatch.cli import main

    return main(["demo", "--db", str(db), "--grids", "2", "--days", "2", "--now", "2026-10-09T15:30:00", *more])


def platform_copy(path) -> None:
    """A copy of a platform's database: the standard schema's tables, rows of its own."""
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE grids (grid_id TEXT PRIMARY KEY, name TEXT, community TEXT, street TEXT, zone TEXT)")
    c.execute("CREATE TABLE visits (visit_id TEXT, household_id TEXT, grid_id TEXT, worker_id TEXT, visited_at TEXT)")
    c.execute("INSERT INTO grids VALUES ('A01', '东湖一网格', '东湖社区', '东街街道', NULL)")
    c.commit()
    c.close()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (platform_copy, "it is an SQLite database gridwatch demo did not write"),
        (lambda p: p.write_text("网格员名单\n张伟 13812345678\n", encoding="utf-8"), "it is not an SQLite database"),
    ],
)
def test_demo_refuses_to_overwrite_a_file_it_did_not_write(tmp_path, capsys, make, why):
    path = tmp_path / "copy.db"
    make(path)
    before = path.read_bytes()
    assert demo(path) == 2
    assert capsys.readouterr().err == (
        f"gridwatch demo: {path} is not a demo city ({why}): left as it is; --force replaces it\n"
    )
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["copy.db"]  # no temporary file left behind

    assert demo(path, "--force") == 0
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT count(*) FROM grids").fetchone() == (2,)


def test_demo_refuses_a_directory_even_with_force(tmp_path, capsys):
    (tmp_path / "var").mkdir()
    assert demo(tmp_path / "var", "--force") == 2
    assert capsys.readouterr().err == (
        f"gridwatch demo: {tmp_path / 'var'} is not a demo city (it is not a regular file): left as it is\n"
    )


def test_demo_replaces_a_demo_city_and_an_empty_file(tmp_path, capsys):
    path = tmp_path / "city.db"
    generate(path, grids=3, seed=1, now=NOW, days=2)
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA application_id").fetchone() == (0x47576463,)  # "GWdc"
    assert demo(path) == 0
    assert len(rows(path, "grids")) == 2
    # a demo city written before the marker: exactly the demo's tables and indexes
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA application_id = 0")
    assert demo(path, "--grids", "4") == 0
    assert len(rows(path, "grids")) == 4
    empty = tmp_path / "empty.db"
    empty.touch()
    assert demo(empty) == 0
    assert len(rows(empty, "grids")) == 2
    assert capsys.readouterr().err == ""
