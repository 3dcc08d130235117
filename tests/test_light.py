"""The grid's light (DOMAIN.md §4): red beats yellow beats green, each with its reasons."""

from gridwatch_plugins.incidents import IncidentsCheck
from gridwatch_plugins.patrols import PatrolsCheck
from gridwatch_plugins.reports import ReportsCheck
from gridwatch_plugins.visits import VisitsCheck

from gridwatch.api import Check, Grid, Reason, Sample
from gridwatch.pipeline.light import compute

GRIDS = {g: Grid(g, f"第{g}网格", "和平社区", "东街街道") for g in ("G1", "G2", "G3", "G4", "G5", "G6")}


def s(metric, value, **labels):
    return Sample(metric, labels, value)


def reasons(samples) -> list[Reason]:
    """What the bundled checks say of these samples, each check of the samples it produces."""
    out: list[Reason] = []
    check_type: type[Check]
    for check_type in (VisitsCheck, PatrolsCheck, IncidentsCheck, ReportsCheck):  # as gridwatch.toml orders them
        check = object.__new__(check_type)  # reasons depend on the samples alone
        out += check.reasons([x for x in samples if x.metric in check_type.metrics])
    return out


def lights(samples, alerts=()):
    return {gl.grid.grid_id: gl for gl in compute(GRIDS, reasons(samples), alerts)}


def test_colours_follow_the_rule_book():
    out = lights(
        [
            # G1: an open major case → red, even though its daily report is fine
            s("gridwatch_incidents_open", 1, grid="G1", severity="major", stage="dispatched"),
            s("gridwatch_report_daily_status", 0, grid="G1"),
            # G2: report flagged (3) → red; a patrol overdue as well → still red, two reasons
            s("gridwatch_report_daily_status", 3, grid="G2"),
            s("gridwatch_patrol_overdue", 1, grid="G2"),
            # G3: missing daily report after the cutoff (2) → yellow
            s("gridwatch_report_daily_status", 2, grid="G3"),
            # G4: pending before the cutoff (1), normal open case, nothing overdue → green
            s("gridwatch_report_daily_status", 1, grid="G4"),
            s("gridwatch_incidents_open", 2, grid="G4", severity="normal", stage="accepted"),
            s("gridwatch_incidents_overdue", 0, grid="G4"),
            s("gridwatch_patrol_overdue", 0, grid="G4"),
            # G5: a key household overdue and a monthly report overdue → yellow, two reasons
            s("gridwatch_visit_key_households_overdue", 2, grid="G5", category="elderly_alone"),
            s("gridwatch_report_overdue", 1, grid="G5", kind="monthly"),
            # a sample for a grid the registry does not know is ignored
            s("gridwatch_report_daily_status", 3, grid="G99"),
        ]
    )
    assert {g: gl.light for g, gl in out.items()} == {
        "G1": "red",
        "G2": "red",
        "G3": "yellow",
        "G4": "green",
        "G5": "yellow",
        "G6": "green",
    }
    assert out["G1"].as_dict()["reasons"] == ["重大案件未结 1 件"]
    assert out["G2"].as_dict()["reasons"] == [
        "今日报送反映重大矛盾纠纷、预警性纠纷或上访动向",
        "巡查超时未完成",
    ]
    assert out["G5"].as_dict()["reasons"] == ["重点人群（独居老人）超期未走访 2 户", "月报逾期未报"]
    assert out["G6"].as_dict() == {
        "grid": "G6",
        "name": "第G6网格",
        "community": "和平社区",
        "street": "东街街道",
        "light": "green",
        "reasons": [],
        "details": [],
    }


def test_firing_alerts_feed_the_light():
    out = lights(
        [],
        alerts=[
            {
                "alert": "VisitCoverageLow",
                "labels": {"grid": "G1"},
                "state": "firing",
                "severity": "critical",
                "summary": "网格第G1网格走访覆盖率75%",
            },
            {
                "alert": "VisitCoverageLow",
                "labels": {"grid": "G2"},
                "state": "firing",
                "severity": "warning",
                "summary": "网格第G2网格走访覆盖率85%",
            },
            {
                "alert": "VisitCoverageLow",
                "labels": {"grid": "G3"},
                "state": "pending",
                "severity": "critical",
                "summary": "not yet",
            },
        ],
    )
    assert (out["G1"].light, out["G1"].as_dict()["reasons"]) == ("red", ["网格第G1网格走访覆盖率75%"])
    assert out["G2"].light == "yellow"
    assert out["G3"].light == "green"  # pending alerts do not colour a grid


def test_an_alert_raises_only_the_reasons_it_is_about():
    """A critical alert on one level of a metric (挂牌督办) leaves the other level's reason (二次通报)
    as yellow as its samples made it; the grid is red either way."""
    samples = [
        s("gridwatch_incidents_escalated", 2, grid="G1", level="re_reported"),
        s("gridwatch_incidents_escalated", 1, grid="G1", level="supervised"),
        s("gridwatch_incidents_max_overdue_seconds", 16 * 86400 + 3600, grid="G1", level="supervised"),
    ]
    alert = {
        "alert": "IncidentsSupervised",
        "labels": {"grid": "G1", "level": "supervised", "street": "东街街道"},
        "state": "firing",
        "severity": "critical",
        "summary": "挂牌督办",
    }
    out = compute(GRIDS, reasons(samples), [alert], {"IncidentsSupervised": "gridwatch_incidents_escalated"})
    by_code = {d["code"]: d for d in out[0].as_dict()["details"]}
    assert out[0].light == "red"
    assert by_code["incidents_re_reported"]["light"] == "yellow"
    assert by_code["incidents_supervised"] == {
        "light": "red",
        "code": "incidents_supervised",
        "text": "挂牌督办案件 1 件，超期 16 天",  # 16 d 1 h, whole days rounded down
    }
    assert len(out[0].reasons) == 2  # the alert's own summary is not repeated beside them
