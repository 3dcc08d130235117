"""The latest-results store: what every check and source last said, held in memory.

The metrics collector, the JSON API and the rule engine all read from here; checks write
to it only through the scheduler. Replacing a check's sample list is one assignment, so
readers in other threads always see a whole run, never half of one.
"""

from __future__ import annotations

import ast
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gridwatch.api import Reason, Sample, Title
from gridwatch.rows import UNMAPPED_CODE
from gridwatch.schema import STANDARD_CODES

log = logging.getLogger("gridwatch.pipeline.results")

OUTCOMES = ("success", "failure", "timeout", "skipped")
REJECTED_RATIO = "gridwatch_check_rejected_ratio"
"""gridwatch's own sample per check (``{check}``): the share of its rows rejected, which the rules
see beside the checks' samples (the default ``CheckRowsRejected`` alert) and ``/metrics`` serves"""


@dataclass
class CheckState:
    name: str
    type: str
    source: str | None
    interval: float
    help: dict[str, str] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    explain: Callable[[Sequence[Sample]], Iterable[Reason]] = lambda samples: ()
    """the check's :meth:`~gridwatch.api.Check.reasons`: light reasons from its samples"""
    titles: Mapping[str, Title] = field(default_factory=dict)
    """the check's :attr:`~gridwatch.api.Check.titles`: what people call its metrics"""
    last_run: datetime | None = None  # wall-clock start of the last completed run
    duration: float | None = None
    ok: bool | None = None
    error: str | None = None
    last_success: float | None = None  # unix time of the last successful run
    runs: Counter[str] = field(default_factory=Counter)
    consecutive_failures: int = 0
    rejected_ratio: float | None = None
    """the share of the rows of its last full read that were rejected; None before any was read"""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "duration_seconds": self.duration,
            "ok": self.ok,
            "error": self.error,
        }


@dataclass
class SourceState:
    name: str
    type: str
    up: bool | None = None
    error: str | None = None
    tables: list[dict[str, Any]] = field(default_factory=list)
    """how each table the checks read is followed between runs (:meth:`gridwatch.api.Follow.as_dict`)"""

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "up": self.up, "error": self.error, "tables": self.tables}


def shape(example: str, unmapped: bool = False) -> str:
    """A rejected row's example for the log and the check's error: its shape, not its content;
    the value of an unmapped code.

    Examples show the offending value (``visited_at='2026/11/20 08:00'``), and a value in the wrong
    column is often exactly what must not be logged: a name in ``severity``, a phone number typed
    into ``household_id`` or ``visited_at``. So after the ``=`` every digit becomes 9 and every
    letter x (``visited_at='9999/99/99 99:99'`` still says what is wrong with the format). Before
    it, after the value, and in examples without one, long runs of digits and letters outside
    ASCII are masked the same way.

    ``unmapped`` (an ``unmapped_code`` example): a value in a code column (:data:`CODE_COLUMNS`)
    that the source's ``codes`` declare a mapping for is the platform's code the operator must add
    to it: it is shown, its first 20 characters (``severity='一般事件'``), long runs of digits
    masked still. Without a mapping a value that is not standard may be anything typed into the
    column (a name), and only its shape is shown.
    """
    name, sep, rest = example.partition("=")
    name = _masked(name)
    if not sep:
        return name
    value, written, tail = _split_value(rest)
    if unmapped and name.rsplit(" ", 1)[-1] in CODE_COLUMNS:
        shown = _LONG_DIGITS.sub(lambda m: "9" * len(m.group()), repr(value[:20]))
    else:
        shown = "".join("9" if c.isdigit() else "x" if c.isalpha() else c for c in written)
    return name + sep + shown + _masked(tail)


def _split_value(rest: str) -> tuple[str, str, str]:
    """``'一般事件' has no mapping`` -> (``一般事件``, ``'一般事件'``, `` has no mapping``): the value,
    as the example writes it, and the words after it. A value is quoted as ``repr`` quotes it; an
    unquoted one runs to the end."""
    quoted = _QUOTED.match(rest)
    if quoted is not None:
        try:
            value = ast.literal_eval(quoted.group())
        except (ValueError, SyntaxError):  # not a repr (a line break inside): unquoted after all
            value = None
        if isinstance(value, str):
            return value, quoted.group(), rest[quoted.end() :]
    return rest, rest, ""


def _masked(text: str) -> str:
    text = _LONG_DIGITS.sub(lambda m: "9" * len(m.group()), text)
    return "".join("x" if c.isalpha() and not c.isascii() else c for c in text)


CODE_COLUMNS = frozenset({c for columns in STANDARD_CODES.values() for c in columns} | {"category"})
"""The columns whose values are codes (a zone, a severity, a kind of report, a category), not a
person, an id or a time: an unmapped code's example shows their value."""
_LONG_DIGITS = re.compile(r"[0-9]{5,}")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")  # a repr() of a string


@dataclass
class Results:
    checks: dict[str, CheckState] = field(default_factory=dict)
    sources: dict[str, SourceState] = field(default_factory=dict)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    reload_ok: bool = True
    reload_time: float | None = None
    _logged_examples: set[tuple[str, str]] = field(default_factory=set)

    def count_rejected(self, counts: Counter[tuple[str, str]], examples: dict[tuple[str, str], str]) -> None:
        self.rejected.update(counts)
        for key, n in counts.items():
            if key not in self._logged_examples:
                self._logged_examples.add(key)
                source, reason = key
                log.warning(
                    "source %s: rejected %d row(s) for %s; first example: %s",
                    source,
                    n,
                    reason,
                    shape(examples.get(key) or "-", reason == UNMAPPED_CODE),
                )

    def replace(self, checks: dict[str, CheckState], sources: dict[str, SourceState]) -> None:
        """Swap in a new set of checks (after a reload), keeping what survives by name."""
        for name, new in checks.items():
            old = self.checks.get(name)
            if old is not None and old.type == new.type:
                new.samples, new.last_run, new.duration = old.samples, old.last_run, old.duration
                new.ok, new.error, new.last_success, new.runs, new.rejected_ratio = (
                    old.ok,
                    old.error,
                    old.last_success,
                    old.runs,
                    old.rejected_ratio,
                )
        for name, source in sources.items():
            was = self.sources.get(name)
            if was is not None and was.type == source.type:
                source.up, source.error = was.up, was.error
        self.checks, self.sources = checks, sources

    def all_samples(self) -> list[Sample]:
        """What the rules see: every check's samples, and each check's share of rows rejected."""
        checks = list(self.checks.values())
        own = [
            Sample(REJECTED_RATIO, {"check": c.name}, c.rejected_ratio) for c in checks if c.rejected_ratio is not None
        ]
        return [s for c in checks for s in c.samples] + own

    def all_reasons(self) -> list[Reason]:
        return explain(*(x for c in list(self.checks.values()) for x in (c.explain, c.samples)))


def explain(*pairs: Any) -> list[Reason]:
    """The light reasons of checks given as ``explain, samples, explain, samples…``; a check
    whose ``reasons`` fails is logged and gives none (a plugin must not blank the board)."""
    out: list[Reason] = []
    for fn, samples in zip(pairs[::2], pairs[1::2], strict=True):
        try:
            out.extend(r for r in fn(samples) if isinstance(r, Reason))
        except Exception:
            log.exception("a check's light reasons failed; its grids show no reason from it")
    return out
