"""The ``reports`` check against the rule book (DOMAIN.md §3), values computed by hand."""

from __future__ import annotations

import sqlite3
import string
from datetime import date
from typing import Any

import pytest
import sqlite_utils
from gridwatch_plugins import reports

from gridwatch.config import ConfigErrors
from gridwatch.pytest_plugin import CheckRunner
from gridwatch.rules import TEMPLATE_FIELDS, Rule
from gridwatch.testing import CheckResult, Fired, fired_alerts

DAILY = "gridwatch_report_daily_status"
OVERDUE = "gridwatch_report_overdue"
ON_TIME = "gridwatch_report_on_time_ratio"
DUE_SOON = "gridwatch_report_due_soon"
EXPECTED = "gridwatch_report_expected"
ON_TIME_COUNT = "gridwatch_report_on_time"
OK, PENDING, MISSING, FLAGGED = 0, 1, 2, 3


def grids(n: int) -> list[dict[str, Any]]:
    return [
        {"grid_id": f"G{i}", "name": f"{i}号网格", "community": "幸福社区", "street": "城关街道"}
        for i in range(1, n + 1)
    ]


_ids = iter(range(1, 1_000_000))


def report(grid: str | None, submitted: str | None, **kw: Any) -> dict[str, Any]:
    return {
        "report_id": f"R{next(_ids)}",
        "grid_id": grid,
        "kind": "daily",
        "submitted_at": submitted,
        **kw,
    }


def run(
    rows: list[dict[str, Any]],
    now: str,
    gridwatch_check: CheckRunner,
    n_grids: int = 8,
    since: str | None = None,
    **kw: Any,
) -> CheckResult:
    """One run in a fresh directory of its own, so a test may run the check several times.
    With ``since`` every grid came into service that day (``grids.since``, DOMAIN.md §5): the
    grids are then read from a table of their own that has the column."""
    tables: dict[str, list[dict[str, Any]]] = {"grids": grids(n_grids), "reports": rows}
    if since is not None:
        tables["registry"] = [{**g, "zone": None, "since": since} for g in tables.pop("grids")]
        kw["source"] = 'type = "sqlite"\npath = "standard.db"\ntables = { grids = "registry" }'
    result = gridwatch_check("reports", tables, now=now, **kw)
    assert result.error is None, result.error
    return result


# Saturday 2026-11-21; the daily cutoff is 20:00.
STATUS_ROWS = [
    report("G1", "2026-11-21 19:30", period="2026-11-21"),  # on time -> ok
    report("G2", "2026-11-21 20:30", period="2026-11-21"),  # after the cutoff -> late
    # G3 sends nothing -> missing
    report("G4", "2026-11-21 09:00", period="2026-11-21", flag="petition"),  # flagged
    report("G5", "2026-11-21 08:00", period=""),  # empty period -> 11-21, on time
    report("G6", "2026-11-20 23:30", period=None),  # no period -> counts for 11-20, not today
    report("G7", "2026-11-21 20:45", flag="major_dispute"),  # flagged after the cutoff: still red
    # a twice-weekly information report that flags an early-warning dispute today
    report("G8", "2026-11-21 10:00", kind="twice_weekly", period="2026-11-24", flag="early_warning"),
    report("G8", "2026-11-21 10:05", period="2026-11-21", flag="ok"),
]


def test_daily_status_after_the_cutoff(gridwatch_check):
    r = run(STATUS_ROWS, "2026-11-21 21:00", gridwatch_check)
    assert r.by_grid(DAILY) == {
        "G1": OK,
        "G2": MISSING,  # late: the day stays yellow
        "G3": MISSING,
        "G4": FLAGGED,
        "G5": OK,
        "G6": MISSING,
        "G7": FLAGGED,
        "G8": FLAGGED,
    }


def test_a_flag_in_a_report_for_a_long_past_period_still_turns_today_red(gridwatch_check):
    # a monthly report for last year's March, sent today with a petition flag: its period moves
    # no figure any more (it is not kept), its flag is today's
    rows = [report("G1", "2026-11-21 10:00", kind="monthly", period="2025-03", flag="petition")]
    r = run(rows, "2026-11-21 21:00", gridwatch_check, n_grids=2)
    assert r.by_grid(DAILY) == {"G1": FLAGGED, "G2": MISSING}


def test_daily_status_before_the_cutoff_is_pending(gridwatch_check):
    r = run(STATUS_ROWS, "2026-11-21 15:00", gridwatch_check)
    # G1 (19:30), G2 (20:30) and G7 (20:45) lie after 15:00: future rows, nothing sent yet
    assert r.by_grid(DAILY) == {
        "G1": PENDING,
        "G2": PENDING,
        "G3": PENDING,
        "G4": FLAGGED,
        "G5": OK,
        "G6": PENDING,
        "G7": PENDING,
        "G8": FLAGGED,
    }


