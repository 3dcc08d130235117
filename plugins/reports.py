"""The ``reports`` check: the daily traffic light and periodic reports (rule book section 3).

Choices the rule book leaves open:

- The daily status and the stored daily lights exist only while ``daily`` is in ``expect``:
  a grid that owes no daily report must not turn yellow every evening.
- ``gridwatch_report_overdue`` covers the non-daily kinds only. A missing daily report is
  already status 2 of ``gridwatch_report_daily_status``; an overdue flag for yesterday's
  report would keep the grid yellow all of today, which the traffic light does not do.
- A flagged report turns red the day it counts for: its ``period`` for a daily report, the
  local date it was submitted for any other kind (a flag is content, whatever the form).
- The reporting ratio counts a period on time when its first submission came by the due
  time, flagged or not: the ratio is about timeliness, red is about content.

The colour of every grid and day is kept in the state database (``reports_daily_lights``)
for the year-end assessment; :func:`daily_lights` reads it back.
"""

from __future__ import annotations

import logging
import math
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import field_validator

from gridwatch.api import RED, YELLOW, Check, Reason, RunContext, Sample, Title
from gridwatch.calendar import (
    REPORT_KINDS,
    due_time,
    expected_periods,
    latest_due_period,
    next_due_period,
    period_for,
)
from gridwatch.durations import Duration, parse_duration
from gridwatch.feeds import IncrementalOptions, Tracker
from gridwatch.hookspecs import hookimpl

log = logging.getLogger(__name__)

TABLE = "reports"
COLUMNS = ("report_id", "grid_id", "kind", "period", "submitted_at", "flag")
RED_FLAGS = frozenset({"major_dispute", "early_warning", "petition"})
NO_FLAG = frozenset({"", "ok"})
LIGHTS = "reports_daily_lights"

DAILY = "gridwatch_report_daily_status"
OVERDUE = "gridwatch_report_overdue"
ON_TIME = "gridwatch_report_on_time_ratio"
DUE_SOON = "gridwatch_report_due_soon"

KIND_ZH = {
    "daily": "日报",
    "twice_weekly": "综合信息",
    "weekly": "周报告单",
    "monthly": "月报",
    "quarterly": "季度分析",
    "annual": "年报",
}
"""Display names of the report kinds, for light reasons."""
KIND_EN = {
    "daily": "daily report",
    "twice_weekly": "twice-weekly information",
    "weekly": "weekly report form",
    "monthly": "monthly report",
    "quarterly": "quarterly analysis",
    "annual": "annual report",
}

OK, PENDING, MISSING, FLAGGED = 0, 1, 2, 3
KINDS = {k: k for k in REPORT_KINDS}  # a kind read, as the one string every key shares


def _enum(value: Any) -> str:
    return "" if value is None else str(value).strip().lower()


@hookimpl(specname="daily_lights")
def daily_lights_hook(db: Any, grid_id: str, since: date) -> list[tuple[date, str]]:
    return daily_lights(db, grid_id, since)


def daily_lights(db: Any, grid_id: str, since_day: date | str) -> list[tuple[date, str]]:
    """The stored colours of a grid from ``since_day`` on, oldest first, for the status board
    and the year-end count. ``db`` is the state database (a sqlite-utils Database)."""
    if not db[LIGHTS].exists():
        return []
    rows = db.execute(
        f"SELECT day, light FROM {LIGHTS} WHERE grid_id = ? AND day >= ? ORDER BY day",
        [grid_id, str(since_day)],
    ).fetchall()
    return [(date.fromisoformat(day), light) for day, light in rows]


def _store_lights(db: Any, rows: list[tuple[str, str, str]]) -> None:
    with db.conn:
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {LIGHTS} (grid_id TEXT NOT NULL, day TEXT NOT NULL, "
            "light TEXT NOT NULL, PRIMARY KEY (grid_id, day))"
        )
        # days inside the window are recomputed (a late flag can still turn one red);
        # older days are left as they were
        db.conn.executemany(
            f"INSERT INTO {LIGHTS} (grid_id, day, light) VALUES (?, ?, ?) "
            "ON CONFLICT (grid_id, day) DO UPDATE SET light = excluded.light",
            rows,
        )


