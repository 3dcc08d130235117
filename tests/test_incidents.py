"""The ``incidents`` check against the rule book (DOMAIN.md §2), values computed by hand."""

from __future__ import annotations

import string
from typing import Any

import pytest
from gridwatch_plugins import incidents

from gridwatch.api import Ratio
from gridwatch.config import ConfigErrors
from gridwatch.pipeline.light import compute
from gridwatch.pytest_plugin import CheckRunner
from gridwatch.rules import TEMPLATE_FIELDS, Rule
from gridwatch.testing import CheckResult

GRIDS = [
    {"grid_id": "G1", "name": "一网格", "community": "幸福社区", "street": "城关街道"},
    {"grid_id": "G2", "name": "二网格", "community": "幸福社区", "street": "城关街道"},
    {"grid_id": "G3", "name": "三网格", "community": "和平社区", "street": "城关街道"},
]

OPEN = "gridwatch_incidents_open"
OVERDUE = "gridwatch_incidents_overdue"
OLDEST = "gridwatch_incident_oldest_open_age_seconds"
CLOSURE = "gridwatch_incidents_closure_ratio"
ON_TIME = "gridwatch_incidents_on_time_closure_ratio"
REWORK = "gridwatch_incidents_rework_ratio"
EXTENSION = "gridwatch_incidents_extension_ratio"
RATIOS = (CLOSURE, ON_TIME, REWORK, EXTENSION)
ESCALATED = "gridwatch_incidents_escalated"
MAX_OVERDUE = "gridwatch_incidents_max_overdue_seconds"
DUE = "gridwatch_incidents_due"
DUE_CLOSED = "gridwatch_incidents_due_closed"
DUE_ON_TIME = "gridwatch_incidents_due_closed_on_time"
DUE_EXTENDED = "gridwatch_incidents_due_extended"
CLOSED = "gridwatch_incidents_closed"
CLOSED_REWORKED = "gridwatch_incidents_closed_reworked"


def case(incident_id: str, grid: str, reported: str, **kw: Any) -> dict[str, Any]:
    return {
        "incident_id": incident_id,
        "grid_id": grid,
        "severity": "normal",
        "tier": "community",
        "reported_at": reported,
        **kw,
    }


def run(incidents_: list[dict[str, Any]], now: str, gridwatch_check: CheckRunner, **kw: Any) -> CheckResult:
    """One run in a fresh directory of its own, so a test may run the check several times."""
    result = gridwatch_check("incidents", {"grids": GRIDS, "incidents": incidents_}, now=now, **kw)
    assert result.error is None, result.error
    return result


# A `special` case reported Tuesday 2026-09-29 has 5 working days: 09-30, (National Day
# 10-01..10-07 off), 10-08, 10-09, 10-10 (Saturday, make-up working day), (Sunday 10-11 off),
# 10-12. Its deadline is 24:00 of 2026-10-12, i.e. 2026-10-13 00:00.
SPECIAL = [case("S1", "G1", "2026-09-29 10:00:00", tier="special", accepted_at="2026-09-29 11:00")]


def test_special_case_is_not_overdue_on_its_last_working_day(gridwatch_check):
    r = run(SPECIAL, "2026-10-12 23:59:00", gridwatch_check)
    assert r.by_grid(OVERDUE) == {"G1": 0, "G2": 0, "G3": 0}


def test_special_case_is_overdue_just_after_24_00_of_the_fifth_working_day(gridwatch_check):
    r = run(SPECIAL, "2026-10-13 00:00:01", gridwatch_check)
    # one sample per registered grid, 0 where nothing is overdue
    assert r.by_grid(OVERDUE) == {"G1": 1, "G2": 0, "G3": 0}


def test_operator_holiday_moves_the_working_day_deadline(gridwatch_check):
    # 10-12 declared a holiday: the 5th working day becomes Tuesday 10-13, due 10-14 00:00
    r = run(SPECIAL, "2026-10-13 00:00:01", gridwatch_check, config="[calendar]\nholidays = [2026-10-12]")
    r.assert_value(OVERDUE, 0, grid="G1")


