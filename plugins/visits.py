"""The ``visits`` check: household visit coverage and overdue key households (DOMAIN.md §1).

Reads ``households`` and ``visits`` in the standard schema. Per registered grid it yields:

- ``gridwatch_grid_households{grid}`` — registered households (0 included);
- ``gridwatch_visit_coverage_ratio{grid}`` — households visited in [now − window, now]
  (both ends included) / registered households; no sample when the grid has none;
- ``gridwatch_visit_unvisited_households{grid}`` — households not visited in that window;
- ``gridwatch_visit_key_households_overdue{grid,category}`` — key households (category
  neither NULL nor empty) whose last visit is older than the category's interval, or
  never visited; one sample (possibly 0) per grid and category that has key households.

A visit belongs to its household, so it counts for the grid the household is registered
in, even when the visit row names another (known) grid: the household register is the
authority, and a worker's slip in the visit's grid must not make a visited household look
unvisited. A visit whose household is NULL or not in ``households`` cannot be attributed
and is rejected as ``unknown_household``. Visits are compared as instants: a time without
an offset is local time in the configured timezone, one with an offset is converted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from gridwatch.api import Check, Options, RunContext, Sample
from gridwatch.durations import Duration
from gridwatch.hookspecs import hookimpl
from gridwatch.rows import clean

DAY = 86400.0
UNKNOWN_HOUSEHOLD = "unknown_household"

HOUSEHOLDS = "gridwatch_grid_households"
COVERAGE = "gridwatch_visit_coverage_ratio"
UNVISITED = "gridwatch_visit_unvisited_households"
KEY_OVERDUE = "gridwatch_visit_key_households_overdue"


class VisitsCheck(Check):
    type = "visits"
    metrics = {
        HOUSEHOLDS: "Registered households of the grid.",
        COVERAGE: "Share of the grid's households visited at least once in the window.",
        UNVISITED: "Households of the grid without a visit in the window.",
        KEY_OVERDUE: "Key households of a category whose last visit is older than its interval.",
    }

    class Options(Options):
        window: Duration = 30 * DAY
        """the rolling coverage window, [now − window, now]"""
        key_interval: Duration = 30 * DAY
        """visit interval of key categories not listed in ``key_intervals`` (monthly)"""
        key_intervals: dict[str, Duration] = {}
        """key category -> its own visit interval"""

    def run(self, ctx: RunContext) -> Iterator[Sample]:
        opts: VisitsCheck.Options = self.options  # type: ignore[assignment]
        assert self.source is not None
        src = self.source.name
        grids = ctx.registry()
        now = ctx.now.timestamp()

        # household -> (grid, category or None); rejected households never reach a figure
        households: dict[str, tuple[str, str | None]] = {}
        rows = self.source.read("households", ("household_id", "grid_id", "category"), deadline=ctx.deadline)
        for row in clean(ctx, src, rows, id_column="household_id", grids=grids):
            category = str(row["category"] or "").strip() or None  # "" is no category
            households[str(row["household_id"])] = (row["grid_id"], category)

        last: dict[str, float] = {}  # household -> epoch seconds of its last visit
        rows = self.source.read("visits", ("visit_id", "household_id", "grid_id", "visited_at"), deadline=ctx.deadline)
        for row in clean(
            ctx,
            src,
            rows,
            id_column="visit_id",
            timestamps=("visited_at",),
            required=("visited_at",),
            grids=grids,
        ):
            raw = row.get("household_id")
            hid = "" if raw is None else str(raw)
            if hid not in households:
                why = "household_id is NULL" if raw is None else "household_id not in households"
                ctx.reject(src, UNKNOWN_HOUSEHOLD, why)
                continue
            ts = row["visited_at"].timestamp()
            if ts > last.get(hid, -float("inf")):
                last[hid] = ts

        window_start = now - opts.window
        total: Counter[str] = Counter()
        visited: Counter[str] = Counter()
        key_total: Counter[tuple[str, str]] = Counter()
        key_overdue: Counter[tuple[str, str]] = Counter()
        for hid, (grid, category) in households.items():
            seen = last.get(hid)
            total[grid] += 1
            if seen is not None and seen >= window_start:
                visited[grid] += 1
            if category is not None:
                key_total[grid, category] += 1
                interval = opts.key_intervals.get(category, opts.key_interval)
                if seen is None or now - seen > interval:  # "older than": strictly
                    key_overdue[grid, category] += 1

        for grid in grids:
            labels = {"grid": grid}
            yield Sample(HOUSEHOLDS, labels, total[grid])
            yield Sample(UNVISITED, labels, total[grid] - visited[grid])
            if total[grid]:
                yield Sample(COVERAGE, labels, visited[grid] / total[grid])
        for grid, category in sorted(key_total):
            yield Sample(KEY_OVERDUE, {"grid": grid, "category": category}, key_overdue[grid, category])


@hookimpl
def register_check_types() -> list[type[Check]]:
    return [VisitsCheck]


@hookimpl
def default_rules() -> list[dict[str, Any]]:
    # the light has no grace period, so neither do the rules: "for" is 0s
    return [
        {
            "alert": "VisitCoverageLow",
            "metric": COVERAGE,
            "below": {"warning": 0.9, "critical": 0.8},
            "for": "0s",
            "summary": "网格{grid_name}走访覆盖率{value:.0%}",
            "description": (
                "{street}{community}网格{grid_name}（{grid}）走访窗口内的入户覆盖率为"
                "{value:.1%}，未达目标，请安排未走访户的走访。"
            ),
        },
        {
            "alert": "KeyHouseholdOverdue",
            "metric": KEY_OVERDUE,
            "above": {"warning": 0},
            "for": "0s",
            "summary": "网格{grid_name}有{value:.0f}户{category}重点户走访超期",
            "description": (
                "{street}{community}网格{grid_name}（{grid}）有{value:.0f}户{category}"
                "重点户超过规定周期未走访，请尽快上门走访。"
            ),
        },
    ]
