"""The ``patrols`` check against the rule book (DOMAIN.md §1, §5); expected values by hand.

Working hours 07:15–20:15 local (Asia/Shanghai, UTC+8), both ends included; a day's
hours have passed once now is after 20:15. A grid is overdue when it has had no patrol
since the start of the most recent passed working window (daily rule), or, for a zoned
grid inside working hours, when now − max(last patrol, today 07:15) exceeds its zone's
interval (red 1h, yellow 2h, blue 4h). 2026-03-10 is a Tuesday, 2026-03-08 a Sunday.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from gridwatch_plugins import patrols
from pydantic import ValidationError

from gridwatch.plugins import PluginHost
from gridwatch.pytest_plugin import CheckRunner
from gridwatch.testing import CheckResult

GRIDS = [
    {
        "grid_id": "R",
        "name": "红区网格",
        "community": "东湖社区",
        "street": "城关街道",
        "zone": "red",
    },
    {
        "grid_id": "Y",
        "name": "黄区网格",
        "community": "东湖社区",
        "street": "城关街道",
        "zone": "yellow",
    },
    {
        "grid_id": "B",
        "name": "蓝区网格",
        "community": "东湖社区",
        "street": "城关街道",
        "zone": "blue",
    },
    {
        "grid_id": "U",
        "name": "普通网格",
        "community": "东湖社区",
        "street": "城关街道",
        "zone": None,
    },
]


def patrol(pid: str, grid: str | None, at: str | None) -> dict[str, Any]:
    return {"patrol_id": pid, "grid_id": grid, "worker_id": "W-7", "patrolled_at": at}


def run(gridwatch_check: CheckRunner, rows: list[dict[str, Any]], now: str, **options: Any) -> CheckResult:
    # each call runs on a database of its own
    result = gridwatch_check("patrols", {"grids": GRIDS, "patrols": rows}, now=now, options=options)
    assert result.error is None, result.error
    return result


def overdue(gridwatch_check: CheckRunner, grid: str, last: str | None, now: str, **options: Any) -> float | None:
    rows = [] if last is None else [patrol("p1", grid, last)]
    return run(gridwatch_check, rows, now, **options).value("gridwatch_patrol_overdue", grid=grid)


@pytest.mark.parametrize(
    ("grid", "now", "expected"),
    [
        ("R", "2026-03-10 10:00:00", 0),  # 1h since 09:00: not more than 1h
        ("R", "2026-03-10 10:00:01", 1),  # 1h 1s > 1h
        ("Y", "2026-03-10 11:00:00", 0),  # 2h: not more than 2h
        ("Y", "2026-03-10 11:00:01", 1),
        ("B", "2026-03-10 13:00:00", 0),  # 4h
        ("B", "2026-03-10 13:00:01", 1),
        ("U", "2026-03-10 13:00:01", 0),  # no zone: patrolled inside today's hours, fine
    ],
)
def test_zone_interval_since_last_patrol(gridwatch_check: CheckRunner, grid: str, now: str, expected: int):
    assert overdue(gridwatch_check, grid, "2026-03-10 09:00:00", now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-10 08:15:00", 0),  # 1h since 07:15 (the later of 19:00 yesterday and 07:15)
        ("2026-03-10 08:15:01", 1),  # 1h 1s since the start of working hours
        ("2026-03-10 07:14:59", 0),  # before hours: only yesterday's hours count, patrolled
        ("2026-03-10 20:15:01", 1),  # after hours: today's passed without a patrol (daily)
    ],
)
def test_zoned_grid_counts_from_the_start_of_working_hours(
    gridwatch_check: CheckRunner, now: str, expected: int
) -> None:
    # last patrol yesterday 19:00, inside yesterday's hours
    assert overdue(gridwatch_check, "R", "2026-03-09 19:00:00", now) == expected


def test_zone_rule_applies_only_inside_working_hours(gridwatch_check: CheckRunner) -> None:
    # red grid, last patrol today 19:00; today's hours had a patrol, so the daily rule holds
    last = "2026-03-10 19:00:00"
    assert overdue(gridwatch_check, "R", last, "2026-03-10 20:15:00") == 1  # 1h15m > 1h, at the end
    assert overdue(gridwatch_check, "R", last, "2026-03-10 20:15:01") == 0  # hours over: daily rule
    assert overdue(gridwatch_check, "R", last, "2026-03-11 06:00:00") == 0  # before hours next day
    # a patrol before yesterday's hours: yesterday's hours passed without one
    assert overdue(gridwatch_check, "R", "2026-03-09 07:00:00", "2026-03-10 06:00:00") == 1


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [
        # now 12:00: the last passed hours are yesterday's, [03-09 07:15, 03-09 20:15]
        ("2026-03-09 07:15:00", "2026-03-10 12:00:00", 0),  # at their start: inside
        ("2026-03-09 07:14:59", "2026-03-10 12:00:00", 1),  # a second before: outside
        ("2026-03-09 20:15:00", "2026-03-10 12:00:00", 0),  # at their end: inside
        # 20:16 is after yesterday's hours, which passed without a patrol: overdue from
        # 20:15 until this patrol at 20:16 — so not overdue now
        ("2026-03-09 20:16:00", "2026-03-10 12:00:00", 0),
        # now 20:15:00 is still inside today's hours, so yesterday's are the last passed
        ("2026-03-09 12:00:00", "2026-03-10 20:15:00", 0),
        # at 20:15:01 today's hours have passed without a patrol
        ("2026-03-09 12:00:00", "2026-03-10 20:15:01", 1),
        # a patrol at 06:00 today is before today's hours, which then pass without one
        ("2026-03-10 06:00:00", "2026-03-10 21:00:00", 1),
        ("2026-03-10 06:00:00", "2026-03-10 12:00:00", 0),  # still covers yesterday's rule
        # three days without a patrol: still overdue (stays so until the next patrol)
        ("2026-03-07 12:00:00", "2026-03-10 12:00:00", 1),
        # weekends count: Sunday 03-08's hours passed without a patrol
        ("2026-03-07 12:00:00", "2026-03-08 21:00:00", 1),
    ],
)
def test_daily_rule_for_an_unzoned_grid(gridwatch_check: CheckRunner, last: str, now: str, expected: int):
    assert overdue(gridwatch_check, "U", last, now) == expected


def test_never_patrolled(gridwatch_check: CheckRunner) -> None:
    result = run(gridwatch_check, [patrol("p1", "U", "2026-03-10 09:00:00")], "2026-03-10 09:30:00")
    # R, Y and B were never patrolled: overdue, and no last-patrol sample for them
    assert result.by_grid("gridwatch_patrol_overdue") == {"R": 1, "Y": 1, "B": 1, "U": 0}
    assert set(result.by_grid("gridwatch_patrol_last_timestamp_seconds")) == {"U"}


def test_last_timestamp_is_the_latest_patrol_converted_from_its_offset(gridwatch_check: CheckRunner) -> None:
    rows = [
        patrol("p1", "R", "2026-03-10 08:00:00"),
        patrol("p2", "R", "2026-03-10T01:00:00+00:00"),  # 01:00 UTC = 09:00 local: the latest
        patrol("p3", "R", "2026-03-09 19:00:00"),
    ]
    result = run(gridwatch_check, rows, "2026-03-10 10:00:00")
    last = datetime(2026, 3, 10, 1, 0, tzinfo=UTC).timestamp()
    result.assert_value("gridwatch_patrol_last_timestamp_seconds", last, grid="R")
    # 1h since 09:00 local: on time (read as 01:00 local it would be 2h45m since 07:15)
    result.assert_value("gridwatch_patrol_overdue", 0, grid="R")


def test_bad_rows_are_counted_and_left_out(gridwatch_check: CheckRunner) -> None:
    rows = [
        patrol("p1", "U", "2026-03-09 12:00:00"),  # good: U patrolled in yesterday's hours
        patrol("p1", "R", "2026-03-10 11:00:00"),  # duplicate_id
        patrol("p2", "G9", "2026-03-10 11:00:00"),  # unknown_grid
        patrol("p3", None, "2026-03-10 11:00:00"),  # null_grid
        patrol("p4", "R", "10 o'clock"),  # bad_timestamp
        patrol("p5", "R", None),  # bad_timestamp (NULL)
        patrol("p6", "R", "2026-03-10 13:00:01"),  # future_timestamp: 1 h past the clock (now)
    ]
    result = run(gridwatch_check, rows, "2026-03-10 12:00:00")
    assert result.rejected == {
        ("data", "duplicate_id"): 1,
        ("data", "unknown_grid"): 1,
        ("data", "null_grid"): 1,
        ("data", "bad_timestamp"): 2,
        ("data", "future_timestamp"): 1,
    }
    # R has no good patrol: never patrolled; U's good patrol keeps it on time
    result.assert_value("gridwatch_patrol_overdue", 1, grid="R")
    result.assert_absent("gridwatch_patrol_last_timestamp_seconds", grid="R")
    result.assert_value("gridwatch_patrol_overdue", 0, grid="U")


def test_custom_hours_and_zone_intervals(gridwatch_check: CheckRunner) -> None:
    opts = {"work_start": "08:00", "work_end": "18:00", "zone_intervals": {"red": "30m"}}
    rows = [
        patrol("p1", "R", "2026-03-10 09:00:00"),
        patrol("p2", "Y", "2026-03-10 09:00:00"),
        patrol("p3", "U", "2026-03-09 07:30:00"),  # before yesterday's 08:00 start
    ]
    result = run(gridwatch_check, rows, "2026-03-10 09:30:01", **opts)
    assert result.by_grid("gridwatch_patrol_overdue") == {
        "R": 1,  # 30m 1s > 30m
        "Y": 0,  # yellow keeps its 2h default
        "B": 1,  # never patrolled
        "U": 1,  # yesterday's 08:00–18:00 passed without a patrol
    }


def test_working_hours_must_be_a_same_day_window() -> None:
    with pytest.raises(ValidationError):
        patrols.PatrolsCheck.Options(work_start="20:15", work_end="07:15")
    with pytest.raises(ValidationError):
        patrols.PatrolsCheck.Options(zone_intervals={"green": "1h"})


def test_labels_carry_only_the_grid(gridwatch_check: CheckRunner) -> None:
    result = run(gridwatch_check, [patrol("P-1", "R", "2026-03-10 09:00:00")], "2026-03-10 09:30:00")
    assert result.samples
    assert all(set(s.labels) == {"grid"} for s in result.samples)


def test_default_rule_references_produced_metric(gridwatch_check: CheckRunner) -> None:
    host = PluginHost.default(entry_points=False)
    assert host.check_type("patrols") is patrols.PatrolsCheck
    (rule,) = patrols.default_rules()
    assert rule["alert"] == "PatrolOverdue"
    assert rule["above"] == {"warning": 0}
    result = run(gridwatch_check, [], "2026-03-10 09:30:00")
    assert rule["metric"] in {s.metric for s in result.samples}
    assert rule["metric"] in patrols.PatrolsCheck.metrics
    labels = {"grid": "R", "grid_name": "红区网格", "community": "东湖社区", "street": "城关街道"}
    for key in ("summary", "description"):
        assert rule[key].format(**labels, value=1)
