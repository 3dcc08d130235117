"""Which grids a read credential may see: a street office sees its street, the district sees all.

A :class:`Scope` is what a request's credential may see; the auth middleware puts it on the
request, and every read endpoint filters what it answers through it with one call, so a new
endpoint cannot forget a rule the others keep::

    scope = scope_of(request)
    grids = scope.filter_grids(registry)              # the grids it may see, by id
    samples = scope.filter_samples(samples, registry)  # series of those grids only
    alerts = scope.filter_alerts(alerts, registry)     # alerts of those grids (or their streets)

The rule for anything labelled (a series, an alert, a silence's matchers, a JSON row): its
``grid`` is looked up in the registry and must be in scope; without a grid, a ``street`` label
in the scope's streets, or a ``community`` label in its communities, lets it through; without
any of the three it is about gridwatch itself (a check's health) or the whole district, and a
scoped reader does not see it. :data:`EVERYTHING` (the district's credentials) passes all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from gridwatch.api import Grid, Sample
from gridwatch.settings import ReaderSpec

R = TypeVar("R", bound=Mapping[str, Any])


@dataclass(frozen=True)
class Scope:
    """The streets and communities one credential may see; ``name`` None is everything."""

    name: str | None = None
    streets: frozenset[str] = frozenset()
    communities: frozenset[str] = frozenset()
    places: frozenset[tuple[str, str]] = frozenset()
    """(street, community): a community of that name in that street only"""

    @classmethod
    def of(cls, reader: ReaderSpec) -> Scope:
        qualified = {tuple(c.split("/", 1)) for c in reader.communities if "/" in c}
        return cls(
            reader.name,
            reader.streets,
            frozenset(c for c in reader.communities if "/" not in c),
            frozenset((s.strip(), c.strip()) for s, c in qualified),
        )

    @property
    def everything(self) -> bool:
        return self.name is None

    def allows(self, grid: Grid | None) -> bool:
        """Whether the scope sees this grid (None, a grid the registry does not know: no)."""
        if self.everything:
            return True
        if grid is None:
            return False
        return (
            grid.street in self.streets
            or grid.community in self.communities
            or (grid.street, grid.community) in self.places
        )

    def allows_labels(self, labels: Mapping[str, Any], grids: Mapping[str, Grid]) -> bool:
        """Whether the scope sees what carries these labels (the rule in the module's docstring)."""
        if self.everything:
            return True
        grid = labels.get("grid")
        if grid is not None:
            return self.allows(grids.get(grid))
        street, community = labels.get("street"), labels.get("community")
        if street is not None and street in self.streets:
            return True
        if community is not None:  # a street-wide one is not a community's to see
            return community in self.communities or (street, community) in self.places
        return False

    def filter_grids(self, grids: Mapping[str, Grid]) -> Mapping[str, Grid]:
        """The registry (grid id → grid) as this scope sees it."""
        if self.everything:
            return grids
        return {gid: g for gid, g in grids.items() if self.allows(g)}

    def filter_samples(self, samples: Iterable[Sample], grids: Mapping[str, Grid]) -> list[Sample]:
        """The samples whose labels the scope sees."""
        return [s for s in samples if self.allows_labels(s.labels, grids)]

    def filter_alerts(self, alerts: Iterable[R], grids: Mapping[str, Grid]) -> list[R]:
        """Alerts as the API shows them (``{"labels": {...}, ...}``) that the scope sees."""
        return [a for a in alerts if self.allows_labels(a.get("labels") or {}, grids)]

    def filter_rows(self, rows: Iterable[R], grids: Mapping[str, Grid]) -> list[R]:
        """JSON rows keyed by ``grid``, or ``street``/``community`` (a roll-up), that the scope sees;
        a district-wide row (none of the three) is not a street's to see."""
        return [r for r in rows if self.allows_labels(r, grids)]

    def allows_matchers(self, matchers: Iterable[Mapping[str, Any]], grids: Mapping[str, Grid]) -> bool:
        """Whether the scope sees a silence: by its exact (not regex) matchers, read as labels."""
        if self.everything:
            return True
        exact = {m["name"]: m["value"] for m in matchers if not m.get("isRegex")}
        return self.allows_labels(exact, grids)


EVERYTHING = Scope()
"""What the district's credentials (and open reads) see."""

SCOPE: web.RequestKey[Scope] = web.RequestKey("scope", Scope)
"""Where the auth middleware leaves the request's scope."""


def scope_of(request: web.Request) -> Scope:
    """The scope of a request's credential (everything for a request the middleware did not scope)."""
    return request.get(SCOPE, EVERYTHING)
