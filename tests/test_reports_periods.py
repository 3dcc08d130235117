"""Which period a report counts for, how long a period stays overdue, and a grid's start
(DOMAIN.md §3 "Periodic reports", "A report without a period"; §5 "A grid's start").

Expected values by hand. The timezone is Asia/Shanghai (UTC+8, no DST), the daily cutoff
20:00. Due times: the monthly report of a month by the 5th of the next one (24:00, i.e. the
6th 00:00), the quarterly analysis by the 15th day after the quarter (the 16th 00:00), the
annual report by 31 January (1 February 00:00), the weekly form by Friday (Saturday 00:00),
the twice-weekly information on Tuesday and Friday at the cutoff. 2026-11-20 is a Friday:
its twice-weekly period runs Wednesday 11-18 .. Friday 11-20, the next one Saturday 11-21 ..
Tuesday 11-24. ISO week 47 of 2026 is 11-16 .. 11-22, week 48 11-23 .. 11-29.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gridwatch_plugins import reports
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gridwatch import config
from gridwatch.api import Environment
from gridwatch.calendar import latest_due_period, next_due_period
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Runtime
from gridwatch.pytest_plugin import CheckRunner
from gridwatch.store import Store
from gridwatch.testing import CheckResult, write_standard_db

TZ = ZoneInfo("Asia/Shanghai")
DAILY = "gridwatch_report_daily_status"
OVERDUE = "gridwatch_report_overdue"
MISSING = "gridwatch_report_missing_periods"
OLDEST_DUE = "gridwatch_report_oldest_missing_due_timestamp_seconds"
OLDEST_AGE = "gridwatch_report_oldest_missing_age_seconds"
ON_TIME = "gridwatch_report_on_time_ratio"
DUE_SOON = "gridwatch_report_due_soon"
OK, PENDING, LATE = 0, 1, 2

# The grids come from a table of their own that has the optional column ``since``, mapped onto
# the standard ``grids`` table (the standard schema the test kit writes has no ``since``).
SOURCE = 'type = "sqlite"\npath = "standard.db"\ntables = { grids = "registry" }'

_ids = iter(range(1, 1_000_000))


def report(grid: str, submitted: str, kind: str, period: str | None = None, **kw: Any) -> dict[str, Any]:
    return {
        "report_id": f"R{next(_ids)}",
        "grid_id": grid,
        "kind": kind,
        "period": period,
        "submitted_at": submitted,
        **kw,
    }


def registry(since: dict[str, str | None]) -> list[dict[str, Any]]:
    return [
        {
            "grid_id": g,
            "name": f"{g[1:]}号网格",
            "community": "幸福社区",
            "street": "城关街道",
            "zone": None,
            "since": s,
        }
        for g, s in since.items()
    ]


def run(
    gridwatch_check: CheckRunner, rows: list[dict[str, Any]], now: str, since: dict[str, str | None], **options: Any
) -> CheckResult:
    tables = {"registry": registry(since), "reports": rows}
    result = gridwatch_check("reports", tables, now=now, options=options, source=SOURCE)
    assert result.error is None, result.error
    return result


def reasons(result: CheckResult) -> dict[str, list[str]]:
    """The light reasons the check gives for these samples, per grid (in the configured zone)."""
    check = object.__new__(reports.ReportsCheck)  # reasons depend on the samples alone
    check.env = Environment(Path("."), TZ, Path("."))
    out: dict[str, list[str]] = defaultdict(list)
    for r in check.reasons(result.samples):
        out[r.grid].append(r.text)
    return dict(out)


def ts(local: str) -> float:
    return datetime.fromisoformat(local).replace(tzinfo=TZ).timestamp()


def stored_lights(result: CheckResult) -> list[tuple[str, str, str]]:
    with sqlite3.connect(result.state_path) as db:
        rows = db.execute("SELECT grid_id, day, light FROM reports_daily_lights ORDER BY grid_id, day").fetchall()
    db.close()
    return rows


# --------------------------------------------------------------------------- the issue's example


def g1_g2(since: str | None) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
    """G1 sends its monthly report on 10-03 and its quarterly analysis on 10-12 without a
    period; G2 sends the same naming 2026-09 and 2026-Q3; G3 sends nothing."""
    rows = [
        report("G1", "2026-10-03 10:00", "monthly"),
        report("G1", "2026-10-12 10:00", "quarterly"),
        report("G2", "2026-10-03 10:00", "monthly", "2026-09"),
        report("G2", "2026-10-12 10:00", "quarterly", "2026-Q3"),
    ]
    return rows, {"G1": since, "G2": since, "G3": since}


def test_a_report_without_a_period_counts_for_the_period_that_had_ended(gridwatch_check):
    # the grids came into service on 1 September: September and the third quarter are owed
    rows, since = g1_g2("2026-09-01")
    r = run(gridwatch_check, rows, "2026-10-16 10:00", since, expect=["monthly", "quarterly"])
    for kind in ("monthly", "quarterly"):
        assert r.by_grid(OVERDUE, kind=kind) == {"G1": 0, "G2": 0, "G3": 1}, kind
        assert r.by_grid(MISSING, kind=kind) == {"G1": 0, "G2": 0, "G3": 1}, kind
        # window [09-16 10:00, 10-16 10:00]: September (due 10-06 00:00) and Q3 (due 10-16 00:00)
        assert r.by_grid(ON_TIME, kind=kind) == {"G1": 1, "G2": 1, "G3": 0}, kind
        assert r.by_grid(DUE_SOON, kind=kind) == {"G1": 0, "G2": 0, "G3": 0}, kind
    assert r.by_grid(OLDEST_DUE, kind="monthly") == {"G3": ts("2026-10-06 00:00")}
    assert r.by_grid(OLDEST_DUE, kind="quarterly") == {"G3": ts("2026-10-16 00:00")}
    assert r.by_grid(OLDEST_AGE, kind="quarterly") == {"G3": 10 * 3600}
    assert reasons(r) == {"G3": ["九月月报逾期未报", "第三季度季度分析逾期未报"]}


def test_the_issue_example_exactly_as_written_g1_equals_g2(gridwatch_check):
    # no grids.since: the grids count from the earliest report read (10-03), so nothing that
    # ended before is owed; whatever the figures, G1 (no period) and G2 (periods named) agree
    rows, since = g1_g2(None)
    r = run(gridwatch_check, rows, "2026-10-16 10:00", since, expect=["monthly", "quarterly"])
    for kind in ("monthly", "quarterly"):
        assert r.value(OVERDUE, grid="G1", kind=kind) == 0
        assert r.value(MISSING, grid="G1", kind=kind) == 0
    for metric in (OVERDUE, MISSING, ON_TIME, DUE_SOON, OLDEST_DUE):
        for kind in ("monthly", "quarterly"):
            assert r.value(metric, grid="G1", kind=kind) == r.value(metric, grid="G2", kind=kind), (metric, kind)
    assert "G1" not in reasons(r)


# --------------------------------------------------------------------------- a report without a period

# kind, grids.since, reports sent without a period, now, the reason: the oldest period still
# missing (None: nothing missing). What is missing shows which period each report counted for.
NO_PERIOD = [
    # monthly, quarterly, annual: the latest period that had ended when it was sent
    ("monthly", "2026-09-01", ["2026-10-03 10:00"], "2026-11-10 12:00", "十月月报逾期未报"),  # 10-03 → September
    ("monthly", "2026-09-01", ["2026-10-10 10:00"], "2026-11-10 12:00", "十月月报逾期未报"),  # → September, late
    ("monthly", "2026-09-01", ["2026-10-01 00:00"], "2026-11-10 12:00", "十月月报逾期未报"),  # September has ended
    # 09-30 23:59: September has not ended yet, so this is August's (owed by nobody here)
    ("monthly", "2026-09-01", ["2026-09-30 23:59"], "2026-11-10 12:00", "九月月报等 2 期逾期未报"),
    ("monthly", "2026-09-01", ["2026-11-03 10:00"], "2026-11-10 12:00", "九月月报逾期未报"),  # → October
    ("quarterly", "2026-07-01", ["2026-10-12 10:00"], "2026-10-16 10:00", None),  # → Q3, on time
    ("quarterly", "2026-07-01", ["2026-10-12 10:00"], "2027-01-20 12:00", "2026年第四季度季度分析逾期未报"),
    ("annual", "2025-01-01", ["2026-01-20 10:00"], "2026-02-05 12:00", None),  # → 2025
    ("annual", "2025-01-01", ["2025-12-31 10:00"], "2026-02-05 12:00", "2025年年报逾期未报"),  # → 2024
    # twice-weekly, weekly: the last period due before it if that one still has no report,
    # else the next one due after it
    # sent Saturday: Friday's, late (not next Tuesday's); Tuesday's is missing
    ("twice_weekly", "2026-11-18", ["2026-11-21 10:00"], "2026-11-24 21:00", "11月24日（周二）综合信息逾期未报"),
    # Friday's came in on Friday, the Monday one is Tuesday's
    ("twice_weekly", "2026-11-18", ["2026-11-20 19:00", "2026-11-23 10:00"], "2026-11-24 21:00", None),
    # Friday's never came: the Monday one is Friday's, late
    ("twice_weekly", "2026-11-18", ["2026-11-23 10:00"], "2026-11-24 21:00", "11月24日（周二）综合信息逾期未报"),
    # Tuesday 11-17 ended before the grid's start: owed by no one, so Friday's report is Friday's
    ("twice_weekly", "2026-11-18", ["2026-11-20 19:00"], "2026-11-24 21:00", "11月24日（周二）综合信息逾期未报"),
    # the rule as written: with Tuesday 11-17 owed and unsent, a report sent on Friday before the
    # cutoff still has that Tuesday due before it, and counts for it (late)
    (
        "twice_weekly",
        "2026-11-14",
        ["2026-11-20 19:00"],
        "2026-11-24 21:00",
        "11月20日（周五）综合信息等 2 期逾期未报",
    ),
    # two reports on Saturday: Friday's, then Tuesday's
    ("twice_weekly", "2026-11-18", ["2026-11-21 10:00", "2026-11-21 10:05"], "2026-11-24 21:00", None),
    # weekly: sent Monday 11-23 with week 47 unsent (due 11-20 24:00): week 47's, late
    ("weekly", "2026-11-16", ["2026-11-23 10:00"], "2026-11-28 12:00", "第48周（11月23日至29日）周报告单逾期未报"),
    ("weekly", "2026-11-16", ["2026-11-20 10:00", "2026-11-23 10:00"], "2026-11-28 12:00", None),
    ("weekly", "2026-11-16", ["2026-11-21 10:00"], "2026-11-28 12:00", "第48周（11月23日至29日）周报告单逾期未报"),
]


@pytest.mark.parametrize(("kind", "since", "sent", "now", "reason"), NO_PERIOD)
def test_which_period_a_report_without_one_counts_for(
    gridwatch_check: CheckRunner, kind: str, since: str, sent: list[str], now: str, reason: str | None
) -> None:
    # G1's reports have a NULL period, G2's an empty one: alike
    rows = [report("G1", at, kind) for at in sent] + [report("G2", at, kind, "") for at in sent]
    r = run(gridwatch_check, rows, now, {"G1": since, "G2": since}, expect=[kind])
    want = {"G1": [reason], "G2": [reason]} if reason else {}
    assert reasons(r) == want
    assert r.by_grid(OVERDUE, kind=kind) == {"G1": float(reason is not None), "G2": float(reason is not None)}


def test_a_late_report_without_a_period_is_late(gridwatch_check):
    rows = [
        report("G1", "2026-10-10 10:00", "monthly"),  # September's, late
        report("G2", "2026-11-21 10:00", "twice_weekly"),  # Friday 11-20's, late
        report("G3", "2026-11-20 19:00", "twice_weekly"),  # Friday 11-20's, on time
    ]
    since = {"G1": "2026-09-01", "G2": "2026-11-18", "G3": "2026-11-18"}
    r = run(gridwatch_check, rows, "2026-10-16 10:00", since, expect=["monthly"])
    assert r.by_grid(ON_TIME, kind="monthly") == {"G1": 0}  # G2, G3 owe no September report
    assert r.value(OVERDUE, grid="G1", kind="monthly") == 0
    r = run(gridwatch_check, rows, "2026-11-21 12:00", since, expect=["twice_weekly"])
    # window [10-22 12:00, 11-21 12:00]: of its nine Tuesdays and Fridays G2 and G3 owe Friday 11-20
    # only; G1 (in service since September) owes all nine and sent none
    assert r.by_grid(ON_TIME, kind="twice_weekly") == {"G1": 0, "G2": 0, "G3": 1}
    assert r.by_grid(OVERDUE, kind="twice_weekly") == {"G1": 1, "G2": 0, "G3": 0}


def test_a_named_period_is_taken_as_named(gridwatch_check):
    # a Monday report naming Friday is Friday's, whatever came before
    rows = [
        report("G1", "2026-11-20 19:00", "twice_weekly", "2026-11-20"),
        report("G1", "2026-11-23 10:00", "twice_weekly", "2026-11-20"),
    ]
    r = run(gridwatch_check, rows, "2026-11-24 21:00", {"G1": "2026-11-18"}, expect=["twice_weekly"])
    assert reasons(r) == {"G1": ["11月24日（周二）综合信息逾期未报"]}


def test_an_explicit_report_sent_at_the_same_instant_counts_as_already_there(gridwatch_check):
    rows = [
        report("G1", "2026-11-21 10:00", "twice_weekly", "2026-11-20"),
        report("G1", "2026-11-21 10:00", "twice_weekly"),  # Friday's is in: Tuesday's
    ]
    r = run(gridwatch_check, rows, "2026-11-24 21:00", {"G1": "2026-11-18"}, expect=["twice_weekly"])
    assert r.value(MISSING, grid="G1", kind="twice_weekly") == 0


# --------------------------------------------------------------------------- a period stays overdue


@pytest.mark.parametrize("period", [None, "2026-10"])
@pytest.mark.parametrize(
    ("now", "missing", "reason"),
    [
        ("2026-10-05 23:59", 0, None),  # September not due yet
        ("2026-10-06 00:00", 1, "九月月报逾期未报"),  # due time reached: passed
        ("2026-10-20 12:00", 1, "九月月报逾期未报"),
        ("2026-11-05 12:00", 1, "九月月报逾期未报"),  # October sent on 11-03
        ("2026-11-06 12:00", 1, "九月月报逾期未报"),  # October due and sent: September still missing
        ("2026-12-07 12:00", 2, "九月月报等 2 期逾期未报"),  # and November missing too
        ("2027-01-10 12:00", 3, "2026年9月月报等 3 期逾期未报"),  # a year is named when not this one
    ],
)
def test_a_period_stays_overdue_until_its_report_arrives(gridwatch_check, period, now, missing, reason):
    # G1 never sends September's report and sends October's on 11-03; G2 sends both
    rows = [
        report("G1", "2026-11-03 10:00", "monthly", period),
        report("G2", "2026-10-03 10:00", "monthly", "2026-09"),
        report("G2", "2026-11-03 10:00", "monthly", "2026-10"),
    ]
    since = {"G1": "2026-09-01", "G2": "2026-09-01"}
    r = run(gridwatch_check, rows, now, since, expect=["monthly"])
    assert r.value(MISSING, grid="G1", kind="monthly") == missing
    assert r.value(OVERDUE, grid="G1", kind="monthly") == float(missing > 0)
    assert reasons(r).get("G1") == ([reason] if reason else None)
    if missing:
        due = ts("2026-10-06 00:00")
        assert r.value(OLDEST_DUE, grid="G1", kind="monthly") == due
        assert r.value(OLDEST_AGE, grid="G1", kind="monthly") == ts(now) - due
    else:
        r.assert_absent(OLDEST_DUE, grid="G1", kind="monthly")
        r.assert_absent(OLDEST_AGE, grid="G1", kind="monthly")


def test_a_late_report_ends_the_overdue_period(gridwatch_check):
    rows = [report("G1", "2026-11-10 09:00", "monthly", "2026-09"), report("G1", "2026-11-03 10:00", "monthly")]
    r = run(gridwatch_check, rows, "2026-11-10 12:00", {"G1": "2026-09-01"}, expect=["monthly"])
    assert (r.value(OVERDUE, grid="G1", kind="monthly"), r.value(MISSING, grid="G1", kind="monthly")) == (0, 0)


def test_the_look_back_is_an_option(gridwatch_check):
    rows = [report("G1", "2026-11-03 10:00", "monthly")]  # October's
    since = {"G1": "2026-09-01"}
    r = run(gridwatch_check, rows, "2026-11-10 12:00", since, expect=["monthly"])
    assert r.value(MISSING, grid="G1", kind="monthly") == 1  # September, due 10-06, within 400 days
    # within 30 days only October (due 11-06) is looked at: September (35 days ago) is not
    r = run(gridwatch_check, rows, "2026-11-10 12:00", since, expect=["monthly"], lookback="30d")
    assert r.value(MISSING, grid="G1", kind="monthly") == 0


def test_the_default_look_back_sees_a_missing_annual_report(gridwatch_check):
    # the 2025 annual report was due 2026-01-31 24:00; on 2026-12-20 it is still missing
    r = run(gridwatch_check, [], "2026-12-20 12:00", {"G1": "2025-06-01"}, expect=["annual"])
    assert r.value(MISSING, grid="G1", kind="annual") == 1
    assert reasons(r) == {"G1": ["2025年年报逾期未报"]}


def test_twice_weekly_periods_missing_are_counted_and_the_oldest_named(gridwatch_check):
    # in service from Wednesday 11-11: Fridays 11-13, 11-20 and Tuesdays 11-17, 11-24 are owed
    # by 11-24 21:00; 11-17 came in, late, on Wednesday 11-18 (Tuesday 11-17 had no report yet)
    rows = [report("G1", "2026-11-18 09:00", "twice_weekly")]
    r = run(gridwatch_check, rows, "2026-11-24 21:00", {"G1": "2026-11-11"}, expect=["twice_weekly"])
    assert r.value(MISSING, grid="G1", kind="twice_weekly") == 3
    assert r.value(OLDEST_DUE, grid="G1", kind="twice_weekly") == ts("2026-11-13 20:00")
    assert reasons(r) == {"G1": ["11月13日（周五）综合信息等 3 期逾期未报"]}


# --------------------------------------------------------------------------- a grid's start


def test_a_grid_that_came_into_service_on_1_november_owes_no_october_report(gridwatch_check):
    since = {"G1": "2026-11-01", "G2": "2026-10-01", "G3": "2026-11-15"}  # G3 not in service yet
    r = run(gridwatch_check, [], "2026-11-10 21:00", since, expect=["daily", "monthly"])
    assert r.by_grid(OVERDUE, kind="monthly") == {"G1": 0, "G2": 1, "G3": 0}
    assert r.by_grid(MISSING, kind="monthly") == {"G1": 0, "G2": 1, "G3": 0}
    assert reasons(r) == {"G1": ["今日信息未按时报送"], "G2": ["今日信息未按时报送", "十月月报逾期未报"]}
    # window [10-11 21:00, 11-10 21:00]: October (due 11-06) is expected of G2 only
    assert r.by_grid(ON_TIME, kind="monthly") == {"G2": 0}
    # daily reports due 10-12 .. 11-10 at 20:00: G1 owes those from 11-01 on, G3 none
    assert r.by_grid(ON_TIME, kind="daily") == {"G1": 0, "G2": 0}
    assert r.by_grid(DAILY) == {"G1": LATE, "G2": LATE}  # no light for a grid not in service
    lights = stored_lights(r)
    assert [day for g, day, _ in lights if g == "G1"] == [f"2026-11-{d:02d}" for d in range(1, 11)]
    assert len([1 for g, _, _ in lights if g == "G2"]) == 30
    assert not [1 for g, _, _ in lights if g == "G3"]


def test_a_first_run_does_not_paint_the_days_before_the_data(gridwatch_check):
    """The source's reports start on 11-19: no light before 11-19 is kept, none is owed."""
    rows = [
        report("G1", "2026-11-19 19:00", "daily"),
        report("G2", "2026-11-20 10:00", "daily", "2026-11-20"),
    ]
    since = {"G1": None, "G2": None, "G3": None, "G4": "2026-11-17"}  # G4's since is earlier than the data
    r = run(gridwatch_check, rows, "2026-11-21 21:00", since)
    assert stored_lights(r) == [
        ("G1", "2026-11-19", "green"),
        ("G1", "2026-11-20", "yellow"),
        ("G1", "2026-11-21", "yellow"),
        ("G2", "2026-11-19", "yellow"),
        ("G2", "2026-11-20", "green"),
        ("G2", "2026-11-21", "yellow"),
        ("G3", "2026-11-19", "yellow"),
        ("G3", "2026-11-20", "yellow"),
        ("G3", "2026-11-21", "yellow"),
        ("G4", "2026-11-17", "yellow"),
        ("G4", "2026-11-18", "yellow"),
        ("G4", "2026-11-19", "yellow"),
        ("G4", "2026-11-20", "yellow"),
        ("G4", "2026-11-21", "yellow"),
    ]
    assert r.by_grid(ON_TIME, kind="daily") == {"G1": 1 / 3, "G2": 1 / 3, "G3": 0, "G4": 0}


