"""The ``visits`` check: household visit coverage and overdue key households (DOMAIN.md §1).

Reads ``households`` and ``visits`` in the standard schema, and the optional
``household_categories`` where the source has it. Per registered grid it yields:

- ``gridwatch_grid_households{grid}`` — registered households (0 included);
- ``gridwatch_visit_coverage_ratio{grid}`` — households visited in [now − window, now]
  (both ends included) / registered households; no sample when the grid has none;
- ``gridwatch_visit_unvisited_households{grid}`` — households not visited in that window;
- ``gridwatch_visit_visited_households{grid}`` — households visited in that window: coverage's
  numerator, beside its denominator ``gridwatch_grid_households`` (0 included), so roll-ups pool;
- ``gridwatch_visit_key_households_overdue{grid,category}`` — key households (category
  neither NULL nor empty) whose last visit is older than the category's interval, or
  never visited; one sample (possibly 0) per grid and category that has key households.

A person can be on several registers at once (an elderly person living alone who is also
disabled). A household's categories are the one in ``households.category`` and those
``household_categories(household_id, category)`` adds; NULL, empty or blank is no category, and
a category named twice (twice in the table, or in both places) is one. Each category's cadence
applies on its own: the household counts in the overdue figure of every category it is overdue
in, and once in the households, coverage and unvisited figures. A ``household_categories`` row
whose household is NULL or not in ``households`` is rejected as ``unknown_household`` (and
counts once its household registers, like a visit). Without the table nothing changes.

A visit belongs to its household, so it counts for the grid the household is registered
in, even when the visit row names another (known) grid: the household register is the
authority, and a worker's slip in the visit's grid must not make a visited household look
unvisited. A visit whose household is NULL or not in ``households`` cannot be attributed
and is rejected as ``unknown_household``. Visits are compared as instants: a time without
an offset is local time in the configured timezone, one with an offset is converted.

Between runs the check keeps each household's grid and last visit and reads only the rows
appended since (see :mod:`gridwatch.feeds`), as each household's latest visit where the
source can compute it; a visit read before its household registers is kept aside and counts
once it does.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from sys import intern
from typing import Any

from gridwatch.api import YELLOW, Check, Deduction, Grid, Ratio, Reason, RunContext, Sample, Title
from gridwatch.durations import Duration
from gridwatch.feeds import IncrementalOptions, Tracker
from gridwatch.hookspecs import hookimpl

DAY = 86400.0
NEVER = -math.inf  # the last visit of a household never visited
UNKNOWN_HOUSEHOLD = "unknown_household"
HOUSEHOLD_COLUMNS = ("household_id", "grid_id", "category")
CATEGORY_COLUMNS = ("household_id", "category")
VISIT_COLUMNS = ("visit_id", "household_id", "grid_id", "visited_at")

HOUSEHOLDS = "gridwatch_grid_households"
COVERAGE = "gridwatch_visit_coverage_ratio"
UNVISITED = "gridwatch_visit_unvisited_households"
VISITED = "gridwatch_visit_visited_households"
KEY_OVERDUE = "gridwatch_visit_key_households_overdue"

CATEGORY_NAMES = {
    "community_correction": ("社区矫正人员", "persons under community correction"),
    "floating": ("流动人口", "floating population"),
    "pregnant": ("孕妇", "pregnant women"),
    "elderly_alone": ("独居老人", "elderly living alone"),
    "disabled": ("残疾人", "persons with disabilities"),
    "left_behind_child": ("留守儿童", "left-behind children"),
    "drug_rehab": ("吸毒人员", "drug users in rehabilitation"),
    "released_prisoner": ("刑满释放人员", "released prisoners"),
    "mental_disorder": ("严重精神障碍患者", "persons with severe mental disorders"),
    "empty_nest": ("空巢老人", "empty-nest elderly"),
}
"""Display names of the common key-household categories; a platform's own are named in the
config (``[display_names.category]``)."""


Categories = str | tuple[str, ...] | None
"""A household's key categories: None, one name, or several (sorted, each once)."""


