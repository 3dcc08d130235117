"""What a digest says, counted from what gridwatch already has; no words, no Markdown here.

- **Lights per street**: the kept daily lights (the ``daily_lights`` hook, DOMAIN.md §6) of the
  period's days, counted per street: grids for a one-day digest, grid-days for a week or a month.
- **Lit longest**: the grids whose kept light was red or yellow on every day of a run that reaches
  the period's last day, longest run first (red days first among equals).
- **Counts per street**: the :class:`~gridwatch.api.Tally` values the checks give from their latest
  samples (:meth:`~gridwatch.api.Check.tallies`), summed per street: the incidents check's cases at
  each escalation level (超期、二次通报、挂牌督办), as of when the digest is made.
- **Rankings**: only from a :data:`RankingsProvider` (the assessment's scores); none without one.

A ``streets`` filter keeps only those streets' grids, in every part. No person, household or
worker appears: the grid is the finest unit.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from gridwatch.api import Check, Grid, Sample, Tally
from gridwatch.digests.periods import Period
from gridwatch.settings import DigestSpec

log = logging.getLogger("gridwatch.digests")

COLOURS = ("red", "yellow", "green")
LOOKBACK = (31, 400)  # days of kept lights read for a run of red and yellow: first, then at most

LightsReader = Callable[[Sequence[str], date], Mapping[str, Sequence[tuple[date, str]]]]
"""``(grid ids, since)`` → each grid's kept daily lights from ``since`` on, oldest first."""


@dataclass(frozen=True)
class Ranked:
    """One place in a ranking."""

    rank: int
    name: str  # what people read: a grid's or a street's name
    score: float
    street: str = ""  # the street it belongs to (a street's own name): a streets filter keeps only these
    grid: str = ""  # the grid's id, when a grid is ranked


@dataclass(frozen=True)
class Ranking:
    """One ranking table: ``title`` in words people read (街道得分排名, 东城街道网格排名)."""

    title: str
    entries: Sequence[Ranked]


RankingsProvider = Callable[[Period, Mapping[str, Grid]], Sequence[Ranking]]
"""The seam where the assessment's rankings plug in: ``(period, grids in scope)`` → the rankings
to show for that period. Called while the digest is made, off the event loop."""


@dataclass(frozen=True)
class StreetLights:
    street: str
    red: int
    yellow: int
    green: int


@dataclass(frozen=True)
class Run:
    """A grid lit red or yellow every day from ``days`` days before the period's end to it."""

    grid: Grid
    days: int
    red: int
    yellow: int
    capped: bool = False  # the run goes back further than the lights read (LOOKBACK)


@dataclass(frozen=True)
class Column:
    code: str
    title: str
    unit: str


@dataclass(frozen=True)
class Section:
    """One table of counts per street: columns in the order the check gave them, streets with
    any count, largest total first."""

    title: str
    columns: Sequence[Column]
    streets: Sequence[tuple[str, Sequence[float]]]


@dataclass(frozen=True)
class Digest:
    name: str
    period: Period
    made_at: datetime
    streets: Sequence[str]  # the filter; empty: every grid
    grids: int  # grids in scope
    lights: Sequence[StreetLights]
    runs: Sequence[Run]  # at most ``top``
    runs_total: int  # grids with a run, listed or not
    sections: Sequence[Section]
    rankings: Sequence[Ranking] = ()
    url: str = ""
    notes: Sequence[str] = field(default_factory=tuple)  # what could not be counted, in words


@dataclass(frozen=True)
class Inputs:
    """What a digest is made from: the grids, the checks with their latest samples, and the way
    to read the kept daily lights."""

    grids: Mapping[str, Grid]
    checks: Sequence[tuple[Check, Sequence[Sample]]]
    lights: LightsReader


def read_lights(db: Any, hook: Any, grid_ids: Sequence[str], since: date) -> dict[str, list[tuple[date, str]]]:
    """Each grid's kept lights through the ``daily_lights`` hook (``hook``), on the state database
    ``db`` (run on the store's thread); a grid no plugin keeps lights for has none."""
    out: dict[str, list[tuple[date, str]]] = {}
    for grid in grid_ids:
        got = hook(db=db, grid_id=grid, since=since)
        if got:
            out[grid] = [(d if isinstance(d, date) else date.fromisoformat(str(d)), str(c)) for d, c in got]
    return out


def tallies(checks: Iterable[tuple[Check, Sequence[Sample]]]) -> list[Tally]:
    """Every check's :meth:`~gridwatch.api.Check.tallies`; one that fails is logged and gives none."""
    out: list[Tally] = []
    for check, samples in checks:
        try:
            out.extend(t for t in check.tallies(samples) if isinstance(t, Tally))
        except Exception:
            log.exception("check %s: tallies() failed; the digests count nothing from it", check.name)
    return out