def test_a_report_exactly_at_the_cutoff_is_on_time_and_the_cutoff_is_an_option(gridwatch_check):
    rows = [report("G1", "2026-11-21 20:00:00"), report("G2", "2026-11-21 18:30")]
    r = run(rows, "2026-11-21 20:00:00", gridwatch_check, n_grids=3)
    assert r.by_grid(DAILY) == {"G1": OK, "G2": OK, "G3": MISSING}
    # with the cutoff at 18:00, G2's 18:30 report is late and G1's is too
    r = run(rows, "2026-11-21 20:00:00", gridwatch_check, n_grids=3, options={"cutoff": "18:00"})
    assert r.by_grid(DAILY) == {"G1": MISSING, "G2": MISSING, "G3": MISSING}


def test_daily_on_time_ratio_counts_a_late_report_as_not_on_time(gridwatch_check):
    rows = [
        report("G1", "2026-11-20 19:00", period="2026-11-20"),
        report("G1", "2026-11-21 19:00", period="2026-11-21"),
        report("G2", "2026-11-20 19:00", period="2026-11-20"),
        report("G2", "2026-11-21 20:30", period="2026-11-21"),  # late
        report("G2", "2026-11-21 20:40", period="2026-11-21"),  # a second copy, still late
    ]
    # the grids came into service on 1 October (without it they would count from the first report)
    r = run(rows, "2026-11-21 21:00", gridwatch_check, n_grids=3, since="2026-10-01")
    # window [10-22 21:00, 11-21 21:00]: daily due times 20:00 of 10-23 .. 11-21 = 9 + 21 = 30
    assert r.by_grid(ON_TIME, kind="daily") == {
        "G1": pytest.approx(2 / 30),
        "G2": pytest.approx(1 / 30),
        "G3": 0,
    }
    # beside the ratio, its numerator and denominator
    assert r.by_grid(ON_TIME_COUNT, kind="daily") == {"G1": 2, "G2": 1, "G3": 0}
    assert r.by_grid(EXPECTED, kind="daily") == {"G1": 30, "G2": 30, "G3": 30}
    # daily reports get no overdue sample: a missing one is daily status 2
    assert r.series(OVERDUE) == {}


# The September monthly report is due 2026-10-05 24:00 = 2026-10-06 00:00.
MONTHLY = [
    report("G1", "2026-09-03 10:00", kind="monthly", period="2026-08"),  # August, on time
    report("G2", "2026-10-05 23:59", kind="monthly", period="2026-09"),  # on time
    report("G3", "2026-10-06 09:00", kind="monthly", period="2026-09"),  # late
]


def test_monthly_report_not_overdue_until_24_00_of_the_5th(gridwatch_check):
    # the grids came into service on 1 August (without it they would count from the first report,
    # 09-03, and owe no August report)
    r = run(
        MONTHLY, "2026-10-05 23:59:00", gridwatch_check, n_grids=3, since="2026-08-01", options={"expect": ["monthly"]}
    )
    # the latest period due by now is August (due 09-06 00:00): G1 sent it, G2 and G3 did not
    assert r.by_grid(OVERDUE, kind="monthly") == {"G1": 0, "G2": 1, "G3": 1}
    # September is due in 1 minute, within the 3-day lead time: due soon unless already sent
    assert r.by_grid(DUE_SOON, kind="monthly") == {"G1": 1, "G2": 0, "G3": 1}
    assert r.series(DAILY) == {}  # daily is not expected here


def test_monthly_report_overdue_just_after_the_due_time(gridwatch_check):
    r = run(MONTHLY, "2026-10-06 00:00:01", gridwatch_check, n_grids=3, options={"expect": ["monthly"]})
    # September: G1 sent nothing -> overdue; G3's report has not come yet -> overdue
    assert r.by_grid(OVERDUE, kind="monthly") == {"G1": 1, "G2": 0, "G3": 1}


def test_late_monthly_report_is_late_not_overdue(gridwatch_check):
    r = run(MONTHLY, "2026-10-06 12:00", gridwatch_check, n_grids=3, options={"expect": ["daily", "monthly"]})
    assert r.by_grid(OVERDUE, kind="monthly") == {"G1": 1, "G2": 0, "G3": 0}
    # window [09-06 12:00, 10-06 12:00]: only September (due 10-06 00:00) is expected;
    # August was due 09-06 00:00, before the window
    assert r.by_grid(ON_TIME, kind="monthly") == {"G1": 0, "G2": 1, "G3": 0}
    assert r.by_grid(EXPECTED, kind="monthly") == {"G1": 1, "G2": 1, "G3": 1}
    # October is due 11-06 00:00, 30.5 days away: not due soon
    assert r.by_grid(DUE_SOON, kind="monthly") == {"G1": 0, "G2": 0, "G3": 0}


