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
- A report without a period (NULL or empty): a daily one counts for the local date it was
  sent; a monthly, quarterly or annual one for the latest period that had ended by then; a
  twice-weekly or weekly one for the last period due by then (a due time reached counts as
  passed) if that period is owed and still has no report, else for the next one due after
  it. "Still has no report" is judged as of the moment it was sent: a grid's reports of a kind
  are taken in the order they were sent, a report naming its period before one naming none
  sent at the same instant. A period that ended before the grid's start is owed by no one, so
  a new grid's first Friday report is that Friday's, not the Tuesday's before it came into
  service.
- A grid's start (rule book section 5) is ``grids.since``, else the local date of the earliest
  good report read (any kind: the platform's history starts there), else, with no report at
  all, today. A day counts from the start on; a period counts when its last day is on or
  after the start. Stored lights of days before a ``since`` are removed (an older gridwatch
  painted a first run's history yellow); a start that comes from the data removes nothing,
  since a platform may archive its old rows while the kept history must stay.
- A period stays overdue until a report for it arrives, late or not, as long as it was due
  within ``lookback``: ``gridwatch_report_missing_periods`` counts those periods,
  ``gridwatch_report_overdue`` is 1 while there is one, and
  ``gridwatch_report_oldest_missing_due_timestamp_seconds`` (the due time of the oldest of
  them, from which the kind gives back the period) with
  ``gridwatch_report_oldest_missing_age_seconds`` (how long ago that was, so the evaluation
  time and its year are known too) let the light's reason name it: 九月月报逾期未报,
  2025年12月月报等 3 期逾期未报. Both exist only while a period is missing.

The colour of every grid and day is kept in the state database (``reports_daily_lights``)
for the year-end assessment; :func:`daily_lights` reads it back.

How a report without a period is placed without reading the history again on every run: the
reports of a twice-weekly or weekly kind are kept per grid (:class:`_Log`) and placed again,
in the order they were sent, whenever one arrives. Those sent before a horizon (a week past
the oldest period any figure still looks at) are settled into their periods once a day, so
only a few weeks of them are kept; a report read later than that but sent before the horizon,
or a start that moved under settled reports, starts the check again from a full read
(:class:`gridwatch.api.Resync`), which places every report from the beginning.
"""

from __future__ import annotations

import logging
import math
import sys
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from pydantic import field_validator

from gridwatch.api import RED, YELLOW, Check, Deduction, Ratio, Reason, Resync, RunContext, Sample, Title
from gridwatch.calendar import (
    REPORT_KINDS,
    due_time,
    expected_periods,
    latest_due_period,
    next_due_period,
    next_period,
    period_for,
    period_span,
    previous_period,
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
MISSING = "gridwatch_report_missing_periods"
OLDEST_DUE = "gridwatch_report_oldest_missing_due_timestamp_seconds"
OLDEST_AGE = "gridwatch_report_oldest_missing_age_seconds"
ON_TIME = "gridwatch_report_on_time_ratio"
DUE_SOON = "gridwatch_report_due_soon"
EXPECTED = "gridwatch_report_expected"  # the reporting ratio's denominator
ON_TIME_COUNT = "gridwatch_report_on_time"  # and its numerator

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

OK, PENDING, MISSING_OR_LATE, FLAGGED = 0, 1, 2, 3
KINDS = {k: k for k in REPORT_KINDS}  # a kind read, as the one string every key shares
INFERRED = frozenset({"twice_weekly", "weekly"})
"""Kinds due inside their period: where a report without a period goes depends on the grid's
other reports of the kind."""
SETTLE_AFTER = timedelta(days=8)  # from the oldest period looked at to the horizon: a weekly cycle and a day
KEEP_INFERRED = timedelta(days=30)  # reports of those kinds kept at least this long: later ones start over
_DAY = timedelta(days=1)


def _enum(value: Any) -> str:
    return "" if value is None else str(value).strip().lower()


# --------------------------------------------------------------------------- periods in words

_CN = "一二三四五六七八九十"
_WEEKDAYS = "一二三四五六日"


def _cn(n: int) -> str:
    """1..12 in Chinese numerals: 九, 十一."""
    return _CN[n - 1] if n <= 10 else "十" + _CN[n - 11]


def period_name(kind: str, period: str, year: int) -> str:
    """A period of a kind of report in natural Chinese, naming its year when that is not
    ``year`` (the current one): 九月月报, 2025年12月月报, 第三季度季度分析, 2025年年报,
    11月20日（周五）综合信息, 第47周（11月16日至22日）周报告单."""
    first, last = period_span(kind, period)
    name = KIND_ZH[kind]
    if kind == "monthly":
        return f"{_cn(first.month)}月{name}" if first.year == year else f"{first.year}年{first.month}月{name}"
    if kind == "quarterly":
        prefix = "" if first.year == year else f"{first.year}年"
        return f"{prefix}第{_cn((first.month - 1) // 3 + 1)}季度{name}"
    if kind == "annual":
        return f"{first.year}年{name}"
    if kind == "weekly":
        iso_year, week = (int(x) for x in period.split("-W"))
        until = f"{last.day}日" if last.month == first.month else f"{last.month}月{last.day}日"
        prefix = "" if iso_year == year else f"{iso_year}年"
        return f"{prefix}第{week}周（{first.month}月{first.day}日至{until}）{name}"
    prefix = "" if last.year == year else f"{last.year}年"
    weekday = f"（周{_WEEKDAYS[last.weekday()]}）" if kind == "twice_weekly" else ""
    return f"{prefix}{last.month}月{last.day}日{weekday}{name}"


def period_due_at(kind: str, due: float, tz: tzinfo) -> str:
    """The period of ``kind`` whose report is due at ``due`` (epoch seconds): what
    ``gridwatch_report_oldest_missing_due_timestamp_seconds`` stands for."""
    local = datetime.fromtimestamp(due, tz)
    if kind in ("daily", "twice_weekly"):  # due at the cutoff of the period's last day
        return period_for(kind, local.date())
    named = (local - timedelta(hours=12)).date()  # due at 24:00 of the day the rule book names
    period = period_for(kind, named)
    return period if kind == "weekly" else previous_period(kind, period)


class Around:
    """The periods of a twice-weekly or weekly report around a moment: the last one due by then
    (a due time reached counts as passed), the last day it covers, and the next one due after
    the moment. Remembered per kind and local date: within a date they change only at the due
    time of the date's own period, the one due time a date of these kinds can hold."""

    def __init__(self, tz: tzinfo, cutoff: time) -> None:
        self.tz, self.cutoff = tz, cutoff
        self._days: dict[tuple[str, date], tuple[str, float, date, str, date, str]] = {}

    def __call__(self, kind: str, at: float) -> tuple[str, date, str]:
        day = datetime.fromtimestamp(at, self.tz).date()
        known = self._days.get((kind, day))
        if known is None:
            here = period_for(kind, day)
            before, after = previous_period(kind, here), next_period(kind, here)
            due = due_time(kind, here, self.tz, self.cutoff).timestamp()
            known = (here, due, period_span(kind, here)[1], before, period_span(kind, before)[1], after)
            self._days[(kind, day)] = known
        here, due, last, before, before_last, after = known
        return (here, last, after) if at >= due else (before, before_last, here)


class _Log:
    """One grid's reports of one twice-weekly or weekly kind, and the periods they count for."""

    __slots__ = ("arrived", "named", "nulls", "periods", "settled", "start")

    def __init__(self) -> None:
        self.named: dict[str, float] = {}  # period -> first arrival of a report naming it
        self.nulls: list[float] = []  # arrivals of the reports naming none, since the horizon
        self.periods: list[str] = []  # the period each of those counts for (sorted as nulls, once placed)
        self.settled: dict[str, float] = {}  # period -> first arrival of those sent before the horizon
        self.arrived: dict[str, float] = {}  # period -> first arrival of a report naming none
        self.start: date | None = None  # the grid's start when they were placed

    def first(self, period: str) -> float:
        return min(self.named.get(period, math.inf), self.arrived.get(period, math.inf))

    def place(self, kind: str, start: date, around: Around) -> None:
        """Place the reports naming no period, in the order they were sent: each counts for the
        last period due by then if that one is owed and has no report yet, else the next one."""
        nulls = sorted(self.nulls)
        got, named, periods = dict(self.settled), self.named, []
        for at in nulls:
            before, last, after = around(kind, at)
            period = before if last >= start and before not in got and named.get(before, math.inf) > at else after
            if period not in got:
                got[period] = at
            periods.append(period)
        self.nulls, self.periods, self.arrived, self.start = nulls, periods, got, start

    def settle(self, horizon: float) -> int:
        """Fold the reports sent before ``horizon`` into ``settled``; how many there were."""
        n = bisect_left(self.nulls, horizon)
        for at, period in zip(self.nulls[:n], self.periods[:n], strict=True):
            self.settled.setdefault(period, at)  # in the order sent: the first is the earliest
        del self.nulls[:n], self.periods[:n]
        return n


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


def _store_lights(db: Any, rows: list[tuple[str, str, str]], clear: Sequence[tuple[str, date]] = ()) -> None:
    """Write the lights that changed; remove a grid's lights of days before its ``since``."""
    with db.conn:
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {LIGHTS} (grid_id TEXT NOT NULL, day TEXT NOT NULL, "
            "light TEXT NOT NULL, PRIMARY KEY (grid_id, day))"
        )
        db.conn.executemany(
            f"DELETE FROM {LIGHTS} WHERE grid_id = ? AND day < ?", [(g, since.isoformat()) for g, since in clear]
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
        OVERDUE: "1 while a period of a periodic report due within the look-back has no submission.",
        MISSING: "Periods of a periodic report due within the look-back with no submission.",
        OLDEST_DUE: "Due time of the oldest period with no submission (the kind gives back the period).",
        OLDEST_AGE: "Seconds since the due time of the oldest period with no submission.",
        ON_TIME: "On-time submissions / expected submissions over the window (上报率).",
        DUE_SOON: "1 if the next period of a periodic report is due within the lead time and not yet submitted.",
        EXPECTED: "Submissions expected over the window (上报率's denominator).",
        ON_TIME_COUNT: "Submissions on time over the window (上报率's numerator).",
    }
    titles = {
        DAILY: Title(
            "今日日报",
            "Today's daily report",
            "status",
            {
                OK: ("已按时报送", "on time"),
                PENDING: ("待报送", "pending"),
                MISSING_OR_LATE: ("未按时报送", "missing or late"),
                FLAGGED: ("涉重大事项", "flags a major matter"),
            },
        ),
        OVERDUE: Title("逾期未报", "Report overdue", "flag"),
        ON_TIME: Title("上报率", "On-time reporting ratio", "ratio"),
        DUE_SOON: Title("即将到期", "Report due soon", "flag"),
        EXPECTED: Title("应报次数", "Expected submissions", "count"),
        ON_TIME_COUNT: Title("按时报送次数", "Submissions on time", "count"),
    }
    ratios = {ON_TIME: Ratio(ON_TIME_COUNT, EXPECTED)}
    deductions = {"reporting": Deduction(ON_TIME, "上报率", 1.0, 10.0, target=0.90)}
    display_names = {
        "alertname": {  # the default rules, as the board names a group of alerts
            "DailyReportStatus": ("日报未按时报送或报告异常", "daily report missing, late or flagged"),
            "PeriodicReportOverdue": ("定期报告逾期未报", "periodic report overdue"),
        },
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
        lookback: Duration = parse_duration("400d")
        """A period due within [now − lookback, now] with no submission is overdue (400 days:
        a missing annual report is seen)."""

        @field_validator("expect")
        @classmethod
        def _expect(cls, v: list[str]) -> list[str]:
            unknown = [k for k in v if k not in REPORT_KINDS]
            if unknown:
                raise ValueError(
                    f"unknown report kind(s) {', '.join(map(repr, unknown))}: expected {', '.join(REPORT_KINDS)}"
                )
            return list(dict.fromkeys(v))

        @field_validator("window", "lookback")
        @classmethod
        def _positive(cls, v: float) -> float:
            if v <= 0:
                raise ValueError("must be longer than zero")
            return v

    @classmethod
    def produces(cls, options: Options) -> set[str]:
        """The daily status only while daily reports are expected, overdue and due-soon only
        for periodic kinds: a rule on a metric no check produces is then a config error."""
        assert isinstance(options, cls.Options)
        out = {ON_TIME, EXPECTED, ON_TIME_COUNT}
        if "daily" in options.expect:
            out.add(DAILY)
        if any(kind != "daily" for kind in options.expect):
            out |= {OVERDUE, DUE_SOON, MISSING, OLDEST_DUE, OLDEST_AGE}
        return out

    @classmethod
    def reads(cls, options: Any) -> dict[str, Sequence[str]]:
        return {TABLE: COLUMNS}

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        assert self.source is not None
        self.tracker = Tracker(self.options.resync, self.options.resync_at)
        self.feed = self.tracker.feed(self.source, TABLE, COLUMNS, "report_id")
        self._cleared: dict[str, date] = {}  # grid -> the since before which its stored lights are gone
        self._reset()

    def _reset(self) -> None:
        self.first: dict[tuple[str, str, str], float] = {}  # (grid, kind, period) -> first arrival
        self.periods: set[tuple[str, str]] = set()  # (kind, period) of those: a few hundred, shared by all grids
        self.red_days: dict[str, set[date]] = defaultdict(set)
        self.earliest = math.inf  # the earliest good report read: the platform's history starts there
        # twice-weekly and weekly reports, per grid and kind; what was settled, per kind
        self.logs: dict[tuple[str, str], _Log] = {}
        self.horizon: dict[str, float] = {}  # kind -> reports sent before it are settled
        self.settled = 0  # reports settled so far: from then on a report sent before the horizon starts over
        self._place: set[tuple[str, str]] = set()  # logs with reports not placed yet
        self._since: dict[str, date | None] | None = None  # grid -> since, as the logs were built
        self._around: Around | None = None
        # A grid's on-time ratios, missing periods and past daily lights change only with its own
        # rows, its start, or when the periods looked at change (about twice a day): between, a
        # run grades again only the grids that got rows, and stores only the lights that changed.
        self._graded: dict[str, tuple[date, list[tuple[str, int, int]], list[tuple[str, int, float]]]] = {}
        self._graded_for: Any = None  # the periods those grades are for
        self._dirty: set[str] = set()  # grids with rows since they were graded
        self._stored: dict[str, dict[str, str]] = {}  # grid -> day -> light, as in the state database
        self._red_from: date | None = None  # red days before this are forgotten

    def checkpoint(self) -> dict[str, Any] | None:
        """What the check keeps between runs, for a restart to go on from (see
        :mod:`gridwatch.pipeline.checkpoint`). What only spares work is left out: the grades
        are worked out again, and every light in the window is stored again, at the next run."""
        logs = {
            key: (log_.named, log_.nulls, log_.periods, log_.settled, log_.arrived, log_.start)
            for key, log_ in self.logs.items()
        }
        return {
            "tracker": self.tracker.checkpoint(),
            "first": self.first,
            "periods": self.periods,
            "red_days": dict(self.red_days),
            "earliest": self.earliest,
            "logs": logs,
            "horizon": self.horizon,
            "settled": self.settled,
            "place": self._place,
            "since": self._since,
            "red_from": self._red_from,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint` gave. The tracker comes last: until it is restored
        the next run reads in full, which starts from an empty state (on any error here too)."""
        self._reset()
        self.first = {(sys.intern(g), k, sys.intern(p)): float(at) for (g, k, p), at in state["first"].items()}
        self.periods = {(k, sys.intern(p)) for k, p in state["periods"]}
        self.red_days = defaultdict(set, {sys.intern(g): set(days) for g, days in state["red_days"].items()})
        self.earliest = float(state["earliest"])
        for (grid, kind), (named, nulls, periods, settled, arrived, start) in state["logs"].items():
            log_ = self.logs[(sys.intern(grid), kind)] = _Log()
            log_.named, log_.nulls, log_.periods = dict(named), list(nulls), list(periods)
            log_.settled, log_.arrived, log_.start = dict(settled), dict(arrived), start
        self.horizon, self.settled = dict(state["horizon"]), int(state["settled"])
        self._place, self._since, self._red_from = set(state["place"]), state["since"], state["red_from"]
        self.tracker.restore(state["tracker"])

    def _keep(self, now: datetime) -> dict[str, float]:
        """Per kind, the due time (epoch seconds) before which a period moves no figure again: it
        is before the window, the look-back and the kind's latest due period (time only moves on;
        when it goes back, the tracker starts from scratch). Twice-weekly and weekly reports are
        kept a month at least, so that one read a little late does not start the check over."""
        opts, at = self.options, now.timestamp()
        out = {}
        for kind in REPORT_KINDS:
            keep = min(at - opts.window, latest_due_period(kind, now, opts.cutoff)[1].timestamp())
            if kind != "daily":
                keep = min(keep, at - opts.lookback)
            if kind in INFERRED:
                keep = min(keep, at - KEEP_INFERRED.total_seconds())
            out[kind] = keep
        return out

    def _update(self, ctx: RunContext, grids: dict[str, Any], full: bool) -> None:
        opts = self.options
        tz, cutoff, src = ctx.tz, opts.cutoff, self.feed.source.name
        first, red_days, logs, place = self.first, self.red_days, self.logs, self._place
        expect = frozenset(opts.expect)
        keep = self._keep(ctx.now.astimezone(tz))
        inferred = INFERRED & expect
        if inferred:
            since = {g: grid.since for g, grid in grids.items()}
            if full:
                self._since = since
            elif since != self._since:  # placed and settled reports may have gone elsewhere
                raise Resync("a grid's start changed")
        # from here on, what a report sent before the horizon or before the history's start
        # changes cannot be worked out from the kept state: start over (counting its bad rows once)
        guard = not full and self.settled > 0
        counted = (Counter(ctx.rejected), dict(ctx.examples)) if guard else None
        derived = guard and any(since is None for since in self._since.values()) if self._since else False
        history = _local_day(self.earliest, tz) if derived and self.earliest < math.inf else None

        def start_over(why: str) -> Resync:
            assert counted is not None
            ctx.rejected.clear()
            ctx.rejected.update(counted[0])
            ctx.examples.clear()
            ctx.examples.update(counted[1])
            return Resync(why)

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
            at = submitted.timestamp()
            period: str | None = str(row["period"] or "").strip()
            if period:
                try:
                    due = due_time(kind, period, tz, cutoff).timestamp()  # refuses a malformed period
                except ValueError:
                    ctx.reject(src, "bad_period", f"{kind} period={period[:20]!r}")
                    continue
            elif kind in INFERRED:
                period, due = None, math.inf  # placed among the grid's other reports of the kind
            else:
                period = period_for(kind, submitted.date())
                if kind != "daily":  # the latest period that had ended when it was sent
                    period = previous_period(kind, period)
                due = due_time(kind, period, tz, cutoff).timestamp()
            if guard:
                if kind in inferred and at < self.horizon.get(kind, -math.inf):
                    raise start_over("a report sent before the settled ones")
                if history is not None and submitted.date() < history:
                    raise start_over("a report older than the history read")
            self.earliest = min(self.earliest, at)
            # a year of history is read at once: one string per grid and per period, shared by
            # every key, and nothing kept of a period no figure looks at any more
            grid = sys.intern(row["grid_id"])
            if flag in RED_FLAGS:
                day = date.fromisoformat(period) if kind == "daily" and period else submitted.date()
                red_days[grid].add(day)
            self._dirty.add(grid)
            if kind not in expect:
                continue
            if kind in INFERRED:
                log_ = logs.get((grid, kind))
                if log_ is None:
                    log_ = logs[(grid, kind)] = _Log()
                if period is None:
                    log_.nulls.append(at)
                elif (kind not in self.horizon or due >= keep[kind]) and at < log_.named.get(period, math.inf):
                    # until the first settling every named period is kept: reports placed from
                    # the beginning of the history look at old ones
                    log_.named[sys.intern(period)] = at
                place.add((grid, kind))
            elif due >= keep[kind]:
                assert period is not None
                period = sys.intern(period)
                key = (grid, kind, period)
                first[key] = min(first.get(key, math.inf), at)
                self.periods.add((kind, period))

    def _forget_before(self, start: datetime, now: datetime) -> None:
        """Drop what no figure can look at again: periods due before :meth:`_keep`, red days
        before the window; settle the twice-weekly and weekly reports sent before the horizon."""
        opts, tz = self.options, now.tzinfo
        assert tz is not None
        keep = self._keep(now)
        due: dict[tuple[str, str], float] = {}

        def due_of(kind: str, period: str) -> float:
            at = due.get((kind, period))
            if at is None:
                at = due[(kind, period)] = due_time(kind, period, tz, opts.cutoff).timestamp()
            return at

        gone = {(k, p) for k, p in self.periods if due_of(k, p) < keep[k]}
        if gone:  # (about once a day) only then is every arrival looked at
            self.periods -= gone
            for key in [key for key in self.first if (key[1], key[2]) in gone]:
                del self.first[key]
        first_day = start.date() - _DAY
        if first_day != self._red_from:
            self._red_from = first_day
            for days in self.red_days.values():
                days.difference_update([d for d in days if d < first_day])
        for kind in INFERRED & frozenset(opts.expect):
            # the horizon moves once a day: a week past the oldest period looked at, so that a
            # report sent after it never looks at a period forgotten
            day = datetime.fromtimestamp(keep[kind], tz).date() + SETTLE_AFTER
            horizon = datetime.combine(day, time(0), tzinfo=tz).timestamp()
            if horizon <= self.horizon.get(kind, -math.inf):
                continue
            self.horizon[kind] = horizon
            for (_, k), log_ in self.logs.items():
                if k != kind:
                    continue
                self.settled += log_.settle(horizon)
                for periods in (log_.named, log_.settled, log_.arrived):
                    for p in [p for p in periods if due_of(kind, p) < keep[kind]]:
                        del periods[p]

    def _arrival(self, grid: str, kind: str, period: str) -> float:
        """The first arrival of a report for the period (inf: none yet)."""
        if kind in INFERRED:
            log_ = self.logs.get((grid, kind))
            return math.inf if log_ is None else log_.first(period)
        return self.first.get((grid, kind, period), math.inf)

    def run(self, ctx: RunContext) -> list[Sample]:
        opts = self.options
        grids = ctx.registry()
        self.tracker.refresh(ctx, grids, self._reset, lambda full: self._update(ctx, grids, full))
        tz, cutoff = ctx.tz, opts.cutoff
        now = ctx.now.astimezone(tz)
        at = now.timestamp()
        first, red_days = self.first, self.red_days
        today = now.date()
        history = _local_day(self.earliest, tz) if self.earliest < math.inf else today
        starts = {g: grid.since or history for g, grid in grids.items()}

        # place the reports without a period that came in, or whose grid's start moved
        if self._around is None:
            self._around = Around(tz, cutoff)
        for key, log_ in self.logs.items():
            start = starts.get(key[0], history)
            if key in self._place or log_.start != start:
                log_.place(key[1], start, self._around)
                self._dirty.add(key[0])
        self._place.clear()

        start = now - timedelta(seconds=opts.window)
        periodic = [k for k in opts.expect if k != "daily"]

        def spans(periods: list[tuple[str, datetime]], kind: str) -> list[tuple[str, float, date]]:
            return [(p, due.timestamp(), period_span(kind, p)[1]) for p, due in periods]

        windows = {k: spans(expected_periods(k, start, now, cutoff), k) for k in opts.expect}
        back = now - timedelta(seconds=opts.lookback)
        counted = {k: spans(expected_periods(k, back, now, cutoff), k) for k in periodic}
        upcoming = {k: spans([next_due_period(k, now, cutoff)], k)[0] for k in periodic}
        today_due = due_time("daily", today.isoformat(), tz, cutoff)

        def light(grid: str, day: date, due: float) -> str:
            if day in red_days.get(grid, ()):
                return "red"
            arrived = first.get((grid, "daily", day.isoformat()), math.inf)
            return "green" if arrived <= due else "yellow"

        daily = "daily" in opts.expect
        before_cutoff = now < today_due
        days = [(p, date.fromisoformat(p), due) for p, due, _ in windows["daily"]] if daily else []
        graded_for = (windows, counted, today, before_cutoff)
        if graded_for != self._graded_for:  # the periods moved on: every grid is graded again
            self._graded, self._graded_for = {}, graded_for
        arrival = self._arrival
        changed: list[tuple[str, str, str]] = []
        samples: list[Sample] = []
        for grid in grids:
            label = {"grid": grid}
            begins = starts[grid]
            in_service = today >= begins
            colour = light(grid, today, today_due.timestamp()) if daily and in_service else ""
            pending = colour == "yellow" and before_cutoff
            if colour:
                status = {"green": OK, "red": FLAGGED}.get(colour, PENDING if pending else MISSING_OR_LATE)
                samples.append(Sample(DAILY, label, status))
            graded = self._graded.get(grid)
            if graded is None or grid in self._dirty or graded[0] != begins:
                lit = {p: light(grid, day, due) for p, day, due in days if day >= begins}
                if colour and before_cutoff and not pending:  # pending is not yellow: not kept
                    lit[today.isoformat()] = colour
                stored = self._stored.get(grid, {})
                changed += [(grid, p, c) for p, c in lit.items() if stored.get(p) != c]
                self._stored[grid] = lit  # days that left the window stay as they were stored
                ratios: list[tuple[str, int, int]] = []
                for kind, periods in windows.items():
                    owed = [(p, due) for p, due, last in periods if last >= begins]
                    ratios.append((kind, sum(arrival(grid, kind, p) <= due for p, due in owed), len(owed)))
                missing = []
                for kind in periodic:
                    unsent = [
                        due for p, due, last in counted[kind] if last >= begins and arrival(grid, kind, p) == math.inf
                    ]
                    missing.append((kind, len(unsent), unsent[0] if unsent else math.inf))  # oldest first
                graded = self._graded[grid] = (begins, ratios, missing)
            for kind, in_time, expected in graded[1]:  # a window shorter than the kind's cycle: no ratio
                by_kind = {**label, "kind": kind}
                samples += [Sample(EXPECTED, by_kind, expected), Sample(ON_TIME_COUNT, by_kind, in_time)]
                samples += [Sample(ON_TIME, by_kind, in_time / expected)] if expected else []
            for kind, n, oldest in graded[2]:
                labels = {**label, "kind": kind}  # a late submission is not overdue: only what never came
                samples.append(Sample(OVERDUE, labels, float(n > 0)))
                samples.append(Sample(MISSING, labels, float(n)))
                if n:
                    samples.append(Sample(OLDEST_DUE, labels, oldest))
                    samples.append(Sample(OLDEST_AGE, labels, at - oldest))
                period, due, last = upcoming[kind]
                soon = last >= begins and arrival(grid, kind, period) == math.inf and due - at <= opts.due_soon
                samples.append(Sample(DUE_SOON, labels, float(soon)))
        self._dirty.clear()

        self._forget_before(start, now)
        clear = [(g, grid.since) for g, grid in grids.items() if grid.since and self._cleared.get(g) != grid.since]
        if ctx.state is not None and (changed or clear):
            try:
                ctx.state.call(lambda db: _store_lights(db, changed, clear))
            except Exception:  # the history is a record; today's samples still matter more
                log.warning("could not store the daily report lights", exc_info=True)
                self._graded, self._stored = {}, {}  # every light is written again next run
            else:
                self._cleared.update(clear)
        return samples

    def reasons(self, samples: Sequence[Sample]) -> Iterator[Reason]:
        missing: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for s in samples:
            if s.metric in (MISSING, OLDEST_DUE, OLDEST_AGE):
                missing[(s.labels["grid"], s.labels.get("kind", ""))][s.metric] = s.value
        tz = getattr(getattr(self, "env", None), "tz", None)  # the configured zone, to name periods
        for s in samples:
            grid = s.labels["grid"]
            if s.metric == DAILY and s.value >= FLAGGED:
                yield Reason(grid, RED, "daily_report_flagged", "今日报送反映重大矛盾纠纷、预警性纠纷或上访动向", DAILY)
            elif s.metric == DAILY and s.value >= MISSING_OR_LATE:
                yield Reason(grid, YELLOW, "daily_report_missing", "今日信息未按时报送", DAILY)
            elif s.metric == OVERDUE and s.value > 0:
                kind = s.labels.get("kind", "")
                text = _overdue_text(self.display_name("kind", kind), kind, missing.get((grid, kind), {}), tz)
                yield Reason(grid, YELLOW, "report_overdue", text, OVERDUE)


def _overdue_text(shown: str, kind: str, missing: dict[str, float], tz: tzinfo | None) -> str:
    """九月月报逾期未报, 九月月报等 2 期逾期未报; the kind alone (``shown``: 月报逾期未报) when the
    samples do not say which period."""
    due, age = missing.get(OLDEST_DUE), missing.get(OLDEST_AGE)
    if tz is None or due is None or age is None or kind not in KIND_ZH:
        return f"{shown}逾期未报"
    try:
        year = datetime.fromtimestamp(due + age, tz).year  # the evaluation time's year
        name = period_name(kind, period_due_at(kind, due, tz), year)
    except (ValueError, OverflowError, OSError):
        return f"{shown}逾期未报"
    n = int(missing.get(MISSING, 1))
    return f"{name}逾期未报" if n <= 1 else f"{name}等 {n} 期逾期未报"


def _local_day(at: float, tz: tzinfo) -> date:
    return datetime.fromtimestamp(at, tz).date()


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
            "description": "{grid_title}：有{kind_name}已过报送期限仍未收到，请督促补报。",
        },
    ]
