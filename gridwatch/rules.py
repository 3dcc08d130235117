"""Threshold rules: which samples are a problem, and how bad (DOMAIN.md §4).

A rule names a metric, optional label matchers, ``below``/``above`` thresholds with a warning
and/or a critical level, and templates for the words an operator reads. "Below" and "above"
are strict: a coverage of exactly 0.80 under ``below.critical = 0.8`` is not critical.

The words an operator reads name what the codes stand for (DOMAIN.md §8): beside every label
``X`` of the series a template has ``{X_name}``, its display name (``{category_name}`` reads
独居老人 where ``{category}`` reads ``elderly_alone``), and the grid is named once by
``{grid_title}`` (东街街道和平社区第5网格). The alert's labels keep the codes, and gain the
grid's ``street`` and ``community`` from the registry, so a receiver can route by street.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridwatch.api import METRIC_NAME, Grid, Sample
from gridwatch.durations import Duration
from gridwatch.names import DisplayNames, grid_title

SEVERITIES = ("warning", "critical")
RANK = {"info": 0, "warning": 1, "critical": 2}
TEMPLATE_FIELDS = (
    "alert",
    "severity",
    "severity_name",
    "light_name",
    "value",
    "grid",
    "grid_name",
    "grid_title",
    "community",
    "street",
)
"""The fields every template has, besides each label ``X`` of the series and its ``X_name``.
``severity`` is the alert's (warning, critical; ``severity_name`` 一般, 严重), whatever a series'
own ``severity`` label says; ``light_name`` the light that severity gives the grid (黄灯, 红灯);
``grid_title`` is street + community + name, each said once."""
LIGHT_OF = {"warning": "yellow", "critical": "red"}
"""The light an alert's severity gives its grid (DOMAIN.md §4)."""
PLACE = ("street", "community")
"""The labels a grid alert gets from the registry: where the grid is, for routing by street."""