def test_extension_doubles_the_limit(gridwatch_check):
    # 10 working days from 09-29: 09-30, 10-08, 10-09, 10-10, 10-12 (5), 10-13, 10-14, 10-15,
    # 10-16 (9), (weekend 10-17/18), 10-19 (10) -> deadline 2026-10-20 00:00
    cases = [{**SPECIAL[0], "extended": 1}]
    assert run(cases, "2026-10-13 00:00:01", gridwatch_check).value(OVERDUE, grid="G1") == 0
    assert run(cases, "2026-10-20 00:00:00", gridwatch_check).value(OVERDUE, grid="G1") == 0
    assert run(cases, "2026-10-20 00:00:01", gridwatch_check).value(OVERDUE, grid="G1") == 1


def test_day_limits_are_elapsed_hours_and_holidays_do_not_count(gridwatch_check):
    # community 1d from 10-01 08:00 (a holiday) ends 10-02 08:00; department 3d ends 10-04 08:00
    cases = [
        case("C1", "G1", "2026-10-01 08:00"),
        case("C2", "G2", "2026-10-01 08:00", tier="department"),
    ]
    r = run(cases, "2026-10-02 08:00:01", gridwatch_check)
    assert r.by_grid(OVERDUE) == {"G1": 1, "G2": 0, "G3": 0}


def test_overriding_one_tier_keeps_the_other_defaults(gridwatch_check):
    # community now 2d: reported 10-01 08:00, due 10-03 08:00; subdistrict keeps 2d
    cases = [
        case("C1", "G1", "2026-10-01 08:00"),
        case("C2", "G2", "2026-10-01 08:00", tier="subdistrict"),
    ]
    r = run(cases, "2026-10-02 12:00", gridwatch_check, options={"limits": {"community": "2d"}})
    assert r.by_grid(OVERDUE) == {"G1": 0, "G2": 0, "G3": 0}
    assert not r.rejected


@pytest.mark.parametrize(
    "options",
    [{"limits": {"special": "5x"}}, {"limits": {"speical": "5wd"}}, {"window": "30 days"}],
)
def test_bad_options_are_config_errors(gridwatch_check, options):
    with pytest.raises(ConfigErrors):
        gridwatch_check("incidents", {"grids": GRIDS}, now="2026-10-01", options=options)


def test_open_cases_by_severity_and_stage(gridwatch_check):
    now = "2026-10-10 12:00"
    cases = [
        # major, accepted: community 1d, due 10-11 08:00
        case("A", "G1", "2026-10-10 08:00", severity="major", accepted_at="2026-10-10 09:00"),
        # dispatched: department 3d, due 10-12 12:00
        case(
            "B",
            "G1",
            "2026-10-09 12:00",
            tier="department",
            accepted_at="2026-10-09 13:00",
            dispatched_at="2026-10-09 14:00",
        ),
        # resolved, awaiting verification: still open at stage resolved; due 10-11 12:00
        case(
            "C",
            "G1",
            "2026-10-08 12:00",
            tier="department",
            accepted_at="2026-10-08 13:00",
            dispatched_at="2026-10-08 14:00",
            resolved_at="2026-10-09 10:00",
        ),
        # only reported: community 1d, due 10-10 06:00 < now -> overdue
        case("D", "G1", "2026-10-09 06:00"),
        # closed: not open, however old
        case("E", "G1", "2026-10-01 06:00", closed_at="2026-10-01 18:00"),
        # G2: a closed case only
        case("F", "G2", "2026-10-09 06:00", closed_at="2026-10-09 18:00"),
    ]
    r = run(cases, now, gridwatch_check)
    assert r.series(OPEN) == {
        (("grid", "G1"), ("severity", "major"), ("stage", "accepted")): 1,
        (("grid", "G1"), ("severity", "normal"), ("stage", "dispatched")): 1,
        (("grid", "G1"), ("severity", "normal"), ("stage", "resolved")): 1,
        (("grid", "G1"), ("severity", "normal"), ("stage", "reported")): 1,
    }
    assert r.by_grid(OVERDUE) == {"G1": 1, "G2": 0, "G3": 0}
    # oldest open is C, reported 10-08 12:00: 2 days before now = 2 * 86400 s
    assert r.by_grid(OLDEST) == {"G1": 172800}


def test_major_open_case_fires_the_critical_default_rule(gridwatch_check, gridwatch_alerts):
    cases = [case("A", "G1", "2026-10-10 08:00", severity="major")]
    r = run(cases, "2026-10-10 09:00", gridwatch_check)
    hits = gridwatch_alerts(r, rules=incidents.default_rules(), grids=GRIDS)
    assert [(h.alert, h.labels["grid"], h.severity) for h in hits] == [("MajorIncidentOpen", "G1", "critical")]
    assert "一网格" in hits[0].summary and "1件" in hits[0].summary


