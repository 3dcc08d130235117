"""Roll-ups and rankings (DOMAIN.md §6, §7): every ratio per community, street and district.

A roll-up pools: it adds the grids' numerators and the grids' denominators and divides the sums
(2 of 5 cases on time is 40%, whatever each grid's own ratio), never averages the grids' ratios,
and it publishes both sums beside the ratio. The counts come from the samples the checks publish
beside each ratio (:attr:`gridwatch.api.Check.ratios`), so the core names no check's metric.

Everything here is a pure function of grids, samples and scores: the HTTP API and the digests
call the same ones, and a reader who may see only some grids is served by passing only those.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gridwatch.api import Grid, Ratio, Sample, Title

BY = ("street", "community", "district")
"""The units a summary rolls grids up into."""
LIGHTS = ("green", "yellow", "red")

K = TypeVar("K", bound=Hashable)
Series = tuple[str, tuple[tuple[str, str], ...]]
"""A ratio's series, without the grid: (ratio metric, its other labels sorted), e.g. the reporting
ratio of daily reports ``("gridwatch_report_on_time_ratio", (("kind", "daily"),))``."""


@dataclass(frozen=True, slots=True)
class Pooled:
    """A numerator over a denominator; the ratio is None when there is nothing to divide by."""

    numerator: float = 0.0
    denominator: float = 0.0

    def __add__(self, other: Pooled) -> Pooled:
        return Pooled(self.numerator + other.numerator, self.denominator + other.denominator)

    @property
    def ratio(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    def as_dict(self) -> dict[str, float | None]:
        return {"numerator": _number(self.numerator), "denominator": _number(self.denominator), "ratio": self.ratio}


def _number(x: float) -> float | int:
    """A count as a whole number in JSON (3, not 3.0)."""
    return int(x) if float(x).is_integer() else x


def counts(samples: Iterable[Sample], ratios: Mapping[str, Ratio]) -> dict[str, dict[Series, Pooled]]:
    """Per grid, each ratio series' numerator and denominator, read from the count samples.

    A series counts where its denominator is published (0 included): a grid with no cases has
    ``0/0``, which adds nothing to a roll-up but says the grid was looked at."""
    roles: dict[str, list[tuple[str, int]]] = defaultdict(list)  # count metric -> (ratio, 0 num / 1 den)
    for ratio, parts in ratios.items():
        roles[parts.numerator].append((ratio, 0))
        roles[parts.denominator].append((ratio, 1))
    found: dict[str, dict[Series, list[float | None]]] = defaultdict(dict)
    for s in samples:
        grid = s.labels.get("grid")
        if grid is None or s.metric not in roles:
            continue
        rest = tuple(sorted((k, v) for k, v in s.labels.items() if k != "grid"))
        for ratio, role in roles[s.metric]:
            pair = found[grid].setdefault((ratio, rest), [None, None])
            pair[role] = (pair[role] or 0.0) + s.value
    return {
        grid: {key: Pooled(n or 0.0, d) for key, (n, d) in series.items() if d is not None}
        for grid, series in found.items()
    }


def pool(per_grid: Iterable[Mapping[Series, Pooled]]) -> dict[Series, Pooled]:
    """Many grids' series added up, series by series."""
    out: dict[Series, Pooled] = {}
    for series in per_grid:
        for key, pooled in series.items():
            out[key] = out.get(key, Pooled()) + pooled
    return out


def by_metric(series: Mapping[Series, Pooled]) -> dict[str, Pooled]:
    """One grid's (or unit's) series of each ratio metric added up across their other labels
    (the reporting ratio of every expected kind together)."""
    out: dict[str, Pooled] = {}
    for (metric, _labels), pooled in series.items():
        out[metric] = out.get(metric, Pooled()) + pooled
    return out


def rank(scores: Mapping[K, float | None], ndigits: int = 2) -> dict[K, int | None]:
    """Competition ranking ("1224"): the highest score is 1, equal scores (to ``ndigits``) share
    a rank and the next rank skips as many; None (no score) is not ranked."""
    known = {k: round(v, ndigits) for k, v in scores.items() if v is not None}
    first: dict[float, int] = {}  # score -> the rank of the first to have it
    for i, value in enumerate(sorted(known.values(), reverse=True), 1):
        first.setdefault(value, i)
    return {k: first[known[k]] if k in known else None for k in scores}


def unit_of(grid: Grid, by: str) -> tuple[str | None, str | None]:
    """The (street, community) a grid rolls up into: a community is only one within its street
    (two streets may each have a 新村社区); the district is ``(None, None)``."""
    if by == "street":
        return grid.street, None
    if by == "community":
        return grid.street, grid.community
    if by == "district":
        return None, None
    raise ValueError(f"by must be one of {', '.join(BY)}, not {by!r}")


def indicators(series: Mapping[Series, Pooled], titles: Mapping[str, Title]) -> list[dict[str, Any]]:
    """Series as the API lists them: metric, its other labels, what people call it, numerator,
    denominator and ratio (null with nothing to divide by)."""
    out = []
    for (metric, labels), pooled in sorted(series.items()):
        title = titles.get(metric)
        named = {"zh": title.zh, "en": title.en} if isinstance(title, Title) else None
        out.append({"metric": metric, "labels": dict(labels), "title": named, **pooled.as_dict()})
    return out


def summary(
    grids: Sequence[Grid],
    by: str,
    series: Mapping[str, Mapping[Series, Pooled]],
    lights: Mapping[str, str],
    scores: Mapping[str, float | None],
    titles: Mapping[str, Title],
    visible: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Each unit (``by`` street, community or district) of ``grids``: how many grids, their
    lights counted, every ratio pooled with its numerator and denominator, its score (the mean of
    its grids' scores) and its rank among its peers, and its grids ranked within it.

    ``grids`` are the whole registry, so ranks are ranks in the district; ``visible`` (grid ids)
    keeps only the units all of whose grids a reader may see: a street sees its own street and
    communities, with their places in the district, and no other street's figures."""
    members: dict[tuple[str | None, str | None], list[Grid]] = defaultdict(list)
    for g in grids:
        members[unit_of(g, by)].append(g)
    unit_scores = {unit: _mean([scores.get(g.grid_id) for g in gs]) for unit, gs in members.items()}
    ranks = rank(unit_scores)
    out = []
    for unit, gs in sorted(members.items(), key=lambda item: (item[0][0] or "", item[0][1] or "")):
        if visible is not None and any(g.grid_id not in visible for g in gs):
            continue
        shown = Counter(lights.get(g.grid_id) for g in gs)
        grid_ranks = rank({g.grid_id: scores.get(g.grid_id) for g in gs})
        out.append(
            {
                "street": unit[0],
                "community": unit[1],
                "grids": len(gs),
                "lights": {light: shown[light] for light in LIGHTS},
                "indicators": indicators(pool(series.get(g.grid_id, {}) for g in gs), titles),
                "score": unit_scores[unit],
                "rank": ranks[unit],
                "ranking": sorted((_ranked(g, scores, grid_ranks) for g in gs), key=_by_rank),
            }
        )
    return out


def _ranked(grid: Grid, scores: Mapping[str, float | None], ranks: Mapping[str, int | None]) -> dict[str, Any]:
    return {"grid": grid.grid_id, "name": grid.name, "score": scores.get(grid.grid_id), "rank": ranks[grid.grid_id]}


def _by_rank(row: Mapping[str, Any]) -> tuple[int, str]:
    return (row["rank"] if row["rank"] is not None else 1 << 30, row["grid"])


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 2) if known else None
