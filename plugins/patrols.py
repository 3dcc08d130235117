"""The ``patrols`` check: each grid's last patrol and whether it is overdue (DOMAIN.md §1).

Reads ``patrols`` in the standard schema; zones come from the grid registry. Per registered
grid it yields ``gridwatch_patrol_last_timestamp_seconds{grid}`` (no sample if never
patrolled) and ``gridwatch_patrol_overdue{grid}`` (0/1).

How the rule book's patrol rule is read (times are local, in the configured timezone):

- A day's working window is [work_start, work_end] of that date, both ends included, every
  day of the week. It has *passed* once now is strictly after its work_end.
- **Daily rule, every grid.** A grid turns overdue when a day's window passes without a
  patrol in it, and stays so until its next patrol (at any hour). So it is overdue exactly
  when it has had no patrol since the start of the most recent passed window — today's
  once now > today's work_end, else yesterday's — i.e. last patrol < that window's start.
  Before work_start this is yesterday's window: "before 07:15 the previous day's rule".
  A grid never patrolled is overdue.
- **Zone rule, zoned grids.** Inside today's window (start ≤ now ≤ end) a red/yellow/blue
  grid is also overdue when now − max(last patrol, today's work_start) exceeds its zone's
  interval, strictly: a red grid patrolled at 09:00 is on time at 10:00:00 and overdue at
  10:00:01. Outside working hours only the daily rule applies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Self

from pydantic import model_validator

from gridwatch.api import YELLOW, Check, Grid, Options, Reason, RunContext, Sample
from gridwatch.durations import Duration
from gridwatch.feeds import IncrementalOptions, Tracker
from gridwatch.hookspecs import hookimpl

HOUR = 3600.0

LAST = "gridwatch_patrol_last_timestamp_seconds"
OVERDUE = "gridwatch_patrol_overdue"


class ZoneIntervals(Options):
    """Patrol cadence per zone inside working hours; a zone left out keeps its default."""

    red: Duration = 1 * HOUR
    yellow: Duration = 2 * HOUR
    blue: Duration = 4 * HOUR


class PatrolsCheck(Check):
    type = "patrols"
    metrics = {
        LAST: "Unix time of the grid's last patrol.",
        OVERDUE: "1 if the grid's patrol is overdue (daily rule, or its zone's cadence), else 0.",
    }

    class Options(IncrementalOptions):
        work_start: time = time(7, 15)
        """start of the daily working hours (local time)"""
        work_end: time = time(20, 15)
        """end of the daily working hours (local time)"""
        zone_intervals: ZoneIntervals = ZoneIntervals()

        @model_validator(mode="after")
        def _window(self) -> Self:
            if self.work_start.tzinfo or self.work_end.tzinfo:
                raise ValueError("work_start and work_end are local times, without an offset")
            if self.work_start >= self.work_end:
                raise ValueError("work_start must be before work_end (same day)")
            return self

    @classmethod
    def reads(cls, options: Any) -> dict[str, Sequence[str]]:
        return {"patrols": ("patrol_id", "grid_id", "patrolled_at")}

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        assert self.source is not None
        self.tracker = Tracker(self.options.resync)  # type: ignore[attr-defined]
        self.feed = self.tracker.feed(self.source, "patrols", ("patrol_id", "grid_id", "patrolled_at"), "patrol_id")
        self.last: dict[str, float] = {}  # grid -> epoch seconds of its last patrol

    def _update(self, ctx: RunContext, grids: dict[str, Grid]) -> None:
        last = self.last
        for grid, at, _ in self.feed.latest(ctx, "grid_id", "patrolled_at", grids):
            ts = at.timestamp()
            if ts > last.get(grid, -float("inf")):
                last[grid] = ts

    def run(self, ctx: RunContext) -> Iterator[Sample]:
        opts: PatrolsCheck.Options = self.options  # type: ignore[assignment]
        grids = ctx.registry()
        self.tracker.refresh(ctx, grids, self.last.clear, lambda full: self._update(ctx, grids))
        last = self.last

        now = ctx.now.timestamp()
        today = ctx.now.astimezone(ctx.tz).date()
        start_today = _at(today, opts.work_start, ctx.tz)
        end_today = _at(today, opts.work_end, ctx.tz)
        # the start of the most recent working window that has passed
        passed = today if now > end_today else today - timedelta(days=1)
        daily_deadline = _at(passed, opts.work_start, ctx.tz)
        working = start_today <= now <= end_today
        intervals = opts.zone_intervals.model_dump()

        for grid_id, grid in grids.items():
            labels = {"grid": grid_id}
            seen = last.get(grid_id)
            if seen is not None:
                yield Sample(LAST, labels, seen)
            overdue = seen is None or seen < daily_deadline
            if not overdue and working and grid.zone in intervals:
                assert seen is not None
                overdue = now - max(seen, start_today) > intervals[grid.zone]
            yield Sample(OVERDUE, labels, 1.0 if overdue else 0.0)

    def reasons(self, samples: Sequence[Sample]) -> Iterator[Reason]:
        for s in samples:
            if s.metric == OVERDUE and s.value > 0:
                yield Reason(s.labels["grid"], YELLOW, "patrol_overdue", "巡查超时未完成", OVERDUE)


def _at(day: date, at: time, tz: tzinfo) -> float:
    """Epoch seconds of a local wall-clock time on a date."""
    return datetime.combine(day, at, tzinfo=tz).timestamp()


@hookimpl
def register_check_types() -> list[type[Check]]:
    return [PatrolsCheck]


@hookimpl
def default_rules() -> list[dict[str, Any]]:
    # an overdue patrol makes the grid yellow at once (DOMAIN.md §4), so no "for" delay
    return [
        {
            "alert": "PatrolOverdue",
            "metric": OVERDUE,
            "above": {"warning": 0},
            "for": "0s",
            "summary": "网格{grid_name}巡查超期",
            "description": (
                "{street}{community}网格{grid_name}（{grid}）未按规定频次巡查"
                "（每日工作时段至少一次，红/黄/蓝区按区域间隔），请网格员尽快巡查。"
            ),
        }
    ]