def test_major_severity_option_maps_the_sources_spelling(gridwatch_check):
    cases = [case("A", "G1", "2026-10-10 08:00", severity="重大")]
    r = run(cases, "2026-10-10 09:00", gridwatch_check, options={"major_severity": "重大"})
    assert r.series(OPEN) == {(("grid", "G1"), ("severity", "major"), ("stage", "reported")): 1}


# KPI window: now 2026-10-31 12:00, 30d -> [2026-10-01 12:00, 2026-10-31 12:00].
KPI_NOW = "2026-10-31 12:00"
KPI_CASES = [
    # K1 due 10-11 08:00, closed exactly then: due, closed, on time
    case("K1", "G1", "2026-10-10 08:00", closed_at="2026-10-11 08:00"),
    # K2 due 10-13 08:00, closed 10-14: due, closed, late; reopened once -> rework
    case("K2", "G1", "2026-10-12 08:00", closed_at="2026-10-14 08:00", reopened_count=1),
    # K3 due 10-21 08:00, still open: due, not closed
    case("K3", "G1", "2026-10-20 08:00"),
    # K4 extended: 2d, due 10-17 08:00, closed 10-16: due, on time, extended
    case("K4", "G1", "2026-10-15 08:00", closed_at="2026-10-16 08:00", extended=1),
    # K5 due 11-01 08:00, after now: not due yet
    case("K5", "G1", "2026-10-31 08:00"),
    # K6 due and closed before the window: nowhere
    case("K6", "G1", "2026-09-20 08:00", closed_at="2026-09-21 08:00", reopened_count=3),
    # K7 due 10-01 08:00 (before the window) but closed 10-02 inside it, reopened twice
    case("K7", "G1", "2026-09-30 08:00", closed_at="2026-10-02 08:00", reopened_count=2),
    # G3: due 10-01 10:00 (before the window), closed 10-01 13:00 inside it, never reopened
    case("K8", "G3", "2026-09-30 10:00", closed_at="2026-10-01 13:00", reopened_count=0),
]


def test_kpis_over_the_window(gridwatch_check):
    r = run(KPI_CASES, KPI_NOW, gridwatch_check)
    # G1 due = K1, K2, K3, K4 = 4
    r.assert_value(CLOSURE, 3 / 4, grid="G1")  # K1, K2, K4 closed
    r.assert_value(ON_TIME, 2 / 4, grid="G1")  # K1 (at the deadline), K4
    r.assert_value(EXTENSION, 1 / 4, grid="G1")  # K4
    # closed in the window: K1, K2, K4, K7 = 4; reopened among them: K2, K7
    r.assert_value(REWORK, 2 / 4, grid="G1")
    # G3 closed one case in the window but has nothing due: rework only, 0 / 1
    r.assert_value(REWORK, 0, grid="G3")
    for metric in (CLOSURE, ON_TIME, EXTENSION):
        r.assert_absent(metric, grid="G3")


COUNTS = (DUE, DUE_CLOSED, DUE_ON_TIME, DUE_EXTENDED, CLOSED, CLOSED_REWORKED)


def test_each_ratio_has_its_numerator_and_denominator_beside_it(gridwatch_check):
    r = run(KPI_CASES, KPI_NOW, gridwatch_check)
    # G1: due K1-K4 = 4; of them closed K1, K2, K4 = 3, on time K1, K4 = 2, extended K4 = 1;
    # closed in the window K1, K2, K4, K7 = 4, reworked K2, K7 = 2. G3: only K8 closed, not reworked.
    # G2 has no case: every count is 0, published all the same (a 0 is a fact, a 0/0 ratio is not)
    assert {m: r.by_grid(m) for m in COUNTS} == {
        DUE: {"G1": 4, "G2": 0, "G3": 0},
        DUE_CLOSED: {"G1": 3, "G2": 0, "G3": 0},
        DUE_ON_TIME: {"G1": 2, "G2": 0, "G3": 0},
        DUE_EXTENDED: {"G1": 1, "G2": 0, "G3": 0},
        CLOSED: {"G1": 4, "G2": 0, "G3": 1},
        CLOSED_REWORKED: {"G1": 2, "G2": 0, "G3": 0},
    }
    assert incidents.IncidentsCheck.ratios == {
        CLOSURE: Ratio(DUE_CLOSED, DUE),
        ON_TIME: Ratio(DUE_ON_TIME, DUE),
        EXTENSION: Ratio(DUE_EXTENDED, DUE),
        REWORK: Ratio(CLOSED_REWORKED, CLOSED),
    }