class ReportsCheck(Check["ReportsCheck.Options"]):
    type = "reports"
    metrics = {
        DAILY: "Today's daily report: 0 ok, 1 pending, 2 missing or late, 3 flagged.",
        OVERDUE: "1 if the latest period of a periodic report is past due with no submission.",
        ON_TIME: "On-time submissions / expected submissions over the window (上报率).",
        DUE_SOON: "1 if the next period of a periodic report is due within the lead time and not yet submitted.",
    }
    titles = {
        DAILY: Title(
            "今日日报",
            "Today's daily report",
            "status",
            {
                OK: ("已按时报送", "on time"),
                PENDING: ("待报送", "pending"),
                MISSING: ("未按时报送", "missing or late"),
                FLAGGED: ("涉重大事项", "flags a major matter"),
            },
        ),
        OVERDUE: Title("逾期未报", "Report overdue", "flag"),
        ON_TIME: Title("上报率", "On-time reporting ratio", "ratio"),
        DUE_SOON: Title("即将到期", "Report due soon", "flag"),
    }
    display_names = {
        "kind": {kind: (KIND_ZH[kind], en) for kind, en in KIND_EN.items()},
        "flag": {
            "ok": ("无", "none"),
            "major_dispute": ("重大矛盾纠纷", "major dispute"),
            "early_warning": ("预警性矛盾纠纷", "early-warning dispute"),
            "petition": ("上访动向", "petition movement"),
        },
    }

    class Options(IncrementalOptions):
        cutoff: time = time(20, 0)
        """Daily (and twice-weekly) reports are due at this local time."""
        expect: list[str] = ["daily"]
        """The report kinds every grid must submit."""
        window: Duration = parse_duration("30d")
        """The reporting-ratio window, [now − window, now]."""
        due_soon: Duration = parse_duration("3d")
        """Lead time before a due time in which an unsent report is due soon."""

        @field_validator("expect")
        @classmethod
        def _expect(cls, v: list[str]) -> list[str]:
            unknown = [k for k in v if k not in REPORT_KINDS]
            if unknown:
                raise ValueError(
                    f"unknown report kind(s) {', '.join(map(repr, unknown))}: expected {', '.join(REPORT_KINDS)}"
                )
            return list(dict.fromkeys(v))

        @field_validator("window")
        @classmethod
        def _window(cls, v: float) -> float:
            if v <= 0:
                raise ValueError("the window must be longer than zero")
            return v

    @classmethod
    def produces(cls, options: Options) -> set[str]:
        """The daily status only while daily reports are expected, overdue and due-soon only
        for periodic kinds: a rule on a metric no check produces is then a config error."""
        assert isinstance(options, cls.Options)
        out = {ON_TIME}
        if "daily" in options.expect:
            out.add(DAILY)
        if any(kind != "daily" for kind in options.expect):
            out |= {OVERDUE, DUE_SOON}
        return out

    @classmethod
    def reads(cls, options: Any) -> dict[str, Sequence[str]]:
        return {TABLE: COLUMNS}

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        assert self.source is not None
        self.tracker = Tracker(self.options.resync)
        self.feed = self.tracker.feed(self.source, TABLE, COLUMNS, "report_id")
        self._reset()

    def _reset(self) -> None:
        self.first: dict[tuple[str, str, str], float] = {}  # (grid, kind, period) -> first arrival
        self.periods: set[tuple[str, str]] = set()  # (kind, period) of those: a few hundred, shared by all grids
        self.red_days: dict[str, set[date]] = defaultdict(set)
        # A grid's on-time ratios and past daily lights change only with its own rows or when the
        # periods in the window change (about twice a day): between, a run grades again only the
        # grids that got rows, and stores only the lights that changed.
        self._graded: dict[str, list[tuple[str, float]]] = {}  # grid -> on-time ratio by kind
        self._graded_for: Any = None  # the periods those grades are for
        self._dirty: set[str] = set()  # grids with rows since they were graded
        self._stored: dict[str, dict[str, str]] = {}  # grid -> day -> light, as in the state database
        self._red_from: date | None = None  # red days before this are forgotten

    def _update(self, ctx: RunContext, grids: dict[str, Any]) -> None:
        tz, cutoff, src = ctx.tz, self.options.cutoff, self.feed.source.name
        first, red_days = self.first, self.red_days
        oldest = self._oldest(ctx.now.astimezone(tz))
        rows = self.feed.rows(ctx, timestamps=("submitted_at",), required=("submitted_at",), grids=grids)
        for row in rows:
            kind, flag = KINDS.get(_enum(row["kind"])), _enum(row["flag"])
            if kind is None:
                ctx.reject(src, "bad_kind", f"kind={str(row['kind'])[:20]!r}")
                continue
            if flag not in RED_FLAGS and flag not in NO_FLAG:
                ctx.reject(src, "bad_flag", f"flag={str(row['flag'])[:20]!r}")
                continue
            submitted = row["submitted_at"].astimezone(tz)
            period = str(row["period"] or "").strip() or period_for(kind, submitted.date())
            try:
                due = due_time(kind, period, tz, cutoff)  # refuses a malformed period
            except ValueError:
                ctx.reject(src, "bad_period", f"{kind} period={period[:20]!r}")
                continue
            # a year of history is read at once: one string per grid and per period, shared by
            # every key, and nothing kept of a period no figure looks at any more
            grid = sys.intern(row["grid_id"])
            if due >= oldest[kind]:
                period = sys.intern(period)
                key = (grid, kind, period)
                first[key] = min(first.get(key, math.inf), submitted.timestamp())
                self.periods.add((kind, period))
            if flag in RED_FLAGS:
                day = date.fromisoformat(period) if kind == "daily" else submitted.date()
                red_days[grid].add(day)
            self._dirty.add(grid)

    def _oldest(self, now: datetime) -> dict[str, datetime]:
        """Per kind, the due time before which a period moves no figure again: it is before the
        window and before the kind's latest due period (time only moves on; when it goes back,
        the tracker starts from scratch)."""
        start = now - timedelta(seconds=self.options.window)
        return {k: min(start, latest_due_period(k, now, self.options.cutoff)[1]) for k in REPORT_KINDS}

    def _forget_before(self, start: datetime, now: datetime) -> None:
        """Drop what no figure can look at again: periods due before :meth:`_oldest`, red days
        before the window."""
        opts, tz = self.options, now.tzinfo
        assert tz is not None  # run() hands an aware local time
        oldest = self._oldest(now)
        gone = {(k, p) for k, p in self.periods if due_time(k, p, tz, opts.cutoff) < oldest[k]}
        if gone:  # (about once a day) only then is every arrival looked at
            self.periods -= gone
            for key in [key for key in self.first if (key[1], key[2]) in gone]:
                del self.first[key]
        first_day = start.date() - timedelta(days=1)
        if first_day != self._red_from:
            self._red_from = first_day
            for days in self.red_days.values():
                days.difference_update([d for d in days if d < first_day])

    def run(self, ctx: RunContext) -> list[Sample]:
        opts = self.options
        grids = ctx.registry()
        self.tracker.refresh(ctx, grids, self._reset, lambda full: self._update(ctx, grids))
        tz, cutoff = ctx.tz, opts.cutoff
        now = ctx.now.astimezone(tz)
        first, red_days = self.first, self.red_days

        start = now - timedelta(seconds=opts.window)
        expected = {k: expected_periods(k, start, now, cutoff) for k in opts.expect}
        periodic = [k for k in opts.expect if k != "daily"]
        latest = {k: latest_due_period(k, now, cutoff) for k in periodic}
        upcoming = {k: next_due_period(k, now, cutoff) for k in periodic}
        today = now.date()
        today_due = due_time("daily", today.isoformat(), tz, cutoff)

        def light(grid: str, day: date, due: float) -> str:
            if day in red_days.get(grid, ()):
                return "red"
            arrived = first.get((grid, "daily", day.isoformat()), math.inf)
            return "green" if arrived <= due else "yellow"

        daily = "daily" in opts.expect
        before_cutoff = now < today_due
        days = [(p, date.fromisoformat(p), due.timestamp()) for p, due in expected["daily"]] if daily else []
        windows = {k: [(p, due.timestamp()) for p, due in expected[k]] for k in opts.expect}
        graded_for = (windows, today, before_cutoff)
        if graded_for != self._graded_for:  # the periods moved on: every grid is graded again
            self._graded, self._graded_for = {}, graded_for
        changed: list[tuple[str, str, str]] = []
        samples: list[Sample] = []
        for grid in grids:
            label = {"grid": grid}
            colour = light(grid, today, today_due.timestamp()) if daily else ""
            pending = colour == "yellow" and before_cutoff
            if daily:
                status = {"green": OK, "red": FLAGGED}.get(colour, PENDING if pending else MISSING)
                samples.append(Sample(DAILY, label, status))
            ratios = self._graded.get(grid)
            if ratios is None or grid in self._dirty:
                lit = {p: light(grid, day, due) for p, day, due in days}
                if daily and before_cutoff and not pending:  # pending is not yellow: not kept
                    lit[today.isoformat()] = colour
                stored = self._stored.get(grid, {})
                changed += [(grid, p, c) for p, c in lit.items() if stored.get(p) != c]
                self._stored[grid] = lit  # days that left the window stay as they were stored
                # a window shorter than the kind's cycle expects nothing: no ratio
                ratios = self._graded[grid] = [
                    (kind, sum(first.get((grid, kind, p), math.inf) <= due for p, due in periods) / len(periods))
                    for kind, periods in windows.items()
                    if periods
                ]
            samples += [Sample(ON_TIME, {**label, "kind": kind}, ratio) for kind, ratio in ratios]
            for kind in periodic:
                period, _ = latest[kind]
                overdue = (grid, kind, period) not in first  # a late submission is not overdue
                samples.append(Sample(OVERDUE, {**label, "kind": kind}, float(overdue)))
                period, due = upcoming[kind]
                soon = (grid, kind, period) not in first and (due.timestamp() - now.timestamp() <= opts.due_soon)
                samples.append(Sample(DUE_SOON, {**label, "kind": kind}, float(soon)))
        self._dirty.clear()

        self._forget_before(start, now)
        if ctx.state is not None and changed:
            try:
                ctx.state.call(lambda db: _store_lights(db, changed))
            except Exception:  # the history is a record; today's samples still matter more
                log.warning("could not store the daily report lights", exc_info=True)
                self._graded, self._stored = {}, {}  # every light is written again next run
        return samples

    def reasons(self, samples: Sequence[Sample]) -> Iterator[Reason]:
        for s in samples:
            grid = s.labels["grid"]
            if s.metric == DAILY and s.value >= FLAGGED:
                yield Reason(grid, RED, "daily_report_flagged", "今日报送反映重大矛盾纠纷、预警性纠纷或上访动向", DAILY)
            elif s.metric == DAILY and s.value >= MISSING:
                yield Reason(grid, YELLOW, "daily_report_missing", "今日信息未按时报送", DAILY)
            elif s.metric == OVERDUE and s.value > 0:
                kind = s.labels.get("kind", "")
                yield Reason(grid, YELLOW, "report_overdue", f"{self.display_name('kind', kind)}逾期未报", OVERDUE)


@hookimpl
def register_check_types() -> list[type[Check]]:
    return [ReportsCheck]


@hookimpl
def default_rules() -> list[dict[str, Any]]:
    # One rule for the daily status, so a flagged grid raises one critical alert rather than
    # a "missing" warning beside it: 2 (missing or late, yellow) is a warning, 3 (flagged,
    # red) critical. Severities mirror the grid's light.
    return [
        {
            "alert": "DailyReportStatus",
            "metric": DAILY,
            "above": {"warning": 1.5, "critical": 2.5},
            "for": "0s",
            "summary": "{grid_title}今日信息报送亮{light_name}",
            "description": "{grid_title}：今日信息截止时间前未报送或迟报的亮黄灯；"
            "报送内容涉及重大矛盾纠纷、预警性矛盾纠纷或上访动向的亮红灯。",
        },
        {
            "alert": "PeriodicReportOverdue",
            "metric": OVERDUE,
            "above": {"warning": 0},
            "for": "0s",
            "summary": "{grid_title}{kind_name}逾期未报",
            "description": "{grid_title}：最近一期{kind_name}的报送期限已过，尚未收到，请督促报送。",
        },
    ]
