"""What the HTTP side reads: one narrow object, handed over by the daemon and swapped on reload.

The web layer never sees the daemon. Each request takes the current :class:`ReadModel` (the
daemon replaces it whole after a reload, so a request never mixes two configs) and reads the
status, alerts, grids, a grid's detail, the summary and the assessment, readiness and the sources
that take pushed rows from it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from gridwatch import __version__
from gridwatch.alerting.service import Alerting
from gridwatch.api import Grid, Ratio, Sample, Source, Title
from gridwatch.assessment import rollup, scorecard
from gridwatch.assessment.scorecard import Period
from gridwatch.config import Settings
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Runtime
from gridwatch.plugins import PluginHost
from gridwatch.store import Store
from gridwatch.web.access import Access
from gridwatch.web.scope import EVERYTHING, Scope
from gridwatch.web.views import Pages, describe_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadModel:
    settings: Settings
    host: PluginHost
    runtime: Runtime
    alerting: Alerting
    results: Results
    pages: Pages
    store: Store
    registry: CollectorRegistry  # gridwatch's own metrics, rendered on every scrape
    pool: Executor  # for blocking work a request needs (writing pushed rows)
    started_at: datetime
    reload: Callable[[], Awaitable[bool]]  # ``POST /api/v1/reload``

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "started_at": self.started_at.isoformat(),
            "checks": [c.as_dict() for c in self.results.checks.values()],
            "sources": [s.as_dict() for s in self.results.sources.values()],
            "state_database": {"writable": self.store.writable, "error": self.store.write_error},
        }

    @functools.cached_property
    def access(self) -> Access:
        """Who may read what under this config; a reload makes a new read model, which forgets the
        passwords verified under the old config."""
        return Access(self.settings)

    def grids(self) -> Mapping[str, Grid]:
        """The grid registry (grid id → grid)."""
        return self.pages.grids()

    def alerts(self, scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
        """Alerts as /api/v1/alerts shows them to ``scope``, newest first, each with its rule's
        display name (``title``: the board groups alerts by it; the rule's code is no word for people)."""
        return self.settings.names.titled(scope.filter_alerts(self.alerting.views(), self.grids()))

    def waiting(self) -> list[str]:
        """The checks that have not run once since start (or since they were added)."""
        return [n for n, r in self.runtime.runners.items() if r.state.last_run is None]

    def not_ready(self) -> list[str]:
        """What keeps /readyz at 503: what is still awaited, and a state database that cannot be
        written (alert state and notifications then live in memory only)."""
        waiting = self.waiting()
        if not self.store.writable:
            waiting.append("state database")
        return waiting

    def push_sources(self) -> list[Source]:
        """The sources that take rows pushed over ``POST /api/v1/ingest/{table}``."""
        return [s for s in self.runtime.sources.values() if s.accepts_pushes]

    def grids_changed(self) -> None:
        """Pushed grid rows: read the registry again at the next look."""
        if self.runtime.registry is not None:
            self.runtime.registry.invalidate()

    async def grid_detail(self, grid_id: str, scope: Scope = EVERYTHING, days: int = 30) -> dict[str, Any] | None:
        """One grid for the board's detail view: light and reasons, its series, its alerts and
        its recent daily lights. None for a grid ``scope`` does not see, as for one that does not
        exist: another street's grid is "no such grid", so its id tells nothing."""
        gl = (await self.pages.lights_in(scope)).by_grid.get(grid_id)
        if gl is None:
            return None
        since = datetime.now(self.settings.timezone).date() - timedelta(days=days - 1)
        hook = self.host.pm.hook.daily_lights
        try:
            history = await self.store.acall(lambda db: hook(db=db, grid_id=grid_id, since=since) or [])
        except Exception:  # a plugin's history is extra: the grid's page must still answer
            log.warning("the daily_lights hook failed for a grid's detail", exc_info=True)
            history = []
        return {
            **gl.as_dict(),
            "zone": gl.grid.zone,
            "metrics": describe_metrics(self.results.checks.values(), grid_id, self.settings.names),
            "alerts": [a for a in self.alerts() if a["labels"].get("grid") == grid_id],
            "days": [{"day": d.isoformat(), "light": light} for d, light in history],
        }

    # -- the command centre's routine (DOMAIN.md §6, §7) ---------------------------------------

    def today(self) -> date:
        """Today in the configured timezone, by the daemon's clock (a replay's day in tests)."""
        return datetime.fromtimestamp(self.runtime.clock(), self.settings.timezone).date()

    def figures(self) -> tuple[list[Sample], dict[str, Ratio], dict[str, Title]]:
        """Every check's latest samples, the ratios they declare and what they call their metrics."""
        samples: list[Sample] = []
        ratios: dict[str, Ratio] = {}
        titles: dict[str, Title] = {}
        for check in list(self.results.checks.values()):
            samples += check.samples
            cls = self.host.check_type(check.type)
            ratios.update(getattr(cls, "ratios", {}) or {})
            titles.update(check.titles)
        return samples, ratios, titles

    async def assessment(self, period: Period, visible: Collection[str] | None = None) -> dict[str, Any]:
        """Every grid's light days in ``period``, score with its deductions, and ranks in its street
        and the district (``GET /api/v1/assessment``). Ranks are among all grids; ``visible`` (grid
        ids) keeps the rows a reader may see."""
        grids = [gl.grid for gl in (await self.pages.lights.get()).all]
        today = self.today()
        hook = self.host.pm.hook.daily_lights
        days = await self.store.acall(lambda db: scorecard.light_days(db, hook, grids, period, today))
        samples, ratios, _ = self.figures()
        items = self.settings.assessment

        def rows() -> list[dict[str, Any]]:
            return scorecard.assess(grids, items, days, scorecard.figures(samples, items, ratios))

        assessed = await asyncio.get_running_loop().run_in_executor(self.pool, rows)
        return {
            "period": period.name,
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
            "today": today.isoformat(),
            "items": [
                {
                    "indicator": name,
                    "title": item.title,
                    "metric": item.metric or None,
                    "points": item.points,
                    "cap": item.cap,
                    "target": item.target,
                }
                for name, item in items.items()
            ],
            "grids": [r for r in assessed if visible is None or r["grid"] in visible],
        }

    async def summary(
        self, by: str = "street", period: Period | None = None, visible: Collection[str] | None = None
    ) -> dict[str, Any]:
        """Each street, community or the district: lights counted, every ratio pooled with its
        numerator and denominator, the mean score of its grids in ``period`` (default: this month
        so far) and its rank, and its grids ranked (``GET /api/v1/summary``)."""
        period = period or scorecard.month_of(self.today())
        assessed = await self.assessment(period)
        lights = await self.pages.lights.get()
        samples, ratios, titles = self.figures()
        scores = {row["grid"]: row["score"] for row in assessed["grids"]}
        colours = {gl.grid.grid_id: gl.light for gl in lights.all}
        grids = [gl.grid for gl in lights.all]

        def units() -> list[dict[str, Any]]:
            return rollup.summary(grids, by, rollup.counts(samples, ratios), colours, scores, titles, visible)

        return {
            "by": by,
            "period": period.name,
            "units": await asyncio.get_running_loop().run_in_executor(self.pool, units),
        }
