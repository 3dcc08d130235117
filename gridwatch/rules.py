"""Threshold rules: which samples are a problem, and how bad (DOMAIN.md §4).

A rule names a metric, optional label matchers, ``below``/``above`` thresholds with a warning
and/or a critical level, and templates for the words an operator reads. "Below" and "above"
are strict: a coverage of exactly 0.80 under ``below.critical = 0.8`` is not critical.
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

SEVERITIES = ("warning", "critical")
RANK = {"info": 0, "warning": 1, "critical": 2}
TEMPLATE_FIELDS = ("alert", "severity", "value", "grid", "grid_name", "community", "street")


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
    labels: dict[str, str]  # the alert's labels: sample labels + rule labels + alertname
    value: float
    severity: str
    summary: str
    description: str


def alert_labels(
    rule: Rule, sample_labels: Mapping[str, str], fields: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Sample labels, the rule's labels (templates rendered with the grid's names), alertname."""
    extra = {k: render(v, fields or sample_labels) if "{" in v else v for k, v in rule.labels.items()}
    return {**dict(sample_labels), **extra, "alertname": rule.alert}


def evaluate(rules: Iterable[Rule], samples: Iterable[Sample], grids: Mapping[str, Grid]) -> list[Hit]:
    """Every (rule, series) whose value crosses a threshold, with its rendered words."""
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
            fields = {**context, "alert": rule.alert, "severity": severity, "value": s.value}
            hits.append(
                Hit(
                    rule,
                    alert_labels(rule, s.labels, context),
                    s.value,
                    severity,
                    render(rule.summary, fields),
                    render(rule.description, fields),
                )
            )
    return hits