class VisitsCheck(Check["VisitsCheck.Options"]):
    type = "visits"
    metrics = {
        HOUSEHOLDS: "Registered households of the grid.",
        COVERAGE: "Share of the grid's households visited at least once in the window.",
        UNVISITED: "Households of the grid without a visit in the window.",
        VISITED: "Households of the grid visited at least once in the window (coverage's numerator).",
        KEY_OVERDUE: "Key households of a category whose last visit is older than its interval.",
    }
    titles = {
        HOUSEHOLDS: Title("登记户数", "Registered households", "count"),
        COVERAGE: Title("走访覆盖率", "Visit coverage", "ratio"),
        UNVISITED: Title("未走访户数", "Unvisited households", "count"),
        VISITED: Title("已走访户数", "Visited households", "count"),
        KEY_OVERDUE: Title("重点人群超期未走访", "Key households overdue", "count"),
    }
    ratios = {COVERAGE: Ratio(VISITED, HOUSEHOLDS)}
    deductions = {
        "visit_coverage": Deduction(COVERAGE, "走访覆盖率", 1.0, 20.0, target=0.90),
        "key_households_overdue": Deduction(KEY_OVERDUE, "重点人群超期未走访", 2.0, 10.0, unit="户"),
    }
    display_names = {
        "alertname": {  # the default rules, as the board names a group of alerts
            "VisitCoverageLow": ("走访覆盖率偏低", "visit coverage low"),
            "KeyHouseholdOverdue": ("重点人群走访超期", "key households overdue for a visit"),
        },
        "category": CATEGORY_NAMES,
    }

    class Options(IncrementalOptions):
        window: Duration = 30 * DAY
        """the rolling coverage window, [now − window, now]"""
        key_interval: Duration = 30 * DAY
        """visit interval of key categories not listed in ``key_intervals`` (monthly)"""
        key_intervals: dict[str, Duration] = {}
        """key category -> its own visit interval"""

    @classmethod
    def reads(cls, options: Any) -> dict[str, Sequence[str]]:
        return {"households": HOUSEHOLD_COLUMNS, "visits": VISIT_COLUMNS}

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.registers: bool | None = None  # whether the source has household_categories
        self._reset()

    def _follow(self, registers: bool) -> None:
        """Follow the tables, ``household_categories`` too when the source has it: a table that
        appears or goes is read again from scratch with the others."""
        assert self.source is not None
        self.registers = registers
        self.tracker = Tracker(self.options.resync, self.options.resync_at)
        self.household_feed = self.tracker.feed(self.source, "households", HOUSEHOLD_COLUMNS, "household_id")
        self.category_feed = (
            self.tracker.feed(self.source, "household_categories", CATEGORY_COLUMNS, None) if registers else None
        )
        self.visit_feed = self.tracker.feed(self.source, "visits", VISIT_COLUMNS, "visit_id")

    def _reset(self) -> None:
        # household -> (grid, categories, last visit in epoch seconds or NEVER): a city's
        # households are kept between runs, in one dict, their grid and category strings shared;
        # the categories are None, one name, or a tuple of names for a household on several registers
        self.households: dict[str, tuple[str, Categories, float]] = {}
        self.orphans: dict[str, float] = {}  # an unregistered household -> its last visit, kept in case it registers
        self.unplaced: dict[str, Categories] = {}  # an unregistered household -> categories added to it
        # the last visits (NEVER included) of each grid's households, and of each grid's key
        # households by category, sorted: a run counts the visited and the overdue by bisection,
        # per grid, instead of looking at every household of the city
        self.by_grid: dict[str, list[float]] = {}
        self.by_key: dict[tuple[str, str], list[float]] = {}

    def checkpoint(self) -> dict[str, Any] | None:
        """What the check keeps between runs, for a restart to go on from (see
        :mod:`gridwatch.pipeline.checkpoint`): each household's grid, categories and last visit,
        and the visits and categories of households not registered yet. The per-grid sorted
        lists are rebuilt from them."""
        if self.registers is None:  # not run yet
            return None
        return {
            "registers": self.registers,
            "tracker": self.tracker.checkpoint(),
            "households": self.households,
            "orphans": self.orphans,
            "unplaced": self.unplaced,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint` gave; on any error the check is left as if it had
        never run (its next run reads in full)."""
        self.registers = None
        self._reset()
        # the saved map as it is read (its grid and category strings shared within each piece):
        # a city's households are not built a second time
        households: dict[str, tuple[str, Categories, float]] = state["households"]
        by_grid: dict[str, list[float]] = defaultdict(list)
        by_key: dict[tuple[str, str], list[float]] = defaultdict(list)
        for grid, categories, seen in households.values():
            by_grid[grid].append(seen)
            if categories is not None:
                for category in _each(categories):
                    by_key[(grid, category)].append(seen)
        for lists in (by_grid, by_key):
            for seen_list in lists.values():
                seen_list.sort()
        self.households, self.by_grid, self.by_key = households, dict(by_grid), dict(by_key)
        self.orphans.update(state["orphans"])
        self.unplaced.update(state["unplaced"])
        self._follow(bool(state["registers"]))
        try:
            self.tracker.restore(state["tracker"])
        except BaseException:
            self.registers = None
            raise

    def _place(self, hid: str, grid: str, categories: Categories, seen: float) -> None:
        """Household ``hid`` is now in ``grid`` and ``categories`` with its last visit at ``seen``."""
        before = self.households.get(hid)
        if before is not None:
            _remove(self.by_grid, before[0], before[2])
            for category in _each(before[1]):
                _remove(self.by_key, (before[0], category), before[2])
        self.households[hid] = (grid, categories, seen)  # (an existing key keeps its string)
        bisect.insort(self.by_grid.setdefault(grid, []), seen)
        for category in _each(categories):
            bisect.insort(self.by_key.setdefault((grid, category), []), seen)

    def _update(self, ctx: RunContext, grids: dict[str, Grid]) -> None:
        src = self.visit_feed.source.name
        households, orphans, unplaced = self.households, self.orphans, self.unplaced
        for row in self.household_feed.rows(ctx, grids=grids):
            hid = str(row["household_id"])
            categories = _joined(_category(row["category"]), _each(unplaced.pop(hid, None)))
            before = households.get(hid)
            # with the visits read before it registered
            seen = max(NEVER if before is None else before[2], orphans.pop(hid, NEVER))
            self._place(hid, intern(row["grid_id"]), categories, seen)
        if self.category_feed is not None:
            for row in self.category_feed.rows(ctx, grid_column=None):
                raw, category = row["household_id"], _category(row["category"])
                hid = "" if raw is None else str(raw)
                where = households.get(hid)
                if where is None:
                    why = "household_id is NULL" if raw is None else "household_id not in households"
                    ctx.reject(src, UNKNOWN_HOUSEHOLD, why)
                    if raw is not None:  # kept in case it registers
                        unplaced[hid] = _joined(unplaced.get(hid), (category,))
                    continue
                categories = _joined(where[1], (category,))
                if categories != where[1]:
                    self._place(hid, where[0], categories, where[2])
        for raw, at, n in self.visit_feed.latest(ctx, "household_id", "visited_at", grids):
            hid = "" if raw is None else str(raw)
            ts = at.timestamp()
            where = households.get(hid)
            if where is None:
                why = "household_id is NULL" if raw is None else "household_id not in households"
                ctx.reject(src, UNKNOWN_HOUSEHOLD, why, n)
                if raw is not None and ts > orphans.get(hid, NEVER):
                    orphans[hid] = ts
                continue
            if ts > where[2]:
                self._place(hid, where[0], where[1], ts)

    def run(self, ctx: RunContext) -> Iterator[Sample]:
        opts = self.options
        grids = ctx.registry()
        assert self.source is not None
        registers = self.source.has("household_categories", "category", deadline=ctx.deadline)
        if registers != self.registers:
            self._follow(registers)
        self.tracker.refresh(ctx, grids, self._reset, lambda full: self._update(ctx, grids))
        now = ctx.now.timestamp()
        window_start = now - opts.window
        for grid in grids:
            seen = self.by_grid.get(grid, [])
            total = len(seen)
            labels = {"grid": grid}
            yield Sample(HOUSEHOLDS, labels, total)
            unvisited = bisect.bisect_left(seen, window_start)  # last visit before the window, or never
            yield Sample(UNVISITED, labels, unvisited)
            yield Sample(VISITED, labels, total - unvisited)
            if total:
                yield Sample(COVERAGE, labels, (total - unvisited) / total)
        for (grid, category), seen in sorted(self.by_key.items()):
            if seen:
                interval = opts.key_intervals.get(category, opts.key_interval)
                # "older than" the interval, strictly: now - last > interval; never visited is -inf
                yield Sample(
                    KEY_OVERDUE, {"grid": grid, "category": category}, bisect.bisect_left(seen, now - interval)
                )

    def reasons(self, samples: Sequence[Sample]) -> Iterator[Reason]:
        for s in samples:
            if s.metric == KEY_OVERDUE and s.value > 0:
                category = self.display_name("category", s.labels.get("category", ""))
                text = f"重点人群（{category}）超期未走访 {int(s.value)} 户"
                yield Reason(s.labels["grid"], YELLOW, "key_households_overdue", text, KEY_OVERDUE)


def _category(value: Any) -> str | None:
    """A category as read: NULL, empty and blank are no category; names are shared."""
    text = str(value or "").strip()
    return intern(text) if text else None


def _each(categories: Categories) -> tuple[str, ...]:
    return () if categories is None else (categories,) if isinstance(categories, str) else categories


def _joined(categories: Categories, more: Iterable[str | None]) -> Categories:
    """``categories`` with ``more`` added, each once; unchanged (the same object) if nothing is new."""
    have = _each(categories)
    new = {c for c in more if c is not None and c not in have}
    if not new:
        return categories
    every = tuple(sorted({*have, *new}))
    return every[0] if len(every) == 1 else every


def _remove(lists: dict[Any, list[float]], key: Any, value: float) -> None:
    seen = lists[key]
    del seen[bisect.bisect_left(seen, value)]


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
            "summary": "{grid_title}走访覆盖率{value:.0%}",
            "description": (
                "{grid_title}（编号{grid}）走访窗口内的入户覆盖率为{value:.1%}，未达目标，请安排未走访户的走访。"
            ),
        },
        {
            "alert": "KeyHouseholdOverdue",
            "metric": KEY_OVERDUE,
            "above": {"warning": 0},
            "for": "0s",
            "summary": "{grid_title}有{value:.0f}户{category_name}超期未走访",
            "description": (
                "{grid_title}（编号{grid}）有{value:.0f}户重点人群（{category_name}）超过规定周期未走访，"
                "请尽快上门走访。"
            ),
        },
    ]
