"""The words people read for code values, and for a grid (DOMAIN.md §8).

Labels and the JSON API keep the codes (``elderly_alone``, ``dispatched``, ``monthly``), so
machines and dashboards stay stable; whatever a person reads — alert summaries, light reasons,
robot messages, the board — names them: 独居老人, 已派遣, 月报. Each check type says what its
codes are called (:attr:`gridwatch.api.Check.display_names`), the core names the codes it owns
itself (alert severities, lights), and the operator's ``[display_names]`` table renames them or
names a platform's own codes; :func:`merge` puts the three together, in that order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Lang = Literal["zh", "en"]
NameTable = Mapping[str, Mapping[str, tuple[str, str]]]
"""label -> code -> (中文, English): how a table of display names is written."""

CORE_NAMES: dict[str, dict[str, tuple[str, str]]] = {
    # an alert's severity shares the label with an incident's (一般/重大): their codes differ
    "severity": {"critical": ("严重", "critical"), "warning": ("一般", "warning")},
    "light": {"red": ("红灯", "red light"), "yellow": ("黄灯", "yellow light"), "green": ("绿灯", "green light")},
    "alertname": {"CheckRowsRejected": ("检查读到的数据大多被拒收", "a check's rows mostly rejected")},
}
"""The codes the core owns: alert severities (严重／一般, never 告警 for both), the lights, and the
names of its own rules (``alertname``: the board groups alerts by them, in words)."""

MAX_NAME = 64
"""The longest display name the config takes: a name is a word or two, not a paragraph."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = frozenset({"grid"})
"""Labels whose values are never shown through a table: a grid is named by the registry."""


