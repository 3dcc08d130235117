"""deploy/: the Prometheus, Alertmanager and Grafana files are valid for the real programs as
shipped, the rules' unit tests pass and would catch a rule that never or always fires, and
Alertmanager routes each kind of alert to its receiver.

What the files do with a running gridwatch is tested in tests/test_e2e.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.components import require

pytestmark = pytest.mark.component

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
ALERTMANAGER = DEPLOY / "alertmanager"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "gridwatch.json"

# metrics that describe a grid: a dashboard query on one of them must honour $street/$community
GRID_METRIC = re.compile(r"gridwatch_(grid_|visit_|patrol_|incident|report_)\w*")


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def rule_tests() -> list[str]:
    """The rules' unit-test files (``promtool test rules`` takes them all at once)."""
    return sorted(p.name for p in PROMETHEUS.glob("*.test.yml"))


def rule_names() -> list[str]:
    return re.findall(r"^\s+- alert: (\w+)$", (PROMETHEUS / "gridwatch-rules.yml").read_text(encoding="utf-8"), re.M)


def with_expr(rules: str, alert: str, expr: str) -> str:
    """The rules file with ``alert``'s expression (one line or a ``|`` block) replaced by ``expr``."""
    lines = rules.splitlines()
    start = lines.index(f"      - alert: {alert}")
    i = next(i for i in range(start, len(lines)) if lines[i].startswith("        expr:"))
    end = i + 1
    if lines[i].rstrip().endswith("|"):
        while end < len(lines) and (lines[end].startswith(" " * 10) or not lines[end].strip()):
            end += 1
    return "\n".join([*lines[:i], f"        expr: {expr}", *lines[end:]]) + "\n"