def test_the_start_comes_from_the_earliest_good_row(gridwatch_check):
    rows = [
        report("G1", "2026-11-10 10:00", "hourly"),  # a bad kind: left out of every figure, the start too
        report("G9", "2026-11-12 10:00", "daily"),  # an unknown grid
        report("G1", "2026-11-20 10:00", "monthly", "2026-10"),  # any kind of report starts the history
    ]
    r = run(gridwatch_check, rows, "2026-11-21 21:00", {"G1": None})
    assert [day for _, day, _ in stored_lights(r)] == ["2026-11-20", "2026-11-21"]


def test_with_no_report_at_all_the_history_starts_today(gridwatch_check):
    r = run(gridwatch_check, [], "2026-11-21 21:00", {"G1": None}, expect=["daily", "monthly"])
    assert stored_lights(r) == [("G1", "2026-11-21", "yellow")]
    assert r.value(DAILY, grid="G1") == LATE
    assert r.value(MISSING, grid="G1", kind="monthly") == 0


def test_a_bad_since_is_counted_and_the_grid_counts_from_the_data(gridwatch_check):
    rows = [report("G1", "2026-11-20 10:00", "daily")]
    r = run(gridwatch_check, rows, "2026-11-21 21:00", {"G1": "not a date"})
    assert r.rejected == {("data", "bad_timestamp"): 1}
    assert [day for _, day, _ in stored_lights(r)] == ["2026-11-20", "2026-11-21"]


