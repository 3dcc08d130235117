"""Working days, incident deadlines and report due dates (rule book sections 2 and 3).

Pure arithmetic: nothing here reads a clock, a file or a database, so every figure can be
checked against a hand-computed example. Callers pass tz-aware datetimes already converted
to the configured local timezone; "local date" always means the date in that timezone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import chinese_calendar

__all__ = [
    "REPORT_KINDS",
    "WorkCalendar",
    "due_time",
    "expected_periods",
    "incident_deadline",
    "latest_due_period",
    "next_due_period",
    "next_period",
    "parse_limit",
    "period_for",
    "period_span",
    "previous_period",
]

log = logging.getLogger(__name__)

REPORT_KINDS = ("daily", "twice_weekly", "weekly", "monthly", "quarterly", "annual")

_TUESDAY, _FRIDAY = 1, 4
_DAY = timedelta(days=1)


def _as_date(d: date) -> date:
    """Reduce a datetime to its date: `datetime` subclasses `date`, and a stray time part
    would make set lookups and period strings silently wrong."""
    if isinstance(d, datetime):
        return d.date()
    if not isinstance(d, date):
        raise TypeError(f"expected a date, got {type(d).__name__}")
    return d


def _require_aware(name: str, value: datetime) -> None:
    # A naive datetime has no local date and no instant; guessing one would hide a bug upstream.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")


def _at(d: date, t: time, tz: tzinfo) -> datetime:
    """Wall-clock time `t` on `d` in `tz`, normalised through UTC so that a wall time that
    does not exist (a DST gap) becomes the real instant it stands for. A configured time of day
    names the first occurrence of an ambiguous wall time: its `fold` is dropped (fold=1 would
    turn a gap into the hour before it, putting the time on the previous day)."""
    naive_t = t.replace(tzinfo=None, fold=0)
    return datetime.combine(d, naive_t, tzinfo=tz).astimezone(UTC).astimezone(tz)


def _end_of_day(d: date, tz: tzinfo) -> datetime:
    """24:00 local time of `d`, i.e. 00:00 of the following day: a due date names a whole day."""
    return _at(d + _DAY, time(0, 0), tz)


# --------------------------------------------------------------------------- working days


class WorkCalendar:
    """Which days are working days, for limits counted in working days (`Nwd`).

    The State Council publishes each year's schedule late in the previous year, so the
    library may lag behind: operator overrides always win, and a year without data falls
    back to weekends-off instead of failing.
    """

    missing_years: set[int]

    def __init__(self, holidays: Iterable[date] = (), workdays: Iterable[date] = ()) -> None:
        """Operator overrides win over the library: `holidays` are days off, `workdays` are
        working days."""
        self._holidays = frozenset(_as_date(d) for d in holidays)
        self._workdays = frozenset(_as_date(d) for d in workdays)
        both = sorted(self._holidays & self._workdays)
        if both:
            listed = ", ".join(d.isoformat() for d in both)
            raise ValueError(f"calendar overrides list days as both holiday and workday: {listed}")
        self.missing_years = set()

    def is_workday(self, d: date) -> bool:
        """True if `d` is a working day: overrides, then the statutory schedule, then (for a
        year the library does not know) Monday to Friday."""
        d = _as_date(d)
        if d in self._workdays:
            return True
        if d in self._holidays:
            return False
        try:
            return bool(chinese_calendar.is_workday(d))
        except NotImplementedError:
            if d.year not in self.missing_years:
                self.missing_years.add(d.year)
                log.warning(
                    "no statutory holiday data for year %d: counting Monday to Friday as "
                    "working days; add the year's holidays and make-up workdays as overrides",
                    d.year,
                )
            return d.weekday() < 5

    def add_workdays(self, d: date, n: int) -> date:
        """The n-th working day strictly after d (n >= 1)."""
        if n < 1:
            raise ValueError(f"number of working days must be >= 1, got {n}")
        day = _as_date(d)
        remaining = n
        while remaining:
            day += _DAY
            if self.is_workday(day):
                remaining -= 1
        return day


# --------------------------------------------------------------------------- incident deadlines

_LIMIT_RE = re.compile(r"([0-9]+)(wd|d)")


def parse_limit(text: str) -> tuple[int, str]:
    """Split a handling limit such as "1d" or "5wd" into (N, unit).

    Strict on purpose: a typo in a tier's limit must fail at config load, not turn into a
    silently wrong deadline.
    """
    m = _LIMIT_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"invalid time limit {text!r}: expected a whole number of days ('3d') or working days ('5wd')")
    n = int(m.group(1))
    if n < 1:
        raise ValueError(f"invalid time limit {text!r}: the number must be at least 1")
    return n, m.group(2)


def incident_deadline(reported_at: datetime, limit: str, cal: WorkCalendar, extended: bool = False) -> datetime:
    """When a case reported at `reported_at` must be closed.

    "Nd" is N×24 h of elapsed time (counted in UTC, so a DST change cannot stretch it);
    "Nwd" ends at 24:00 local time of the N-th working day after the report's local date.
    An approved extension doubles N. The result is in `reported_at`'s timezone.
    """
    _require_aware("reported_at", reported_at)
    n, unit = parse_limit(limit)
    if extended:
        n *= 2
    tz = reported_at.tzinfo
    assert tz is not None  # checked above; narrows the type
    if unit == "d":
        return (reported_at.astimezone(UTC) + timedelta(hours=24 * n)).astimezone(tz)
    return _end_of_day(cal.add_workdays(reported_at.date(), n), tz)


# --------------------------------------------------------------------------- report periods

_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_WEEK_RE = re.compile(r"([0-9]{4})-W([0-9]{2})")
_MONTH_RE = re.compile(r"([0-9]{4})-([0-9]{2})")
_QUARTER_RE = re.compile(r"([0-9]{4})-Q([1-4])")
_YEAR_RE = re.compile(r"([0-9]{4})")


def _check_kind(kind: str) -> None:
    if kind not in REPORT_KINDS:
        raise ValueError(f"unknown report kind {kind!r}: expected one of {', '.join(REPORT_KINDS)}")


def period_for(kind: str, d: date) -> str:
    """The period a submission made on local date `d` counts for, when it names none."""
    _check_kind(kind)
    d = _as_date(d)
    if kind == "daily":
        return d.isoformat()
    if kind == "twice_weekly":
        # Wed-Fri feed Friday's report, Sat-Tue feed Tuesday's.
        ahead = min((target - d.weekday()) % 7 for target in (_TUESDAY, _FRIDAY))
        return (d + timedelta(days=ahead)).isoformat()
    if kind == "weekly":
        iso = d.isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"
    if kind == "monthly":
        return f"{d.year:04d}-{d.month:02d}"
    if kind == "quarterly":
        return f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}"
    return f"{d.year:04d}"  # annual


def _span(kind: str, period: str) -> tuple[date, date]:
    """First and last local date covered by a period string, in the canonical form
    `period_for` writes. Non-canonical spellings ("2026-9") are refused so that a period is
    one key, never two."""
    _check_kind(kind)
    try:
        if kind in ("daily", "twice_weekly"):
            m = _DATE_RE.fullmatch(period)
            if m:
                d = date(int(m[1]), int(m[2]), int(m[3]))
                if kind == "daily":
                    return d, d
                if d.weekday() == _TUESDAY:
                    return d - timedelta(days=3), d  # Saturday .. Tuesday
                if d.weekday() == _FRIDAY:
                    return d - timedelta(days=2), d  # Wednesday .. Friday
        elif kind == "weekly":
            m = _WEEK_RE.fullmatch(period)
            if m:
                monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
                return monday, monday + timedelta(days=6)
        elif kind == "monthly":
            m = _MONTH_RE.fullmatch(period)
            if m:
                first = date(int(m[1]), int(m[2]), 1)
                return first, _month_end(first)
        elif kind == "quarterly":
            m = _QUARTER_RE.fullmatch(period)
            if m:
                first = date(int(m[1]), 3 * int(m[2]) - 2, 1)
                return first, _month_end(first.replace(month=first.month + 2))
        else:  # annual
            m = _YEAR_RE.fullmatch(period)
            if m:
                return date(int(m[1]), 1, 1), date(int(m[1]), 12, 31)
    except (ValueError, OverflowError, TypeError):
        pass
    raise ValueError(f"malformed {kind} period {period!r}")


def _month_end(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - _DAY


def due_time(kind: str, period: str, tz: tzinfo, cutoff: time = time(20, 0)) -> datetime:
    """When the report of `kind` for `period` is due, as a tz-aware datetime.

    Daily and twice-weekly reports are due at the daily cutoff of their date; the other kinds
    at the end (24:00 local) of the day the rule book names.
    """
    first, last = _span(kind, period)
    try:
        if kind in ("daily", "twice_weekly"):
            return _at(last, cutoff, tz)
        if kind == "weekly":
            return _end_of_day(first + timedelta(days=4), tz)  # Friday of the ISO week
        if kind == "monthly":
            return _end_of_day(last + timedelta(days=5), tz)  # the 5th of the next month
        if kind == "quarterly":
            return _end_of_day(last + timedelta(days=15), tz)  # 15th day after quarter end
        return _end_of_day(last + timedelta(days=31), tz)  # annual: 31 January next year
    except OverflowError:
        raise ValueError(f"malformed {kind} period {period!r}: due date out of range") from None


def period_span(kind: str, period: str) -> tuple[date, date]:
    """The first and the last local date a period covers ("2026-09": 09-01 and 09-30); a
    ValueError for a malformed period."""
    return _span(kind, period)


def next_period(kind: str, period: str) -> str:
    """The period right after ``period`` ("2026-09" -> "2026-10", Friday -> next Tuesday)."""
    return period_for(kind, _span(kind, period)[1] + _DAY)


def previous_period(kind: str, period: str) -> str:
    """The period right before ``period`` ("2026-Q1" -> "2025-Q4")."""
    return period_for(kind, _span(kind, period)[0] - _DAY)


def _utc(value: datetime) -> datetime:
    # Aware datetimes sharing one tzinfo compare by wall clock; compare instants instead.
    return value.astimezone(UTC)


def latest_due_period(kind: str, now: datetime, cutoff: time = time(20, 0)) -> tuple[str, datetime]:
    """The most recent period whose due time is <= now (a due time reached counts as
    passed), with that due time. Periods follow `now`'s timezone."""
    _require_aware("now", now)
    tz = now.tzinfo
    assert tz is not None
    # The period holding today is due no earlier than today and the one after it is due
    # after today, so the answer is that period or a few steps before it.
    period = period_for(kind, now.date())
    due = due_time(kind, period, tz, cutoff)
    while _utc(due) > _utc(now):
        period = previous_period(kind, period)
        due = due_time(kind, period, tz, cutoff)
    return period, due


def next_due_period(kind: str, now: datetime, cutoff: time = time(20, 0)) -> tuple[str, datetime]:
    """The earliest period whose due time is still ahead of `now`, for "due soon"."""
    period, _ = latest_due_period(kind, now, cutoff)
    period = next_period(kind, period)
    assert now.tzinfo is not None
    return period, due_time(kind, period, now.tzinfo, cutoff)


def expected_periods(
    kind: str, start: datetime, end: datetime, cutoff: time = time(20, 0)
) -> list[tuple[str, datetime]]:
    """Every period due within [start, end], both ends included, oldest first: the
    denominator of the reporting ratio. Periods follow `start`'s timezone."""
    _require_aware("start", start)
    _require_aware("end", end)
    tz = start.tzinfo
    assert tz is not None
    period, due = latest_due_period(kind, start, cutoff)
    if _utc(due) < _utc(start):
        period = next_period(kind, period)
        due = due_time(kind, period, tz, cutoff)
    out: list[tuple[str, datetime]] = []
    while _utc(due) <= _utc(end):
        out.append((period, due))
        period = next_period(kind, period)
        due = due_time(kind, period, tz, cutoff)
    return out
