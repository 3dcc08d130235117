"""The grid's light: one colour per grid, with reasons an operator can act on (DOMAIN.md §4).

Computed from the latest samples (and, once alerting runs, the firing alerts) whenever they
change (:mod:`gridwatch.pages`) — never stored as a flag that someone forgets to clear.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from gridwatch.api import Grid, Sample
from gridwatch.exposition import Family, gauge

GREEN, YELLOW, RED = "green", "yellow", "red"
LEVEL = {GREEN: 0, YELLOW: 1, RED: 2}

CATEGORY_ZH = {
    "community_correction": "社区矫正人员",
    "floating": "流动人口",
    "pregnant": "孕妇",
    "elderly_alone": "独居老人",
    "disabled": "残疾人",
    "left_behind_child": "留守儿童",
}
KIND_ZH = {
    "daily": "日报",
    "twice_weekly": "综合信息",
    "weekly": "周报告单",
    "monthly": "月报",
    "quarterly": "季度分析",
    "annual": "年报",
}


@dataclass
class Reason:
    light: str
    code: str
    text: str  # Chinese, as command centres read it
    metric: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"light": self.light, "code": self.code, "text": self.text}


@dataclass
class GridLight:
    grid: Grid
    reasons: list[Reason] = field(default_factory=list)

    @property
    def light(self) -> str:
        return max((r.light for r in self.reasons), key=LEVEL.__getitem__, default=GREEN)

    def as_dict(self) -> dict[str, Any]:
        g = self.grid
        return {
            "grid": g.grid_id,
            "name": g.name,
            "community": g.community,
            "street": g.street,
            "light": self.light,
            "reasons": [r.text for r in self.reasons],
            "details": [r.as_dict() for r in self.reasons],
        }


def _reasons(metric: str, labels: Mapping[str, str], value: float) -> Reason | None:
    n = int(value)
    if metric == "gridwatch_incidents_open" and labels.get("severity") == "major" and value > 0:
        return Reason(RED, "major_incident_open", f"重大案件未结 {n} 件")
    if metric == "gridwatch_report_daily_status":
        if value >= 3:
            return Reason(RED, "daily_report_flagged", "今日报送反映重大矛盾纠纷、预警性纠纷或上访动向")
        if value >= 2:
            return Reason(YELLOW, "daily_report_missing", "今日信息未按时报送")
    if metric == "gridwatch_incidents_overdue" and value > 0:
        return Reason(YELLOW, "incidents_overdue", f"超期未办结案件 {n} 件")
    if metric == "gridwatch_visit_key_households_overdue" and value > 0:
        cat = labels.get("category", "")
        return Reason(
            YELLOW,
            "key_households_overdue",
            f"重点人群（{CATEGORY_ZH.get(cat, cat)}）超期未走访 {n} 户",
        )
    if metric == "gridwatch_patrol_overdue" and value > 0:
        return Reason(YELLOW, "patrol_overdue", "巡查超时未完成")
    if metric == "gridwatch_report_overdue" and value > 0:
        kind = labels.get("kind", "")
        return Reason(YELLOW, "report_overdue", f"{KIND_ZH.get(kind, kind)}逾期未报")
    return None


def compute(
    grids: Mapping[str, Grid],
    samples: Iterable[Sample],
    alerts: Iterable[Mapping[str, Any]] = (),
    rule_metrics: Mapping[str, str] | None = None,
) -> list[GridLight]:
    """Lights for every registered grid, in registry order.

    ``alerts`` are firing alerts as /api/v1/alerts shows them: a critical one on a grid turns it
    red, a warning yellow; its summary is the reason. An alert whose rule watches a metric that
    already gave the grid a reason (``rule_metrics``: alert name → metric) only raises the
    colour, without repeating the reason in other words.
    """
    found: dict[str, list[Reason]] = defaultdict(list)
    said: set[tuple[str, str]] = set()  # (grid, metric) pairs that gave a reason
    for s in samples:
        grid = s.labels.get("grid")
        if grid in grids:
            reason = _reasons(s.metric, s.labels, s.value)
            if reason is not None:
                reason.metric = s.metric
                found[grid].append(reason)
                said.add((grid, s.metric))
    for a in alerts:
        grid = a.get("labels", {}).get("grid")
        if grid not in grids or a.get("state") != "firing" or a.get("severity") not in ("warning", "critical"):
            continue
        light = RED if a["severity"] == "critical" else YELLOW
        metric = (rule_metrics or {}).get(a.get("alert", ""))
        if (grid, metric) in said:
            for r in found[grid]:  # the samples explain it already; the alert may still raise the colour
                if r.metric == metric and LEVEL[light] > LEVEL[r.light]:
                    r.light = light
            continue
        text = a.get("summary") or a.get("alert", "")
        if not any(r.text == text for r in found[grid]):
            found[grid].append(Reason(light, f"alert:{a.get('alert')}", text))
    out = []
    for gid, grid in grids.items():
        reasons = sorted(found.get(gid, []), key=lambda r: -LEVEL[r.light])
        out.append(GridLight(grid, reasons))
    return out


def families(lights: list[GridLight]) -> list[Family]:
    """``gridwatch_grid_info`` (names, for dashboards to join) and ``gridwatch_grid_light``."""
    return [
        gauge(
            "gridwatch_grid_info",
            "Grid names; join on the grid label",
            (
                (
                    {
                        "grid": gl.grid.grid_id,
                        "name": gl.grid.name,
                        "community": gl.grid.community,
                        "street": gl.grid.street,
                    },
                    1,
                )
                for gl in lights
            ),
        ),
        gauge(
            "gridwatch_grid_light",
            "The grid's light: 0 green, 1 yellow, 2 red",
            (({"grid": gl.grid.grid_id}, LEVEL[gl.light]) for gl in lights),
        ),
    ]


def calendar_families(cal: Any) -> Iterator[Metric]:
    """Years evaluated without holiday data (weekends and overrides only): update the library."""
    fam = GaugeMetricFamily(
        "gridwatch_calendar_year_missing",
        "1 for a year the holiday calendar has no data for (weekends only)",
        labels=["year"],
    )
    for year in sorted(cal.missing_years):
        fam.add_metric([str(year)], 1)
    yield fam