def test_grid_without_cases_has_no_ratio_samples(gridwatch_check):
    r = run(KPI_CASES, KPI_NOW, gridwatch_check)
    g2 = [s for s in r.samples if s.labels.get("grid") == "G2"]
    # the overdue total, the three escalation levels and the KPIs' counts are published for every
    # grid, 0 included; the ratios are not
    assert [(s.metric, s.value) for s in g2] == [(OVERDUE, 0), *[(ESCALATED, 0)] * 3, *[(m, 0) for m in COUNTS]]


def test_low_on_time_ratio_fires_a_warning(gridwatch_check, gridwatch_alerts):
    r = run(KPI_CASES, KPI_NOW, gridwatch_check)
    hits = {(h.alert, h.labels["grid"]): h.severity for h in gridwatch_alerts(r, incidents.default_rules(), GRIDS)}
    # G1: on-time 2/4 = 0.5 < 0.90; open K3 is past its deadline 10-21 08:00 (K5 is due 11-01),
    # by 10 d 4 h at 10-31 12:00: more than 7 days, so it is also reported again (二次通报)
    assert hits == {
        ("OnTimeClosureLow", "G1"): "warning",
        ("IncidentsOverdue", "G1"): "warning",
        ("IncidentsReReported", "G1"): "warning",
    }


def test_bad_rows_are_counted_by_reason_and_good_rows_still_count(gridwatch_check):
    cases = [
        case("OK", "G1", "2026-10-09 06:00"),  # overdue since 10-10 06:00
        case("OK", "G1", "2026-10-09 06:00"),  # duplicate_id
        case("U", "G9", "2026-10-09 06:00"),  # unknown_grid
        case("N", None, "2026-10-09 06:00"),  # null_grid
        case("T", "G1", "yesterday"),  # bad_timestamp
        case("R", "G1", None),  # bad_timestamp: reported_at is required
        case("F", "G1", "2026-10-09 06:00", closed_at="2026-10-11 06:00"),  # future_timestamp
        case("X", "G1", "2026-10-09 06:00", tier="county"),  # bad_tier
        case("Y", "G1", "2026-10-09 06:00", tier=None),  # bad_tier
        case("S", "G1", "2026-10-09 06:00", severity="urgent"),  # bad_severity
        case("E", "G1", "2026-10-09 06:00", extended="maybe"),  # bad_value
        case("C", "G1", "2026-10-09 06:00", reopened_count=-1),  # bad_value
    ]
    r = run(
        cases, "2026-10-10 12:00", gridwatch_check, options={"max_rejected_ratio": 1}
    )  # every rule in one small table, most rows bad: the share is tests/test_rejected.py's
    assert r.rejected == {
        ("data", "duplicate_id"): 1,
        ("data", "unknown_grid"): 1,
        ("data", "null_grid"): 1,
        ("data", "bad_timestamp"): 2,
        ("data", "future_timestamp"): 1,
        ("data", "bad_tier"): 2,
        ("data", "bad_severity"): 1,
        ("data", "bad_value"): 2,
    }
    assert r.by_grid(OVERDUE) == {"G1": 1, "G2": 0, "G3": 0}
    assert r.series(OPEN) == {(("grid", "G1"), ("severity", "normal"), ("stage", "reported")): 1}


def test_labels_carry_no_ids(gridwatch_check):
    cases = [*KPI_CASES, case("A", "G1", "2026-10-30 08:00", severity="major")]
    r = run(cases, KPI_NOW, gridwatch_check)
    ids = {c["incident_id"] for c in cases}
    for s in r.samples:
        assert set(s.labels) <= {"grid", "severity", "stage", "level"}, s
        assert not ids & set(s.labels.values()), s
    assert {s.metric for s in r.samples} == {OPEN, OVERDUE, OLDEST, *RATIOS, ESCALATED, MAX_OVERDUE, *COUNTS}


