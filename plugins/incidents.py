"""The ``incidents`` check: the incident queue of each grid (rule book section 2).

Open cases by severity and stage, overdue cases, the age of the oldest open case, and the
four KPIs that digital city-management centres publish (closure, on-time closure, rework,
extension). Deadlines come from :mod:`gridwatch.calendar`, so working-day limits follow the
statutory schedule and the operator's ``[calendar]`` overrides.

Escalation (督办): an item still unresolved a week later is reported again, and after the second
report a leader supervises it in person. Precisely, an open case past its deadline (extended or
not) is on exactly one level: past it by up to ``re_report_after`` (7 days) it is ``overdue``
(超期, a warning); by more than that ``re_reported`` (二次通报, a warning naming the street); by
more than ``supervise_after`` (14 days) ``supervised`` (挂牌督办, critical: the grid turns red).
A closed case never escalates. ``gridwatch_incidents_escalated{grid,level}`` counts each level
for every grid (0 included), so a rule can route each level to its own receiver;
``gridwatch_incidents_max_overdue_seconds{grid,level}`` says how far past its deadline the
longest-overdue case of a level is, which the light's reason quotes in whole days.

As of a time (DOMAIN.md §5): figures are as of ``now``. A case reported after it does not exist
yet, and one accepted, dispatched, resolved or closed after it is taken at the stage it had then
(:func:`gridwatch.rows.clean` reads those times as NULL).

``gridwatch_incidents_open`` carries only the (severity, stage) combinations that have at
least one open case: eight mostly-zero series per grid would bloat ``/metrics``, and a series
that disappears when its last case closes resolves its alert all the same.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Any

from pydantic import field_validator, model_validator

from gridwatch.api import RED, ROW_KEY, YELLOW, Check, Deduction, Ratio, Reason, RunContext, Sample, Tally, Title
from gridwatch.calendar import WorkCalendar, incident_deadline, parse_limit
from gridwatch.durations import Duration, parse_duration
from gridwatch.feeds import IncrementalOptions, Tracker
from gridwatch.hookspecs import hookimpl
from gridwatch.rows import BAD_VALUE
from gridwatch.schema import STANDARD_SCHEMA

TABLE = "incidents"
COLUMNS = tuple(c for c in STANDARD_SCHEMA[TABLE] if c != "category")  # the category is not needed
STAGES = ("reported", "accepted", "dispatched", "resolved")  # in the order a case moves
STAMPS = (*(f"{s}_at" for s in STAGES), "closed_at")
DEFAULT_LIMITS = {"community": "1d", "subdistrict": "2d", "department": "3d", "special": "5wd"}

OPEN = "gridwatch_incidents_open"
OVERDUE = "gridwatch_incidents_overdue"
OLDEST = "gridwatch_incident_oldest_open_age_seconds"
CLOSURE = "gridwatch_incidents_closure_ratio"
ON_TIME = "gridwatch_incidents_on_time_closure_ratio"
REWORK = "gridwatch_incidents_rework_ratio"
EXTENSION = "gridwatch_incidents_extension_ratio"
ESCALATED = "gridwatch_incidents_escalated"
MAX_OVERDUE = "gridwatch_incidents_max_overdue_seconds"
# the counts beside the KPIs (DOMAIN.md §7): each ratio's numerator and denominator, 0 included
DUE = "gridwatch_incidents_due"
DUE_CLOSED = "gridwatch_incidents_due_closed"
DUE_ON_TIME = "gridwatch_incidents_due_closed_on_time"
DUE_EXTENDED = "gridwatch_incidents_due_extended"
CLOSED = "gridwatch_incidents_closed"
CLOSED_REWORKED = "gridwatch_incidents_closed_reworked"
LEVELS = ("overdue", "re_reported", "supervised")  # the escalation ladder, bottom up
LEVEL_ZH = {"overdue": "超期", "re_reported": "二次通报", "supervised": "挂牌督办"}
DAY = 86400.0


@dataclass(slots=True)
class _Case:
    """What the figures need of one incident."""

    grid: str
    severity: str
    stage: str
    reported: datetime
    deadline: float
    closed: float | None
    extended: bool
    reopened: int


@dataclass
class _Tally:
    """One grid's counts over the window: the numerators and denominators of the KPIs."""

    overdue: int = 0
    oldest: datetime | None = None
    escalated: Counter[str] = field(default_factory=Counter)  # level -> open cases on it
    max_overdue: dict[str, float] = field(default_factory=dict)  # level -> seconds past the deadline
    due: int = 0
    due_closed: int = 0
    due_on_time: int = 0
    due_extended: int = 0
    closed: int = 0
    closed_reworked: int = 0


