"""The grid's light: one colour per grid, with reasons an operator can act on (DOMAIN.md §4).

Computed from the reasons the checks give for their latest samples and from the firing alerts
whenever they change (:mod:`gridwatch.web.views`) — never stored as a flag that someone forgets to
clear. The core names no check's metric: each check explains its own samples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from gridwatch.api import Grid, Reason
from gridwatch.web.exposition import Family, gauge

GREEN, YELLOW, RED = "green", "yellow", "red"
LEVEL = {GREEN: 0, YELLOW: 1, RED: 2}


@dataclass
class Shown:
    """A reason as this grid's light shows it: an alert on the same metric may raise its colour."""

    light: str
    code: str
    text: str
    metric: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"light": self.light, "code": self.code, "text": self.text}


@dataclass
class GridLight:
    grid: Grid
    reasons: list[Shown] = field(default_factory=list)

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


def compute(
    grids: Mapping[str, Grid],
    reasons: Iterable[Reason],
    alerts: Iterable[Mapping[str, Any]] = (),
    rule_metrics: Mapping[str, str] | None = None,
) -> list[GridLight]:
    """Lights for every registered grid, in registry order.

    ``reasons`` come from the checks (:meth:`gridwatch.api.Check.reasons`). ``alerts`` are
    firing alerts as /api/v1/alerts shows them: a critical one on a grid turns it red, a
    warning yellow; its summary is the reason. An alert whose rule watches a metric that
    already gave the grid a reason (``rule_metrics``: alert name → metric) only raises the
    colour, without repeating the reason in other words.
    """
    found: dict[str, list[Shown]] = defaultdict(list)
    said: set[tuple[str, str]] = set()  # (grid, metric) pairs that gave a reason
    for r in reasons:
        if r.grid in grids and r.light in LEVEL:
            found[r.grid].append(Shown(r.light, r.code, r.text, r.metric))
            if r.metric:
                said.add((r.grid, r.metric))
    for a in alerts:
        grid = a.get("labels", {}).get("grid")
        if grid not in grids or a.get("state") != "firing" or a.get("severity") not in ("warning", "critical"):
            continue
        light = RED if a["severity"] == "critical" else YELLOW
        metric = (rule_metrics or {}).get(a.get("alert", ""))
        if (grid, metric) in said:
            for shown in found[grid]:  # the samples explain it already; the alert may still raise the colour
                if shown.metric == metric and LEVEL[light] > LEVEL[shown.light]:
                    shown.light = light
            continue
        text = a.get("summary") or a.get("alert", "")
        if not any(shown.text == text for shown in found[grid]):
            found[grid].append(Shown(light, f"alert:{a.get('alert')}", text))
    out = []
    for gid, grid in grids.items():
        out.append(GridLight(grid, sorted(found.get(gid, []), key=lambda r: -LEVEL[r.light])))
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
