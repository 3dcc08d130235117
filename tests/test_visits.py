"""The ``visits`` check against the rule book (DOMAIN.md §1, §5); expected values by hand.

All times are Asia/Shanghai (UTC+8, no DST) unless a row carries an offset.
"""

from __future__ import annotations

from typing import Any

from gridwatch_plugins import visits

from gridwatch.plugins import PluginHost
from gridwatch.pytest_plugin import CheckRunner

GRIDS = [
    {"grid_id": "G1", "name": "一网格", "community": "东湖社区", "street": "城关街道"},
    {"grid_id": "G2", "name": "二网格", "community": "东湖社区", "street": "城关街道"},
]
NOW = "2026-03-31 12:00:00"  # the default 30-day window starts 2026-03-01 12:00:00


def households(grid: str, *ids: str, category: str | None = None) -> list[dict[str, Any]]:
    return [{"household_id": h, "grid_id": grid, "category": category} for h in ids]


def visit(vid: str, household: str, grid: str, at: str | None) -> dict[str, Any]:
    return {
        "visit_id": vid,
        "household_id": household,
        "grid_id": grid,
        "worker_id": "W-7",
        "visited_at": at,
    }


def run(gridwatch_check: CheckRunner, tables: dict[str, list[dict[str, Any]]], now: str = NOW, **options: Any):
    result = gridwatch_check("visits", {"grids": GRIDS, **tables}, now=now, options=options)
    assert result.error is None, result.error
    return result


COVERAGE = "gridwatch_visit_coverage_ratio"


def test_window_includes_both_ends(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": households("G1", "h1", "h2", "h3", "h4"),
            "visits": [
                visit("v1", "h1", "G1", "2026-03-01 12:00:00"),  # exactly now − 30d: in
                visit("v2", "h2", "G1", "2026-03-01 11:59:59"),  # one second earlier: out
                visit("v3", "h3", "G1", "2026-03-31T12:00:00"),  # exactly now: in
                # h4: never visited
            ],
        },
    )
    # visited in the window: h1, h3 → 2 of 4 households
    result.assert_value("gridwatch_grid_households", 4, grid="G1")
    result.assert_value(COVERAGE, 2 / 4, grid="G1")
    result.assert_value("gridwatch_visit_unvisited_households", 2, grid="G1")


def test_custom_window(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": households("G1", "h1", "h2"),
            "visits": [
                visit("v1", "h1", "G1", "2026-03-24 12:00:00"),  # exactly now − 7d: in
                visit("v2", "h2", "G1", "2026-03-24 11:59:59"),  # 7d + 1s ago: out
            ],
        },
        window="7d",
    )
    result.assert_value(COVERAGE, 1 / 2, grid="G1")


def test_offset_timestamps_are_converted_to_local_time(gridwatch_check: CheckRunner) -> None:
    # now 23:30 local on 03-31; the window starts 2026-03-01 23:30 local = 15:30 UTC.
    # 15:30 UTC is 23:30 local, so v1 falls on the boundary (in) and v2 a second before
    # it (out). Read as local 15:30, v1 would have been eight hours too early.
    result = run(
        gridwatch_check,
        {
            "households": households("G1", "h1", "h2"),
            "visits": [
                visit("v1", "h1", "G1", "2026-03-01T15:30:00+00:00"),
                visit("v2", "h2", "G1", "2026-03-01 15:29:59+00:00"),
            ],
        },
        now="2026-03-31 23:30:00",
    )
    result.assert_value(COVERAGE, 1 / 2, grid="G1")


def test_grid_without_households_has_no_coverage(gridwatch_check: CheckRunner) -> None:
    result = run(gridwatch_check, {"households": households("G1", "h1"), "visits": []})
    result.assert_absent(COVERAGE, grid="G2")  # nothing to divide by: no sample, never NaN or 0
    result.assert_value("gridwatch_grid_households", 0, grid="G2")
    result.assert_value("gridwatch_visit_unvisited_households", 0, grid="G2")
    # a grid whose households were never visited has coverage 0
    result.assert_value(COVERAGE, 0, grid="G1")
    result.assert_value("gridwatch_visit_unvisited_households", 1, grid="G1")


def test_key_households_overdue_per_category(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": [
                *households("G1", "k1", "k2", "k3", category="社区矫正"),  # interval 7d (option)
                *households("G1", "k4", "k5", category="独居老人"),  # default 30d
                *households("G1", "o1"),  # ordinary: not a key household
                *households("G2", "k6", category="流动人口"),
            ],
            "visits": [
                visit("v1", "k1", "G1", "2026-03-24 12:00:00"),  # exactly 7d old: not older
                visit("v2", "k2", "G1", "2026-03-24 11:59:59"),  # 7d + 1s: overdue
                # k3 never visited: overdue
                visit("v3", "k4", "G1", "2026-01-05 09:00:00"),  # the last visit counts,
                visit("v4", "k4", "G1", "2026-03-10 09:00:00"),  # 21d old: on time
                visit("v5", "k5", "G1", "2026-03-01 11:59:59"),  # 30d + 1s: overdue
                visit("v6", "k6", "G2", "2026-03-30 10:00:00"),  # 1d old: on time
            ],
        },
        key_intervals={"社区矫正": "7d"},
    )
    assert result.series("gridwatch_visit_key_households_overdue") == {
        (("category", "社区矫正"), ("grid", "G1")): 2,  # k2, k3
        (("category", "独居老人"), ("grid", "G1")): 1,  # k5
        (("category", "流动人口"), ("grid", "G2")): 0,  # a category with key households, none due
    }
    # key households are households too: G1 has 6, visited since 03-01 12:00 are k1, k2, k4
    result.assert_value(COVERAGE, 3 / 6, grid="G1")


