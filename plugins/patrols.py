"""The ``patrols`` check: each grid's last patrol and whether it is overdue (DOMAIN.md §1, §5).

Reads ``patrols`` in the standard schema; zones and each grid's start (``grids.since``) come
from the grid registry. Per registered grid it yields
``gridwatch_patrol_last_timestamp_seconds{grid}`` (no sample if never patrolled) and
``gridwatch_patrol_overdue{grid}`` (0/1); where ``patrols`` has the optional ``role`` column,
also ``gridwatch_patrol_supervisor_last_timestamp_seconds{grid}`` (no sample if never) and
``gridwatch_patrol_supervisor_overdue{grid}`` (0/1). Without ``role`` a source cannot say who
patrolled: every patrol is the grid worker's, as before the column existed, and there is no
supervisor series.

How the rule book's patrol rule is read (times are local, in the configured timezone):

- **Who patrolled.** ``role`` NULL, empty or ``worker`` (any case, spaces around ignored) is
  the grid's own worker; ``supervisor`` (督导员) and ``head`` (网格长) are not. Any other value
  is a bad row (``bad_role``), counted and left out of every figure. Only the grid's own
  workers' patrols count for the daily and zone rules below, and for the last-patrol time.
- A day's working window is [work_start, work_end] of that date, both ends included, every
  day of the week. It has *passed* once now is strictly after its work_end.
- **Daily rule, every grid.** A grid turns overdue when a day's window passes without a
  patrol in it, and stays so until its next patrol (at any hour). So it is overdue exactly
  when it has had no patrol since the start of the most recent passed window — today's
  once now > today's work_end, else yesterday's — i.e. last patrol < that window's start.
  Before work_start this is yesterday's window: "before 07:15 the previous day's rule".
  A grid never patrolled is overdue. A grid with ``grids.since`` owes no window of a day before
  it (a grid that came into service today is overdue only once today's window has passed, or its
  zone's interval since today's work_start). Without ``since`` the daily and zone rules count
  from any time, as they did before the column existed: a grid never patrolled is overdue.
- **Zone rule, zoned grids.** Inside today's window (start ≤ now ≤ end) a red/yellow/blue
  grid is also overdue when now − max(last patrol, today's work_start) exceeds its zone's
  interval, strictly: a red grid patrolled at 09:00 is on time at 10:00:00 and overdue at
  10:00:01. Outside working hours only the daily rule applies.
- **Supervisor rule, every grid.** A grid is *supervisor overdue* once ``supervisor_interval``
  (7 × 24 h) has passed — strictly more: a supervisor who patrolled at 12:00 is on time at
  12:00 seven days later and overdue a second after — since the later of its last supervisor
  patrol and its start. Its start is 00:00 of ``grids.since``; without it, the earliest good
  row of the patrols table (whoever made it: the platform's history starts there, and a first
  run on a year-old platform must not call every grid overdue for the year before its data).
  With neither (no ``since``, no row) nothing is owed yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Self

from pydantic import Field, model_validator

from gridwatch.api import YELLOW, Check, Grid, Options, Reason, RunContext, Sample, Title
from gridwatch.durations import Duration
from gridwatch.feeds import IncrementalOptions, Tracker
from gridwatch.hookspecs import hookimpl

HOUR = 3600.0
DAY = 24 * HOUR

LAST = "gridwatch_patrol_last_timestamp_seconds"
OVERDUE = "gridwatch_patrol_overdue"
SUPERVISOR_LAST = "gridwatch_patrol_supervisor_last_timestamp_seconds"
SUPERVISOR_OVERDUE = "gridwatch_patrol_supervisor_overdue"

COLUMNS = ("patrol_id", "grid_id", "patrolled_at")
WORKER, SUPERVISOR, HEAD = "worker", "supervisor", "head"
ROLES = {"": WORKER, WORKER: WORKER, SUPERVISOR: SUPERVISOR, HEAD: HEAD}
BAD_ROLE = "bad_role"


def role_of(value: Any) -> str | None:
    """The standard role a ``patrols.role`` value names (NULL and blank are the grid worker),
    or None for a value the rule book does not know."""
    return WORKER if value is None else ROLES.get(str(value).strip().lower())


class ZoneIntervals(Options):
    """Patrol cadence per zone inside working hours; a zone left out keeps its default."""

    red: Duration = 1 * HOUR
    yellow: Duration = 2 * HOUR
    blue: Duration = 4 * HOUR


class PatrolsCheck(Check["PatrolsCheck.Options"]):
    type = "patrols"
    metrics = {
        LAST: "Unix time of the grid's last patrol by its own workers.",
        OVERDUE: "1 if the grid's patrol is overdue (daily rule, or its zone's cadence), else 0.",
        SUPERVISOR_LAST: "Unix time of the grid's last patrol by a supervisor (needs patrols.role).",
        SUPERVISOR_OVERDUE: "1 if no supervisor has patrolled the grid within the supervisor interval, else 0.",
    }
    titles = {
        LAST: Title("最近巡查", "Last patrol", "timestamp"),
        OVERDUE: Title("巡查超时", "Patrol overdue", "flag"),
    }
    display_names = {
        "alertname": {  # the default rules, as the board names a group of alerts
            "PatrolOverdue": ("巡查超时", "patrol overdue"),
            "SupervisorPatrolOverdue": ("督导员巡查超时", "supervisor patrol overdue"),
        },
        "role": {
            WORKER: ("网格员", "grid worker"),
            SUPERVISOR: ("督导员", "supervisor"),
            HEAD: ("网格长", "grid head"),
        },
    }

    class Options(IncrementalOptions):
        work_start: time = time(7, 15)
        """start of the daily working hours (local time)"""
        work_end: time = time(20, 15)
        """end of the daily working hours (local time)"""
        zone_intervals: ZoneIntervals = ZoneIntervals()
        supervisor_interval: Duration = Field(7 * DAY, gt=0)
        """a supervisor patrols each grid at least this often (counted from the grid's start)"""

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
        self.has_role: bool | None = None  # whether the source's patrols have a role column
        self.last: dict[str, float] = {}  # grid -> epoch seconds of its workers' last patrol
        self.supervised: dict[str, float] = {}  # grid -> epoch seconds of its last supervisor patrol
        self.first = math.inf  # epoch seconds of the table's earliest good row

    def _follow(self, role: bool) -> None:
        """Follow the table with or without ``role``: a column that appears or goes is a new
        table to the check, read again from scratch."""
        assert self.source is not None
        self.has_role = role
        self.tracker = Tracker(self.options.resync, self.options.resync_at)
        columns = (*COLUMNS, "role") if role else COLUMNS
        self.feed = self.tracker.feed(self.source, "patrols", columns, "patrol_id")

    def checkpoint(self) -> dict[str, Any] | None:
        """What the check keeps between runs, for a restart to go on from (see
        :mod:`gridwatch.pipeline.checkpoint`)."""
        if self.has_role is None:  # not run yet
            return None
        return {
            "has_role": self.has_role,
            "tracker": self.tracker.checkpoint(),
            "last": self.last,
            "supervised": self.supervised,
            "first": self.first,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint` gave; on any error the check is left as if it had
        never run (its next run reads in full)."""
        self.has_role = None
        last = {str(k): float(v) for k, v in state["last"].items()}
        supervised = {str(k): float(v) for k, v in state["supervised"].items()}
        first = float(state["first"])
        self._follow(bool(state["has_role"]))
        try:
            self.tracker.restore(state["tracker"])
        except BaseException:
            self.has_role = None
            raise
        self.last, self.supervised, self.first = last, supervised, first

    def _reset(self) -> None:
        self.last.clear()
        self.supervised.clear()
        self.first = math.inf

    def _update(self, ctx: RunContext, grids: dict[str, Grid]) -> None:
        last = self.last
        if not self.has_role:  # today's path: every patrol is the grid worker's
            for grid, at, _ in self.feed.latest(ctx, "grid_id", "patrolled_at", grids):
                ts = at.timestamp()
                if ts > last.get(grid, -math.inf):
                    last[grid] = ts
            return
        src, supervised = self.feed.source.name, self.supervised
        for (grid, raw), at, n, first in self.feed.spans(ctx, "grid_id", "patrolled_at", grids, split="role"):
            role = role_of(raw)
            if role is None:
                ctx.reject(src, BAD_ROLE, "role is not worker, supervisor or head", n)
                continue
            self.first = min(self.first, first.timestamp())
            kept = last if role == WORKER else supervised if role == SUPERVISOR else None
            ts = at.timestamp()
            if kept is not None and ts > kept.get(grid, -math.inf):
                kept[grid] = ts

    def run(self, ctx: RunContext) -> Iterator[Sample]:
        opts = self.options
        assert self.source is not None
        grids = ctx.registry()
        role = self.source.has("patrols", "role", deadline=ctx.deadline)
        if role != self.has_role:
            self._follow(role)
        self.tracker.refresh(ctx, grids, self._reset, lambda full: self._update(ctx, grids))
        last, supervised = self.last, self.supervised

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
            in_service = grid.since is None or grid.since <= passed  # the passed window was a day of service
            overdue = in_service and (seen is None or seen < daily_deadline)
            if not overdue and working and grid.zone in intervals and (grid.since is None or grid.since <= today):
                overdue = now - max(seen or -math.inf, start_today) > intervals[grid.zone]
            yield Sample(OVERDUE, labels, 1.0 if overdue else 0.0)
            if not self.has_role:
                continue
            came = supervised.get(grid_id)
            if came is not None:
                yield Sample(SUPERVISOR_LAST, labels, came)
            # the grid's start: 00:00 of "since", else the table's earliest row (inf: no row yet,
            # and then no supervisor patrol either)
            start = _at(grid.since, time(0), ctx.tz) if grid.since is not None else self.first
            owed_from = start if came is None else max(start, came)
            late = owed_from != math.inf and now - owed_from > opts.supervisor_interval
            yield Sample(SUPERVISOR_OVERDUE, labels, 1.0 if late else 0.0)

    def reasons(self, samples: Sequence[Sample]) -> Iterator[Reason]:
        for s in samples:
            if s.metric == OVERDUE and s.value > 0:
                yield Reason(s.labels["grid"], YELLOW, "patrol_overdue", "巡查超时未完成", OVERDUE)
            elif s.metric == SUPERVISOR_OVERDUE and s.value > 0:
                text = "督导员超过规定周期未到网格巡查"
                yield Reason(s.labels["grid"], YELLOW, "supervisor_patrol_overdue", text, SUPERVISOR_OVERDUE)


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
            "summary": "{grid_title}巡查超时",
            "description": (
                "{grid_title}（编号{grid}）未按规定频次巡查"
                "（每日工作时段至少一次，红／黄／蓝区按区域间隔），请网格员尽快巡查。"
            ),
        },
        {
            "alert": "SupervisorPatrolOverdue",
            "metric": SUPERVISOR_OVERDUE,
            "above": {"warning": 0},
            "for": "0s",
            "summary": "{grid_title}督导员巡查超期",
            "description": "{grid_title}（编号{grid}）已超过规定周期无督导员巡查，请督导员尽快到网格巡查。",
        },
    ]