def test_the_prometheus_config_is_valid_as_shipped_from_any_directory(tmp_path):
    promtool = require("promtool", "prometheus")
    # rule_files resolve against the config's own directory, not the working directory
    out = run([promtool, "check", "config", str(PROMETHEUS / "prometheus.yml")], cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout
    out = run([promtool, "check", "rules", "gridwatch-rules.yml"], cwd=PROMETHEUS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_names())} rules found" in out.stdout

    text = (PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8")
    assert "job_name: gridwatch" in text
    assert re.search(r"^\s+- 127\.0\.0\.1:9477$", text, re.M), "the default gridwatch address"
    assert "file_sd_configs" in text, "how to list several shards and replicas in files"


def test_every_rule_has_a_severity_a_summary_and_a_description():
    rules = (PROMETHEUS / "gridwatch-rules.yml").read_text(encoding="utf-8")
    blocks = re.split(r"^      - alert: ", rules, flags=re.M)[1:]
    assert len(blocks) == len(rule_names()) >= 7
    for block in blocks:
        name = block.split("\n", 1)[0]
        assert re.search(r"^          severity: (warning|critical)$", block, re.M), name
        assert "          summary: " in block and "          description: " in block, name
    for metric in (
        'up{job="gridwatch"} == 0',
        "gridwatch_check_runs_total",
        "gridwatch_source_up",
        "gridwatch_notification_queue_length",
        "gridwatch_config_last_reload_successful",
        "gridwatch_calendar_year_missing",
        "gridwatch_source_rows_rejected_total",
        "gridwatch_source_rows_read_total",
    ):
        assert metric in rules


def test_the_rule_unit_tests_pass():
    promtool = require("promtool", "prometheus")
    tests = rule_tests()
    assert tests == ["gridwatch-rules.test.yml", "rows-rejected.test.yml"]
    out = run([promtool, "test", "rules", *tests], cwd=PROMETHEUS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(tests), out.stdout


def test_the_rule_unit_tests_catch_each_rule_never_firing_and_always_firing(tmp_path):
    """Proof that every rule is tested both firing and not firing: break one rule at a time."""
    promtool = require("promtool", "prometheus")
    rules = (PROMETHEUS / "gridwatch-rules.yml").read_text(encoding="utf-8")
    for name in rule_tests():
        (tmp_path / name).write_bytes((PROMETHEUS / name).read_bytes())
    for alert in rule_names():
        for broken, expr in (("never fires", "vector(1) == 0"), ("always fires", "vector(1)")):
            (tmp_path / "gridwatch-rules.yml").write_text(with_expr(rules, alert, expr), encoding="utf-8")
            out = run([promtool, "test", "rules", *rule_tests()], cwd=tmp_path)
            assert out.returncode != 0, f"the tests pass although {alert} {broken}"
            assert f"alertname: {alert}," in out.stdout + out.stderr, out.stdout + out.stderr


ROUTES = [
    # (labels, receivers)
    ({"alertname": "MajorIncidentOpen", "severity": "critical", "grid": "G0036"}, "command-centre"),
    ({"alertname": "DailyReportStatus", "severity": "warning", "grid": "G0018"}, "grid-office"),
    (
        {"alertname": "X", "severity": "critical", "grid": "G0005", "street": "东街街道"},
        "street-dongjie,command-centre",
    ),
    ({"alertname": "X", "severity": "warning", "grid": "G0012", "street": "东街街道"}, "street-dongjie,grid-office"),
    ({"alertname": "X", "severity": "warning", "grid": "G0042", "street": "新华街道"}, "grid-office"),
    ({"alertname": "GridwatchDown", "severity": "critical", "job": "gridwatch", "instance": "a:9477"}, "gridwatch-ops"),
    (
        {"alertname": "GridwatchCheckFailing", "severity": "warning", "job": "gridwatch", "check": "visits"},
        "gridwatch-ops",
    ),
    ({"alertname": "Unlabelled"}, "grid-office"),
]


def test_the_alertmanager_config_is_valid_and_routes_each_kind_of_alert(tmp_path):
    amtool = require("amtool", "prometheus-alertmanager")
    out = run([amtool, "check-config", str(ALERTMANAGER / "alertmanager.yml")], cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout and "1 inhibit rules" in out.stdout

    for labels, receivers in ROUTES:
        out = run(
            [
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={ALERTMANAGER / 'alertmanager.yml'}",
                f"--verify.receivers={receivers}",
                *(f"{k}={v}" for k, v in labels.items()),
            ],
            cwd=tmp_path,
        )
        assert out.returncode == 0, f"{labels} went to {out.stdout.strip()}, not {receivers}: {out.stderr}"

    text = (ALERTMANAGER / "alertmanager.yml").read_text(encoding="utf-8")
    urls = re.findall(r"url: (\S+)", text)
    assert len(urls) == 4 and all(u.startswith("http://127.0.0.1:") for u in urls), urls
    assert "group_by: [alertname, grid]" in text
    assert "equal: [grid]" in text


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_the_dashboard_parses_and_every_panel_queries_prometheus():
    d = dashboard()
    assert d["uid"] == "gridwatch" and d["title"]
    panels = [p for p in d["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    assert len({p["id"] for p in d["panels"]}) == len(d["panels"]), "panel ids are unique"
    for p in panels:
        assert p["targets"], f"panel {p['title']} has no query"
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        for t in p["targets"]:
            assert t["expr"].strip() and t["refId"], p["title"]
            assert t["datasource"] == p["datasource"]
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
            if GRID_METRIC.search(t["expr"]):
                assert '{street=~"$street", community=~"$community"}' in t["expr"], (p["title"], t["expr"])
                assert "gridwatch_grid_info" in t["expr"], (p["title"], t["expr"])

    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in (
        "gridwatch_grid_light",
        "gridwatch_visit_coverage_ratio",
        "gridwatch_visit_key_households_overdue",
        "gridwatch_incidents_open",
        "gridwatch_incidents_overdue",
        # the KPIs pooled from their counts (DOMAIN.md §7), never averaged from the grids' ratios
        "gridwatch_incidents_due",
        "gridwatch_incidents_due_closed",
        "gridwatch_incidents_due_closed_on_time",
        "gridwatch_incidents_due_extended",
        "gridwatch_incidents_closed",
        "gridwatch_incidents_closed_reworked",
        "gridwatch_visit_visited_households",
        "gridwatch_report_expected",
        "gridwatch_report_on_time",
        "gridwatch_incidents_escalated",
        "gridwatch_report_daily_status",
        "gridwatch_check_runs_total",
        "gridwatch_check_duration_seconds",
        "gridwatch_source_up",
        "gridwatch_notification_queue_length",
    ):
        assert metric in exprs, f"no panel shows {metric}"


def test_no_panel_averages_a_ratio_over_grids():
    # a street's or the district's ratio is its grids' numerators over their denominators: averaging
    # the grids' ratios weighs a grid with 1 case like one with 100
    for p in dashboard()["panels"]:
        for t in p.get("targets", []):
            assert not re.search(r"\bavg\b[^/]*_ratio\b", t["expr"]), (p["title"], t["expr"])
    panels = {p["title"]: p for p in dashboard()["panels"]}
    for title in ("所选范围的指标（合并计算）", "各街道指标（合并计算）", "各社区指标（合并计算）", "四项指标"):
        for t in panels[title]["targets"]:
            if "/" in t["expr"]:
                # numerators summed / denominators summed, a unit with nothing to divide by left out
                pooled = r"sum(?: by \([a-z, ]+\) )?\(.+\) / \(sum(?: by \([a-z, ]+\) )?\(.+\) > 0\)"
                assert re.fullmatch(pooled, t["expr"]), (title, t["expr"])


LEVELS = {"超期": "overdue", "二次通报": "re_reported", "挂牌督办": "supervised"}  # DOMAIN.md §2, escalation


def test_the_escalation_panels_count_each_level_in_the_grids_and_streets_selected():
    panels = {p["title"]: p for p in dashboard()["panels"]}
    for title in ("督办分级", "督办事件（按级别）"):
        targets = {t["legendFormat"]: t["expr"] for t in panels[title]["targets"]}
        assert set(targets) == set(LEVELS), title
        for name, level in LEVELS.items():
            # one number per level: every grid's cases summed, the grids of $street/$community only
            assert targets[name].startswith(
                f'sum(max by (grid, level) (gridwatch_incidents_escalated{{level="{level}"}})'
            )
            assert " and on (grid) max by (grid, name, community, street) (gridwatch_grid_info{" in targets[name]
    table = panels["各街道督办事件"]
    columns = table["transformations"][-1]["options"]["renameByName"]
    for t in table["targets"]:
        level = LEVELS[columns[f"Value #{t['refId']}"]]
        assert t["format"] == "table" and t["instant"]
        assert t["expr"].startswith(
            f'sum by (street) (max by (grid, level) (gridwatch_incidents_escalated{{level="{level}"}})'
        )
        assert (
            "* on (grid) group_left (street) max by (grid, name, community, street) (gridwatch_grid_info{" in t["expr"]
        )
    assert sorted(columns[f"Value #{t['refId']}"] for t in table["targets"]) == sorted(LEVELS)
    # the panels sit in the incidents row, above the reports row
    rows = sorted((p["gridPos"]["y"], p["title"]) for p in dashboard()["panels"] if p["type"] == "row")
    incidents = next(y for y, t in rows if t == "事件处置")
    reports = next(y for y, t in rows if t == "信息报送")
    for title in ("督办分级", "督办事件（按级别）", "各街道督办事件"):
        assert incidents < panels[title]["gridPos"]["y"] < reports, title


def test_no_two_panels_overlap():
    boxes = [p["gridPos"] for p in dashboard()["panels"]]
    cells = [(x, y) for b in boxes for x in range(b["x"], b["x"] + b["w"]) for y in range(b["y"], b["y"] + b["h"])]
    assert len(cells) == len(set(cells))


def test_the_dashboard_variables_and_the_provisioned_data_source():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["street"]["definition"] == "label_values(gridwatch_grid_info, street)"
    assert variables["community"]["definition"] == 'label_values(gridwatch_grid_info{street=~"$street"}, community)'
    for name in ("street", "community"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"

    datasource = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    assert re.search(r"^apiVersion: 1$", datasource, re.M)
    assert f"uid: {ds['current']['value']}" in datasource, "the variable defaults to the provisioned data source"
    assert "type: prometheus" in datasource
    provider = (GRAFANA / "provisioning" / "dashboards" / "gridwatch.yml").read_text(encoding="utf-8")
    assert re.search(r"^apiVersion: 1$", provider, re.M) and "type: file" in provider