def test_daily_lights_are_kept_in_the_state_database(gridwatch_check):
    rows = [
        report("G1", "2026-11-18 19:00", period="2026-11-18"),  # green
        report("G1", "2026-11-19 21:00", period="2026-11-19"),  # late: yellow
        report("G1", "2026-11-20 10:00", period="2026-11-20", flag="early_warning"),  # red
        # G1 has not sent 11-21's yet at 15:00: pending, not stored
        report("G2", "2026-11-21 09:00", period="2026-11-21"),  # green already today
    ]
    r = run(rows, "2026-11-21 15:00", gridwatch_check, n_grids=2, options={"window": "3d"})
    assert r.by_grid(DAILY) == {"G1": PENDING, "G2": OK}
    # window [11-18 15:00, 11-21 15:00]: daily due times 20:00 of 11-18, 11-19, 11-20
    with sqlite3.connect(r.state_path) as db:
        stored = db.execute("SELECT grid_id, day, light FROM reports_daily_lights ORDER BY grid_id, day").fetchall()
    db.close()
    assert stored == [
        ("G1", "2026-11-18", "green"),
        ("G1", "2026-11-19", "yellow"),
        ("G1", "2026-11-20", "red"),
        ("G2", "2026-11-18", "yellow"),
        ("G2", "2026-11-19", "yellow"),
        ("G2", "2026-11-20", "yellow"),
        ("G2", "2026-11-21", "green"),
    ]
    state = sqlite_utils.Database(r.state_path)
    assert reports.daily_lights(state, "G1", date(2026, 11, 19)) == [
        (date(2026, 11, 19), "yellow"),
        (date(2026, 11, 20), "red"),
    ]
    assert reports.daily_lights(state, "G9", "2026-01-01") == []
    state.close()


def test_daily_lights_reader_without_a_table():
    assert reports.daily_lights(sqlite_utils.Database(memory=True), "G1", "2026-01-01") == []


def test_bad_rows_are_counted_by_reason_and_good_rows_still_count(gridwatch_check):
    rows = [
        {**report("G1", "2026-11-21 19:00"), "report_id": "dup"},  # good: on time
        {**report("G1", "2026-11-21 19:00"), "report_id": "dup"},  # duplicate_id
        report("G9", "2026-11-21 19:00"),  # unknown_grid
        report(None, "2026-11-21 19:00"),  # null_grid
        report("G2", "21/11/2026 19:00"),  # bad_timestamp
        report("G2", None),  # bad_timestamp: submitted_at is required
        report("G2", "2026-11-22 08:00"),  # future_timestamp
        report("G2", "2026-11-21 19:00", kind="hourly"),  # bad_kind
        report("G2", "2026-11-21 19:00", flag="urgent"),  # bad_flag
        report("G2", "2026-11-21 19:00", period="2026/11/21"),  # bad_period
        report("G2", "2026-11-21 19:00", kind="monthly", period="2026-13"),  # bad_period
    ]
    r = run(
        rows, "2026-11-21 21:00", gridwatch_check, n_grids=2, options={"max_rejected_ratio": 1}
    )  # every rule in one small table, most rows bad: the share is tests/test_rejected.py's
    assert r.rejected == {
        ("data", "duplicate_id"): 1,
        ("data", "unknown_grid"): 1,
        ("data", "null_grid"): 1,
        ("data", "bad_timestamp"): 2,
        ("data", "future_timestamp"): 1,
        ("data", "bad_kind"): 1,
        ("data", "bad_flag"): 1,
        ("data", "bad_period"): 2,
    }
    assert r.by_grid(DAILY) == {"G1": OK, "G2": MISSING}


def test_labels_carry_no_ids(gridwatch_check):
    r = run(STATUS_ROWS, "2026-11-21 21:00", gridwatch_check, options={"expect": ["daily", "weekly"]})
    ids = {row["report_id"] for row in STATUS_ROWS}
    for s in r.samples:
        assert set(s.labels) <= {"grid", "kind"}, s
        assert not ids & set(s.labels.values()), s
    assert {s.metric for s in r.samples} == {
        DAILY,
        OVERDUE,
        ON_TIME,
        DUE_SOON,
        EXPECTED,
        ON_TIME_COUNT,
        *PERIODS_MISSING,
    }


PERIODS_MISSING = (
    "gridwatch_report_missing_periods",
    "gridwatch_report_oldest_missing_due_timestamp_seconds",
    "gridwatch_report_oldest_missing_age_seconds",
)