# --------------------------------------------------------------------------- the words


@pytest.mark.parametrize(
    ("kind", "period", "now", "text"),
    [
        ("monthly", "2026-09", "2026-10-20", "九月月报"),
        ("monthly", "2025-12", "2026-01-10", "2025年12月月报"),
        ("quarterly", "2026-Q3", "2026-10-20", "第三季度季度分析"),
        ("quarterly", "2025-Q4", "2026-01-20", "2025年第四季度季度分析"),
        ("annual", "2025", "2026-02-05", "2025年年报"),
        ("twice_weekly", "2026-11-20", "2026-11-21", "11月20日（周五）综合信息"),
        ("twice_weekly", "2026-11-24", "2026-11-25", "11月24日（周二）综合信息"),
        ("twice_weekly", "2025-12-30", "2026-01-02", "2025年12月30日（周二）综合信息"),
        ("weekly", "2026-W47", "2026-11-25", "第47周（11月16日至22日）周报告单"),
        ("weekly", "2026-W49", "2026-12-10", "第49周（11月30日至12月6日）周报告单"),
        ("weekly", "2025-W52", "2026-01-05", "2025年第52周（12月22日至28日）周报告单"),
        ("daily", "2026-11-20", "2026-11-21", "11月20日日报"),
    ],
)
def test_a_period_is_named_in_natural_chinese(kind, period, now, text):
    assert reports.period_name(kind, period, date.fromisoformat(now).year) == text