def test_default_rules_are_valid_and_use_metrics_the_check_produces():
    produced = incidents.IncidentsCheck.metrics
    labels = {OPEN: {"grid", "severity", "stage"}, ESCALATED: {"grid", "level"}}
    for raw in incidents.default_rules():
        rule = Rule.model_validate(raw)
        assert rule.metric in produced
        known = labels.get(rule.metric, {"grid"})
        assert set(rule.match) <= known
        for template in (rule.summary, rule.description):
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
            assert fields <= known | {f"{k}_name" for k in known} | set(TEMPLATE_FIELDS), template


# -- escalation (督办, DOMAIN.md §2) -------------------------------------------------------------

LEVELS = ("overdue", "re_reported", "supervised")
DAY = 86400

# A community case reported 2026-10-01 08:00 has 1 day: its deadline D is 2026-10-02 08:00.
LADDER = [case("L", "G1", "2026-10-01 08:00", accepted_at="2026-10-01 09:00")]


def levels(r: CheckResult, grid: str) -> dict[str, float | None]:
    return {level: r.value(ESCALATED, grid=grid, level=level) for level in LEVELS}


def ladder(overdue: int = 0, re_reported: int = 0, supervised: int = 0) -> dict[str, int]:
    return {"overdue": overdue, "re_reported": re_reported, "supervised": supervised}


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-10-02 08:00:00", ladder()),  # at D: not past it
        ("2026-10-02 08:01:00", ladder(overdue=1)),  # D + 1 min
        ("2026-10-09 08:00:00", ladder(overdue=1)),  # D + 7 d exactly: "up to 7 days"
        ("2026-10-09 08:00:01", ladder(re_reported=1)),  # D + 7 d 1 s: more than 7 days
        ("2026-10-16 08:00:00", ladder(re_reported=1)),  # D + 14 d exactly
        ("2026-10-16 08:00:01", ladder(supervised=1)),  # D + 14 d 1 s: more than 14 days
        ("2026-11-30 08:00:00", ladder(supervised=1)),  # D + 59 d: stays supervised until closed
    ],
)
def test_an_open_case_climbs_the_ladder(gridwatch_check, now, expected):
    r = run(LADDER, now, gridwatch_check)
    assert levels(r, "G1") == expected
    # every level of every grid is published, 0 included; the total stays the overdue count
    assert levels(r, "G2") == ladder() == levels(r, "G3")
    assert r.value(OVERDUE, grid="G1") == sum(expected.values())


def test_closed_cases_never_escalate(gridwatch_check):
    # due 10-02 08:00, closed 20 days late on 10-22: closed, so nowhere on the ladder on 11-30
    cases = [{**LADDER[0], "closed_at": "2026-10-22 08:00"}]
    r = run(cases, "2026-11-30 08:00", gridwatch_check)
    assert levels(r, "G1") == ladder()
    r.assert_absent(MAX_OVERDUE)


def test_an_extended_case_is_judged_against_its_extended_deadline(gridwatch_check):
    # now 10-09 08:00:01. Not extended: D = 10-02 08:00, past it by 7 d 1 s -> re_reported.
    # Extended: 2 days, D = 10-03 08:00, past it by 6 d 1 s -> only overdue.
    plain = run(LADDER, "2026-10-09 08:00:01", gridwatch_check)
    extended = run([{**LADDER[0], "extended": 1}], "2026-10-09 08:00:01", gridwatch_check)
    assert levels(plain, "G1") == ladder(re_reported=1)
    assert levels(extended, "G1") == ladder(overdue=1)


def test_the_steps_are_options(gridwatch_check):
    # steps 1d and 3d: D + 2 d is past the first step, D + 3 d 1 s past the second
    opts = {"re_report_after": "1d", "supervise_after": "3d"}
    assert levels(run(LADDER, "2026-10-04 08:00", gridwatch_check, options=opts), "G1") == ladder(re_reported=1)
    assert levels(run(LADDER, "2026-10-05 08:00:01", gridwatch_check, options=opts), "G1") == ladder(supervised=1)


@pytest.mark.parametrize(
    "options",
    [
        {"re_report_after": "14d", "supervise_after": "7d"},  # the steps must climb
        {"re_report_after": "7d", "supervise_after": "7d"},
        {"re_report_after": "0s"},
    ],
)
def test_escalation_steps_that_do_not_climb_are_config_errors(gridwatch_check, options):
    with pytest.raises(ConfigErrors):
        gridwatch_check("incidents", {"grids": GRIDS}, now="2026-10-01", options=options)


