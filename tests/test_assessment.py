"""The command centre's routine (DOMAIN.md §6, §7): ratios pooled per street, community and district
with their counts beside them, light days, the scorecard, rankings, and the assessment exported as
CSV and XLSX. Every expected value is worked out by hand on a small city; the arithmetic is in the
comments."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import openpyxl
import pytest

from gridwatch import config
from gridwatch.api import Deduction, Grid, Ratio, Sample
from gridwatch.assessment.rollup import Pooled, counts, pool, rank, summary
from gridwatch.assessment.scorecard import LIGHT_ITEMS, LightDays, count_days, parse_period, score
from gridwatch.process.daemon import Daemon
from gridwatch.testing import free_port, write_standard_db

TZ = ZoneInfo("Asia/Shanghai")
EAST, WEST = "东街街道", "西街街道"
ON_TIME = "gridwatch_incidents_on_time_closure_ratio"
DUE, DUE_ON_TIME = "gridwatch_incidents_due", "gridwatch_incidents_due_closed_on_time"
COVERAGE = "gridwatch_visit_coverage_ratio"


# -- periods, ranks, light days, scores: the pieces ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("2026-10", "2026-10-01", "2026-10-31"),
        ("2026-02", "2026-02-01", "2026-02-28"),
        ("2028-02", "2028-02-01", "2028-02-29"),  # a leap year
        ("2026-Q4", "2026-10-01", "2026-12-31"),
        ("2026-Q1", "2026-01-01", "2026-03-31"),
        ("2026", "2026-01-01", "2026-12-31"),
        ("2026-W45", "2026-11-02", "2026-11-08"),  # ISO weeks start on Monday
        ("2026-W53", "2026-12-28", "2027-01-03"),  # 2026 starts on a Thursday: it has a 53rd week
        ("9999-Q4", "9999-10-01", "9999-12-31"),
        ("2026-10-15", "2026-10-15", "2026-10-15"),  # a day: the board's ranking of today
        ("2028-02-29", "2028-02-29", "2028-02-29"),
    ],
)
def test_periods(text: str, first: str, last: str) -> None:
    period = parse_period(text)
    assert (period.first.isoformat(), period.last.isoformat()) == (first, last)


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "2026-Q5", "2025-W53", "0000", "26-10", "2026-02-29", "2026-10-1", "", "x"]
)
def test_a_bad_period_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a month \(2026-10\), a quarter \(2026-Q4\)"):
        parse_period(text)


def test_ranks_share_a_place_on_a_tie_and_skip_the_next() -> None:
    # 100, 100, 97, 83, 81 -> 1, 1, 3, 4, 5 ("1224" competition ranking); no score, no rank
    assert rank({"a": 100, "b": 83, "c": 100, "d": 81, "e": 97, "f": None}) == {
        "a": 1,
        "b": 4,
        "c": 1,
        "d": 5,
        "e": 3,
        "f": None,
    }
    assert rank({"a": 88.004, "b": 87.996}) == {"a": 1, "b": 1}  # equal to 0.01


def test_light_days_of_a_month_count_from_the_grids_start_and_up_to_today() -> None:
    october = parse_period("2026-10")
    history = [(date(2026, 10, d), "yellow") for d in range(1, 16)]  # before its start: not counted
    history += [(date(2026, 10, d), "red" if d == 20 else "green") for d in range(16, 32) if d != 25]
    # in service from 10-16: 16 days; 10-20 red, 10-25 not kept, 14 green
    assert count_days(history, october, date(2026, 10, 16), date(2026, 11, 2)) == LightDays(14, 0, 1, 1)
    # as of 10-22: 10-16..10-22 counted, 6 green (today's light is kept once its cutoff has passed)
    # and 1 red; the days after today have not happened
    assert count_days(history, october, date(2026, 10, 16), date(2026, 10, 22)) == LightDays(6, 0, 1, 0)
    # before the cutoff today's light is not kept: today is neither counted nor unrecorded
    before_cutoff = [(day, light) for day, light in history if day != date(2026, 10, 22)]
    assert count_days(before_cutoff, october, date(2026, 10, 16), date(2026, 10, 22)) == LightDays(5, 0, 1, 0)
    # a grid that came into service after the period has no days in it
    assert count_days(history, october, date(2026, 11, 1), date(2026, 11, 2)) == LightDays()
    # without a start, every kept day of the period counts: 15 yellow, 14 green, 1 red, 10-25 unrecorded
    assert count_days(history, october, None, date(2026, 11, 2)) == LightDays(14, 15, 1, 1)


ITEMS = {
    **LIGHT_ITEMS,  # yellow 1 point a day, red 3 a day, each at most 30
    "visit_coverage": Deduction(COVERAGE, "走访覆盖率", 1.0, 20.0, target=0.90),
    "incidents_overdue": Deduction("gridwatch_incidents_overdue", "超期未办结案件", 2.0, 10.0, unit="件"),
    "on_time_closure": Deduction(ON_TIME, "按期结案率", 0.5, 10.0, target=0.90),
}


def test_a_score_lists_its_deductions_with_why() -> None:
    days = LightDays(green=26, yellow=3, red=2)
    values = {COVERAGE: 0.85, "gridwatch_incidents_overdue": 1, ON_TIME: 0.25}
    got = score(ITEMS, days, values)
    # yellow 3 x 1 = 3; red 2 x 3 = 6; coverage (0.90 - 0.85) = 5 points below x 1 = 5;
    # overdue 1 x 2 = 2; on time (0.90 - 0.25) = 65 points below x 0.5 = 32.5, capped at 10
    # 100 - (3 + 6 + 5 + 2 + 10) = 74
    assert got.score == 74
    assert got.deductions == [
        {"indicator": "yellow_days", "points": 3, "why": "黄灯 3 天，每天扣 1 分，扣 3 分"},
        {"indicator": "red_days", "points": 6, "why": "红灯 2 天，每天扣 3 分，扣 6 分"},
        {
            "indicator": "visit_coverage",
            "points": 5,
            "why": "走访覆盖率 85%，低于目标 90%（差 5 个百分点），每个百分点扣 1 分，扣 5 分",
        },
        {"indicator": "incidents_overdue", "points": 2, "why": "超期未办结案件 1 件，每件扣 2 分，扣 2 分"},
        {
            "indicator": "on_time_closure",
            "points": 10,
            "why": "按期结案率 25%，低于目标 90%（差 65 个百分点），每个百分点扣 0.5 分，扣 10 分（已达上限）",
        },
    ]


def test_a_target_met_exactly_takes_nothing_and_a_score_is_never_below_zero() -> None:
    # coverage exactly at the target is not below it
    assert score(ITEMS, LightDays(green=30), {COVERAGE: 0.9, ON_TIME: 1.0}).deductions == []
    # a ratio with nothing to divide by has no value: nothing to judge, nothing taken
    assert score(ITEMS, LightDays(), {}).score == 100
    heavy = {name: Deduction(i.metric, i.title, 50.0, 100.0, i.target, i.unit) for name, i in ITEMS.items()}
    assert score(heavy, LightDays(yellow=2, red=2), {}).score == 0  # 2 x 50 + 2 x 50 = 200 > 100


def test_a_roll_up_pools_numerators_and_denominators_never_averages_ratios() -> None:
    ratios = {ON_TIME: Ratio(DUE_ON_TIME, DUE)}
    samples = [
        Sample(DUE, {"grid": "G1"}, 1),
        Sample(DUE_ON_TIME, {"grid": "G1"}, 1),  # G1: 1 of 1 on time
        Sample(DUE, {"grid": "G2"}, 4),
        Sample(DUE_ON_TIME, {"grid": "G2"}, 1),  # G2: 1 of 4 on time
        Sample(DUE, {"grid": "G3"}, 0),
        Sample(DUE_ON_TIME, {"grid": "G3"}, 0),  # G3: nothing due, 0/0
    ]
    per_grid = counts(samples, ratios)
    key = (ON_TIME, ())
    assert per_grid["G3"][key] == Pooled(0, 0) and per_grid["G3"][key].ratio is None
    pooled = pool(per_grid.values())[key]
    # (1 + 1 + 0) / (1 + 4 + 0) = 2/5 = 0.4; the mean of the grids' ratios would be (1 + 0.25) / 2 = 0.625
    assert (pooled.numerator, pooled.denominator, pooled.ratio) == (2, 5, 0.4)

    grids = [Grid("G1", "一网格", "东湖社区", EAST), Grid("G2", "二网格", "东湖社区", EAST)]
    grids.append(Grid("G3", "三网格", "南山社区", WEST))
    units = summary(grids, "street", per_grid, {}, {"G1": 90, "G2": 80, "G3": 85}, {}, visible={"G1", "G2"})
    # the street a reader sees, placed among all the streets: 东街 (90 + 80) / 2 = 85 ties 西街's 85
    (east,) = units
    assert (east["street"], east["score"], east["rank"]) == (EAST, 85, 1)
    assert east["indicators"] == [
        {"metric": ON_TIME, "labels": {}, "title": None, "numerator": 2, "denominator": 5, "ratio": 0.4}
    ]


# -- the scorecard's configuration ----------------------------------------------------------------


def _config(tmp_path: Path, assessment: str) -> Path:
    path = tmp_path / "gridwatch.toml"
    path.write_text(
        '[grids]\nsource = "city"\n[sources.city]\ntype = "sqlite"\npath = "city.db"\n'
        '[[checks]]\nname = "visits"\ntype = "visits"\nsource = "city"\n'
        '[[checks]]\nname = "incidents"\ntype = "incidents"\nsource = "city"\n' + assessment,
        encoding="utf-8",
    )
    return path


def test_the_assessment_table_changes_points_caps_and_targets(tmp_path: Path) -> None:
    changes = "[assessment]\nyellow_days = { points = 2 }\nvisit_coverage = { target = 0.95, cap = 5 }\n"
    path = _config(tmp_path, changes)
    settings, _ = config.load(path)
    items = settings.assessment
    # the light days first, then the items of the configured checks' types; reporting is not in force
    # (no reports check), and what is not changed keeps its default
    visits, incidents = ["visit_coverage", "key_households_overdue"], ["incidents_overdue", "on_time_closure"]
    assert list(items) == ["yellow_days", "red_days", *visits, *incidents]
    assert (items["yellow_days"].points, items["yellow_days"].cap) == (2, 30)
    coverage = items["visit_coverage"]
    assert (coverage.points, coverage.cap, coverage.target) == (1, 5, 0.95)


def test_a_bad_assessment_table_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "[assessment]\n"
        "yellow_days = { points = -1 }\n"
        "reporting = { points = 1 }\n"  # no reports check is configured
        "punctuality = { points = 1 }\n"
        "incidents_overdue = { target = 0.9 }\n"
        'red_days = { weight = 3, cap = "lots" }\n',
    )
    out = subprocess.run(
        [sys.executable, "-m", "gridwatch", "check-config", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    expected = [
        "assessment.yellow_days.points: Input should be greater than or equal to 0",
        "assessment.reporting: no configured check feeds scorecard item 'reporting'",
        "assessment.punctuality: unknown scorecard item 'punctuality' (in force: yellow_days, red_days,",
        "assessment.incidents_overdue.target: incidents_overdue is a count: it has no target",
        "assessment.red_days.weight: unknown key",
        "assessment.red_days.cap: Input should be a valid number",
    ]
    for text in expected:
        assert any(line.startswith(f"{path}: {text}") for line in lines), (text, lines)


# -- the city, end to end ----------------------------------------------------------------------------

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=TZ)  # a Monday; the KPI and visit windows: [10-03 10:00, now]
GRIDS = [
    {"grid_id": "G1", "name": "一网格", "community": "东湖社区", "street": EAST},
    {"grid_id": "G2", "name": "二网格", "community": "东湖社区", "street": EAST},
    {"grid_id": "G3", "name": "三网格", "community": "西湖社区", "street": EAST},
    {"grid_id": "G4", "name": "四网格", "community": "南山社区", "street": WEST},
    {"grid_id": "G5", "name": "五网格", "community": "南山社区", "street": WEST, "since": "2026-10-16"},
]


def _case(cid: str, grid: str, closed: str | None = None, reopened: int = 0) -> dict[str, Any]:
    # a community case reported 10-20 08:00 is due 10-21 08:00 (1 day)
    return {
        "incident_id": f"INC-{cid}",
        "grid_id": grid,
        "severity": "normal",
        "tier": "community",
        "reported_at": "2026-10-20 08:00:00",
        "closed_at": closed,
        "reopened_count": reopened,
    }


def _households(grid: str, n: int, visited: int, key: str | None = None) -> tuple[list[dict[str, Any]], list[Any]]:
    """``n`` households of ``grid``, the first ``visited`` visited on 10-30; the last one of category
    ``key`` if given (never visited when visited < n)."""
    homes = [
        {"household_id": f"{grid}-H{i}", "grid_id": grid, "category": key if key and i == n - 1 else None}
        for i in range(n)
    ]
    seen = [
        {"visit_id": f"{grid}-V{i}", "household_id": f"{grid}-H{i}", "grid_id": grid, "worker_id": "WK-0001"}
        | {"visited_at": "2026-10-30 10:00:00"}
        for i in range(visited)
    ]
    return homes, seen


def city() -> dict[str, list[dict[str, Any]]]:
    households: list[dict[str, Any]] = []
    visits: list[dict[str, Any]] = []
    for grid, n, visited, key in (("G1", 4, 3, "elderly_alone"), ("G2", 2, 2, None), ("G3", 4, 4, None)):
        homes, seen = _households(grid, n, visited, key)
        households += homes
        visits += seen
    homes, seen = _households("G4", 5, 5)
    households += homes
    visits += seen  # G5 has no household registered yet: no coverage
    incidents = [
        _case("C1", "G1", closed="2026-10-20 18:00:00"),  # G1: due 1, closed on time 1
        _case("C2", "G2", closed="2026-10-20 12:00:00"),  # G2: on time
        _case("C3", "G2", closed="2026-10-22 08:00:00", reopened=1),  # late, reworked
        _case("C4", "G2", closed="2026-10-22 08:00:00"),  # late
        _case("C5", "G2"),  # open, 12 days past its deadline: overdue (二次通报)
        _case("C6", "G4", closed="2026-10-20 09:00:00"),  # G4: 2 due, both on time
        _case("C7", "G4", closed="2026-10-21 08:00:00"),  # closed at the deadline: on time
    ]
    return {"grids": GRIDS, "households": households, "visits": visits, "incidents": incidents}


def october_lights() -> list[tuple[str, str, str]]:
    """The daily lights the reports check kept, as it keeps them (``reports_daily_lights``)."""
    colour: dict[str, dict[int, str | None]] = {g["grid_id"]: dict.fromkeys(range(1, 32), "green") for g in GRIDS}
    colour["G1"].update({3: "yellow", 4: "yellow"})  # G1: 29 green, 2 yellow
    colour["G2"].update({5: "yellow", 6: "yellow", 7: "red"})  # G2: 28 green, 2 yellow, 1 red
    colour["G4"][9] = None  # G4: 30 green, 10-09 not kept
    # G5 came into service on 10-16: the yellow days before it are not counted; then 15 green, 1 red
    colour["G5"].update({d: "yellow" for d in range(1, 16)} | {20: "red"})
    rows = [(g, f"2026-10-{d:02d}", c) for g, days in colour.items() for d, c in days.items() if c]
    rows += [(g["grid_id"], "2026-11-01", "green") for g in GRIDS]  # and 11-01, yesterday, green
    return rows


def write_city(d: Path) -> Path:
    write_standard_db(d / "city.db", city())
    (d / "state").mkdir()
    with sqlite3.connect(d / "state" / "gridwatch-state.db") as db:
        db.execute(
            "CREATE TABLE reports_daily_lights (grid_id TEXT NOT NULL, day TEXT NOT NULL, "
            "light TEXT NOT NULL, PRIMARY KEY (grid_id, day))"
        )
        db.executemany("INSERT INTO reports_daily_lights VALUES (?, ?, ?)", october_lights())
    db.close()
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "city"\ninterval = "1h"\n' for c in ("visits", "incidents")
    )
    path = d / "gridwatch.toml"
    path.write_text(
        f'timezone = "Asia/Shanghai"\n[server]\nlisten = "127.0.0.1:{free_port()}"\n'
        '[state]\npath = "state/gridwatch-state.db"\n[grids]\nsource = "city"\n'
        '[sources.city]\ntype = "sqlite"\npath = "city.db"\n' + checks,
        encoding="utf-8",
    )
    return path


Answers = dict[str, tuple[int, dict[str, str], bytes]]
ASKED = [
    "/api/v1/summary",
    "/api/v1/summary?by=community",
    "/api/v1/summary?by=district",
    "/api/v1/assessment?period=2026-10",
    "/api/v1/assessment?period=2026-10&format=csv",
    "/api/v1/assessment?period=2026-10&format=xlsx",
    "/api/v1/assessment?period=2026-11",
    "/api/v1/assessment?period=2026-10-07",
    "/api/v1/summary?period=2026-10-07",
    "/api/v1/assessment?period=2026-13",
    "/api/v1/assessment?period=2026-10&format=pdf",
    "/api/v1/summary?by=city",
]


async def ask_the_daemon(cfg: Path) -> Answers:
    """A daemon whose clock reads NOW, asked once its checks have run and its alerts are lit."""
    daemon = Daemon(cfg, *config.load(cfg), clock=lambda: NOW)
    await daemon.start()
    try:
        for _ in range(600):
            view = daemon.view
            if view is not None and not view.not_ready() and view.alerting.engine.lit:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the daemon did not settle")
        base = f"http://127.0.0.1:{daemon.settings.port}"
        answers: Answers = {}
        async with aiohttp.ClientSession() as session:
            for path in ASKED:
                async with session.get(base + path) as resp:
                    answers[path] = (resp.status, dict(resp.headers), await resp.read())
        return answers
    finally:
        await daemon.stop()


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Answers]:
    yield asyncio.run(ask_the_daemon(write_city(tmp_path_factory.mktemp("city"))))


def _json(answers: Answers, path: str) -> Any:
    import json

    status, _, body = answers[path]
    assert status == 200, body
    return json.loads(body)


def _indicator(unit: dict[str, Any], metric: str) -> tuple[Any, Any, Any]:
    (found,) = [i for i in unit["indicators"] if i["metric"] == metric and i["labels"] == {}]
    return found["numerator"], found["denominator"], found["ratio"]


# by hand (the defaults: yellow 1 a day, red 3 a day, coverage 1 a point below 90%, key household 2,
# overdue case 2, on-time closure 0.5 a point below 90% capped at 10; no reports check, no reporting item):
# G1: yellow 2 -> 2; coverage 3/4 = 75%, 15 below -> 15; 1 key household never visited -> 2:   100 - 19 = 81
# G2: yellow 2 -> 2; red 1 -> 3; 1 case overdue -> 2; on time 1/4 = 25%, 65 x 0.5 = 32.5 -> 10: 100 - 17 = 83
# G3: nothing -> 100;  G4: nothing (10-09 unrecorded takes nothing) -> 100;  G5: red 1 -> 3: 97
SCORES = {"G1": 81, "G2": 83, "G3": 100, "G4": 100, "G5": 97}


def test_the_summary_by_street_pools_every_ratio_and_ranks_streets_and_their_grids(answers: Answers) -> None:
    got = _json(answers, "/api/v1/summary")
    assert got["by"] == "street" and got["period"] == "2026-11"  # this month so far, by default
    east, west = got["units"]
    assert (east["street"], east["community"], east["grids"]) == (EAST, None, 3)
    # on time: G1 1/1, G2 1/4, G3 nothing due -> 2/5 = 0.4 (the mean of the ratios would be 0.625)
    assert _indicator(east, ON_TIME) == (2, 5, 0.4)
    # closure: G1 1 of 1, G2 3 of 4 (C2, C3, C4) -> 4/5; rework: of 4 closed, C3 reopened -> 1/4
    assert _indicator(east, "gridwatch_incidents_closure_ratio") == (4, 5, 0.8)
    assert _indicator(east, "gridwatch_incidents_rework_ratio") == (1, 4, 0.25)
    assert _indicator(east, "gridwatch_incidents_extension_ratio") == (0, 5, 0)
    # coverage: visited 3 + 2 + 4 = 9 of 4 + 2 + 4 = 10 households
    assert _indicator(east, COVERAGE) == (9, 10, 0.9)
    # 西街: 2 of 2 on time; coverage 5/5, G5 has no household (0/0 adds nothing)
    assert _indicator(west, ON_TIME) == (2, 2, 1)
    assert _indicator(west, COVERAGE) == (5, 5, 1)
    assert _indicator(west, "gridwatch_incidents_rework_ratio") == (0, 2, 0)
    # lights now: G1 red (coverage 75% is below 80%: critical), G2 yellow (an overdue case), the rest green
    assert east["lights"] == {"green": 1, "yellow": 1, "red": 1}
    assert west["lights"] == {"green": 2, "yellow": 0, "red": 0}
    # November so far: 11-01 green for every grid, so the scores are those of the "now" items
    # G1: 100 - 15 - 2 = 83; G2: 100 - 2 - 10 = 88; G3, G4, G5: 100
    # 东街 (83 + 88 + 100) / 3 = 90.33; 西街 (100 + 100) / 2 = 100 -> 西街 first
    assert (east["score"], east["rank"], west["score"], west["rank"]) == (90.33, 2, 100, 1)
    ranking = [(g["grid"], g["score"], g["rank"]) for g in east["ranking"]]
    assert ranking == [("G3", 100, 1), ("G2", 88, 2), ("G1", 83, 3)]
    # G4 and G5 tie: both first
    assert [(g["grid"], g["rank"]) for g in west["ranking"]] == [("G4", 1), ("G5", 1)]


def test_the_summary_by_community_and_for_the_district(answers: Answers) -> None:
    units = {(u["street"], u["community"]): u for u in _json(answers, "/api/v1/summary?by=community")["units"]}
    east_lake = units[(EAST, "东湖社区")]
    # 东湖 = G1 + G2: on time 2/5; coverage 5/6; score (83 + 88) / 2 = 85.5, behind 西湖 and 南山 (both 100)
    assert _indicator(east_lake, ON_TIME) == (2, 5, 0.4)
    assert _indicator(east_lake, COVERAGE)[:2] == (5, 6)
    assert (east_lake["score"], east_lake["rank"]) == (85.5, 3)
    assert (units[(EAST, "西湖社区")]["rank"], units[(WEST, "南山社区")]["rank"]) == (1, 1)

    (district,) = _json(answers, "/api/v1/summary?by=district")["units"]
    assert (district["street"], district["community"], district["grids"]) == (None, None, 5)
    # on time (1 + 1 + 2) / (1 + 4 + 2) = 4/7; coverage (9 + 5) / (10 + 5) = 14/15
    assert _indicator(district, ON_TIME)[:2] == (4, 7)
    assert _indicator(district, COVERAGE)[:2] == (14, 15)
    assert district["lights"] == {"green": 3, "yellow": 1, "red": 1}
    assert district["rank"] == 1
    # the counts are published: due cases 1 + 4 + 0 + 2 + 0 = 7
    assert _indicator(district, "gridwatch_incidents_closure_ratio")[:2] == (6, 7)  # C1-C4, C6, C7 closed


def test_the_assessment_of_october(answers: Answers) -> None:
    got = _json(answers, "/api/v1/assessment?period=2026-10")
    assert (got["period"], got["from"], got["to"]) == ("2026-10", "2026-10-01", "2026-10-31")
    assert got["today"] == "2026-11-02"
    rows = {r["grid"]: r for r in got["grids"]}
    assert {g: r["days"] for g, r in rows.items()} == {
        "G1": {"green": 29, "yellow": 2, "red": 0, "unrecorded": 0},
        "G2": {"green": 28, "yellow": 2, "red": 1, "unrecorded": 0},
        "G3": {"green": 31, "yellow": 0, "red": 0, "unrecorded": 0},
        "G4": {"green": 30, "yellow": 0, "red": 0, "unrecorded": 1},
        # in service from 10-16: 16 days, 15 green and 1 red; the 15 yellow days before are not counted
        "G5": {"green": 15, "yellow": 0, "red": 1, "unrecorded": 0},
    }
    assert {g: r["score"] for g, r in rows.items()} == SCORES
    assert rows["G2"]["deductions"] == [
        {"indicator": "yellow_days", "points": 2, "why": "黄灯 2 天，每天扣 1 分，扣 2 分"},
        {"indicator": "red_days", "points": 3, "why": "红灯 1 天，每天扣 3 分，扣 3 分"},
        {"indicator": "incidents_overdue", "points": 2, "why": "超期未办结案件 1 件，每件扣 2 分，扣 2 分"},
        {
            "indicator": "on_time_closure",
            "points": 10,
            "why": "按期结案率 25%，低于目标 90%（差 65 个百分点），每个百分点扣 0.5 分，扣 10 分（已达上限）",
        },
    ]
    g1 = [d["indicator"] for d in rows["G1"]["deductions"]]
    assert g1 == ["yellow_days", "visit_coverage", "key_households_overdue"]
    # district: G3 100, G4 100 (a tie: both 1), G5 97 -> 3, G2 83 -> 4, G1 81 -> 5
    # 东街: G3 1, G2 2, G1 3; 西街: G4 1, G5 2
    assert {g: (r["rank"]["street"], r["rank"]["district"]) for g, r in rows.items()} == {
        "G1": (3, 5),
        "G2": (2, 4),
        "G3": (1, 1),
        "G4": (1, 1),
        "G5": (2, 3),
    }
    assert rows["G5"]["since"] == "2026-10-16" and rows["G1"]["since"] is None


def test_a_day_is_a_period_of_its_own(answers: Answers) -> None:
    """The board ranks today: a day's light counts alone; the "now" items are as every period's."""
    got = _json(answers, "/api/v1/assessment?period=2026-10-07")
    assert (got["period"], got["from"], got["to"]) == ("2026-10-07", "2026-10-07", "2026-10-07")
    rows = {r["grid"]: r for r in got["grids"]}
    # 10-07: G2 red, the others green; G5 not in service yet (from 10-16): no day counted
    assert rows["G2"]["days"] == {"green": 0, "yellow": 0, "red": 1, "unrecorded": 0}
    assert rows["G5"]["days"] == {"green": 0, "yellow": 0, "red": 0, "unrecorded": 0}
    # G1: coverage 15 + key household 2 -> 83; G2: red 3 + overdue 2 + on time 10 -> 85; G3, G4, G5: 100
    assert {g: r["score"] for g, r in rows.items()} == {"G1": 83, "G2": 85, "G3": 100, "G4": 100, "G5": 100}
    assert {g: r["rank"]["district"] for g, r in rows.items()} == {"G1": 5, "G2": 4, "G3": 1, "G4": 1, "G5": 1}
    east, west = _json(answers, "/api/v1/summary?period=2026-10-07")["units"]
    # 东街 (83 + 85 + 100) / 3 = 89.33, 西街 (100 + 100) / 2 = 100
    assert (east["street"], east["score"], east["rank"]) == (EAST, 89.33, 2)
    assert (west["street"], west["score"], west["rank"]) == (WEST, 100, 1)


def test_days_after_today_are_not_counted(answers: Answers) -> None:
    rows = {r["grid"]: r["days"] for r in _json(answers, "/api/v1/assessment?period=2026-11")["grids"]}
    # November as of 11-02 10:00: 11-01 green; today not kept yet, 11-03..11-30 not yet
    assert rows["G1"] == {"green": 1, "yellow": 0, "red": 0, "unrecorded": 0}


def test_the_csv_opens_in_excel_with_its_chinese_headers(answers: Answers) -> None:
    status, headers, body = answers["/api/v1/assessment?period=2026-10&format=csv"]
    assert status == 200
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM that makes Excel read UTF-8
    disposition = headers["Content-Disposition"]
    assert 'filename="gridwatch-assessment-2026-10.csv"' in disposition
    assert "filename*=UTF-8''" + urllib.parse.quote("网格考核-2026-10.csv") in disposition
    # as Excel reads it: the BOM says UTF-8 (utf-8-sig drops it), CRLF rows
    text = body.decode("utf-8-sig")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = rows[0]
    grid = ["网格编号", "网格名称", "街道", "社区", "启用日期"]
    days = ["绿灯天数", "黄灯天数", "红灯天数", "未记录天数"]
    assert header[:12] == [*grid, *days, "得分", "街道排名", "全区排名"]
    assert header[12:] == [
        "扣分：黄灯",
        "扣分：红灯",
        "扣分：走访覆盖率",
        "扣分：重点人群超期未走访",
        "扣分：超期未办结案件",
        "扣分：按期结案率",
        "扣分说明",
    ]
    g5 = next(r for r in rows[1:] if r[0] == "G5")
    assert g5[:12] == ["G5", "五网格", WEST, "南山社区", "2026-10-16", "15", "0", "1", "0", "97", "2", "3"]
    assert g5[12:] == ["0", "3", "0", "0", "0", "0", "红灯 1 天，每天扣 3 分，扣 3 分"]
    g1 = next(r for r in rows[1:] if r[0] == "G1")
    assert g1[-1].split("；") == [
        "黄灯 2 天，每天扣 1 分，扣 2 分",
        "走访覆盖率 75%，低于目标 90%（差 15 个百分点），每个百分点扣 1 分，扣 15 分",
        "重点人群超期未走访 1 户，每户扣 2 分，扣 2 分",
    ]


def test_the_xlsx_is_the_same_table(answers: Answers) -> None:
    status, headers, body = answers["/api/v1/assessment?period=2026-10&format=xlsx"]
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert 'filename="gridwatch-assessment-2026-10.xlsx"' in headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(body)).active
    assert sheet.title == "考核 2026-10"
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    as_csv = answers["/api/v1/assessment?period=2026-10&format=csv"][2]
    csv_rows = list(csv.reader(io.StringIO(as_csv.decode("utf-8-sig"))))
    assert rows[0] == csv_rows[0]
    assert len(rows) == 6
    g2 = next(r for r in rows if r[0] == "G2")
    # numbers stay numbers: a spreadsheet sorts and sums them
    assert g2[5:12] == [28, 2, 1, 0, 83, 2, 4]
    assert g2[4] is None  # no start date: an empty cell


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/assessment?period=2026-13", "bad period '2026-13': expected a month (2026-10), a quarter"),
        ("/api/v1/assessment?period=2026-10&format=pdf", "bad format 'pdf': expected json, csv or xlsx"),
        ("/api/v1/summary?by=city", "bad by 'city': expected one of street, community, district"),
    ],
)
def test_a_bad_request_is_a_400_saying_what_is_expected(answers: Answers, path: str, message: str) -> None:
    import json

    status, _, body = answers[path]
    assert status == 400
    assert json.loads(body)["error"].startswith(message)


def test_no_answer_names_a_household_or_a_worker(answers: Answers) -> None:
    ids = {h["household_id"] for h in city()["households"]} | {"WK-0001"}
    ids |= {v["visit_id"] for v in city()["visits"]} | {c["incident_id"] for c in city()["incidents"]}
    for path, (_, _, body) in answers.items():
        text = body.decode("utf-8", "replace") if not path.endswith("xlsx") else ""
        assert not [i for i in ids if i in text], path