def test_an_overdue_sample_alone_gives_the_kind():
    check = object.__new__(reports.ReportsCheck)  # no zone known: the kind alone
    samples = [reports.Sample(OVERDUE, {"grid": "G1", "kind": "monthly"}, 1.0)]
    assert [r.text for r in check.reasons(samples)] == ["月报逾期未报"]


def test_the_new_metrics_are_produced_for_periodic_kinds():
    options = reports.ReportsCheck.Options
    counts = {reports.EXPECTED, reports.ON_TIME_COUNT}  # the reporting ratio's denominator and numerator
    assert reports.ReportsCheck.produces(options()) == {DAILY, ON_TIME, *counts}
    assert reports.ReportsCheck.produces(options(expect=["weekly"])) == {
        *counts,
        ON_TIME,
        OVERDUE,
        DUE_SOON,
        MISSING,
        OLDEST_DUE,
        OLDEST_AGE,
    }
    for metric in (MISSING, OLDEST_DUE, OLDEST_AGE):
        assert reports.ReportsCheck.metrics[metric]


def test_the_look_back_must_be_positive():
    with pytest.raises(ValueError):
        reports.ReportsCheck.Options(lookback="0s")


# --------------------------------------------------------------------------- the calendar under it


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["twice_weekly", "weekly"]),
    at=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31)),
)
@example(kind="twice_weekly", at=datetime(2026, 11, 20, 20, 0))  # Friday's due time: Friday's is the last due
@example(kind="twice_weekly", at=datetime(2026, 11, 20, 19, 59, 59))
@example(kind="weekly", at=datetime(2026, 11, 21, 0, 0))  # week 47's due time
@example(kind="weekly", at=datetime(2026, 11, 20, 23, 59, 59))
def test_the_periods_around_a_moment_are_the_calendars(kind: str, at: datetime) -> None:
    around = reports.Around(TZ, time(20, 0))
    local = at.replace(tzinfo=TZ)
    latest, _ = latest_due_period(kind, local)
    upcoming, _ = next_due_period(kind, local)
    before, last, after = around(kind, local.timestamp())
    assert (before, after) == (latest, upcoming)
    assert last == reports.period_span(kind, latest)[1]