def test_default_key_interval_is_an_option(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": households("G1", "k1", category="孕产妇"),
            "visits": [visit("v1", "k1", "G1", "2026-03-16 12:00:00")],  # 15d old
        },
        key_interval="14d",
    )
    # 15d > 14d: overdue, though well inside the monthly default
    result.assert_value("gridwatch_visit_key_households_overdue", 1, grid="G1", category="孕产妇")


def test_visit_counts_for_the_households_grid(gridwatch_check: CheckRunner) -> None:
    # h1 is registered in G1; its visit row names G2. The household register decides: G1 is
    # covered, and G2 (no households) gets no coverage; nothing is rejected.
    result = run(
        gridwatch_check,
        {"households": households("G1", "h1"), "visits": [visit("v1", "h1", "G2", NOW)]},
    )
    result.assert_value(COVERAGE, 1, grid="G1")
    result.assert_absent(COVERAGE, grid="G2")
    assert result.rejected == {}


def test_bad_rows_are_counted_and_left_out(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": [
                *households("G1", "h1", "h2"),
                *households("G1", "h1"),  # duplicate_id
                *households("G9", "hx"),  # unknown_grid
                {"household_id": "hn", "grid_id": None},  # null_grid
            ],
            "visits": [
                visit("v1", "h1", "G1", "2026-03-20 10:00:00"),  # the one good visit
                visit("v2", "h2", "G9", "2026-03-20 10:00:00"),  # unknown_grid
                visit("v3", "h2", None, "2026-03-20 10:00:00"),  # null_grid
                visit("v4", "h2", "G1", "yesterday"),  # bad_timestamp
                visit("v5", "h2", "G1", "2026-04-01 00:00:00"),  # future_timestamp
                visit("v1", "h2", "G1", "2026-03-20 10:00:00"),  # duplicate_id
                visit("v6", "hx", "G1", "2026-03-20 10:00:00"),  # household rejected above
                visit("v7", None, "G1", "2026-03-20 10:00:00"),  # NULL household
                visit("v8", "nobody", "G1", "2026-03-20 10:00:00"),  # not in households
            ],
        },
    )
    assert result.rejected == {
        ("data", "duplicate_id"): 2,  # one household, one visit
        ("data", "unknown_grid"): 2,
        ("data", "null_grid"): 2,
        ("data", "bad_timestamp"): 1,
        ("data", "future_timestamp"): 1,
        ("data", "unknown_household"): 3,  # v6, v7, v8
    }
    # what is left: G1 has h1 and h2, and only h1 was visited
    result.assert_value("gridwatch_grid_households", 2, grid="G1")
    result.assert_value(COVERAGE, 1 / 2, grid="G1")
    result.assert_value("gridwatch_visit_unvisited_households", 1, grid="G1")


def test_labels_carry_no_personal_ids(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": households("G1", "HH-0001", category="社区矫正"),
            "visits": [visit("V-0001", "HH-0001", "G1", "2026-03-30 10:00:00")],
        },
    )
    assert result.samples
    for s in result.samples:
        assert set(s.labels) <= {"grid", "category"}
        assert not any(x in v for v in s.labels.values() for x in ("HH-", "V-", "W-"))


def test_default_rules_reference_produced_metrics(gridwatch_check: CheckRunner) -> None:
    host = PluginHost.default(entry_points=False)
    assert host.check_type("visits") is visits.VisitsCheck
    rules = {r["alert"]: r for r in visits.default_rules()}
    assert rules["VisitCoverageLow"]["below"] == {"warning": 0.9, "critical": 0.8}
    assert rules["KeyHouseholdOverdue"]["above"] == {"warning": 0}

    result = run(
        gridwatch_check,
        {
            "households": households("G1", "k1", category="社区矫正"),
            "visits": [visit("v1", "k1", "G1", "2026-03-30 10:00:00")],
        },
    )
    produced = {s.metric for s in result.samples}
    labels = {"grid": "G1", "grid_name": "一网格", "community": "东湖社区", "street": "城关街道"}
    for rule in rules.values():
        assert rule["metric"] in produced and rule["metric"] in visits.VisitsCheck.metrics
        for key in ("summary", "description"):
            assert rule[key].format(**labels, category="社区矫正", value=0.85)