def test_unknown_expected_kind_is_a_config_error(gridwatch_check):
    with pytest.raises(ConfigErrors):
        gridwatch_check("reports", {}, now="2026-11-21", options={"expect": ["fortnightly"]})


def _alerts(r: CheckResult) -> list[Fired]:
    return fired_alerts(r, rules=reports.default_rules(), grids=grids(8))


def test_default_rules_warn_on_missing_and_are_critical_on_flagged(gridwatch_check):
    r = run(STATUS_ROWS, "2026-11-21 21:00", gridwatch_check)
    hits = {h.labels["grid"]: (h.alert, h.severity) for h in _alerts(r)}
    # one alert per grid: status 2 (> 1.5) is a warning, status 3 (> 2.5) critical
    assert hits == {
        "G2": ("DailyReportStatus", "warning"),
        "G3": ("DailyReportStatus", "warning"),
        "G4": ("DailyReportStatus", "critical"),
        "G6": ("DailyReportStatus", "warning"),
        "G7": ("DailyReportStatus", "critical"),
        "G8": ("DailyReportStatus", "critical"),
    }


def test_default_rule_warns_on_an_overdue_periodic_report(gridwatch_check):
    r = run(MONTHLY, "2026-10-06 12:00", gridwatch_check, n_grids=3, options={"expect": ["monthly"]})
    [hit] = _alerts(r)
    assert (hit.alert, hit.severity, hit.labels["grid"]) == ("PeriodicReportOverdue", "warning", "G1")
    assert hit.labels["kind"] == "monthly"
    assert hit.summary == "城关街道幸福社区1号网格月报逾期未报"  # the kind by its name, not its code


def test_default_rules_use_metrics_the_check_produces():
    labels = {DAILY: {"grid"}, OVERDUE: {"grid", "kind"}}
    for raw in reports.default_rules():
        rule = Rule.model_validate(raw)
        assert rule.metric in reports.ReportsCheck.metrics
        known = labels[rule.metric]
        assert set(rule.match) <= known
        for template in (rule.summary, rule.description):
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
            assert fields <= known | {f"{k}_name" for k in known} | set(TEMPLATE_FIELDS), template


def test_produces_follows_the_expected_kinds():
    options = reports.ReportsCheck.Options
    counts = {EXPECTED, ON_TIME_COUNT}
    assert reports.ReportsCheck.produces(options()) == {DAILY, ON_TIME, *counts}
    assert reports.ReportsCheck.produces(options(expect=["monthly"])) == {
        ON_TIME,
        OVERDUE,
        DUE_SOON,
        *counts,
        *PERIODS_MISSING,
    }


def test_arrivals_of_periods_that_left_the_window_are_forgotten_between_resyncs(tmp_path):
    """Between two full reads (a month apart here) the check keeps only what a figure may still
    look at: ten days of daily reports are all forgotten once the 3-day window has passed them."""
    import asyncio
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from gridwatch import config
    from gridwatch.pipeline.results import Results
    from gridwatch.pipeline.runtime import Runtime
    from gridwatch.testing import write_standard_db

    rows = [report("G1", f"2026-01-{d:02d} 09:00:00", period=f"2026-01-{d:02d}") for d in range(1, 11)]
    write_standard_db(tmp_path / "city.db", {"grids": grids(1), "reports": rows})
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        'timezone = "Asia/Shanghai"\n[state]\npath = "state.db"\n[grids]\nsource = "city"\n'
        '[sources.city]\ntype = "sqlite"\npath = "city.db"\n[[checks]]\nname = "reports"\ntype = "reports"\n'
        'source = "city"\nwindow = "3d"\nresync = "30d"\nexpect = ["daily"]\n',
        encoding="utf-8",
    )
    settings, host = config.load(cfg)
    tz = ZoneInfo("Asia/Shanghai")

    async def go() -> tuple[int, int, int, int]:
        runtime = Runtime(settings, host, asyncio.get_running_loop())
        results = Results()
        results.replace(*runtime.states())
        check = runtime.runners["reports"].check
        try:
            await runtime.run(runtime.runners["reports"], datetime(2026, 1, 10, 12, tzinfo=tz), results)
            before = len(check.first), len(check.periods)  # type: ignore[attr-defined]
            outcome = await runtime.run(runtime.runners["reports"], datetime(2026, 1, 20, 12, tzinfo=tz), results)
            assert outcome.outcome == "success", outcome.error
            return (*before, len(check.first), len(check.periods))  # type: ignore[attr-defined]
        finally:
            runtime.close()

    # at noon on the 10th the window starts at noon on the 7th: the 7th's report (due at its
    # cutoff that evening) and the three after it are kept; on the 20th none is
    assert asyncio.run(go()) == (4, 4, 0, 0)