def in_scope(grids: Mapping[str, Grid], streets: Sequence[str]) -> dict[str, Grid]:
    wanted = set(streets)
    return {g: grid for g, grid in grids.items() if not wanted or grid.street in wanted}


def build(
    spec: DigestSpec,
    period: Period,
    inputs: Inputs,
    made_at: datetime,
    url: str = "",
    rankings: RankingsProvider | None = None,
) -> Digest:
    """The digest ``spec`` owes for ``period``, counted from ``inputs``; with ``rankings``, the
    rankings it gives for the period (a provider that fails is logged, and the digest goes
    without them)."""
    grids = in_scope(inputs.grids, spec.streets)
    notes: list[str] = []
    lights = _lights(grids, period, inputs.lights)
    runs = _runs(grids, period, inputs.lights, lights)
    shown: list[Ranking] = []
    if rankings is not None:
        try:
            shown = _filter_rankings(rankings(period, grids), spec.streets)
        except Exception:
            log.exception("digest %s: the rankings failed; it goes without them", spec.name)
            notes.append("排名暂不可用")
    return Digest(
        name=spec.name,
        period=period,
        made_at=made_at,
        streets=tuple(spec.streets),
        grids=len(grids),
        lights=_per_street(grids, period, lights),
        runs=tuple(runs[: spec.top]),
        runs_total=len(runs),
        sections=_sections(grids, tallies(inputs.checks)),
        rankings=tuple(shown),
        url=url,
        notes=tuple(notes),
    )


def _since(period: Period, days: int) -> date:
    return min(period.start, period.end - timedelta(days=days - 1))


def _lights(grids: Mapping[str, Grid], period: Period, read: LightsReader) -> dict[str, dict[date, str]]:
    since = _since(period, LOOKBACK[0])
    return {g: {d: c for d, c in days if d <= period.end} for g, days in read(sorted(grids), since).items()}


def _per_street(
    grids: Mapping[str, Grid], period: Period, lights: Mapping[str, Mapping[date, str]]
) -> list[StreetLights]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for g, days in lights.items():
        if g in grids:
            counts[grids[g].street].update(c for d, c in days.items() if period.start <= d and c in COLOURS)
    rows = [StreetLights(s, c["red"], c["yellow"], c["green"]) for s, c in counts.items() if sum(c.values())]
    return sorted(rows, key=lambda r: (-r.red, -r.yellow, r.street))


def _run(days: Mapping[date, str], end: date, since: date) -> tuple[int, int, bool]:
    """(length, red days, whether it reaches back to ``since``) of the run of red and yellow days
    ending at ``end``; a day without a kept light ends a run."""
    n = red = 0
    day = end
    while days.get(day) in ("red", "yellow"):
        red += days[day] == "red"
        n += 1
        day -= timedelta(days=1)
    return n, red, n > 0 and day < since


def _runs(
    grids: Mapping[str, Grid], period: Period, read: LightsReader, lights: dict[str, dict[date, str]]
) -> list[Run]:
    since = _since(period, LOOKBACK[0])
    runs = {g: _run(days, period.end, since) for g, days in lights.items() if g in grids}
    longer = sorted(g for g, (_, _, reaches) in runs.items() if reaches)
    if longer:  # only the few grids lit the whole time read are read further back
        since = _since(period, LOOKBACK[1])
        for g, days in read(longer, since).items():
            runs[g] = _run({d: c for d, c in days if d <= period.end}, period.end, since)
    out = [Run(grids[g], n, red, n - red, capped) for g, (n, red, capped) in runs.items() if n > 0]
    return sorted(out, key=lambda r: (-r.days, -r.red, r.grid.street, r.grid.name, r.grid.grid_id))


def _sections(grids: Mapping[str, Grid], found: Iterable[Tally]) -> list[Section]:
    columns: dict[str, dict[str, Column]] = {}
    sums: dict[str, dict[str, dict[str, float]]] = {}
    for t in found:
        cols = columns.setdefault(t.section, {})
        cols.setdefault(t.code, Column(t.code, t.title, t.unit))
        grid = grids.get(t.grid)
        if grid is not None:
            street = sums.setdefault(t.section, {}).setdefault(grid.street, {})
            street[t.code] = street.get(t.code, 0.0) + float(t.value)
    out = []
    for title, cols in columns.items():
        per_street = sums.get(title, {})
        rows = [
            (street, tuple(c.get(code, 0.0) for code in cols)) for street, c in per_street.items() if any(c.values())
        ]
        rows.sort(key=lambda r: (-sum(r[1]), r[0]))
        out.append(Section(title, tuple(cols.values()), tuple(rows)))
    return out


def _filter_rankings(found: Sequence[Ranking], streets: Sequence[str]) -> list[Ranking]:
    if not streets:
        return list(found)
    wanted = set(streets)
    kept = [Ranking(r.title, tuple(e for e in r.entries if e.street in wanted)) for r in found]
    return [r for r in kept if r.entries]
