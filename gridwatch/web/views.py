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
from gridwatch.web.exposition import Family, SampleText, gauge, join
from gridwatch.web.memo import Memo

log = logging.getLogger("gridwatch.web.views")


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
        return Lights(
            lights,
            {gl.grid.grid_id: gl for gl in lights},
            json_bytes([gl.as_dict() for gl in lights]),
            families(lights),
        )

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
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not render the grids' pages")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), every)
            changed.clear()

    async def exposition(self, openmetrics: bool) -> bytes:
        """The grids' families and every check's samples, in the format asked for (without the
        OpenMetrics ``# EOF``, which ends the whole page)."""
        await self.lights.get()
        await self._samples.get()
        return await self._bodies[openmetrics].get()


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