# now 2026-11-20 12:00 (30-day window from 10-21 12:00, nothing closed):
# G1: S1 due 11-03 08:00 -> past by 17 d 4 h (supervised); S2 due 11-04 06:00 -> 16 d 6 h
#     (supervised); R1 due 11-10 08:00 -> 10 d 4 h (re_reported); O1 due 11-19 12:00 -> 1 d
#     (overdue); N1 due 11-21 08:00 -> not yet.
# G2: R2 subdistrict (2 d) due 11-12 09:00 -> 8 d 3 h (re_reported).
# Due in the window and not closed: G1 4 (S1, S2, R1, O1), G2 1: on time 0 / 4 and 0 / 1.
ESC_NOW = "2026-11-20 12:00"
ESC_CASES = [
    case("S1", "G1", "2026-11-02 08:00"),
    case("S2", "G1", "2026-11-03 06:00", dispatched_at="2026-11-03 07:00"),
    case("R1", "G1", "2026-11-09 08:00"),
    case("O1", "G1", "2026-11-18 12:00"),
    case("N1", "G1", "2026-11-20 08:00"),
    case("R2", "G2", "2026-11-10 09:00", tier="subdistrict"),
]


def test_cases_counted_per_level_with_the_longest_overdue(gridwatch_check):
    r = run(ESC_CASES, ESC_NOW, gridwatch_check)
    assert levels(r, "G1") == ladder(overdue=1, re_reported=1, supervised=2)
    assert levels(r, "G2") == ladder(re_reported=1)
    assert r.by_grid(OVERDUE) == {"G1": 4, "G2": 1, "G3": 0}  # the total: 1 + 1 + 2, and 1
    # the longest overdue per level, only where the level has cases
    assert r.series(MAX_OVERDUE) == {
        (("grid", "G1"), ("level", "supervised")): 17 * DAY + 4 * 3600,  # S1
        (("grid", "G1"), ("level", "re_reported")): 10 * DAY + 4 * 3600,  # R1
        (("grid", "G1"), ("level", "overdue")): 1 * DAY,  # O1
        (("grid", "G2"), ("level", "re_reported")): 8 * DAY + 3 * 3600,  # R2
    }


def lights(r: CheckResult) -> dict[str, tuple[str, list[str]]]:
    """Each grid's light and reasons as ``gridwatch once`` shows them: the check's reasons for its
    samples, and the default rules' alerts (none has a ``for``, so each is firing)."""
    check = object.__new__(incidents.IncidentsCheck)  # reasons depend on the samples alone
    alerts = [
        {"alert": h.alert, "labels": h.labels, "state": "firing", "severity": h.severity, "summary": h.summary}
        for h in r.alerts()
    ]
    rule_metrics = {name: rule.metric for name, rule in r.rules.items()}
    return {
        gl.grid.grid_id: (gl.light, gl.as_dict()["reasons"])
        for gl in compute(r.grids, check.reasons(r.samples), alerts, rule_metrics)
    }


def test_supervised_turns_the_grid_red_and_says_why(gridwatch_check):
    r = run(ESC_CASES, ESC_NOW, gridwatch_check)
    got = lights(r)
    # G1: 2 supervised cases, the longest past its deadline by 17 d 4 h: 17 whole days; the
    # on-time closure of 0 / 4 is below 0.90, the one reason an alert adds
    assert got["G1"][0] == "red"
    assert sorted(got["G1"][1]) == sorted(
        [
            "挂牌督办案件 2 件，超期 17 天",
            "二次通报案件 1 件",
            "超期未办结案件 4 件",
            "城关街道幸福社区一网格按期结案率0.0%，低于90%",
        ]
    )
    assert got["G2"] == (
        "yellow",
        ["超期未办结案件 1 件", "二次通报案件 1 件", "城关街道幸福社区二网格按期结案率0.0%，低于90%"],
    )
    assert got["G3"] == ("green", [])


