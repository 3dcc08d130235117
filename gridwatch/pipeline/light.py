"""The grid's light: one colour per grid, with reasons an operator can act on (DOMAIN.md §4).

Computed from the reasons the checks give for their latest samples and from the firing alerts
whenever they change (:mod:`gridwatch.web.views`) — never stored as a flag that someone forgets to
clear. The core names no check's metric: each check explains its own samples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gridwatch.api import Grid, Reason

GREEN, YELLOW, RED = "green", "yellow", "red"
LEVEL = {GREEN: 0, YELLOW: 1, RED: 2}


@dataclass
class Shown:
    """A reason as this grid's light shows it: an alert on the same metric may raise its colour."""

    light: str
    code: str
    text: str
    metric: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def explains(self, metric: str | None, labels: Mapping[str, str]) -> bool:
        """Whether an alert on ``metric`` with ``labels`` is about what this reason says."""
        return self.metric == metric and all(labels.get(k) == v for k, v in self.labels.items())

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
    for r in reasons:
        if r.grid in grids and r.light in LEVEL:
            found[r.grid].append(Shown(r.light, r.code, r.text, r.metric, r.labels))
    for a in alerts:
        grid = a.get("labels", {}).get("grid")
        if grid not in grids or a.get("state") != "firing" or a.get("severity") not in ("warning", "critical"):
            continue
        light = RED if a["severity"] == "critical" else YELLOW
        metric = (rule_metrics or {}).get(a.get("alert", ""))
        labels = a.get("labels", {})
        explained = [shown for shown in found[grid] if metric and shown.explains(metric, labels)]
        if explained:  # the samples explain it already; the alert may still raise the colour
            for shown in explained:
                if LEVEL[light] > LEVEL[shown.light]:
                    shown.light = light
            continue
        text = a.get("summary") or a.get("alert", "")
        if not any(shown.text == text for shown in found[grid]):
            found[grid].append(Shown(light, f"alert:{a.get('alert')}", text))
    out = []
    for gid, grid in grids.items():
        out.append(GridLight(grid, sorted(found.get(gid, []), key=lambda r: -LEVEL[r.light])))
    return out
