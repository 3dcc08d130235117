"""The period a digest covers, and when it is due.

- daily (日报): due at ``at`` (08:30) for the day before.
- weekly (周评): due on ``weekday`` (Friday) at ``at`` (17:00) for the seven whole days before
  that day (Friday to Thursday). Not the ISO week up to the moment of sending: that day's light
  is not final before the daily cutoff (20:00), and this way every day is in exactly one weekly
  digest, complete.
- monthly (月考): due on ``day`` (the 1st) at ``at`` (09:00) for the calendar month before.

A digest is owed for the latest period due at ``now``; which period that is depends only on the
clock, so every replica and every restart agrees on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from gridwatch.settings import WEEKDAYS, DigestSpec

KIND_ZH = {"daily": "日报", "weekly": "周评", "monthly": "月考"}


@dataclass(frozen=True)
class Period:
    """The days a digest covers, both ends included, and when it goes out."""

    kind: str
    key: str  # what the ledger knows it by: 2026-11-20, 2026-11-13/2026-11-19, 2026-10
    start: date
    end: date
    due: datetime  # aware, local

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def label(self) -> str:
        """The period in words: 2026年11月20日, 2026年11月13日至19日, 2026年10月."""
        s, e = self.start, self.end
        if self.kind == "monthly":
            return f"{s.year}年{s.month}月"
        if s == e:
            return f"{s.year}年{s.month}月{s.day}日"
        if s.year != e.year:
            return f"{s.year}年{s.month}月{s.day}日至{e.year}年{e.month}月{e.day}日"
        tail = f"{e.day}日" if s.month == e.month else f"{e.month}月{e.day}日"
        return f"{s.year}年{s.month}月{s.day}日至{tail}"


def _at(day: date, spec: DigestSpec, tz: ZoneInfo) -> datetime:
    assert spec.at is not None  # filled in by the spec's validator
    return datetime.combine(day, spec.at, tzinfo=tz)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _previous_month(first: date) -> date:
    return _month_start(first - timedelta(days=1))


def period_sent_on(spec: DigestSpec, send_day: date, tz: ZoneInfo) -> Period:
    """The period of the digest that goes out on ``send_day`` (which must be one of its days)."""
    due = _at(send_day, spec, tz)
    if spec.kind == "daily":
        day = send_day - timedelta(days=1)
        return Period("daily", day.isoformat(), day, day, due)
    if spec.kind == "weekly":
        start, end = send_day - timedelta(days=7), send_day - timedelta(days=1)
        return Period("weekly", f"{start.isoformat()}/{end.isoformat()}", start, end, due)
    start = _previous_month(_month_start(send_day))
    end = _month_start(send_day) - timedelta(days=1)
    return Period("monthly", f"{start.year:04d}-{start.month:02d}", start, end, due)


def latest_due(spec: DigestSpec, now: datetime, tz: ZoneInfo) -> Period:
    """The latest period whose digest was due at or before ``now``."""
    local = now.astimezone(tz)
    today = local.date()
    if spec.kind == "daily":
        day = today if _at(today, spec, tz) <= local else today - timedelta(days=1)
    elif spec.kind == "weekly":
        assert spec.weekday is not None
        day = today - timedelta(days=(today.weekday() - WEEKDAYS.index(spec.weekday)) % 7)
        if _at(day, spec, tz) > local:
            day -= timedelta(days=7)
    else:
        assert spec.day is not None
        day = today.replace(day=spec.day)
        if _at(day, spec, tz) > local:
            day = _previous_month(_month_start(today)).replace(day=spec.day)
    return period_sent_on(spec, day, tz)
