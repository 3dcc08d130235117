"""The assessment (考核, DOMAIN.md §6): light days, the scorecard and the grids' rankings.

- **Light days**: a grid's green, yellow and red days in a period, counted from the daily lights
  the reports check keeps (the ``daily_lights`` hook); days before the grid's start
  (``grids.since``) and days after today are not counted, and a day before today with no kept
  light is ``unrecorded`` (gridwatch was not running, or no daily report was expected).
- **Scorecard** (百分制): 100 minus the deductions of the items in force, never below 0, each
  deduction at most its cap and listed with why, in Chinese. The items are the light days
  (core) and those the configured checks declare (:attr:`gridwatch.api.Check.deductions`); the
  ``[assessment]`` table changes their points, caps and targets. The light days are the period's;
  every other item is a "now" figure (today's coverage, overdue counts and ratios over their
  windows), the same whatever period is assessed.
- **Rankings**: by score, within the street and within the district; equal scores share a rank.

Pure functions of grids, samples and kept lights: the HTTP API and the digests call the same ones.
"""

from __future__ import annotations

import calendar as stdcal
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gridwatch.api import Check, Deduction, Grid, Ratio, Sample
from gridwatch.assessment.rollup import Pooled, by_metric, counts, rank

YELLOW_DAYS, RED_DAYS = "yellow_days", "red_days"
LIGHT_ITEMS = {
    YELLOW_DAYS: Deduction("", "黄灯", 1.0, 30.0, unit="天"),
    RED_DAYS: Deduction("", "红灯", 3.0, 30.0, unit="天"),
}
"""The scorecard items of the kept daily lights: points per day of the colour in the period."""

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_QUARTER = re.compile(r"([0-9]{4})-Q([1-4])")
_WEEK = re.compile(r"([0-9]{4})-W([0-9]{2})")
_YEAR = re.compile(r"([0-9]{4})")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
PERIOD_FORMS = "a month (2026-10), a quarter (2026-Q4), a year (2026), an ISO week (2026-W45) or a day (2026-10-15)"


# -- periods -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """An assessment period: its name as written and its first and last local dates."""

    name: str
    first: date
    last: date


def parse_period(text: str) -> Period:
    """``2026-10``, ``2026-Q4``, ``2026``, ``2026-W45`` or ``2026-10-15`` (a day: the board's
    ranking of today); a ValueError saying what is expected."""
    try:
        if m := _MONTH.fullmatch(text):
            year, month = int(m[1]), int(m[2])
            return Period(text, date(year, month, 1), date(year, month, stdcal.monthrange(year, month)[1]))
        if m := _QUARTER.fullmatch(text):
            year, quarter = int(m[1]), int(m[2])
            last_month = 3 * quarter
            last = date(year, last_month, stdcal.monthrange(year, last_month)[1])
            return Period(text, date(year, last_month - 2, 1), last)
        if m := _WEEK.fullmatch(text):
            monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
            return Period(text, monday, date.fromisocalendar(int(m[1]), int(m[2]), 7))
        if m := _YEAR.fullmatch(text):
            return Period(text, date(int(m[1]), 1, 1), date(int(m[1]), 12, 31))
        if _DAY.fullmatch(text):
            day = date.fromisoformat(text)
            return Period(text, day, day)
    except (ValueError, OverflowError):
        pass
    raise ValueError(f"bad period {text[:40]!r}: expected {PERIOD_FORMS}")


def month_of(day: date) -> Period:
    """The month ``day`` is in (the summary's default period: the month so far)."""
    return parse_period(f"{day.year:04d}-{day.month:02d}")


# -- light days ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LightDays:
    green: int = 0
    yellow: int = 0
    red: int = 0
    unrecorded: int = 0
    """days before today, in service and in the period, with no kept light"""

    def as_dict(self) -> dict[str, int]:
        return {"green": self.green, "yellow": self.yellow, "red": self.red, "unrecorded": self.unrecorded}


def counted_span(period: Period, since: date | None, today: date) -> tuple[date, date]:
    """The days of ``period`` that count for a grid: from its start (if later), up to today
    (if earlier). Empty (first > last) for a grid not yet in service, or a period to come."""
    return max(period.first, since or period.first), min(period.last, today)


def count_days(history: Iterable[tuple[date, str]], period: Period, since: date | None, today: date) -> LightDays:
    """One grid's kept lights counted for a period (see the module's docstring)."""
    first, last = counted_span(period, since, today)
    seen: dict[str, int] = defaultdict(int)
    recorded_before_today = 0
    for day, light in history:
        if first <= day <= last and light in ("green", "yellow", "red"):
            seen[light] += 1
            recorded_before_today += day < today
    before_today = (min(last, today - timedelta(days=1)) - first).days + 1
    return LightDays(seen["green"], seen["yellow"], seen["red"], max(0, before_today - recorded_before_today))


DailyLights = Callable[..., Any]
"""The ``daily_lights`` hook: ``hook(db=, grid_id=, since=)`` → [(date, light)] or None."""


def light_days(db: Any, hook: DailyLights, grids: Iterable[Grid], period: Period, today: date) -> dict[str, LightDays]:
    """Every grid's light days in ``period`` as of ``today``, read from the state database ``db``
    through the ``daily_lights`` hook (blocking: call it where the state database is read)."""
    out = {}
    for g in grids:
        first, last = counted_span(period, g.since, today)
        history = (hook(db=db, grid_id=g.grid_id, since=first) or []) if first <= last else []
        out[g.grid_id] = count_days(history, period, g.since, today)
    return out