@dataclass(frozen=True)
class DisplayNames:
    """Display names by label and code, with the core's own names underneath.

    A code without a name reads as itself: a platform's new category shows up as its code until
    the operator names it, rather than vanishing from a sentence."""

    table: NameTable = field(default_factory=dict)

    def get(self, label: str, code: str, lang: Lang = "zh") -> str | None:
        """The name of ``code`` under ``label``, or None when nobody named it."""
        names = self.table.get(label, {}).get(code) or CORE_NAMES.get(label, {}).get(code)
        if names is None:
            return None
        return names[0] if lang == "zh" else names[1]

    def title(self, label: str, code: str) -> dict[str, str] | None:
        """``{"zh", "en"}`` for an API answer, or None when ``code`` has no name in both."""
        zh, en = self.get(label, code, "zh"), self.get(label, code, "en")
        return {"zh": zh, "en": en} if zh is not None and en is not None else None

    def titled(self, alerts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Alert views with their rule's display name as ``title``: a rule's code is no word for
        people (DOMAIN.md §8), and the board groups alerts by it."""
        return [{**a, "title": self.title("alertname", a["alert"])} for a in alerts]

    def name(self, label: str, code: str, lang: Lang = "zh") -> str:
        """The name of ``code`` under ``label``; the code itself when it has none (in English,
        with its underscores read as spaces)."""
        found = self.get(label, code, lang)
        if found is not None:
            return found
        return code if lang == "zh" else code.replace("_", " ")

    def fields(self, labels: Mapping[str, str]) -> dict[str, str]:
        """``{X_name: name}`` for every label ``X`` of a series (``grid`` aside): the template
        fields beside the codes."""
        return {f"{k}_name": self.name(k, v) for k, v in labels.items() if k not in RESERVED_LABELS}

    def as_dict(self) -> dict[str, dict[str, dict[str, str]]]:
        """Every name, core ones included: ``{label: {code: {"zh", "en"}}}``."""
        out: dict[str, dict[str, dict[str, str]]] = {}
        for table in (CORE_NAMES, self.table):
            for label, codes in table.items():
                for code, (zh, en) in codes.items():
                    out.setdefault(label, {})[code] = {"zh": zh, "en": en}
        return out


def is_name_table(table: object) -> bool:
    """Whether a check type's :attr:`~gridwatch.api.Check.display_names` has the documented shape."""
    return isinstance(table, Mapping) and all(
        isinstance(label, str)
        and isinstance(codes, Mapping)
        and all(
            isinstance(code, str)
            and isinstance(names, tuple)
            and len(names) == 2
            and all(isinstance(n, str) for n in names)
            for code, names in codes.items()
        )
        for label, codes in table.items()
    )


def merge(contributed: Iterable[NameTable], overrides: Mapping[str, Mapping[str, Any]] | None = None) -> DisplayNames:
    """The checks' names (in order, a later one winning a code both name), then the operator's
    ``[display_names]`` over them: a string is the Chinese name, keeping any English one; a table
    gives ``zh`` and/or ``en``. ``overrides`` is expected valid (:func:`problems`)."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for table in contributed:
        for label, codes in table.items():
            out.setdefault(label, {}).update(codes)
    for label, given_codes in (overrides or {}).items():
        mine = out.setdefault(label, {})
        for code, given in given_codes.items():
            zh0, en0 = mine.get(code) or CORE_NAMES.get(label, {}).get(code) or (None, None)
            if isinstance(given, str):
                zh, en = given, en0
            else:
                zh, en = given.get("zh", zh0), given.get("en", en0)
            mine[code] = (zh or en or code, en or code.replace("_", " "))
    return DisplayNames(out)


def problems(value: Any) -> list[tuple[str, str]]:
    """What is wrong with a ``[display_names]`` table: ``(key path, problem)`` pairs, none if valid.

    ``[display_names.LABEL] CODE = "名称"`` or ``CODE = { zh = "名称", en = "name" }``: the label a
    valid label name other than ``grid`` (the registry names grids); a name one line of at most
    :data:`MAX_NAME` characters, for it goes into alert text, robot messages and log lines."""
    if not isinstance(value, dict):
        return [("display_names", 'expected a table of labels: [display_names.category] drug_rehab = "吸毒人员"')]
    out: list[tuple[str, str]] = []
    for label, codes in value.items():
        where = f"display_names.{label}"
        if not _LABEL.match(label) or label.startswith("__"):
            out.append((where, "not a label name (letters, digits and _, not starting with a digit)"))
        elif label in RESERVED_LABELS:
            out.append((where, "a grid is named by the grid registry, not by display_names"))
        elif not isinstance(codes, dict):
            out.append((where, 'expected a table of codes and their names: drug_rehab = "吸毒人员"'))
        else:
            for code, given in codes.items():
                out += _entry_problems(f"{where}.{code}", code, given)
    return out


def _entry_problems(where: str, code: str, given: Any) -> list[tuple[str, str]]:
    if not code.strip():
        return [(where, "a code is not empty")]
    if isinstance(given, str):
        return _name_problems(where, given)
    if not isinstance(given, dict):
        return [(where, 'expected a name (a string) or { zh = "名称", en = "name" }')]
    unknown = sorted(set(given) - {"zh", "en"})
    if unknown or not given:
        return [(where, f"expected zh and/or en, got {', '.join(unknown) or 'nothing'}")]
    out: list[tuple[str, str]] = []
    for lang, name in given.items():
        out += (
            _name_problems(f"{where}.{lang}", name)
            if isinstance(name, str)
            else [(f"{where}.{lang}", "expected a string")]
        )
    return out


def _name_problems(where: str, name: str) -> list[tuple[str, str]]:
    if not name.strip():
        return [(where, "the name is empty")]
    if len(name) > MAX_NAME:
        return [(where, f"a name is at most {MAX_NAME} characters")]
    if _CONTROL.search(name):
        return [(where, "a name is one line, without control characters")]
    return []


_SEPARATORS = " \t-–—·/|_.:：、，,"


def grid_title(name: str, community: str = "", street: str = "") -> str:
    """A grid named once, naturally: street + community + name, each said once —
    东街街道和平社区第5网格 from a name that already reads 东街街道-和平社区-第5网格 — and
    网格 added to a name that does not say it (和平社区A01 → 和平社区A01网格)."""
    street, community, name = street.strip(), community.strip(), name.strip()
    if street and community.startswith(street):  # a community named with its street
        community = community[len(street) :].lstrip(_SEPARATORS) or community
    rest = name
    for prefix in (street, community, street):  # in either order, each once
        if prefix and rest.startswith(prefix):
            rest = rest[len(prefix) :].lstrip(_SEPARATORS)
    if "网格" not in rest:  # (a name that was only its street and community leaves 网格)
        rest += "网格"
    return f"{street}{community}{rest}"