def test_each_level_fires_its_own_default_rule_with_the_level_as_a_label(gridwatch_check, gridwatch_alerts):
    r = run(ESC_CASES, ESC_NOW, gridwatch_check)
    hits = gridwatch_alerts(r, rules=incidents.default_rules(), grids=GRIDS)
    got = {(h.alert, h.labels["grid"], h.labels.get("level")): h.severity for h in hits}
    assert got == {
        ("OnTimeClosureLow", "G1", None): "warning",  # 0 / 4 on time
        ("OnTimeClosureLow", "G2", None): "warning",  # 0 / 1
        ("IncidentsOverdue", "G1", None): "warning",
        ("IncidentsOverdue", "G2", None): "warning",
        ("IncidentsReReported", "G1", "re_reported"): "warning",
        ("IncidentsReReported", "G2", "re_reported"): "warning",
        ("IncidentsSupervised", "G1", "supervised"): "critical",
    }
    by = {(h.alert, h.labels["grid"]): h for h in hits}
    # 二次通报 names the street; no code value shows in any text
    re_reported = by[("IncidentsReReported", "G2")]
    assert "城关街道" in re_reported.summary + re_reported.description
    assert "二次通报" in re_reported.summary
    assert "挂牌督办" in by[("IncidentsSupervised", "G1")].summary
    for h in hits:
        text = h.summary + h.description
        assert not any(code in text for code in (*LEVELS, "major", "normal", "community")), text


# -- as of a time (DOMAIN.md §5) -------------------------------------------------------------------

# A major case reported 2026-11-08 09:00 (community, 1 day: due 11-09 09:00), accepted 11-08 10:00,
# resolved 11-11 16:00, closed 11-12 15:00. Replayed as of 11-10 12:00 with the clock at 11-13.
MAJOR = [
    case(
        "M",
        "G1",
        "2026-11-08 09:00",
        severity="major",
        accepted_at="2026-11-08 10:00",
        resolved_at="2026-11-11 16:00",
        closed_at="2026-11-12 15:00",
    )
]


def test_a_case_closed_later_was_open_at_its_stage_then(gridwatch_check):
    r = run(MAJOR, "2026-11-10 12:00", gridwatch_check, clock="2026-11-13 09:00")
    assert not r.rejected  # resolved_at and closed_at lie after now, not after the clock
    # open at its stage then: accepted (resolved on 11-11 was still to come)
    assert r.series(OPEN) == {(("grid", "G1"), ("severity", "major"), ("stage", "accepted")): 1}
    # past its deadline 11-09 09:00 by 1 d 3 h: overdue, the first level
    assert levels(r, "G1") == ladder(overdue=1)
    assert lights(r)["G1"][0] == "red"
    assert "重大案件未结 1 件" in lights(r)["G1"][1]
    # after 11-12 15:00 it is closed: nothing open, on time? due 11-09 09:00, closed 11-12: late
    later = run(MAJOR, "2026-11-13 09:00", gridwatch_check)
    later.assert_absent(OPEN)
    later.assert_value(ON_TIME, 0, grid="G1")


def test_a_case_reported_later_does_not_exist_yet(gridwatch_check):
    r = run(MAJOR, "2026-11-08 08:00", gridwatch_check, clock="2026-11-13 09:00")
    assert not r.rejected
    r.assert_absent(OPEN)
    assert r.by_grid(OVERDUE) == {"G1": 0, "G2": 0, "G3": 0}


def test_a_time_past_the_wall_clock_by_more_than_the_tolerance_is_a_bad_row(gridwatch_check):
    # the clock reads now (the kit's default); closed_at 1 h after it: a wrong clock, a bad row
    cases = [case("F", "G1", "2026-10-09 06:00", closed_at="2026-10-10 13:00")]
    r = run(cases, "2026-10-10 12:00", gridwatch_check)
    assert r.rejected == {("data", "future_timestamp"): 1}
    r.assert_absent(OPEN)


def test_a_time_just_past_the_wall_clock_inside_the_tolerance_is_left_out(gridwatch_check):
    # closed_at 1 min after the clock (and after now): inside the 5-minute tolerance, so the
    # case is still open at now, not rejected; due 10-10 06:00, so it is overdue
    cases = [case("F", "G1", "2026-10-09 06:00", closed_at="2026-10-10 12:01")]
    r = run(cases, "2026-10-10 12:00", gridwatch_check)
    assert not r.rejected
    assert r.series(OPEN) == {(("grid", "G1"), ("severity", "normal"), ("stage", "reported")): 1}
    assert levels(r, "G1") == ladder(overdue=1)


def test_the_tolerance_is_a_top_level_option(gridwatch_check):
    # closed_at 1 h after the clock, with a tolerance of 2 h: left out, the case open
    cases = [case("F", "G1", "2026-10-09 06:00", closed_at="2026-10-10 13:00")]
    r = run(cases, "2026-10-10 12:00", gridwatch_check, config='future_tolerance = "2h"')
    assert not r.rejected
    r.assert_value(OVERDUE, 1, grid="G1")
