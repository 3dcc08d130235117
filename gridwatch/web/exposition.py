"""The Prometheus text for the per-grid series, rendered once per change and reused by every scrape.

A city has tens of thousands of series (every check's samples, every grid's light) that change
only when a check run or an alert changes them, while Prometheus, dashboards and people scrape
far more often. prometheus_client's encoder formats every line of every family on every scrape
(about a second for 2,000 grids); here the lines are formatted once in a worker thread and the
label part of each line is kept across renders, so a steady run that changes a few values
formats only those values again. The small families about gridwatch itself (run counters, the
event loop, the state database) stay live, from prometheus_client, on every scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from gridwatch.api import Sample

log = logging.getLogger("gridwatch.web.exposition")


@dataclass(frozen=True)
class Family:
    """One gauge family's lines, without its HELP and TYPE (they differ between the formats)."""

    name: str
    help: str
    lines: str

    def text(self, openmetrics: bool) -> str:
        help_ = self.help.replace("\\", r"\\").replace("\n", r"\n")
        if openmetrics:
            help_ = help_.replace('"', r"\"")
        return f"# HELP {self.name} {help_}\n# TYPE {self.name} gauge\n{self.lines}"


def join(families: Iterable[Family], openmetrics: bool) -> str:
    return "".join(f.text(openmetrics) for f in families)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def series(metric: str, labels: Mapping[str, str]) -> str:
    """``metric{a="x",b="y"}``: a line without its value (names are validated before they get here)."""
    if not labels:
        return metric
    return metric + "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def gauge(name: str, help_: str, rows: Iterable[tuple[Mapping[str, str], float]]) -> Family:
    return Family(name, help_, "".join(f"{series(name, labels)} {floatToGoString(v)}\n" for labels, v in rows))


class SampleText:
    """Renders the checks' samples, one family per metric whatever check yields it; a series two
    checks both yield is shown once (the first check's) and logged once."""

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._warned: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def render(self, checks: Sequence[tuple[str, Mapping[str, str], Sequence[Sample]]]) -> list[Family]:
        """``checks``: (name, help by metric, samples) per check, in order."""
        old = self._prefixes
        prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        lines: dict[str, list[str]] = {}
        helps: dict[str, str] = {}
        for check, helps_of_check, samples in checks:
            for s in samples:
                key = s.key()
                prefix = prefixes.get(key)
                if prefix is not None:  # already shown by an earlier check
                    if key not in self._warned:
                        self._warned.add(key)
                        log.warning("check %s repeats series %s; kept the first", check, s.metric)
                    continue
                prefix = prefixes[key] = old.get(key) or series(s.metric, s.labels)
                out = lines.get(s.metric)
                if out is None:
                    out = lines[s.metric] = []
                    helps[s.metric] = helps_of_check.get(s.metric, s.metric)
                out.append(f"{prefix} {floatToGoString(s.value)}\n")
        self._prefixes = prefixes  # only the series still shown: the cache never outgrows the page
        return [Family(name, helps[name], "".join(out)) for name, out in lines.items()]