def _enum(value: Any) -> str:
    return "" if value is None else str(value).strip().lower()


def _count(value: Any) -> int | None:
    """A non-negative integer column (NULL = 0); None when the value is not one."""
    if value is None or value == "":
        return 0
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 0 and n == float(value) else None


def _flag(value: Any) -> bool | None:
    """The ``extended`` column as a boolean (NULL = not extended); None when unreadable."""
    text = _enum(value)
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    return None


class IncidentsCheck(Check["IncidentsCheck.Options"]):
    type = "incidents"
    metrics = {
        OPEN: "Open incidents by severity and current stage (only combinations with cases).",
        OVERDUE: "Open incidents past their handling deadline.",
        OLDEST: "Seconds since the oldest open incident was reported.",
        CLOSURE: "Due incidents in the window that are now closed / due incidents (结案率).",
        ON_TIME: "Due incidents closed by their deadline / due incidents (按期结案率).",
        REWORK: "Incidents closed in the window that were reopened / closed incidents (返工率).",
        EXTENSION: "Due incidents with an approved extension / due incidents (延期率).",
        ESCALATED: "Open incidents past their deadline by escalation level: overdue (超期), "
        "re_reported (二次通报), supervised (挂牌督办); every level for every grid.",
        MAX_OVERDUE: "Seconds the longest-overdue open incident of a level is past its deadline "
        "(only levels with incidents).",
        DUE: "Incidents whose deadline fell in the window (the KPIs' denominator).",
        DUE_CLOSED: "Due incidents now closed (结案率's numerator).",
        DUE_ON_TIME: "Due incidents closed by their deadline (按期结案率's numerator).",
        DUE_EXTENDED: "Due incidents with an approved extension (延期率's numerator).",
        CLOSED: "Incidents closed in the window (返工率's denominator).",
        CLOSED_REWORKED: "Incidents closed in the window that were reopened (返工率's numerator).",
    }
    titles = {
        OPEN: Title("未结案件", "Open cases", "count"),
        OVERDUE: Title("超期案件", "Overdue cases", "count"),
        OLDEST: Title("最久未结案件历时", "Oldest open case", "seconds"),
        CLOSURE: Title("结案率", "Closure ratio", "ratio"),
        ON_TIME: Title("按期结案率", "On-time closure ratio", "ratio"),
        REWORK: Title("返工率", "Rework ratio", "ratio"),
        EXTENSION: Title("延期率", "Extension ratio", "ratio"),
        DUE: Title("到期案件", "Due cases", "count"),
        DUE_CLOSED: Title("到期已结案件", "Due cases closed", "count"),
        DUE_ON_TIME: Title("到期按期结案件", "Due cases closed on time", "count"),
        DUE_EXTENDED: Title("到期延期案件", "Due cases extended", "count"),
        CLOSED: Title("结案件数", "Cases closed", "count"),
        CLOSED_REWORKED: Title("返工案件", "Closed cases reworked", "count"),
    }
    ratios = {
        CLOSURE: Ratio(DUE_CLOSED, DUE),
        ON_TIME: Ratio(DUE_ON_TIME, DUE),
        EXTENSION: Ratio(DUE_EXTENDED, DUE),
        REWORK: Ratio(CLOSED_REWORKED, CLOSED),
    }
    deductions = {
        "incidents_overdue": Deduction(OVERDUE, "超期未办结案件", 2.0, 10.0, unit="件"),
        "on_time_closure": Deduction(ON_TIME, "按期结案率", 0.5, 10.0, target=0.90),
    }
    display_names = {
        "alertname": {  # the default rules, as the board names a group of alerts
            "MajorIncidentOpen": ("重大案件未结", "major case open"),
            "IncidentsOverdue": ("事件超期未办结", "cases past their deadline"),
            "IncidentsReReported": ("超期事件二次通报", "overdue cases reported again"),
            "IncidentsSupervised": ("超期事件挂牌督办", "overdue cases under supervision"),
            "OnTimeClosureLow": ("按期结案率偏低", "on-time closure low"),
        },
        "severity": {"normal": ("一般", "normal"), "major": ("重大", "major")},
        "stage": {
            "reported": ("已上报", "reported"),
            "accepted": ("已受理", "accepted"),
            "dispatched": ("已派遣", "dispatched"),
            "resolved": ("已处置待核查", "resolved, awaiting verification"),
        },
        "tier": {
            "community": ("社区", "community"),
            "subdistrict": ("街道", "street office"),
            "department": ("职能部门", "functional department"),
            "special": ("特殊", "special"),
        },
        "level": {
            "overdue": ("超期", "overdue"),
            "re_reported": ("二次通报", "reported again"),
            "supervised": ("挂牌督办", "supervised by a leader"),
        },
    }

    class Options(IncrementalOptions):
        limits: dict[str, str] = DEFAULT_LIMITS
        """Handling limit per tier: "Nd" (N×24 h) or "Nwd" (N working days)."""
        window: Duration = parse_duration("30d")
        """The KPI window, [now − window, now]."""
        major_severity: str = "major"
        """The source's spelling of a major case; it is published as severity="major"."""
        re_report_after: Duration = parse_duration("7d")
        """An open case past its deadline by more than this is reported again (二次通报)."""
        supervise_after: Duration = parse_duration("14d")
        """An open case past its deadline by more than this is supervised by a leader (挂牌督办)."""

        @field_validator("limits")
        @classmethod
        def _limits(cls, v: dict[str, str]) -> dict[str, str]:
            # Overriding one tier keeps the others' defaults; a typo in a tier or a limit
            # must be a config error, not a silently wrong deadline.
            unknown = sorted(set(v) - set(DEFAULT_LIMITS))
            if unknown:
                raise ValueError(f"unknown tier(s) {', '.join(unknown)}: expected {', '.join(DEFAULT_LIMITS)}")
            for limit in v.values():
                parse_limit(limit)
            return {**DEFAULT_LIMITS, **v}

        @field_validator("major_severity")
        @classmethod
        def _major(cls, v: str) -> str:
            v = _enum(v)
            if not v or v == "normal":
                raise ValueError("must name the severity of major cases, not empty or 'normal'")
            return v

        @field_validator("window")
        @classmethod
        def _window(cls, v: float) -> float:
            if v <= 0:
                raise ValueError("the window must be longer than zero")
            return v

        @model_validator(mode="after")
        def _ladder(self) -> IncidentsCheck.Options:
            # a ladder whose steps do not climb would put a case on two levels, or skip one
            if not 0 < self.re_report_after < self.supervise_after:
                raise ValueError("escalation steps must climb: 0 < re_report_after < supervise_after")
            return self

    @classmethod
    def reads(cls, options: Any) -> dict[str, Sequence[str]]:
        return {TABLE: COLUMNS}

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        assert self.source is not None
        self.tracker = Tracker(self.options.resync, self.options.resync_at)
        self.feed = self.tracker.feed(self.source, TABLE, COLUMNS, "incident_id", mutable=True)
        self.cases: dict[Any, _Case] = {}  # row key -> a case that can still move a figure

    def checkpoint(self) -> dict[str, Any] | None:
        """What the check keeps between runs, for a restart to go on from (see
        :mod:`gridwatch.pipeline.checkpoint`): the cases that can still move a figure, as tuples."""
        cases = {
            key: (c.grid, c.severity, c.stage, c.reported, c.deadline, c.closed, c.extended, c.reopened)
            for key, c in self.cases.items()
        }
        return {"tracker": self.tracker.checkpoint(), "cases": cases}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint` gave (the cases are read again at the next run, as
        after any run: only their hashes are gone)."""
        cases = {key: _Case(*fields) for key, fields in state["cases"].items()}
        self.tracker.restore(state["tracker"])
        self.cases = cases

    def _case(self, ctx: RunContext, row: dict[str, Any], cal: WorkCalendar) -> _Case | None:
        """One cleaned row as a case, or None (rejected and counted)."""
        opts, src = self.options, self.feed.source.name
        severity = {"normal": "normal", opts.major_severity: "major"}.get(_enum(row["severity"]))
        tier = _enum(row["tier"])
        reopened, extended = _count(row["reopened_count"]), _flag(row["extended"])
        if severity is None:
            ctx.reject(src, "bad_severity", f"severity={str(row['severity'])[:20]!r}")
            return None
        if tier not in opts.limits:
            ctx.reject(src, "bad_tier", f"tier={str(row['tier'])[:20]!r}")
            return None
        if reopened is None or extended is None:
            ctx.reject(src, BAD_VALUE, "reopened_count or extended is not a count / 0 or 1")
            return None
        reported = row["reported_at"].astimezone(ctx.tz)  # a working-day limit needs local dates
        deadline = incident_deadline(reported, opts.limits[tier], cal, extended).timestamp()
        closed = None if row["closed_at"] is None else row["closed_at"].timestamp()
        # the furthest stage reached: stages only move forward
        stage = next(s for s in reversed(STAGES) if row[f"{s}_at"] is not None)
        return _Case(row["grid_id"], severity, stage, reported, deadline, closed, extended, reopened)

    def _update(self, ctx: RunContext, grids: dict[str, Any], full: bool) -> None:
        cal = ctx.calendar or WorkCalendar()  # statutory schedule when run without overrides
        rules = {"timestamps": STAMPS, "required": ("reported_at",), "grids": grids}
        kept, self.cases = self.cases, {}
        rows = self.feed.rows(ctx, **rules)
        if not full:
            # what was read before is read again, for it may have changed: the cases that can
            # still move a figure, and every open one (a case reopened long after it closed)
            rows = chain(rows, self.feed.current(ctx, kept, open_column="closed_at", **rules))
        for n, row in enumerate(rows):
            case = self._case(ctx, row, cal)
            if case is None:
                self.feed.refuse(row)
            else:  # a source that cannot re-read rows gives no keys: it reads all, always
                self.cases[row.get(ROW_KEY, -n - 1)] = case
        if not full:
            self.cases.update((key, kept[key]) for key in self.feed.unchanged)  # read again as they were
        # a case closed before the window whose deadline also fell before it moves no
        # figure again (the window only moves on); an edit that reopens it waits for the resync
        start = ctx.now.timestamp() - self.options.window
        for key in [k for k, c in self.cases.items() if c.closed is not None and c.closed < start > c.deadline]:
            del self.cases[key]

    def run(self, ctx: RunContext) -> Iterator[Sample]:
        opts = self.options
        grids = ctx.registry()
        self.tracker.refresh(ctx, grids, self.cases.clear, lambda full: self._update(ctx, grids, full))
        now = ctx.now.astimezone(ctx.tz)
        now_s = now.timestamp()  # compare instants: wall clocks repeat when DST ends
        start = now_s - opts.window

        tallies: dict[str, _Tally] = defaultdict(_Tally)
        open_cases: Counter[tuple[str, str, str]] = Counter()
        for c in self.cases.values():
            t = tallies[c.grid]
            if c.closed is None:
                open_cases[(c.grid, c.severity, c.stage)] += 1
                t.oldest = c.reported if t.oldest is None else min(t.oldest, c.reported)
                late = now_s - c.deadline  # closing exactly at the deadline is on time
                if late > 0:
                    t.overdue += 1
                    level = LEVELS[(late > opts.re_report_after) + (late > opts.supervise_after)]
                    t.escalated[level] += 1
                    t.max_overdue[level] = max(t.max_overdue.get(level, 0.0), late)
            if start <= c.deadline <= now_s:
                t.due += 1
                t.due_closed += c.closed is not None
                t.due_on_time += c.closed is not None and c.closed <= c.deadline
                t.due_extended += c.extended
            if c.closed is not None and start <= c.closed:  # clean() read closed_at > now as NULL
                t.closed += 1
                t.closed_reworked += c.reopened > 0

        for (grid, severity, stage), n in sorted(open_cases.items()):
            yield Sample(OPEN, {"grid": grid, "severity": severity, "stage": stage}, n)
        for grid in grids:
            t = tallies.get(grid) or _Tally()
            label = {"grid": grid}
            yield Sample(OVERDUE, label, t.overdue)
            for level in LEVELS:
                yield Sample(ESCALATED, {"grid": grid, "level": level}, t.escalated[level])
            for level, late in t.max_overdue.items():
                yield Sample(MAX_OVERDUE, {"grid": grid, "level": level}, late)
            if t.oldest is not None:
                yield Sample(OLDEST, label, (now - t.oldest).total_seconds())
            # the counts always (0 is a fact); a ratio with nothing to divide by not at all
            yield Sample(DUE, label, t.due)
            yield Sample(DUE_CLOSED, label, t.due_closed)
            yield Sample(DUE_ON_TIME, label, t.due_on_time)
            yield Sample(DUE_EXTENDED, label, t.due_extended)
            yield Sample(CLOSED, label, t.closed)
            yield Sample(CLOSED_REWORKED, label, t.closed_reworked)
            if t.due:
                yield Sample(CLOSURE, label, t.due_closed / t.due)
                yield Sample(ON_TIME, label, t.due_on_time / t.due)
                yield Sample(EXTENSION, label, t.due_extended / t.due)
            if t.closed:
                yield Sample(REWORK, label, t.closed_reworked / t.closed)

    def reasons(self, samples: Sequence[Sample]) -> Iterator[Reason]:
        longest = {(s.labels["grid"], s.labels["level"]): s.value for s in samples if s.metric == MAX_OVERDUE}
        for s in samples:
            if s.value <= 0:
                continue
            grid, n = s.labels.get("grid", ""), int(s.value)
            if s.metric == OPEN and s.labels.get("severity") == "major":
                yield Reason(grid, RED, "major_incident_open", f"重大案件未结 {n} 件", OPEN)
            elif s.metric == OVERDUE:
                yield Reason(grid, YELLOW, "incidents_overdue", f"超期未办结案件 {n} 件", OVERDUE)
            elif s.metric == ESCALATED and s.labels.get("level") == "re_reported":
                text = f"二次通报案件 {n} 件"
                yield Reason(grid, YELLOW, "incidents_re_reported", text, ESCALATED, {"level": "re_reported"})
            elif s.metric == ESCALATED and s.labels.get("level") == "supervised":
                days = int(longest.get((grid, "supervised"), 0.0) // DAY)  # whole days, rounded down
                text = f"挂牌督办案件 {n} 件，超期 {days} 天"
                yield Reason(grid, RED, "incidents_supervised", text, ESCALATED, {"level": "supervised"})

    def tallies(self, samples: Sequence[Sample]) -> Iterator[Tally]:
        """The digests' 案件督办: open cases per escalation level, every level for every grid."""
        for s in samples:
            level = s.labels.get("level", "")
            if s.metric == ESCALATED and level in LEVEL_ZH:
                yield Tally(s.labels["grid"], "案件督办", f"incidents_{level}", LEVEL_ZH[level], s.value, "件")


@hookimpl
def register_check_types() -> list[type[Check]]:
    return [IncidentsCheck]


@hookimpl
def default_rules() -> list[dict[str, Any]]:
    # Severities mirror the grid's light: an open major case is red, an overdue case yellow; of
    # the escalation levels 二次通报 is a warning, 挂牌督办 critical (IncidentsOverdue covers 超期).
    return [
        {
            "alert": "MajorIncidentOpen",
            "metric": OPEN,
            "match": {"severity": "major"},
            "above": {"critical": 0},
            "for": "0s",
            "summary": "{grid_title}有{value:.0f}件重大事件未结案（{stage_name}）",
            "description": "{grid_title}：重大矛盾纠纷、预警性矛盾纠纷、上访动向或突发公共卫生事件未结案，"
            "网格亮红灯，须直报并跟踪至结案。",
        },
        {
            "alert": "IncidentsOverdue",
            "metric": OVERDUE,
            "above": {"warning": 0},
            "for": "0s",
            "summary": "{grid_title}有{value:.0f}件事件超过限时办结期限",
            "description": "{grid_title}：未结案事件已超过所属层级的办结时限（延期的按延长后的期限），请督促办理。",
        },
        {
            "alert": "IncidentsReReported",
            "metric": ESCALATED,
            "match": {"level": "re_reported"},
            "above": {"warning": 0},
            "for": "0s",
            "summary": "{level_name}：{grid_title}有{value:.0f}件事件超期未办结",
            "description": "{grid_title}：事件超过办结期限后久未办结，已达二次通报时限，"
            "予以二次通报，请{street}督促办理。",
        },
        {
            "alert": "IncidentsSupervised",
            "metric": ESCALATED,
            "match": {"level": "supervised"},
            "above": {"critical": 0},
            "for": "0s",
            "summary": "{level_name}：{grid_title}有{value:.0f}件事件严重超期未办结",
            "description": "{grid_title}：事件超期已达挂牌督办时限，由领导挂牌督办，网格亮红灯，须跟踪督办至结案。",
        },
        {
            "alert": "OnTimeClosureLow",
            "metric": ON_TIME,
            "below": {"warning": 0.90},
            "for": "0s",
            "summary": "{grid_title}按期结案率{value:.1%}，低于90%",
            "description": "{grid_title}：统计窗口内到期事件按期结案的比例低于目标值90%。",
        },
    ]
