"""Tests for gridwatch.calendar.

Every expected value below is worked out by hand from the rule book (DOMAIN.md sections 2
and 3) and the State Council's 2026 holiday notice; the comments show the working.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from gridwatch.calendar import (
    REPORT_KINDS,
    WorkCalendar,
    due_time,
    expected_periods,
    incident_deadline,
    latest_due_period,
    next_due_period,
    parse_limit,
    period_for,
)

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


# --------------------------------------------------------------------------- library facts


def test_library_knows_the_2026_national_day_schedule() -> None:
    # State Council notice of 2025-11-04: Mid-Autumn 09-25 (Fri) to 09-27 off; National Day
    # 10-01 (Thu) to 10-07 (Wed) off, make-up working days Sun 09-20 and Sat 10-10.
    # Thursday 10-08 is therefore an ordinary working day again. The deadline tests below
    # rely on exactly these facts, so pin them here.
    assert chinese_calendar.is_holiday(date(2026, 9, 25))
    for day in range(1, 8):
        assert chinese_calendar.is_holiday(date(2026, 10, day))
    assert chinese_calendar.is_workday(date(2026, 10, 8))
    assert chinese_calendar.is_workday(date(2026, 9, 20))
    assert chinese_calendar.is_workday(date(2026, 10, 10))
    assert chinese_calendar.is_holiday(date(2026, 10, 11))


# --------------------------------------------------------------------------- WorkCalendar


def test_make_up_days_are_working_days() -> None:
    cal = WorkCalendar()
    assert cal.is_workday(date(2026, 9, 20))  # Sunday, make-up day for National Day
    assert cal.is_workday(date(2026, 10, 10))  # Saturday, make-up day
    assert not cal.is_workday(date(2026, 9, 19))  # the Saturday before: an ordinary weekend
    assert not cal.is_workday(date(2026, 10, 1))  # National Day
    assert cal.is_workday(date(2026, 11, 18))  # an ordinary Wednesday
    assert cal.missing_years == set()


def test_is_workday_accepts_a_datetime() -> None:
    # datetime subclasses date; the time part must not defeat the override lookup.
    cal = WorkCalendar(holidays=[date(2026, 11, 18)])
    assert not cal.is_workday(sh(2026, 11, 18, 9, 30))


def test_operator_overrides_win_over_the_library() -> None:
    cal = WorkCalendar(
        holidays=[date(2026, 11, 18)],  # a Wednesday declared a local day off
        workdays=[date(2026, 11, 22)],  # a Sunday declared a working day
    )
    assert not cal.is_workday(date(2026, 11, 18))
    assert cal.is_workday(date(2026, 11, 22))
    # Overrides can also reverse the library's own schedule.
    cal = WorkCalendar(holidays=[date(2026, 9, 20)], workdays=[date(2026, 10, 5)])
    assert not cal.is_workday(date(2026, 9, 20))
    assert cal.is_workday(date(2026, 10, 5))


def test_a_day_cannot_be_both_holiday_and_workday() -> None:
    with pytest.raises(ValueError, match="2026-11-18"):
        WorkCalendar(holidays=[date(2026, 11, 18)], workdays=[date(2026, 11, 18)])


def test_year_without_library_data_falls_back_to_weekends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 2026-01-01 is a Thursday; 2026..2098 are 73 years with 18 leap days (2028..2096), and
    # 73 + 18 = 91 = 13 weeks, so 2099-01-01 is a Thursday too: 01-03 Sat, 01-04 Sun, 01-05 Mon.
    cal = WorkCalendar()
    with caplog.at_level(logging.WARNING, logger="gridwatch.calendar"):
        # New Year's Day is a real holiday, but without data only weekends are off.
        assert cal.is_workday(date(2099, 1, 1))
        assert not cal.is_workday(date(2099, 1, 3))
        assert not cal.is_workday(date(2099, 1, 4))
        assert cal.is_workday(date(2099, 1, 5))
        # Fri 01-02 is the 1st working day after Thu 01-01, Mon 01-05 the 2nd.
        assert cal.add_workdays(date(2099, 1, 1), 1) == date(2099, 1, 2)
        assert cal.add_workdays(date(2099, 1, 1), 2) == date(2099, 1, 5)
    warnings = [r for r in caplog.records if r.name == "gridwatch.calendar" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning per missing year, not per lookup"
    assert "2099" in warnings[0].getMessage()
    assert cal.missing_years == {2099}


def test_each_missing_year_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    cal = WorkCalendar()
    with caplog.at_level(logging.WARNING, logger="gridwatch.calendar"):
        cal.is_workday(date(2099, 6, 1))
        cal.is_workday(date(2003, 6, 2))  # before the library's first year
        cal.is_workday(date(2099, 6, 3))
        cal.is_workday(date(2003, 6, 4))
    assert len([r for r in caplog.records if r.name == "gridwatch.calendar"]) == 2
    assert cal.missing_years == {2003, 2099}


def test_overrides_cover_a_missing_year_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An operator who filled in the year themselves should not hear about missing data.
    cal = WorkCalendar(holidays=[date(2099, 1, 1)], workdays=[date(2099, 1, 4)])
    with caplog.at_level(logging.WARNING, logger="gridwatch.calendar"):
        assert not cal.is_workday(date(2099, 1, 1))
        assert cal.is_workday(date(2099, 1, 4))  # a Sunday (see above)
    assert [r for r in caplog.records if r.name == "gridwatch.calendar"] == []
    assert cal.missing_years == set()


def test_add_workdays_over_national_day() -> None:
    cal = WorkCalendar()
    # After Tue 09-29: 09-30 (1), 10-01..10-07 off, 10-08 (2), 10-09 (3), Sat 10-10 make-up (4),
    # Sun 10-11 off, Mon 10-12 (5).
    assert cal.add_workdays(date(2026, 9, 29), 1) == date(2026, 9, 30)
    assert cal.add_workdays(date(2026, 9, 29), 2) == date(2026, 10, 8)
    assert cal.add_workdays(date(2026, 9, 29), 4) == date(2026, 10, 10)
    assert cal.add_workdays(date(2026, 9, 29), 5) == date(2026, 10, 12)
    # "Strictly after": starting on a working day does not count that day.
    assert cal.add_workdays(date(2026, 11, 18), 1) == date(2026, 11, 19)
    # Fri 11-20 -> Mon 11-23 over an ordinary weekend.
    assert cal.add_workdays(date(2026, 11, 20), 1) == date(2026, 11, 23)


@pytest.mark.parametrize("n", [0, -1])
def test_add_workdays_needs_a_positive_count(n: int) -> None:
    with pytest.raises(ValueError):
        WorkCalendar().add_workdays(date(2026, 11, 18), n)


# --------------------------------------------------------------------------- parse_limit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d", (1, "d")),
        ("2d", (2, "d")),
        ("3d", (3, "d")),
        ("5wd", (5, "wd")),
        ("20wd", (20, "wd")),
    ],
)
def test_parse_limit(text: str, expected: tuple[int, str]) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize(
    "text", ["", "d", "wd", "5", "0d", "0wd", "-1d", "1.5d", "5w", "5h", "wd5", "5 wd", "5dd", "٣d"]
)
def test_parse_limit_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="limit"):
        parse_limit(text)


# --------------------------------------------------------------------------- incident_deadline


def test_special_case_over_national_day() -> None:
    # 5 working days after Tue 2026-09-29: 09-30 (1); 10-01..10-07 National Day off;
    # Thu 10-08 (2); Fri 10-09 (3); Sat 10-10 make-up (4); Sun 10-11 off; Mon 10-12 (5).
    # The limit ends at 24:00 of 10-12 = 2026-10-13 00:00 local time.
    got = incident_deadline(sh(2026, 9, 29, 10, 0), "5wd", WorkCalendar())
    assert got == sh(2026, 10, 13, 0, 0)
    assert got.utcoffset() == timedelta(hours=8)


def test_special_case_extended() -> None:
    # Extension doubles 5wd to 10wd: continuing from Mon 10-12 (5): Tue 10-13 (6),
    # 10-14 (7), 10-15 (8), Fri 10-16 (9), weekend 10-17/18 off, Mon 10-19 (10).
    # End of 10-19 = 2026-10-20 00:00.
    got = incident_deadline(sh(2026, 9, 29, 10, 0), "5wd", WorkCalendar(), extended=True)
    assert got == sh(2026, 10, 20, 0, 0)


def test_working_day_limit_counts_from_the_local_date() -> None:
    cal = WorkCalendar()
    # Any time on 09-29 gives the same deadline: only the date counts.
    assert incident_deadline(sh(2026, 9, 29, 23, 59), "5wd", cal) == sh(2026, 10, 13)
    # 2026-09-29 17:00 UTC is 09-30 01:00 in Shanghai. Counted from 09-30: 10-08 (1),
    # 10-09 (2), 10-10 (3), 10-12 (4), 10-13 (5) -> end of 10-13 = 10-14 00:00.
    reported = datetime(2026, 9, 29, 17, 0, tzinfo=ZoneInfo("UTC")).astimezone(SH)
    assert incident_deadline(reported, "5wd", cal) == sh(2026, 10, 14)


def test_working_day_limit_honours_overrides() -> None:
    # With 09-30 declared a local day off the count becomes 10-08 (1), 10-09 (2),
    # 10-10 (3), 10-12 (4), 10-13 (5) -> 10-14 00:00.
    cal = WorkCalendar(holidays=[date(2026, 9, 30)])
    assert incident_deadline(sh(2026, 9, 29, 10, 0), "5wd", cal) == sh(2026, 10, 14)


@pytest.mark.parametrize(
    ("reported", "limit", "extended", "expected"),
    [
        # community, 1d: exactly 24 h later.
        (sh(2026, 3, 10, 15, 30), "1d", False, sh(2026, 3, 11, 15, 30)),
        # subdistrict, 2d across midnight and a month end (2026 is not a leap year).
        (sh(2026, 2, 28, 23, 30), "2d", False, sh(2026, 3, 2, 23, 30)),
        # department, 3d: calendar days, so National Day holidays do not stretch it.
        (sh(2026, 9, 30, 9, 0), "3d", False, sh(2026, 10, 3, 9, 0)),
        # 3d across the year end.
        (sh(2026, 12, 30, 18, 45, 10), "3d", False, sh(2027, 1, 2, 18, 45, 10)),
        # extension doubles: 1d -> 48 h, 3d -> 6 days.
        (sh(2026, 3, 10, 15, 30), "1d", True, sh(2026, 3, 12, 15, 30)),
        (sh(2026, 9, 30, 9, 0), "3d", True, sh(2026, 10, 6, 9, 0)),
    ],
)
def test_day_limits_are_multiples_of_24_hours(
    reported: datetime, limit: str, extended: bool, expected: datetime
) -> None:
    got = incident_deadline(reported, limit, WorkCalendar(), extended=extended)
    assert got == expected
    assert got.tzinfo is SH


def test_day_limit_is_elapsed_time_across_dst() -> None:
    # Asia/Shanghai has no DST, but the rule says N x 24 h, so a DST zone must not turn
    # a day into 23 h. New York springs forward on Sun 2026-03-08: 12:00 EST (17:00 UTC)
    # on 03-07 plus 24 h is 17:00 UTC on 03-08 = 13:00 EDT.
    got = incident_deadline(datetime(2026, 3, 7, 12, 0, tzinfo=NY), "1d", WorkCalendar())
    assert got == datetime(2026, 3, 8, 17, 0, tzinfo=ZoneInfo("UTC"))
    assert (got.hour, got.utcoffset()) == (13, timedelta(hours=-4))


def test_incident_deadline_needs_an_aware_time_and_a_valid_limit() -> None:
    with pytest.raises(ValueError, match="timezone"):
        incident_deadline(datetime(2026, 9, 29, 10, 0), "1d", WorkCalendar())
    with pytest.raises(ValueError, match="limit"):
        incident_deadline(sh(2026, 9, 29, 10, 0), "1 day", WorkCalendar())


# --------------------------------------------------------------------------- period_for


@pytest.mark.parametrize(
    ("kind", "day", "expected"),
    [
        ("daily", date(2026, 11, 21), "2026-11-21"),
        # 2026-11-21 is a Saturday: the next Tuesday or Friday on/after it is Tue 11-24.
        ("twice_weekly", date(2026, 11, 21), "2026-11-24"),
        ("twice_weekly", date(2026, 11, 24), "2026-11-24"),  # a Tuesday is its own period
        ("twice_weekly", date(2026, 11, 25), "2026-11-27"),  # Wed -> Fri
        ("twice_weekly", date(2026, 11, 27), "2026-11-27"),  # a Friday is its own period
        ("twice_weekly", date(2026, 11, 28), "2026-12-01"),  # Sat -> next Tue, next month
        # ISO week 1 of 2026 starts Mon 2025-12-29 (2026-01-01 is a Thursday); week 47
        # starts 46 weeks later on Mon 11-16, so Sat 11-21 is in week 47.
        ("weekly", date(2026, 11, 21), "2026-W47"),
        ("weekly", date(2025, 12, 29), "2026-W01"),
        # 2026 starts on a Thursday, so it has 53 ISO weeks; Fri 2027-01-01 is in W53.
        ("weekly", date(2027, 1, 1), "2026-W53"),
        ("monthly", date(2026, 11, 21), "2026-11"),
        ("monthly", date(2026, 1, 1), "2026-01"),
        ("quarterly", date(2026, 11, 21), "2026-Q4"),
        ("quarterly", date(2026, 9, 30), "2026-Q3"),
        ("quarterly", date(2026, 1, 1), "2026-Q1"),
        ("annual", date(2026, 11, 21), "2026"),
    ],
)
def test_period_for(kind: str, day: date, expected: str) -> None:
    assert period_for(kind, day) == expected


def test_period_for_unknown_kind() -> None:
    with pytest.raises(ValueError, match="fortnightly"):
        period_for("fortnightly", date(2026, 11, 21))


def test_every_kind_round_trips_through_due_time() -> None:
    for kind in REPORT_KINDS:
        due_time(kind, period_for(kind, date(2026, 11, 21)), SH)


# --------------------------------------------------------------------------- due_time


@pytest.mark.parametrize(
    ("kind", "period", "expected"),
    [
        # daily: the cutoff (default 20:00) on that date.
        ("daily", "2026-11-21", sh(2026, 11, 21, 20, 0)),
        # twice_weekly: the cutoff on the Tuesday / Friday itself.
        ("twice_weekly", "2026-11-24", sh(2026, 11, 24, 20, 0)),
        ("twice_weekly", "2026-11-27", sh(2026, 11, 27, 20, 0)),
        # weekly: W47 runs Mon 11-16 .. Sun 11-22; due the end of Fri 11-20 = 11-21 00:00.
        ("weekly", "2026-W47", sh(2026, 11, 21, 0, 0)),
        # W53 of 2026 runs Mon 12-28 .. Sun 2027-01-03; its Friday is 2027-01-01.
        ("weekly", "2026-W53", sh(2027, 1, 2, 0, 0)),
        # monthly: the rule book's September report is on time until 2026-10-05 24:00.
        ("monthly", "2026-09", sh(2026, 10, 6, 0, 0)),
        # December's report is due the 5th of January of the next year.
        ("monthly", "2026-12", sh(2027, 1, 6, 0, 0)),
        # quarterly: Q3 ends 09-30, the 15th day after is 10-15, due its end = 10-16 00:00.
        ("quarterly", "2026-Q3", sh(2026, 10, 16, 0, 0)),
        # Q1 ends 03-31 -> 04-15 24:00; Q4 ends 12-31 -> 2027-01-15 24:00.
        ("quarterly", "2026-Q1", sh(2026, 4, 16, 0, 0)),
        ("quarterly", "2026-Q4", sh(2027, 1, 16, 0, 0)),
        # annual: end of 31 January of the next year.
        ("annual", "2026", sh(2027, 2, 1, 0, 0)),
    ],
)
def test_due_time(kind: str, period: str, expected: datetime) -> None:
    got = due_time(kind, period, SH)
    assert got == expected
    assert got.utcoffset() == timedelta(hours=8)


def test_due_time_custom_cutoff_only_moves_daily_and_twice_weekly() -> None:
    cutoff = time(18, 30)
    assert due_time("daily", "2026-11-21", SH, cutoff) == sh(2026, 11, 21, 18, 30)
    assert due_time("twice_weekly", "2026-11-24", SH, cutoff) == sh(2026, 11, 24, 18, 30)
    # The other kinds are due at the end of a day whatever the daily cutoff.
    assert due_time("monthly", "2026-09", SH, cutoff) == sh(2026, 10, 6, 0, 0)


@pytest.mark.parametrize(
    ("kind", "period"),
    [
        ("daily", "2026-13-01"),
        ("daily", "2026-11-31"),
        ("daily", "20261121"),
        ("daily", "2026-11-21T00:00"),
        ("daily", ""),
        ("twice_weekly", "2026-11-25"),  # a Wednesday
        ("twice_weekly", "2026-11-21"),  # a Saturday
        ("weekly", "2026-47"),
        ("weekly", "2026-W7"),
        ("weekly", "2026-W00"),
        ("weekly", "2025-W53"),  # 2025 starts on a Wednesday and is no leap year: 52 weeks
        ("monthly", "2026-9"),
        ("monthly", "2026-13"),
        ("monthly", "2026-00"),
        ("monthly", "2026-11-21"),
        ("quarterly", "2026-Q5"),
        ("quarterly", "2026-Q0"),
        ("quarterly", "2026Q3"),
        ("annual", "26"),
        ("annual", "2026-"),
        ("annual", "0000"),
    ],
)
def test_due_time_rejects_malformed_periods(kind: str, period: str) -> None:
    with pytest.raises(ValueError, match=re.escape(kind) + ".*" + re.escape(repr(period))):
        due_time(kind, period, SH)


def test_due_time_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="hourly"):
        due_time("hourly", "2026-11-21", SH)


# --------------------------------------------------------------------------- latest/next due


@pytest.mark.parametrize(
    ("kind", "now", "latest", "following"),
    [
        # daily: exactly at the 20:00 cutoff today's report counts as due.
        ("daily", sh(2026, 11, 21, 20, 0), "2026-11-21", "2026-11-22"),
        ("daily", sh(2026, 11, 21, 19, 59, 59), "2026-11-20", "2026-11-21"),
        # twice_weekly on Wed 11-25: Tue 11-24 20:00 has passed, Fri 11-27 is next.
        ("twice_weekly", sh(2026, 11, 25, 10, 0), "2026-11-24", "2026-11-27"),
        # On Tue 11-24 at 19:00 the latest due is Fri 11-20, the next Tue 11-24.
        ("twice_weekly", sh(2026, 11, 24, 19, 0), "2026-11-20", "2026-11-24"),
        ("twice_weekly", sh(2026, 11, 24, 20, 0), "2026-11-24", "2026-11-27"),
        # weekly: W47 is due 11-21 00:00, W46 (Mon 11-09) is due Sat 11-14 00:00.
        ("weekly", sh(2026, 11, 21, 0, 0), "2026-W47", "2026-W48"),
        ("weekly", sh(2026, 11, 20, 23, 0), "2026-W46", "2026-W47"),
        # monthly: September is due 10-06 00:00, August 09-06 00:00.
        ("monthly", sh(2026, 10, 6, 0, 0), "2026-09", "2026-10"),
        ("monthly", sh(2026, 10, 5, 23, 59), "2026-08", "2026-09"),
        # quarterly: Q3 due 10-16 00:00, Q2 due 07-16 00:00.
        ("quarterly", sh(2026, 10, 16, 0, 0), "2026-Q3", "2026-Q4"),
        ("quarterly", sh(2026, 10, 15, 23, 59), "2026-Q2", "2026-Q3"),
        # annual in mid-January 2027: 2025's report was due 2026-02-01, 2026's is next.
        ("annual", sh(2027, 1, 15, 12, 0), "2025", "2026"),
        ("annual", sh(2027, 2, 1, 0, 0), "2026", "2027"),
    ],
)
def test_latest_and_next_due_period(kind: str, now: datetime, latest: str, following: str) -> None:
    period, due = latest_due_period(kind, now)
    assert period == latest
    assert due == due_time(kind, latest, SH)
    assert due <= now
    period, due = next_due_period(kind, now)
    assert period == following
    assert due == due_time(kind, following, SH)
    assert due > now


def test_latest_due_period_values() -> None:
    # Spelled out once so the test does not only compare due_time with itself.
    assert latest_due_period("monthly", sh(2026, 10, 5, 23, 59)) == ("2026-08", sh(2026, 9, 6))
    assert next_due_period("monthly", sh(2026, 10, 5, 23, 59)) == ("2026-09", sh(2026, 10, 6))
    assert latest_due_period("daily", sh(2026, 11, 21, 8, 0), time(7, 0)) == (
        "2026-11-21",
        sh(2026, 11, 21, 7, 0),
    )
    assert next_due_period("annual", sh(2027, 1, 15)) == ("2026", sh(2027, 2, 1))


def test_latest_due_period_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone"):
        latest_due_period("daily", datetime(2026, 11, 21, 12, 0))


# --------------------------------------------------------------------------- expected_periods


def test_expected_daily_periods_include_both_ends() -> None:
    # Due times 20:00 on 11-01 .. 11-30: 30 reports, both end points included.
    got = expected_periods("daily", sh(2026, 11, 1, 20, 0), sh(2026, 11, 30, 20, 0))
    assert len(got) == 30
    assert got[0] == ("2026-11-01", sh(2026, 11, 1, 20, 0))
    assert got[-1] == ("2026-11-30", sh(2026, 11, 30, 20, 0))
    # One second later at the start drops 11-01.
    got = expected_periods("daily", sh(2026, 11, 1, 20, 0, 1), sh(2026, 11, 30, 20, 0))
    assert len(got) == 29


def test_expected_daily_periods_over_default_window() -> None:
    # A 30-day window ending 2026-11-21 12:00 starts 10-22 12:00. Due at 20:00: 10-22..10-31
    # (10 days) and 11-01..11-20 (20 days; 11-21 20:00 is still ahead) = 30.
    end = sh(2026, 11, 21, 12, 0)
    got = expected_periods("daily", end - timedelta(days=30), end)
    assert [p for p, _ in got][:2] == ["2026-10-22", "2026-10-23"]
    assert got[-1][0] == "2026-11-20"
    assert len(got) == 30


def test_expected_twice_weekly_periods_in_november() -> None:
    # November 2026: Tuesdays 3, 10, 17, 24 and Fridays 6, 13, 20, 27 -> 8 reports in order.
    got = expected_periods("twice_weekly", sh(2026, 11, 1), sh(2026, 11, 30, 23, 59))
    assert [p for p, _ in got] == [
        "2026-11-03",
        "2026-11-06",
        "2026-11-10",
        "2026-11-13",
        "2026-11-17",
        "2026-11-20",
        "2026-11-24",
        "2026-11-27",
    ]
    assert all(due.hour == 20 for _, due in got)


def test_expected_monthly_quarterly_annual_periods_in_2026() -> None:
    start, end = sh(2026, 1, 1), sh(2026, 12, 31, 23, 59)
    # Due dates falling in 2026: December 2025 (01-06) through November 2026 (12-06).
    monthly = expected_periods("monthly", start, end)
    assert [p for p, _ in monthly] == ["2025-12"] + [f"2026-{m:02d}" for m in range(1, 12)]
    # 2025-Q4 (01-16), Q1 (04-16), Q2 (07-16), Q3 (10-16).
    quarterly = expected_periods("quarterly", start, end)
    assert [p for p, _ in quarterly] == ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3"]
    # Only 2025's annual report (due 2026-02-01 00:00) is due in 2026.
    assert expected_periods("annual", start, end) == [("2025", sh(2026, 2, 1))]


def test_expected_weekly_periods() -> None:
    # Fridays in November 2026 are 6, 13, 20, 27: weeks 45..48, due the following midnight.
    # The window ends exactly at W48's due time (Sat 11-28 00:00), which is included.
    got = expected_periods("weekly", sh(2026, 11, 1), sh(2026, 11, 28))
    assert got == [
        ("2026-W45", sh(2026, 11, 7)),
        ("2026-W46", sh(2026, 11, 14)),
        ("2026-W47", sh(2026, 11, 21)),
        ("2026-W48", sh(2026, 11, 28)),
    ]


def test_expected_periods_empty_window() -> None:
    # A window with no due time in it, and a reversed window, expect nothing.
    assert expected_periods("monthly", sh(2026, 10, 7), sh(2026, 11, 5, 23, 59)) == []
    assert expected_periods("daily", sh(2026, 11, 30), sh(2026, 11, 1)) == []
