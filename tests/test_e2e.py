"""End to end: the demo city → gridwatch → the shipped Prometheus, Alertmanager and Grafana files.

A real Prometheus scrapes gridwatch with deploy/prometheus/prometheus.yml (only the addresses
and the intervals changed, for speed) and evaluates deploy/prometheus/gridwatch-rules.yml; a
real Alertmanager runs deploy/alertmanager/alertmanager.yml as shipped (its webhook relays do
not exist here, which only makes its deliveries fail). Then:

- Prometheus holds what gridwatch's API says: every grid's light, coverage, households;
- every query of the Grafana dashboard returns data, the light counts agree with the API, and
  the street filter selects that street's grids;
- gridwatch's alerts reach Alertmanager, routed by severity and street, with a grid's warnings
  inhibited by its critical alert; the self-monitoring rules evaluate without error and stay
  quiet on a healthy gridwatch;
- the same with the city in PostgreSQL; and two replicas of one shard give each alert once.

The demo city is written for the current time: gridwatch evaluates it by the wall clock.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import urllib.parse
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gridwatch.testing import DaemonProcess, wait_for
from gridwatch.tools import demo
from tests.cities import copy_city
from tests.components import free_port  # remembers the ports it gave Prometheus and Alertmanager

pytestmark = pytest.mark.component

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
LIGHT = {"green": 0, "yellow": 1, "red": 2}
EAST = "东街街道"  # the demo's first street: grids G0001-G0020
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local servers only


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("e2e-city") / "demo.db"
    demo.generate(path, grids=60, days=40, now=datetime.now(ZoneInfo("Asia/Shanghai")).replace(microsecond=0))
    return path


def gridwatch_config(directory: Path, name: str, port: int, source: str, am_url: str) -> Path:
    """Like the repository's gridwatch.toml (its four checks), faster, sending to Alertmanager."""
    checks = "".join(
        f'[[checks]]\nname = "{t}"\ntype = "{t}"\nsource = "demo"\ninterval = "2s"\ntimeout = "30s"\n\n'
        for t in ("visits", "patrols", "incidents", "reports")
    )
    path = directory / f"{name}.toml"
    path.write_text(
        f"""timezone = "Asia/Shanghai"

[server]
listen = "127.0.0.1:{port}"

[state]
path = "{name}-state.db"

[grids]
source = "demo"

[sources.demo]
{source}

[alerting]
evaluation_interval = "1s"

[notifiers.am]
type = "alertmanager"
urls = ["{am_url}"]
resend_interval = "1s"

{checks}
# a rule of the street's own: its alerts carry the street, as every grid alert does
[[rules]]
alert = "DongjieVisitCoverageLow"
metric = "gridwatch_visit_coverage_ratio"
match = {{ street = "{EAST}" }}
below = {{ warning = 0.9, critical = 0.8 }}
labels = {{ street = "{EAST}" }}
summary = "{{grid_name}}走访覆盖率{{value:.0%}}"
""",
        encoding="utf-8",
    )
    return path


def adapt(text: str, changes: dict[str, str]) -> str:
    for old, new in changes.items():
        assert old in text, f"the shipped file no longer has {old!r}"
        text = text.replace(old, new)
    return text


def start_prometheus(prometheus, directory: Path, targets: list[str], am_address: str):
    """The shipped prometheus.yml and rules: other addresses, a 1 s scrape and evaluation."""
    directory.mkdir()
    shutil.copy(DEPLOY / "prometheus" / "gridwatch-rules.yml", directory)  # rule_files is relative
    text = adapt(
        (DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"),
        {
            "- 127.0.0.1:9477": "\n".join(f"- {t}" for t in targets).replace("\n", "\n          "),
            "- 127.0.0.1:9093": f"- {am_address}",
            "scrape_interval: 30s": "scrape_interval: 1s",
            "scrape_timeout: 10s": "scrape_timeout: 1s",
            "evaluation_interval: 30s": "evaluation_interval: 1s",
        },
    )
    return prometheus(text, directory=directory)


def get_json(url: str) -> Any:
    with _OPENER.open(url, timeout=10) as resp:
        return json.load(resp)


def by_grid(result: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for r in result:
        assert r["metric"]["grid"] not in out, f"{r['metric']['grid']} twice"
        out[r["metric"]["grid"]] = float(r["value"][1])
    return out


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "gridwatch.json").read_text(encoding="utf-8"))


def panel_queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] if p["type"] != "row" for t in p["targets"]]


