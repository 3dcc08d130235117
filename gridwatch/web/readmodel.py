"""What the HTTP side reads: one narrow object, handed over by the daemon and swapped on reload.

The web layer never sees the daemon. Each request takes the current :class:`ReadModel` (the
daemon replaces it whole after a reload, so a request never mixes two configs) and reads the
status, alerts, grids, a grid's detail, readiness and the sources that take pushed rows from it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from gridwatch import __version__
from gridwatch.alerting.service import Alerting
from gridwatch.api import Source
from gridwatch.config import Settings
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Runtime
from gridwatch.plugins import PluginHost
from gridwatch.store import Store
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

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts as /api/v1/alerts shows them, newest first."""
        return self.alerting.views()

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

    async def grid_detail(self, grid_id: str, days: int = 30) -> dict[str, Any] | None:
        """One grid for the board's detail view: light and reasons, its series, its alerts and
        its recent daily lights."""
        gl = (await self.pages.lights.get()).by_grid.get(grid_id)
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