# -- the scorecard items -------------------------------------------------------------------------


class ItemOptions(BaseModel):
    """``[assessment.NAME]``: what an operator may change of a scorecard item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points: float | None = Field(None, ge=0, allow_inf_nan=False)
    """points per unit (a day, a household, a case) or per percentage point below the target"""
    cap: float | None = Field(None, ge=0, allow_inf_nan=False)
    """the most points the item takes off"""
    target: float | None = Field(None, ge=0, le=1)
    """a ratio item's target, 0–1"""


def default_items(check_types: Iterable[type[Check]]) -> dict[str, Deduction]:
    """The items in force before ``[assessment]``: the light days, then each check type's own
    (each type once, in the order given)."""
    items = dict(LIGHT_ITEMS)
    for cls in dict.fromkeys(check_types):
        for name, item in getattr(cls, "deductions", {}).items():
            if isinstance(item, Deduction):
                items.setdefault(name, item)
    return items


# -- figures, scores and the assessment ---------------------------------------------------------


def figures(
    samples: Iterable[Sample], items: Mapping[str, Deduction], ratios: Mapping[str, Ratio]
) -> dict[str, dict[str, float]]:
    """Per grid, the current value of each metric item: a count item's series summed; a ratio
    item's series pooled through its numerator and denominator (every report kind together), or,
    for a ratio without declared counts, the mean of its series. A ratio with nothing to divide
    by has no value (nothing to judge)."""
    samples = list(samples)
    metrics = {item.metric for item in items.values() if item.metric}
    pooled = {grid: by_metric(series) for grid, series in counts(samples, ratios).items()}
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        grid = s.labels.get("grid")
        if grid is not None and s.metric in metrics and s.metric not in ratios:
            sums[grid][s.metric].append(s.value)
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for item in items.values():
        if not item.metric:
            continue
        if item.metric in ratios:
            for grid, by in pooled.items():
                ratio = by.get(item.metric, Pooled()).ratio
                if ratio is not None:
                    out[grid][item.metric] = ratio
        else:
            for grid, values in sums.items():
                if item.metric in values:
                    v = values[item.metric]
                    out[grid][item.metric] = sum(v) / len(v) if item.target is not None else sum(v)
    return out


def _n(x: float, digits: int = 2) -> str:
    """A number as people write it: 3, 2.5, 0.33, 1200 (never 1.2e+03)."""
    return f"{x:.{digits}f}".rstrip("0").rstrip(".")


def _pct(x: float) -> str:
    return _n(x * 100, 1) + "%"


@dataclass(frozen=True)
class Score:
    score: float
    deductions: list[dict[str, Any]]
    """``[{indicator, points, why}]``: the items that took points off, in the order of the items"""


def score(items: Mapping[str, Deduction], days: LightDays, values: Mapping[str, float]) -> Score:
    """A grid's score: 100 minus each item's points (at most its cap), never below 0.

    A count item takes ``points`` per unit; a ratio item ``points`` per percentage point strictly
    below its target. Points are rounded to 0.01."""
    out: list[dict[str, Any]] = []
    taken = 0.0
    for name, item in items.items():
        if name in LIGHT_ITEMS:
            n: float | None = days.yellow if name == YELLOW_DAYS else days.red
        else:
            n = values.get(item.metric)
        if n is None or item.points <= 0:
            continue
        if item.target is None:
            if n <= 0:
                continue
            raw = n * item.points
            why = f"{item.title} {_n(n)} {item.unit}，每{item.unit or '个'}扣 {_n(item.points)} 分"
        else:
            short = (item.target - n) * 100  # percentage points below the target
            if round(short, 6) <= 0:
                continue
            raw = short * item.points
            why = (
                f"{item.title} {_pct(n)}，低于目标 {_pct(item.target)}（差 {_n(short)} 个百分点），"
                f"每个百分点扣 {_n(item.points)} 分"
            )
        points = round(min(raw, item.cap), 2)
        if points <= 0:
            continue
        why += f"，扣 {_n(points)} 分" + ("（已达上限）" if raw > item.cap else "")
        out.append({"indicator": name, "points": points, "why": why})
        taken += points
    return Score(round(max(0.0, 100 - taken), 2), out)


def assess(
    grids: Sequence[Grid],
    items: Mapping[str, Deduction],
    days: Mapping[str, LightDays],
    values: Mapping[str, Mapping[str, float]],
) -> list[dict[str, Any]]:
    """Every grid's light days, score with its deductions, and rank by score in its street and
    in the district (``grids`` is the whole district: filter the rows, not the grids, to keep
    the ranks true)."""
    scored = {g.grid_id: score(items, days.get(g.grid_id, LightDays()), values.get(g.grid_id, {})) for g in grids}
    in_district = rank({gid: s.score for gid, s in scored.items()})
    streets: dict[str, dict[str, float | None]] = defaultdict(dict)
    for g in grids:
        streets[g.street][g.grid_id] = scored[g.grid_id].score
    in_street = {gid: r for members in streets.values() for gid, r in rank(members).items()}
    return [
        {
            "grid": g.grid_id,
            "name": g.name,
            "community": g.community,
            "street": g.street,
            "since": g.since.isoformat() if g.since else None,
            "days": days.get(g.grid_id, LightDays()).as_dict(),
            "score": scored[g.grid_id].score,
            "deductions": scored[g.grid_id].deductions,
            "rank": {"street": in_street[g.grid_id], "district": in_district[g.grid_id]},
        }
        for g in grids
    ]