def label_values(prom, definition: str) -> set[str]:
    """What Grafana's ``label_values(series, label)`` lists, asked of Prometheus."""
    series, label = re.fullmatch(r"label_values\((.+), (\w+)\)", definition).groups()
    return {r["metric"][label] for r in prom.query(f"group by ({label}) ({series})")}


def as_grafana_would(expr: str, street: str = ".*", community: str = ".*") -> str:
    """The query with the dashboard variables replaced: every street and community, 1 m windows."""
    expr = re.sub(r"\$\{?street\}?", street, expr)
    expr = re.sub(r"\$\{?community\}?", community, expr)
    expr = re.sub(r"\$\{?(__rate_interval|__interval|__range)\}?", "1m", expr)
    assert "$" not in expr, expr
    return expr


def firing_labels(gw: DaemonProcess) -> Counter:
    """gridwatch's firing alerts as Alertmanager should hold them: labels plus severity."""
    return Counter(
        frozenset({**a["labels"], "severity": a["severity"]}.items())
        for a in gw.json("/api/v1/alerts")
        if a["state"] == "firing"
    )


def am_labels(am) -> Counter:
    return Counter(frozenset(a["labels"].items()) for a in am.alerts())


def find(alerts: list[dict[str, Any]], **labels: str) -> list[dict[str, Any]]:
    return [a for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())]


# --------------------------------------------------------------------------------------------


def check_prometheus_holds_what_gridwatch_says(gw: DaemonProcess, prom) -> list[dict[str, Any]]:
    prom.query_until('up{job="gridwatch"} == 1', lambda r: len(r) == 1, timeout=30)
    wait_for(lambda: gw.get("/readyz")[0] == 200, 60, "every check to have run once")

    grids = gw.json("/api/v1/grids")
    assert len(grids) == 60 and {g["light"] for g in grids} == set(LIGHT)

    # the lights move while alerts start firing: wait until a scrape has the settled ones
    def lights_agree() -> bool:
        api = {g["grid"]: LIGHT[g["light"]] for g in gw.json("/api/v1/grids")}
        return by_grid(prom.query("gridwatch_grid_light")) == api

    wait_for(lights_agree, 20, "Prometheus's gridwatch_grid_light to equal /api/v1/grids")

    info = prom.query("gridwatch_grid_info")
    assert {(r["metric"]["grid"], r["metric"]["name"], r["metric"]["street"]) for r in info} == {
        (g["grid"], g["name"], g["street"]) for g in grids
    }

    for metric in ("gridwatch_visit_coverage_ratio", "gridwatch_grid_households"):

        def agree(metric=metric) -> bool:
            served = {dict(labels)["grid"]: v for (name, labels), v in gw.metrics().items() if name == metric}
            stored = by_grid(prom.query(metric))
            return served.keys() == stored.keys() and all(math.isclose(served[g], stored[g]) for g in served)

        wait_for(agree, 20, f"{metric} in Prometheus to equal /metrics")
    coverage = by_grid(prom.query("gridwatch_visit_coverage_ratio"))
    assert len(coverage) == 60 and min(coverage.values()) < 0.8 < max(coverage.values())
    return grids


def check_every_dashboard_query_returns_data(gw: DaemonProcess, prom, grids: list[dict[str, Any]]) -> None:
    queries = panel_queries()
    assert len(queries) >= 30

    empty: list[str] = []

    def all_answer() -> bool:
        empty[:] = [f"{title}: {expr}" for title, expr in queries if not prom.query(as_grafana_would(expr))]
        return not empty

    # rate() and increase() over [1m] need two scrapes; a query error raises at once
    try:
        wait_for(all_answer, 30, "every dashboard query to return data")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still empty:\n" + "\n".join(empty)) from None

    # the numbers mean what the API says
    expr = dict(queries)

    def counts_agree() -> bool:
        lights = Counter(g["light"] for g in gw.json("/api/v1/grids"))
        return all(
            float(prom.query(as_grafana_would(expr[title]))[0]["value"][1]) == lights[colour]
            for title, colour in (("红灯网格", "red"), ("黄灯网格", "yellow"), ("绿灯网格", "green"))
        )

    wait_for(counts_agree, 10, "the dashboard's red, yellow and green counts to equal /api/v1/grids")
    assert float(prom.query(as_grafana_would(expr["网格总数"]))[0]["value"][1]) == 60

    # the variables list the registry's streets, and a street's communities
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    streets = label_values(prom, variables["street"]["definition"])
    assert streets == {g["street"] for g in grids}
    communities = label_values(prom, as_grafana_would(variables["community"]["definition"], street=EAST))
    assert communities == {g["community"] for g in grids if g["street"] == EAST}

    # a street selects its grids only
    east = {g["grid"] for g in grids if g["street"] == EAST}
    assert len(east) == 20
    table = prom.query(as_grafana_would(expr["网格灯况"], street=EAST))
    assert {r["metric"]["grid"] for r in table} == east
    assert all(r["metric"]["street"] == EAST and r["metric"]["name"] for r in table)
    by_community = prom.query(as_grafana_would(expr["社区灯况（最差网格）"], street=EAST))
    assert {r["metric"]["community"] for r in by_community} == communities


