"""The grid registry: the ``grids`` table of the source named by ``[grids] source``."""

from __future__ import annotations

import time
from collections.abc import Callable

from gridwatch.api import Grid, RunContext, Source
from gridwatch.rows import clean

COLUMNS = ("grid_id", "name", "community", "street", "zone")
ZONES = {"red", "yellow", "blue"}


class GridRegistry:
    """Loads the grid list, at most once per ``ttl`` seconds (grids change rarely)."""

    def __init__(self, source: Source, ttl: float = 30.0, select: Callable[[Grid], bool] | None = None):
        self.source = source
        self.ttl = ttl
        self.select = select  # sharding: which grids this instance watches
        self._cache: dict[str, Grid] | None = None
        self._loaded = -float("inf")

    def load(self, ctx: RunContext) -> dict[str, Grid]:
        if self._cache is not None and time.monotonic() - self._loaded < self.ttl:
            return self._cache
        rows = self.source.read("grids", COLUMNS, deadline=ctx.deadline)
        grids: dict[str, Grid] = {}
        for row in clean(ctx, self.source.name, rows, id_column="grid_id", grid_column=None):
            zone = (row.get("zone") or "").strip().lower() or None
            if zone is not None and zone not in ZONES:
                ctx.reject(self.source.name, "bad_zone", f"zone={zone[:20]!r}")
                zone = None
            grid = Grid(
                str(row["grid_id"]),
                str(row.get("name") or row["grid_id"]),
                str(row.get("community") or ""),
                str(row.get("street") or ""),
                zone,
            )
            if self.select is None or self.select(grid):
                grids[grid.grid_id] = grid
        self._cache, self._loaded = grids, time.monotonic()
        return grids

    def cached(self) -> dict[str, Grid]:
        """The last loaded grids (empty before the first load); never touches the source."""
        return self._cache or {}

    def invalidate(self) -> None:
        self._cache = None
