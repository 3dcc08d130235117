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
    # visited in the window: h1, h3 → 2 of 4 households; the 2 and the 4 are published beside it
    result.assert_value("gridwatch_grid_households", 4, grid="G1")
    result.assert_value("gridwatch_visit_visited_households", 2, grid="G1")
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
    result.assert_value("gridwatch_visit_visited_households", 0, grid="G2")  # a 0 is a fact, 0/0 is not
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
        max_rejected_ratio=1,  # every rule in one small table, most rows bad: the share is tests/test_rejected.py's
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
    words = {"grid_title": "城关街道东湖社区一网格", "category_name": "社区矫正人员"}
    for rule in rules.values():
        assert rule["metric"] in produced and rule["metric"] in visits.VisitsCheck.metrics
        for key in ("summary", "description"):
            assert rule[key].format(**labels, **words, category="community_correction", value=0.85)


# -- several registers (DOMAIN.md §1): household_categories adds categories to the one in
# households.category; each category's cadence applies on its own, the household counts once --

KEY_OVERDUE = "gridwatch_visit_key_households_overdue"


def registers(*pairs: tuple[str | None, str | None]) -> list[dict[str, Any]]:
    return [{"household_id": h, "category": c} for h, c in pairs]


def test_a_household_on_two_registers_is_overdue_in_both_and_counted_once(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": [*households("G1", "k1", category="elderly_alone"), *households("G1", "h2")],
            "household_categories": registers(
                ("k1", "disabled"),  # an elderly person living alone who is also disabled
                ("k1", "disabled"),  # listed twice: once
                ("k1", "elderly_alone"),  # the register households.category already names: once
            ),
            "visits": [
                visit("v1", "k1", "G1", "2026-02-28 12:00:00"),  # 31d old: > 30d, and before the window
                visit("v2", "h2", "G1", "2026-03-30 12:00:00"),
            ],
        },
    )
    assert result.series(KEY_OVERDUE) == {
        (("category", "disabled"), ("grid", "G1")): 1,  # k1
        (("category", "elderly_alone"), ("grid", "G1")): 1,  # k1 again, on its own register
    }
    # but one household: G1 has k1 and h2, and only h2 was visited in the window
    result.assert_value("gridwatch_grid_households", 2, grid="G1")
    result.assert_value(COVERAGE, 1 / 2, grid="G1")
    result.assert_value("gridwatch_visit_unvisited_households", 1, grid="G1")
    assert result.rejected == {}


def test_each_register_keeps_its_own_cadence(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": households("G1", "k1", category="elderly_alone"),
            "household_categories": registers(("k1", "disabled")),
            "visits": [visit("v1", "k1", "G1", "2026-02-28 12:00:00")],  # 31d old
        },
        key_intervals={"disabled": "60d"},
    )
    result.assert_value(KEY_OVERDUE, 1, grid="G1", category="elderly_alone")  # 31d > 30d
    result.assert_value(KEY_OVERDUE, 0, grid="G1", category="disabled")  # 31d ≤ 60d


def test_registers_follow_the_households_grid_and_need_no_households_category(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": [*households("G1", "h1"), *households("G2", "h2")],  # category NULL
            "household_categories": registers(
                ("h1", "pregnant"),
                ("h2", "floating"),
                ("h2", ""),  # an empty category is no key category
                ("h2", None),  # neither is NULL
                ("h2", "  "),  # nor blank
            ),
            "visits": [visit("v1", "h2", "G2", "2026-03-30 12:00:00")],  # 1d old
        },
    )
    assert result.series(KEY_OVERDUE) == {
        (("category", "pregnant"), ("grid", "G1")): 1,  # h1, never visited
        (("category", "floating"), ("grid", "G2")): 0,  # h2, on time
    }
    assert result.by_grid("gridwatch_grid_households") == {"G1": 1, "G2": 1}
    assert result.rejected == {}


def test_a_register_row_of_an_unknown_household_is_a_bad_row(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": [*households("G1", "h1"), *households("G9", "hx")],  # hx: unknown_grid
            "household_categories": registers(
                ("h1", "disabled"),
                ("nobody", "disabled"),  # not in households
                (None, "disabled"),  # no household
                ("hx", "disabled"),  # a household rejected above
            ),
            "visits": [],
        },
    )
    assert result.rejected == {("data", "unknown_grid"): 1, ("data", "unknown_household"): 3}
    assert result.series(KEY_OVERDUE) == {(("category", "disabled"), ("grid", "G1")): 1}  # h1 only


def test_an_empty_register_table_changes_nothing(gridwatch_check: CheckRunner) -> None:
    tables = {
        "households": [*households("G1", "k1", category="elderly_alone"), *households("G2", "h2")],
        "visits": [visit("v1", "k1", "G1", "2026-03-20 12:00:00")],
    }
    without = run(gridwatch_check, tables)
    with_empty = run(gridwatch_check, {**tables, "household_categories": []})
    assert sorted((s.key(), s.value) for s in with_empty.samples) == sorted((s.key(), s.value) for s in without.samples)
    # k1 visited 11d ago: on time; G2's one household unvisited
    result = without
    result.assert_value(KEY_OVERDUE, 0, grid="G1", category="elderly_alone")
    result.assert_value(COVERAGE, 0, grid="G2")


def test_a_reason_per_register_in_words(gridwatch_check: CheckRunner) -> None:
    result = run(
        gridwatch_check,
        {
            "households": households("G1", "HH-1", category="elderly_alone"),
            "household_categories": registers(("HH-1", "disabled")),
            "visits": [],
        },
    )
    check = object.__new__(visits.VisitsCheck)  # reasons depend on the samples alone
    texts = sorted(r.text for r in check.reasons(result.samples))
    assert texts == ["重点人群（残疾人）超期未走访 1 户", "重点人群（独居老人）超期未走访 1 户"]
    for s in result.samples:
        assert set(s.labels) <= {"grid", "category"} and "HH-1" not in s.labels.values()
