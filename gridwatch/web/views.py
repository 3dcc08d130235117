"""What the HTTP surface serves about the grids, derived once per change and shared by every client.

The lights, their JSON and the exposition of every check's samples are computed in a worker
thread when a check run, the grid registry or a firing alert changes what they show, never per
request and never on the event loop: 200 clients on the board or scraping ``/metrics`` cost
what one does, and the checks keep their schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from gridwatch.api import Grid, Title
from gridwatch.names import DisplayNames
from gridwatch.pipeline import light
from gridwatch.pipeline.light import GridLight
from gridwatch.pipeline.results import CheckState, explain
from gridwatch.rules import Rule
from gridwatch.web.compress import Deflated, deflate
from gridwatch.web.exposition import Family, SampleText, gauge, join
from gridwatch.web.memo import Memo
from gridwatch.web.scope import EVERYTHING, Scope

log = logging.getLogger("gridwatch.web.views")

MAX_SCOPES = 256  # scopes whose pages are kept; more only after reloads that changed the readers


def json_bytes(data: Any) -> bytes:
    text = json.dumps(data, ensure_ascii=False, default=str)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a client's JSON, echoed in a message: escape it
        return json.dumps(data, ensure_ascii=True, default=str).encode("ascii")


def describe_metrics(
    checks: Iterable[CheckState], grid: str, names: DisplayNames | None = None
) -> list[dict[str, Any]]:
    """A grid's series for its detail view, each with what its check calls it and how its value
    reads (:attr:`gridwatch.api.Check.titles`): the board shows metrics it knows nothing of.

    ``title`` ({"zh", "en"}), ``kind`` and ``value_title`` (a status value's name) are None where
    the check gives none; the board then shows the metric's name and reads its suffix.
    ``label_titles`` names the labels' values (``names``: the display names of codes), so the
    board shows 独居老人, not ``elderly_alone``, and knows no check's codes either."""
    names = names if names is not None else DisplayNames()
    out: list[dict[str, Any]] = []
    for check in list(checks):
        titles = check.titles if isinstance(check.titles, Mapping) else {}
        for s in check.samples:
            if s.labels.get("grid") == grid:
                out.append(
                    {
                        "metric": s.metric,
                        "labels": dict(s.labels),
                        "value": s.value,
                        **_shown(titles.get(s.metric), s.value),
                        "label_titles": _label_titles(names, s.labels),
                    }
                )
    return out


def _label_titles(names: DisplayNames, labels: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out = {}
    for k, v in labels.items():
        zh, en = names.get(k, v, "zh"), names.get(k, v, "en")
        if k != "grid" and zh is not None and en is not None:
            out[k] = {"zh": zh, "en": en}
    return out


def _shown(title: object, value: float) -> dict[str, Any]:
    """How a value is shown, from its metric's title; all None without one, or with a malformed
    one (a plugin's mistake must not take a grid's page down: the metric shows by its name)."""
    if isinstance(title, Title):
        try:
            return {
                "title": {"zh": title.zh, "en": title.en},
                "kind": title.kind,
                "value_title": title.value_title(value),
            }
        except Exception:
            log.warning("a check's title of a metric is malformed; the metric shows by its name", exc_info=True)
    return {"title": None, "kind": None, "value_title": None}


@dataclass(frozen=True)
class Lights:
    all: list[GridLight]
    by_grid: dict[str, GridLight]
    json: bytes  # /api/v1/grids
    families: list[Family]  # gridwatch_grid_info and gridwatch_grid_light
    grids: Mapping[str, Grid]  # the registry they were computed from

    @classmethod
    def of(cls, lights: list[GridLight], grids: Mapping[str, Grid]) -> Lights:
        return cls(
            lights,
            {gl.grid.grid_id: gl for gl in lights},
            json_bytes([gl.as_dict() for gl in lights]),
            families(lights),
            grids,
        )

    def within(self, scope: Scope) -> Lights:
        """The lights of the grids ``scope`` sees (the registry stays whole: labels are looked up in it)."""
        return Lights.of([gl for gl in self.all if scope.allows(gl.grid)], self.grids)


@dataclass(frozen=True)
class Inputs:
    """Where the pages come from; each callable returns the current object, replaced (never
    changed in place) when what it holds changes."""

    checks: Callable[[], Sequence[CheckState]]
    grids: Callable[[], dict[str, Grid]]
    rules: Callable[[], Mapping[str, Rule]]
    lit: Callable[[], tuple[tuple[Any, ...], ...]]  # see AlertEngine.lit


class Pages:
    def __init__(self, inputs: Inputs, pool: Executor) -> None:
        self._in = inputs
        self._text = SampleText()
        self.lights: Memo[Lights] = Memo(self._light_inputs, self._lights, pool)
        self._samples: Memo[list[Family]] = Memo(self._sample_inputs, self._render_samples, pool)
        self._bodies = {
            om: Memo(lambda: (self.lights.value, self._samples.value), self._joiner(om), pool) for om in (False, True)
        }
        self._gzipped = {om: Memo(_first_of(self._bodies[om]), deflate, pool) for om in (False, True)}
        self._pool = pool
        self._scoped: dict[Scope, _ScopedPages] = {}

    def grids(self) -> Mapping[str, Grid]:
        """The grid registry (grid id → grid) as it is now."""
        return self._in.grids()

    async def lights_in(self, scope: Scope) -> Lights:
        """The lights ``scope`` sees: all of them, or its share, derived once per change."""
        lights = await self.lights.get()
        return lights if scope.everything else await self._within(scope).lights.get()

    def _within(self, scope: Scope) -> _ScopedPages:
        pages = self._scoped.get(scope)
        if pages is None:
            if len(self._scoped) >= MAX_SCOPES:
                self._scoped.clear()
            pages = self._scoped[scope] = _ScopedPages(self, scope, self._pool)
        return pages

    # -- the lights ----------------------------------------------------------------------------
    def _light_inputs(self) -> tuple[Any, ...]:
        return (
            self._in.grids(),
            self._in.rules(),
            self._in.lit(),
            *(x for c in self._in.checks() for x in (c.explain, c.samples)),
        )

    @staticmethod
    def _lights(
        grids: dict[str, Grid], rules: Mapping[str, Rule], lit: tuple[tuple[Any, ...], ...], *checks: Any
    ) -> Lights:
        alerts = [
            {"labels": dict(labels), "alert": alert, "severity": severity, "summary": summary, "state": "firing"}
            for _grid, alert, severity, summary, labels in lit
        ]
        rule_metrics = {name: rule.metric for name, rule in rules.items()}
        lights = light.compute(grids, explain(*checks), alerts, rule_metrics)
        return Lights.of(lights, grids)

    # -- /metrics ------------------------------------------------------------------------------
    def _sample_inputs(self) -> tuple[Any, ...]:
        return tuple(x for c in self._in.checks() for x in (c, c.samples))

    def _render_samples(self, *flat: Any) -> list[Family]:
        return self._text.render([(c.name, c.help, samples) for c, samples in zip(flat[::2], flat[1::2], strict=True)])

    @staticmethod
    def _joiner(openmetrics: bool) -> Callable[[Lights, list[Family]], bytes]:
        return lambda lights, samples: (join(lights.families, openmetrics) + join(samples, openmetrics)).encode()

    async def keep_warm(self, changed: asyncio.Event, every: float = 1.0) -> None:
        """Compute what changed as soon as it changes (``changed`` is set after a check run; the
        alerts and the registry are looked at every ``every`` seconds), so that a scrape or a
        board finds it ready instead of waiting for it."""
        while True:
            try:
                for openmetrics in (False, True):  # Prometheus asks for OpenMetrics, curl for text
                    await self.exposition(openmetrics)
                    if self._gzipped[openmetrics].value is not None:  # someone scrapes it compressed
                        await self.exposition_gzip(openmetrics)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not render the grids' pages")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), every)
            changed.clear()

    async def exposition(self, openmetrics: bool, scope: Scope = EVERYTHING) -> bytes:
        """The grids' families and every check's samples, in the format asked for (without the
        OpenMetrics ``# EOF``, which ends the whole page); only the series ``scope`` sees."""
        await self.lights.get()
        if not scope.everything:
            return await self._within(scope).exposition(openmetrics)
        await self._samples.get()
        return await self._bodies[openmetrics].get()

    async def exposition_gzip(self, openmetrics: bool, scope: Scope = EVERYTHING) -> Deflated:
        """:meth:`exposition` compressed, to sit in the middle of a gzip stream (once per change)."""
        if not scope.everything:
            return await self._within(scope).exposition_gzip(openmetrics)
        await self.exposition(openmetrics)
        return await self._gzipped[openmetrics].get()


class _ScopedPages:
    """One scope's share of the pages: made when a reader of that scope first asks, then derived
    from the whole once per change (a street's board and scrapes cost what the district's do)."""

    def __init__(self, pages: Pages, scope: Scope, pool: Executor) -> None:
        self._pages = pages
        self.lights: Memo[Lights] = Memo(lambda: (pages.lights.value,), lambda lights: lights.within(scope), pool)
        text = SampleText()  # its own: it keeps the label text of this scope's series across renders

        def render(grids: Mapping[str, Grid], *flat: Any) -> list[Family]:
            pairs = zip(flat[::2], flat[1::2], strict=True)
            return text.render([(c.name, c.help, scope.filter_samples(samples, grids)) for c, samples in pairs])

        self._samples: Memo[list[Family]] = Memo(self._sample_inputs, render, pool)
        self._bodies = {
            om: Memo(lambda: (self.lights.value, self._samples.value), Pages._joiner(om), pool) for om in (False, True)
        }
        self._gzipped = {om: Memo(_first_of(self._bodies[om]), deflate, pool) for om in (False, True)}

    def _sample_inputs(self) -> tuple[Any, ...]:
        """The registry (where each grid lies) and every check's samples: a change of the lights
        alone (an alert) leaves the series as they were."""
        lights = self._pages.lights.value
        return (lights.grids if lights is not None else {}, *self._pages._sample_inputs())

    async def exposition(self, openmetrics: bool) -> bytes:
        await self.lights.get()
        await self._samples.get()
        return await self._bodies[openmetrics].get()

    async def exposition_gzip(self, openmetrics: bool) -> Deflated:
        await self.exposition(openmetrics)
        return await self._gzipped[openmetrics].get()


def _first_of(body: Memo[bytes]) -> Callable[[], tuple[bytes | None]]:
    """The input of a compressed body: the body, as last computed."""
    return lambda: (body.value,)


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
            (({"grid": gl.grid.grid_id}, light.LEVEL[gl.light]) for gl in lights),
        ),
    ]