# --------------------------------------------------------------------------- kept state equals a full run


class Steps:
    """A reports check kept between runs (as the daemon keeps it) beside a fresh one per step,
    each with a state database of its own."""

    def __init__(self, tmp_path: Path, since: dict[str, str | None], options: str) -> None:
        self.tmp_path, self.db = tmp_path, tmp_path / "city.db"
        write_standard_db(self.db, {"registry": registry(since)})
        self.options = options
        self.kept, self.kept_state = self._runtime("kept", "3650d")
        self.n = 0

    def _runtime(self, name: str, resync: str) -> tuple[Runtime, Store]:
        path = self.tmp_path / f"{name}.toml"
        path.write_text(
            f'timezone = "Asia/Shanghai"\n[state]\npath = "{name}-state.db"\n[grids]\nsource = "city"\n'
            '[sources.city]\ntype = "sqlite"\npath = "city.db"\ntables = { grids = "registry" }\n'
            '[[checks]]\nname = "reports"\ntype = "reports"\n'
            f'source = "city"\nresync = "{resync}"\n{self.options}\n',
            encoding="utf-8",
        )
        settings_, host = config.load(path)
        runtime = Runtime(settings_, host)
        runtime.state = state = Store(settings_.state_path)
        state.open()
        return runtime, state

    def add(self, *rows: dict[str, Any]) -> None:
        with sqlite3.connect(self.db) as db:
            for row in rows:
                db.execute(
                    "INSERT INTO reports (report_id, grid_id, kind, period, submitted_at) VALUES (?, ?, ?, ?, ?)",
                    [row["report_id"], row["grid_id"], row["kind"], row["period"], row["submitted_at"]],
                )
        db.close()

    def run(self, now: str) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
        at = datetime.fromisoformat(now).replace(tzinfo=TZ)
        self.n += 1
        full, state = self._runtime(f"full{self.n}", "0s")
        try:
            want = _samples(full, at)
        finally:
            full.close()
            state.close()
        got = _samples(self.kept, at)
        assert got == want, now
        # the lights a full run stores, the kept check has stored alike
        full_lights = lights(self.tmp_path / f"full{self.n}-state.db")
        kept_lights = lights(self.tmp_path / "kept-state.db")
        assert {k: kept_lights.get(k) for k in full_lights} == full_lights, now
        return got

    def close(self) -> None:
        self.kept.close()
        self.kept_state.close()