class Levels(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    warning: float | None = None
    critical: float | None = None

    @model_validator(mode="after")
    def _one(self) -> Levels:
        if self.warning is None and self.critical is None:
            raise ValueError("give a warning or a critical level (or both)")
        return self


class Rule(BaseModel):
    """One ``[[rules]]`` entry (or a default rule a plugin contributes)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alert: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    metric: str = Field("", pattern=rf"(^$)|{METRIC_NAME.pattern}")
    match: dict[str, str] = {}
    below: Levels | None = None
    above: Levels | None = None
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    labels: dict[str, str] = {}
    summary: str = "{alert}"
    description: str = ""
    enabled: bool = True

    @model_validator(mode="after")
    def _thresholds(self) -> Rule:
        if self.enabled and (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of `below` or `above`")
        if self.enabled and not self.metric:
            raise ValueError("`metric` is required")
        return self

    @field_validator("summary", "description")
    @classmethod
    def _template(cls, v: str) -> str:
        check_template(v)
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        reserved = {"alertname", "severity"} & set(v)
        if reserved:
            raise ValueError(f"label(s) {sorted(reserved)} are set by gridwatch")
        for value in v.values():  # a label may be a template: street = "{street}" routes by street
            check_template(value, value_field=False)
        return v

    def level(self, value: float) -> str | None:
        """The severity a value reaches under this rule, or None."""
        if math.isnan(value):
            return None
        if self.below is not None:
            t = self.below
            if t.critical is not None and value < t.critical:
                return "critical"
            if t.warning is not None and value < t.warning:
                return "warning"
        elif self.above is not None:
            t = self.above
            if t.critical is not None and value > t.critical:
                return "critical"
            if t.warning is not None and value > t.warning:
                return "warning"
        return None


class _Fields(dict):
    """Template fields: a label a sample lacks renders empty rather than failing at 3 a.m."""

    def __missing__(self, key: str) -> str:
        return ""


MAX_FORMAT_NUMBER = 100
"""The largest width or precision a template's format spec may ask for."""


def check_template(text: str, *, value_field: bool = True) -> None:
    """Raise ValueError for a template that cannot render (bad syntax or format spec).

    Every field but ``value`` is text at evaluation time, whatever the sample's labels hold, so a
    template that renders here with text fields (and a number for ``value``, where the template has
    one: summaries and descriptions, not labels) renders for every alert. A format spec is fixed
    text: a field inside it would let a label's value choose the format (or a gigabyte's width).
    """
    try:
        parsed = [(f, spec or "") for _, f, spec, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ValueError(f"bad template {text!r}: {exc}") from None
    for f, spec in parsed:
        if not f.isidentifier():
            raise ValueError(f"bad template {text!r}: field {{{f}}} must be a plain name")
        if "{" in spec or "}" in spec:
            raise ValueError(f"bad template {text!r}: the format of {{{f}}} cannot hold a field")
        if any(len(n.lstrip("0")) > 3 or int(n) > MAX_FORMAT_NUMBER for n in re.findall(r"[0-9]+", spec)):
            raise ValueError(f"bad template {text!r}: a width or precision above {MAX_FORMAT_NUMBER}")
    sample = _Fields({k: "x" for k, _ in parsed})
    if value_field:
        sample["value"] = 0.5
    try:
        text.format_map(sample)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"bad template {text!r}: {exc}") from None


def render(template: str, fields: Mapping[str, Any]) -> str:
    try:
        return template.format_map(_Fields(fields))
    except (ValueError, TypeError):
        return template  # a label value that does not fit a numeric spec: show the raw template


@dataclass(frozen=True)
class Hit:
    """A sample a rule found to be a problem."""

    rule: Rule
    labels: dict[str, str]  # the alert's labels: the grid's place + sample labels + rule labels + alertname
    value: float
    severity: str
    summary: str
    description: str
    place: tuple[str, ...] = ()
    """the labels of ``labels`` that came from the grid registry (``street``, ``community``)"""


def alert_labels(
    rule: Rule,
    sample_labels: Mapping[str, str],
    fields: Mapping[str, Any] | None = None,
    grid: Grid | None = None,
) -> dict[str, str]:
    """The grid's street and community (those it has), the sample's labels, the rule's labels
    (templates rendered with the grid's names), alertname: each later one wins a name."""
    place = {k: v for k, v in ((k, getattr(grid, k)) for k in PLACE) if v} if grid is not None else {}
    extra = {k: render(v, fields or sample_labels) if "{" in v else v for k, v in rule.labels.items()}
    return {**place, **dict(sample_labels), **extra, "alertname": rule.alert}


def evaluate(
    rules: Iterable[Rule],
    samples: Iterable[Sample],
    grids: Mapping[str, Grid],
    names: DisplayNames | None = None,
) -> list[Hit]:
    """Every (rule, series) whose value crosses a threshold, with its rendered words
    (``names``: the display names of codes; the core's own without them)."""
    names = names if names is not None else DisplayNames()
    by_metric: dict[str, list[Sample]] = {}
    for s in samples:
        by_metric.setdefault(s.metric, []).append(s)
    hits = []
    for rule in rules:
        if not rule.enabled:
            continue
        for s in by_metric.get(rule.metric, ()):
            grid = grids.get(s.labels.get("grid", ""))
            context = dict(s.labels)
            if grid is not None:
                context.update(grid_name=grid.name, community=grid.community, street=grid.street)
            if any(context.get(k) != v for k, v in rule.match.items()):
                continue
            severity = rule.level(s.value)
            if severity is None:
                continue
            # the words only for the series that cross: most do not
            context.update(names.fields(s.labels))
            if grid is not None:
                context["grid_title"] = grid_title(grid.name, grid.community, grid.street)
            fields = {
                "light_name": names.name("light", LIGHT_OF[severity]),  # (a series' own light label wins)
                **context,
                "alert": rule.alert,
                "severity": severity,
                "severity_name": names.name("severity", severity),
                "value": s.value,
            }
            labels = alert_labels(rule, s.labels, context, grid)
            place = tuple(k for k in PLACE if k in labels and k not in s.labels and k not in rule.labels)
            hits.append(
                Hit(
                    rule,
                    labels,
                    s.value,
                    severity,
                    render(rule.summary, fields),
                    render(rule.description, fields),
                    place,
                )
            )
    return hits


def value_text(rule: Rule | None, value: float | None) -> str:
    """``value`` as the rule's summary writes it (``{value:.0%}`` → 92%), for a message that
    quotes a value the summary does not (the current one, when an alert resolves); "" for none."""
    if value is None or math.isnan(value):
        return ""
    spec = ""
    for text in (rule.summary, rule.description) if rule is not None else ():
        found = next((sp for _, f, sp, _ in string.Formatter().parse(text) if f == "value"), None)
        if found is not None:
            spec = found
            break
    try:
        return format(value, spec) if spec else format(value, "g")
    except (ValueError, TypeError):
        return format(value, "g")