def check_alerts_reach_alertmanager_routed_and_inhibited(gw: DaemonProcess, am) -> None:
    def arrived() -> list[dict[str, Any]] | None:
        alerts = am.alerts()
        want = [
            find(alerts, alertname="MajorIncidentOpen", grid="G0036", severity="critical"),
            find(alerts, alertname="DailyReportStatus", grid="G0050", severity="critical"),
            find(alerts, alertname="VisitCoverageLow", grid="G0005", severity="critical"),
            find(alerts, alertname="DongjieVisitCoverageLow", grid="G0012", severity="warning"),
        ]
        return alerts if all(want) else None

    alerts = wait_for(arrived, 30, "gridwatch's alerts in Alertmanager")
    wait_for(lambda: am_labels(am) == firing_labels(gw), 20, "Alertmanager to hold exactly gridwatch's firing alerts")
    alerts = am.alerts()

    def receivers(**labels: str) -> list[list[str]]:
        return [sorted(r["name"] for r in a["receivers"]) for a in find(alerts, **labels)]

    assert receivers(alertname="MajorIncidentOpen", grid="G0036") == [["command-centre"]]
    assert receivers(alertname="DailyReportStatus", grid="G0050") == [["command-centre"]]
    # every grid alert carries its grid's street: 东街街道's office gets its grids' alerts, besides
    # the usual route, with no rule of its own; other streets' alerts do not reach it
    assert receivers(alertname="VisitCoverageLow", grid="G0012") == [["grid-office", "street-dongjie"]]
    assert receivers(alertname="VisitCoverageLow", grid="G0005") == [["command-centre", "street-dongjie"]]
    assert receivers(alertname="DongjieVisitCoverageLow", grid="G0005") == [["command-centre", "street-dongjie"]]
    assert receivers(alertname="DongjieVisitCoverageLow", grid="G0012") == [["grid-office", "street-dongjie"]]
    assert all(a["labels"]["street"] == EAST for a in find(alerts, alertname="DongjieVisitCoverageLow"))
    east = {a["labels"]["grid"] for a in alerts if a["labels"].get("street") == EAST}
    assert east and all(g <= "G0020" for g in east)  # the demo's first street: G0001-G0020

    # G0005 is red (coverage below 0.80) and has overdue key households (warnings): inhibited
    warnings = find(alerts, grid="G0005", severity="warning")
    assert warnings and all(a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in warnings)
    critical = find(alerts, grid="G0005", severity="critical")
    assert critical and all(a["status"]["state"] == "active" for a in critical)
    # a grid without a critical alert keeps its warnings
    assert all(a["status"]["state"] == "active" for a in find(alerts, grid="G0012"))


