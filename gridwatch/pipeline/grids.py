"""The grid registry: the ``grids`` table of the source named by ``[grids] source``."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from gridwatch.api import Grid, GridSet, RunContext, Source
from gridwatch.rows import BAD_TIMESTAMP, clean, parse_ts
from gridwatch.schema import ISO

COLUMNS = ("grid_id", "name", "community", "street", "zone")
OPTIONAL = ("since",)
ZONES = {"red", "yellow", "blue"}


def shard_of(grid: Grid, count: int, by: str = "hash") -> int:
    """1-based shard of a grid: stable across processes, machines and Python versions."""
    key = grid.street if by == "street" else grid.grid_id
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count + 1


def shard_selector(shard: tuple[int, int] | None, by: str) -> Callable[[Grid], bool] | None:
    if shard is None:
        return None
    k, n = shard
    return lambda grid: shard_of(grid, n, by) == k


EMPTY = GridSet()  # one object, so that "no grids yet" compares the same from call to call


class GridRegistry:
    """Loads the grid list, at most once per ``ttl`` seconds (grids change rarely)."""

    def __init__(self, source: Source, ttl: float = 30.0, select: Callable[[Grid], bool] | None = None):
        self.source = source
        self.ttl = ttl
        self.select = select  # sharding: which grids this instance watches
        self._cache: GridSet | None = None
        self._loaded = -float("inf")
        self.attempted = False  # a load has ended (read, or failed): rules may trust cached()

    def load(self, ctx: RunContext) -> GridSet:
        if self._cache is not None and time.monotonic() - self._loaded < self.ttl:
            return self._cache
        try:
            return self._read(ctx)
        finally:
            self.attempted = True

    def _read(self, ctx: RunContext) -> GridSet:
        source = self.source
        source.require("grids", COLUMNS, deadline=ctx.deadline)  # a mistyped name fails, never reads a constant
        optional = tuple(c for c in OPTIONAL if source.has("grids", c, deadline=ctx.deadline))
        rows = source.read("grids", COLUMNS + optional, deadline=ctx.deadline)
        grids, elsewhere = GridSet(), set()
        formats = source.time_formats("grids")
        codes = source.code_map("grids")
        for row in clean(ctx, source.name, rows, id_column="grid_id", grid_column=None, codes=codes):
            since = _day(row.get("since"), ctx, source.name, formats.get("since", ISO))
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
                since,
            )
            if self.select is None or self.select(grid):
                grids[grid.grid_id] = grid
            else:
                elsewhere.add(grid.grid_id)
        grids.elsewhere = frozenset(elsewhere)
        if self._cache is not None and grids == self._cache and grids.elsewhere == self._cache.elsewhere:
            grids = self._cache  # unchanged: the same object, so what is derived from it stays valid
        self._cache, self._loaded = grids, time.monotonic()
        return grids

    def cached(self) -> GridSet:
        """The last loaded grids (empty before the first load); never touches the source."""
        return self._cache if self._cache is not None else EMPTY

    def invalidate(self) -> None:
        """Read again at the next load; until then the last grids stay (the board, the rules)."""
        self._loaded = -float("inf")

    def adopt(self, other: GridRegistry) -> None:
        """Take over the grids another registry of the same source loaded (a reload): the rules
        and the board go on with them instead of an empty registry until the next read."""
        self._cache, self._loaded, self.attempted = other._cache, other._loaded, other.attempted


def _day(value: Any, ctx: RunContext, source: str, fmt: str = ISO) -> date | None:
    """``grids.since`` as a date: a date, or a timestamp's local date (in the source's declared
    format); a bad one is counted and ignored (the grid is still watched, from the earliest row
    its checks read)."""
    try:
        ts = parse_ts(value, ctx.tz, fmt)
    except (ValueError, TypeError, OverflowError):
        ctx.reject(source, BAD_TIMESTAMP, "since is not a date")
        return None
    return None if ts is None else ts.astimezone(ctx.tz).date()
