"""The ``patrols`` check against the rule book (DOMAIN.md §1, §5); expected values by hand.

Working hours 07:15–20:15 local (Asia/Shanghai, UTC+8), both ends included; a day's
hours have passed once now is after 20:15. A grid is overdue when it has had no patrol
since the start of the most recent passed working window (daily rule), or, for a zoned
grid inside working hours, when now − max(last patrol, today 07:15) exceeds its zone's
interval (red 1h, yellow 2h, blue 4h). 2026-03-10 is a Tuesday, 2026-03-08 a Sunday.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from gridwatch_plugins import patrols
from pydantic import ValidationError

from gridwatch.plugins import PluginHost
from gridwatch.pytest_plugin import CheckRunner
from gridwatch.testing import CheckResult, write_standard_db

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
    result = run(
        gridwatch_check, rows, "2026-03-10 12:00:00", max_rejected_ratio=1
    )  # every rule in one small table, most rows bad: the share is tests/test_rejected.py's
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
    rule = next(r for r in patrols.default_rules() if r["alert"] == "PatrolOverdue")
    assert rule["above"] == {"warning": 0}
    result = run(gridwatch_check, [], "2026-03-10 09:30:00")
    assert rule["metric"] in {s.metric for s in result.samples}
    assert rule["metric"] in patrols.PatrolsCheck.metrics
    labels = {"grid": "R", "grid_name": "红区网格", "community": "东湖社区", "street": "城关街道"}
    for key in ("summary", "description"):
        assert rule[key].format(**labels, grid_title="城关街道东湖社区红区网格", value=1)


# -- who patrolled (DOMAIN.md §1): only the grid's own workers keep the cadence; a supervisor
# must come every 7 × 24 h, counted from the later of the last supervisor patrol and the grid's
# start (§5: ``grids.since``, else the earliest row of the patrols table) --------------------

SUP_LAST = "gridwatch_patrol_supervisor_last_timestamp_seconds"
SUP_OVERDUE = "gridwatch_patrol_supervisor_overdue"


def by(pid: str, grid: str, at: str, role: str | None) -> dict[str, Any]:
    return {**patrol(pid, grid, at), "role": role}


def local(at: str) -> float:
    """Epoch seconds of a local (UTC+8) wall-clock time."""
    return datetime.fromisoformat(at + "+08:00").timestamp()


@pytest.fixture(params=["rows", "folded"])
def patrols_run(request: pytest.FixtureRequest, gridwatch_check: CheckRunner, tmp_path: Path) -> Any:
    """Runs the check on rows read one by one (the test kit's table has no unique index), or
    folded by SQLite per grid and role (a unique index on patrol_id lets it vouch for them)."""
    count = iter(range(1000))

    def go(
        rows: list[dict[str, Any]],
        now: str,
        grids: list[dict[str, Any]] = GRIDS,
        schema: dict[str, list[str]] | None = None,
        **options: Any,
    ) -> CheckResult:
        tables = {"grids": grids, "patrols": rows}
        if request.param == "rows":
            result = gridwatch_check("patrols", tables, now=now, options=options, schema=schema)
        else:
            db = write_standard_db(tmp_path / f"folded{next(count)}.db", tables, schema)
            with contextlib.closing(sqlite3.connect(db)) as conn, conn:
                conn.execute("CREATE UNIQUE INDEX patrols_id ON patrols (patrol_id)")
            source = f'type = "sqlite"\npath = "{db}"'
            result = gridwatch_check("patrols", {}, now=now, options=options, source=source)
        assert result.error is None, result.error
        return result

    return go


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("supervisor", 1),  # 督导员: not the grid's own worker, the daily rule is not met
        ("head", 1),  # 网格长: neither
        (" Supervisor ", 1),  # case and spaces are forgiven: still a supervisor
        ("HEAD", 1),
        ("worker", 0),  # the grid worker: patrolled inside the last passed hours
        (" Worker", 0),
        (None, 0),  # NULL is the grid worker
        ("", 0),  # so is empty
        ("  ", 0),  # and blank
    ],
)
def test_only_the_grids_own_workers_keep_the_daily_rule(patrols_run: Any, role: str | None, expected: int) -> None:
    # now 12:00: the last passed hours are yesterday's [03-09 07:15, 20:15]; the one patrol,
    # at 03-09 10:00, is inside them — if the grid's own worker made it
    result = patrols_run([by("p1", "U", "2026-03-09 10:00:00", role)], "2026-03-10 12:00:00")
    result.assert_value("gridwatch_patrol_overdue", expected, grid="U")
    if expected:  # nobody of the grid patrolled: no last patrol either
        result.assert_absent("gridwatch_patrol_last_timestamp_seconds", grid="U")
    assert result.rejected == {}


def test_a_supervisor_patrol_does_not_reset_the_zone_cadence(patrols_run: Any) -> None:
    rows = [
        by("p1", "R", "2026-03-10 09:00:00", "worker"),
        by("p2", "R", "2026-03-10 10:00:00", "supervisor"),
        by("p3", "R", "2026-03-10 10:00:00", "head"),
    ]
    result = patrols_run(rows, "2026-03-10 10:00:01")
    # red zone: 1h 1s since the worker's 09:00 > 1h (counting the 10:00 patrols it would be 1s)
    result.assert_value("gridwatch_patrol_overdue", 1, grid="R")
    result.assert_value("gridwatch_patrol_last_timestamp_seconds", local("2026-03-10 09:00:00"), grid="R")
    result.assert_value(SUP_LAST, local("2026-03-10 10:00:00"), grid="R")  # the head's patrol is not one


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-10 12:00:00", 0),  # exactly 7 × 24 h since 03-03 12:00: not more
        ("2026-03-10 12:00:01", 1),  # 7d 1s > 7d
    ],
)
def test_supervisor_overdue_after_seven_days(patrols_run: Any, now: str, expected: int) -> None:
    # the supervisor's patrol is also the table's earliest row, so it is the later of the two
    result = patrols_run([by("p1", "U", "2026-03-03 12:00:00", "supervisor")], now)
    result.assert_value(SUP_OVERDUE, expected, grid="U")
    result.assert_value(SUP_LAST, local("2026-03-03 12:00:00"), grid="U")


def test_the_supervisor_interval_is_an_option(patrols_run: Any) -> None:
    result = patrols_run([by("p1", "U", "2026-03-07 11:59:59", "supervisor")], "2026-03-10 12:00:00")
    result.assert_value(SUP_OVERDUE, 0, grid="U")  # 3d 1s: well inside the default 7d
    result = patrols_run(
        [by("p1", "U", "2026-03-07 11:59:59", "supervisor")], "2026-03-10 12:00:00", supervisor_interval="3d"
    )
    result.assert_value(SUP_OVERDUE, 1, grid="U")  # 3d 1s > 3d


SINCE_GRIDS = [{**g, "since": None} for g in GRIDS]


@pytest.mark.parametrize(
    ("grid", "since", "now", "expected"),
    [
        # U (no zone), never patrolled, in service from "since" (DOMAIN.md §5: nothing owed before it)
        ("U", "2026-03-10", "2026-03-10 12:00:00", 0),  # started today: yesterday's hours owed nothing
        ("U", "2026-03-10", "2026-03-10 20:15:00", 0),  # today's hours not passed yet (end included)
        ("U", "2026-03-10", "2026-03-10 20:15:01", 1),  # today's hours passed without a patrol
        ("U", "2026-03-09", "2026-03-10 12:00:00", 1),  # yesterday was a day of service: missed
        ("U", "2026-03-11", "2026-03-11 06:00:00", 0),  # before 07:15 the passed hours are 03-10's
        # R (red, 1 h), never patrolled, started today: owed from today's 07:15
        ("R", "2026-03-10", "2026-03-10 08:15:00", 0),  # 1 h since 07:15: on time
        ("R", "2026-03-10", "2026-03-10 08:15:01", 1),  # 1 h 1 s > 1 h
        ("R", "2026-03-11", "2026-03-10 12:00:00", 0),  # not in service yet: owes nothing today
    ],
)
def test_the_daily_and_zone_rules_count_from_the_grids_start(
    patrols_run: Any, grid: str, since: str, now: str, expected: int
) -> None:
    grids = [{**g, "since": since if g["grid_id"] == grid else None} for g in GRIDS]
    result = patrols_run([by("p1", "B", "2026-03-01 09:00:00", "worker")], now, grids=grids)
    result.assert_value("gridwatch_patrol_overdue", expected, grid=grid)


@pytest.mark.parametrize(
    ("since", "supervisor", "expected"),
    [
        # now 03-10 12:00; the grid's start is 00:00 of its "since" day
        ("2026-03-07", None, 0),  # in service 3d 12h: not 7 days yet
        ("2026-03-02", None, 1),  # 8d 12h > 7d
        ("2026-03-03", None, 1),  # 7d 12h > 7d
        ("2026-03-02", "2026-03-04 09:00:00", 0),  # the later is the patrol: 6d 3h
        ("2026-03-07", "2026-02-01 09:00:00", 0),  # a patrol before the start: the start is later
        ("2026-03-10", None, 0),  # came into service today
    ],
)
def test_supervisor_duty_counts_from_the_grids_start(
    patrols_run: Any, since: str, supervisor: str | None, expected: int
) -> None:
    grids = [{**g, "since": since if g["grid_id"] == "U" else None} for g in GRIDS]
    # a worker's patrol on 01-05 is the table's earliest row: "since" wins over it
    rows = [by("p1", "B", "2026-01-05 09:00:00", "worker")]
    if supervisor:
        rows.append(by("p2", "U", supervisor, "supervisor"))
    result = patrols_run(rows, "2026-03-10 12:00:00", grids=grids)
    result.assert_value(SUP_OVERDUE, expected, grid="U")
    result.assert_value(SUP_OVERDUE, 1, grid="R")  # no "since": from 01-05, 64 days


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-12 08:00:00", 0),  # exactly 7 × 24 h since the earliest row, 03-05 08:00
        ("2026-03-12 08:00:01", 1),  # 7d 1s
    ],
)
def test_without_since_the_duty_counts_from_the_tables_earliest_row(patrols_run: Any, now: str, expected: int):
    rows = [
        by("p1", "U", "2026-03-05 08:00:00", None),  # the earliest good row, of another grid
        by("p2", "R", "2026-03-09 08:00:00", "head"),
        by("p3", "B", "2026-02-01 08:00:00", "visitor"),  # earlier, but a bad row: not the start
        by("p4", "Y", "2026-02-01 08:00:00x", "worker"),  # so is a bad timestamp
    ]
    result = patrols_run(rows, now)
    assert result.by_grid(SUP_OVERDUE) == {"R": expected, "Y": expected, "B": expected, "U": expected}
    assert result.by_grid(SUP_LAST) == {}  # no supervisor has patrolled
    assert result.rejected == {("data", "bad_role"): 1, ("data", "bad_timestamp"): 1}


def test_an_empty_table_owes_no_supervisor_patrol(patrols_run: Any) -> None:
    # no "since" and no row: the platform's history has not started, nothing is overdue yet
    schema = {"patrols": ["role"]}  # the table has the role column, and no row
    result = patrols_run([], "2026-03-10 12:00:00", grids=SINCE_GRIDS, schema=schema)
    result.assert_value(SUP_OVERDUE, 0, grid="U")
    result.assert_value("gridwatch_patrol_overdue", 1, grid="U")  # the daily rule as before


def test_an_unknown_role_is_a_bad_row(patrols_run: Any) -> None:
    rows = [
        by("p1", "U", "2026-03-10 09:00:00", "督导员"),  # a code value the rule book does not know
        by("p2", "U", "2026-03-10 09:30:00", "visitor"),
        by("p3", "R", "2026-03-10 09:30:00", "worker"),
    ]
    result = patrols_run(rows, "2026-03-10 10:00:00")
    assert result.rejected == {("data", "bad_role"): 2}
    # left out of every figure: U was never patrolled
    result.assert_value("gridwatch_patrol_overdue", 1, grid="U")
    result.assert_absent("gridwatch_patrol_last_timestamp_seconds", grid="U")
    result.assert_absent(SUP_LAST, grid="U")


def test_without_a_role_column_nothing_changes(patrols_run: Any, gridwatch_check: CheckRunner) -> None:
    rows = [patrol("p1", "U", "2026-03-10 09:00:00"), patrol("p2", "R", "2026-03-01 09:00:00")]
    result = patrols_run(rows, "2026-03-10 09:30:00")
    # every patrol is the grid worker's, and nobody can tell a supervisor's: no supervisor series
    assert {s.metric for s in result.samples} == {"gridwatch_patrol_overdue", "gridwatch_patrol_last_timestamp_seconds"}
    # R's last patrol 03-01 is older than yesterday's hours; Y and B never patrolled
    assert result.by_grid("gridwatch_patrol_overdue") == {"R": 1, "Y": 1, "B": 1, "U": 0}
    # the same rows with an all-NULL role column: the same worker figures, plus supervisor ones
    with_role = patrols_run([{**r, "role": None} for r in rows], "2026-03-10 09:30:00")
    assert worker_series(with_role) == worker_series(result)
    assert with_role.by_grid(SUP_OVERDUE) == {"R": 1, "Y": 1, "B": 1, "U": 1}  # 9d since 03-01 09:00


def worker_series(result: CheckResult) -> list[tuple[Any, float]]:
    return sorted((s.key(), s.value) for s in result.samples if s.metric not in (SUP_LAST, SUP_OVERDUE))


def test_supervisor_series_carry_only_the_grid(patrols_run: Any) -> None:
    result = patrols_run([by("P-1", "R", "2026-03-10 09:00:00", "supervisor")], "2026-03-10 09:30:00")
    assert any(s.metric == SUP_LAST for s in result.samples)
    assert all(set(s.labels) == {"grid"} for s in result.samples)


def test_supervisor_overdue_warns_and_turns_the_grid_yellow(gridwatch_check: CheckRunner) -> None:
    rows = [by("p1", "R", "2026-03-01 09:00:00", "supervisor"), by("p2", "U", "2026-03-09 09:00:00", "supervisor")]
    result = run(gridwatch_check, rows, "2026-03-10 09:30:00")
    # R: 9d 30m since its supervisor's patrol > 7d; U: 1d 30m
    assert result.by_grid(SUP_OVERDUE) == {"R": 1, "Y": 1, "B": 1, "U": 0}  # Y, B: from 03-01 09:00 too
    fired = [a for a in result.alerts() if a.alert == "SupervisorPatrolOverdue"]
    assert sorted((a.labels["grid"], a.severity) for a in fired) == [
        ("B", "warning"),
        ("R", "warning"),
        ("Y", "warning"),
    ]
    red = next(a for a in fired if a.labels["grid"] == "R")
    for text in (red.summary, red.description):
        assert "督导员" in text and "红区网格" in text
        assert not any(word in text for word in ("supervisor", "worker", "W-7", "p1"))
    check = object.__new__(patrols.PatrolsCheck)  # reasons depend on the samples alone
    reasons = [r for r in check.reasons(result.samples) if r.metric == SUP_OVERDUE]
    assert sorted(r.grid for r in reasons) == ["B", "R", "Y"]
    assert {(r.light, r.code) for r in reasons} == {("yellow", "supervisor_patrol_overdue")}
    assert all("督导员" in r.text and "supervisor" not in r.text for r in reasons)


def test_the_supervisor_interval_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        patrols.PatrolsCheck.Options(supervisor_interval="0s")
    assert patrols.PatrolsCheck.Options().supervisor_interval == 7 * 24 * 3600  # the rule book's 7 days