def check_the_self_monitoring_rules(gw: DaemonProcess, prom, am) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = get_json(f"{prom.url}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = wait_for(evaluated, 20, "Prometheus to evaluate the rules")
    shipped = re.findall(r"- alert: (\w+)", (DEPLOY / "prometheus" / "gridwatch-rules.yml").read_text(encoding="utf-8"))
    assert sorted(r["name"] for r in rules) == sorted(shipped)
    for r in rules:
        assert r["health"] == "ok" and not r.get("lastError"), r
        assert r["labels"]["severity"] in {"warning", "critical"} and r["annotations"]["summary"], r
    firing = [a for r in rules for a in r["alerts"] if a["state"] == "firing"]
    assert not firing, f"a healthy gridwatch raised {firing}"

    # every gridwatch metric the rules and the dashboard use is one gridwatch serves
    _, body = gw.get("/metrics")
    served = set(re.findall(r"^# TYPE (\w+) (\w+)", body.decode(), re.M))
    names = {n for n, _ in served} | {n + "_total" for n, kind in served if kind == "counter"}
    used = set(re.findall(r"gridwatch_\w+", " ".join(e for _, e in panel_queries())))
    used |= set(re.findall(r"gridwatch_\w+", (DEPLOY / "prometheus" / "gridwatch-rules.yml").read_text()))
    # Prometheus found the Alertmanager of its alerting section
    managers = get_json(f"{prom.url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    assert [m["url"] for m in managers] == [f"{am.url}/api/v2/alerts"]

    optional = {"gridwatch_report_overdue"}  # only with periodic kinds in the reports check's expect
    assert not (used - names - optional), f"not served by gridwatch: {sorted(used - names - optional)}"


def check_a_failed_reload_reaches_the_ops_receiver(gw: DaemonProcess, am) -> None:
    """Prometheus → Alertmanager → gridwatch-ops, live: break the config and reload."""
    with gw.config.open("a", encoding="utf-8") as f:
        f.write('no_such_key = "x"\n')
    gw.send(signal.SIGHUP)
    wait_for(lambda: gw.metric("gridwatch_config_last_reload_successful") == 0, 10, "the reload to fail")

    def raised() -> list[dict[str, Any]]:
        return find(am.alerts(), alertname="GridwatchConfigReloadFailed")

    (alert,) = wait_for(raised, 20, "GridwatchConfigReloadFailed in Alertmanager")
    assert alert["labels"]["job"] == "gridwatch" and alert["labels"]["instance"] == f"127.0.0.1:{gw.port}"
    assert alert["labels"]["severity"] == "warning" and alert["annotations"]["summary"]
    assert [r["name"] for r in alert["receivers"]] == ["gridwatch-ops"]
    assert gw.get("/healthz")[0] == 200, "the old config keeps running"


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_shipped_deploy_files_against_gridwatch_on_the_demo_city(
    database, city, tmp_path, request, alertmanager, prometheus
):
    if database == "sqlite":
        source = f'type = "sqlite"\npath = "{city}"'
    else:
        postgres = request.getfixturevalue("postgres")
        postgres.createdb("deploy_e2e")
        copy_city(city, postgres.url_for("deploy_e2e"))
        source = f'type = "sql"\nurl = "{postgres.url_for("deploy_e2e")}"'

    am = alertmanager((DEPLOY / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    port = free_port()
    with DaemonProcess(gridwatch_config(tmp_path, "gw", port, source, am.url), port) as gw:
        prom = start_prometheus(prometheus, tmp_path / "prometheus", [f"127.0.0.1:{port}"], am.address)
        grids = check_prometheus_holds_what_gridwatch_says(gw, prom)
        check_every_dashboard_query_returns_data(gw, prom, grids)
        check_alerts_reach_alertmanager_routed_and_inhibited(gw, am)
        check_the_self_monitoring_rules(gw, prom, am)
        check_a_failed_reload_reaches_the_ops_receiver(gw, am)


def test_two_replicas_of_a_shard_give_each_alert_once(city, tmp_path, alertmanager, prometheus):
    am = alertmanager((DEPLOY / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    source = f'type = "sqlite"\npath = "{city}"'
    ports = [free_port(), free_port()]
    replicas = [
        DaemonProcess(gridwatch_config(tmp_path, f"replica{i}", port, source, am.url), port)
        for i, port in enumerate(ports)
    ]
    with replicas[0] as a, replicas[1] as b:
        prom = start_prometheus(prometheus, tmp_path / "prometheus", [f"127.0.0.1:{p}" for p in ports], am.address)
        for gw in (a, b):
            wait_for(lambda gw=gw: gw.get("/readyz")[0] == 200, 60, "every check to have run once")

        def settled() -> bool:
            return firing_labels(a) == firing_labels(b) == am_labels(am) and bool(firing_labels(a))

        wait_for(settled, 30, "both replicas' alerts in Alertmanager")
        held = am_labels(am)
        assert set(held.values()) == {1}, [dict(k) for k, n in held.items() if n > 1]
        assert sum(firing_labels(a).values()) == sum(held.values()) > 20
        for gw in (a, b):  # both replicas delivered, not just one of them
            assert gw.metric("gridwatch_notifications_total", notifier="am", outcome="success") > 0

        # Prometheus scrapes both; the dashboard counts each grid once
        prom.query_until('up{job="gridwatch"} == 1', lambda r: len(r) == 2, timeout=30)
        assert len(prom.query("gridwatch_grid_light")) == 120
        queries = dict(panel_queries())
        total = prom.query_until(as_grafana_would(queries["网格总数"]))
        assert float(total[0]["value"][1]) == 60
        lights = Counter(g["light"] for g in a.json("/api/v1/grids"))
        red = prom.query(as_grafana_would(queries["红灯网格"]))
        assert float(red[0]["value"][1]) == lights["red"]
        table = prom.query(as_grafana_would(queries["网格灯况"]))
        assert sorted(r["metric"]["grid"] for r in table) == sorted(g["grid"] for g in a.json("/api/v1/grids"))