def lights(state: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(state) as db:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'reports_daily_lights'").fetchone()
        rows = db.execute("SELECT grid_id, day, light FROM reports_daily_lights").fetchall() if exists else []
    db.close()
    return {(g, d): light for g, d, light in rows}


def _samples(runtime: Runtime, now: datetime) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    async def go() -> list[Any]:
        results = Results()
        results.replace(*runtime.states())
        outcome = await runtime.run(runtime.runners["reports"], now, results)
        assert outcome.outcome == "success", outcome.error
        return sorted((s.metric, tuple(sorted(s.labels.items())), round(s.value, 9)) for s in outcome.samples)

    return asyncio.run(go())


def test_a_report_read_later_but_sent_earlier_moves_a_report_without_a_period(tmp_path):
    steps = Steps(tmp_path, {"G1": "2026-11-18"}, 'expect = ["twice_weekly"]')
    try:
        steps.add(report("G1", "2026-11-23 10:00:00", "twice_weekly"))  # Monday, no period
        got = steps.run("2026-11-24 21:00")
        # Friday's had not come: the Monday report is Friday's, and Tuesday's is missing
        assert (MISSING, (("grid", "G1"), ("kind", "twice_weekly")), 1.0) in got
        # Friday's report, sent on Friday, reaches the platform only now: the Monday one is Tuesday's
        steps.add(report("G1", "2026-11-20 19:00:00", "twice_weekly", "2026-11-20"))
        got = steps.run("2026-11-24 21:05")
        assert (MISSING, (("grid", "G1"), ("kind", "twice_weekly")), 0.0) in got
        steps.add(report("G1", "2026-11-27 10:00:00", "twice_weekly"))  # Friday 11-27, before the cutoff
        steps.run("2026-11-28 12:00")
    finally:
        steps.close()


# With a 30-day look-back the check keeps twice-weekly reports for 30 days and settles those sent
# more than 22 days ago, once a day: on 11-25 12:00 those sent before 11-03 00:00. Periods due
# from 10-26 12:00 on are counted: Tuesday 10-27, Friday 10-30, Tuesday 11-03 ... Tuesday 11-24.
SETTLING = 'expect = ["twice_weekly"]\nlookback = "30d"'


# and every period from Friday 11-06 on is sent, naming itself
FILLER = [
    report("G1", f"2026-11-{d:02d} 19:00:00", "twice_weekly", f"2026-11-{d:02d}") for d in (6, 10, 13, 17, 20, 24)
]


def missing_twice_weekly(got: list[Any]) -> float:
    [value] = [v for m, labels, v in got if m == MISSING and dict(labels)["grid"] == "G1"]
    return value


def test_a_report_sent_before_the_settled_ones_starts_the_check_over(tmp_path):
    steps = Steps(tmp_path, {"G1": "2026-10-20"}, SETTLING)
    try:
        # Monday 11-02 with Friday 10-30 unsent: Friday's
        steps.add(report("G1", "2026-11-02 10:00:00", "twice_weekly"), *FILLER)
        got = steps.run("2026-11-25 12:00")
        assert missing_twice_weekly(got) == 2  # Tuesdays 10-27 and 11-03
        assert steps.kept.runners["reports"].check.settled == 1  # type: ignore[attr-defined]
        # Friday's report, sent on Friday 10-30, is read only now: the Monday one was Tuesday's
        steps.add(report("G1", "2026-10-30 19:00:00", "twice_weekly", "2026-10-30"))
        got = steps.run("2026-11-25 12:05")
        assert missing_twice_weekly(got) == 1  # Tuesday 10-27
    finally:
        steps.close()


def test_a_report_older_than_the_history_read_starts_the_check_over(tmp_path):
    steps = Steps(tmp_path, {"G1": None}, 'expect = ["daily", "twice_weekly"]\nlookback = "30d"')
    try:
        # the history starts on 10-29: Tuesday 10-27 is owed by no one, the Friday report is
        # Friday's and the Monday one Tuesday 11-03's
        steps.add(
            report("G1", "2026-10-29 10:00:00", "daily"),
            report("G1", "2026-10-30 19:00:00", "twice_weekly"),
            report("G1", "2026-11-02 10:00:00", "twice_weekly"),
            *FILLER,
        )
        got = steps.run("2026-11-25 12:00")
        assert missing_twice_weekly(got) == 0
        # a report of 10-20 read only now: the history starts then, Tuesday 10-27 is owed, the
        # Friday report is its (late), the Monday one Friday's, and Tuesday 11-03 has none
        steps.add(report("G1", "2026-10-20 10:00:00", "daily"))
        got = steps.run("2026-11-25 12:05")
        assert missing_twice_weekly(got) == 1
        steps.run("2026-11-27 12:05")
    finally:
        steps.close()


def test_a_changed_since_is_taken_up(tmp_path):
    steps = Steps(tmp_path, {"G1": "2026-10-20"}, SETTLING)
    try:
        steps.add(
            report("G1", "2026-10-30 19:00:00", "twice_weekly"),  # Tuesday 10-27's (late)
            report("G1", "2026-11-02 10:00:00", "twice_weekly"),  # Friday 10-30's (late)
            *FILLER,
        )
        got = steps.run("2026-11-25 12:00")
        assert missing_twice_weekly(got) == 1  # Tuesday 11-03
        # in service from 10-28 after all: the Friday report is Friday's, the Monday one Tuesday's
        with sqlite3.connect(steps.db) as db:
            db.execute("UPDATE registry SET since = '2026-10-28'")
        db.close()
        assert steps.kept.registry is not None
        steps.kept.registry.invalidate()  # the registry is reloaded at most every 30 s
        got = steps.run("2026-11-25 12:01")
        assert missing_twice_weekly(got) == 0
    finally:
        steps.close()


def test_stored_lights_before_a_since_are_removed(tmp_path):
    """Lights kept for days before a grid's ``since`` (an older gridwatch painted a first run's
    history yellow) are no lights at all: the check removes them. A start that comes from the
    data removes nothing: a platform may archive its old rows, the kept history stays."""
    steps = Steps(tmp_path, {"G1": "2026-11-03", "G2": None}, 'expect = ["daily"]')
    try:
        old = [("G1", "2026-10-20", "yellow"), ("G1", "2026-11-02", "yellow"), ("G2", "2026-10-20", "yellow")]
        steps.kept_state.call(lambda db: reports._store_lights(db, old))
        steps.add(report("G1", "2026-11-03 19:00:00", "daily"), report("G2", "2026-11-03 19:00:00", "daily"))
        steps.run("2026-11-05 21:00")
        kept = lights(tmp_path / "kept-state.db")
        assert sorted(k for k in kept if k[0] == "G1") == [("G1", f"2026-11-0{d}") for d in (3, 4, 5)]
        assert sorted(k for k in kept if k[0] == "G2") == [("G2", "2026-10-20")] + [
            ("G2", f"2026-11-0{d}") for d in (3, 4, 5)
        ]
    finally:
        steps.close()


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(reports.REPORT_KINDS),
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    zone=st.sampled_from(["Asia/Shanghai", "America/Havana", "Europe/Berlin", "UTC"]),
    cutoff=st.times(),
)
def test_a_due_time_gives_back_its_period(kind: str, day: date, zone: str, cutoff: time) -> None:
    """What the oldest-missing gauge publishes is enough to name the period."""
    tz = ZoneInfo(zone)
    period = reports.period_for(kind, day)
    due = reports.due_time(kind, period, tz, cutoff.replace(tzinfo=None))
    assert reports.period_due_at(kind, due.timestamp(), tz) == period
