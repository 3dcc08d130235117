"""A check whose rows are mostly bad has failed, not succeeded (DOMAIN.md §5).

A source whose codes or formats the config does not match hands a check rows it must reject,
nearly all of them: left alone that would be a run that succeeded on nothing (every incident
``unmapped_code``, every visit ``bad_timestamp``). Each run counts the rows it judged
(:attr:`gridwatch.api.RunContext.read`) and those it rejected (``RunContext.rejected``); more
than the check's ``max_rejected_ratio`` of them rejected (default 0.5: more than half) fails the
run, with an error naming the top reason, its column and the setting to fix.

The verdict is the full read's. A run that read only what changed since the last one
(``RunContext.partial``) read a handful of rows, or read again rows it judged before (a mutable
table's open cases): 2 bad of 3 read says nothing about the platform, and summing runs would
count the same rows again and again. Such a run keeps the verdict of the last full read (the
first run, every ``resync``, a reload): the rows the check's figures stand on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field

from gridwatch.api import RunContext
from gridwatch.pipeline.results import CODE_COLUMNS, shape
from gridwatch.rows import (
    BAD_TIMESTAMP,
    DUPLICATE_ID,
    FUTURE_TIMESTAMP,
    NULL_GRID,
    NULL_ID,
    UNKNOWN_GRID,
    UNMAPPED_CODE,
)
from gridwatch.schema import OPTIONAL_COLUMNS, OPTIONAL_TABLES, STANDARD_SCHEMA

TABLES: dict[str, tuple[str, ...]] = {
    **{t: (*cols, *OPTIONAL_COLUMNS.get(t, ())) for t, cols in STANDARD_SCHEMA.items()},
    **OPTIONAL_TABLES,
}
"""Every standard table with every column it may have: where a rejected row's column is mapped."""

_COLUMNS = frozenset(c for cols in TABLES.values() for c in cols)
_LEADING = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(=?)")


@dataclass
class Tally:
    """The rows of a check's last full read: judged, and rejected by reason."""

    read: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, ctx: RunContext) -> None:
        """Count a run in: a full read replaces the tally; one that read only what changed
        keeps it."""
        if not ctx.partial:
            self.read, self.rejected, self.examples = Counter(ctx.read), Counter(ctx.rejected), dict(ctx.examples)

    def counts(self) -> tuple[int, int]:
        """(rejected, read); a row rejected for two reasons (a grid's zone and its start) counts once."""
        read = sum(self.read.values())
        return min(sum(self.rejected.values()), read), read

    def ratio(self) -> float | None:
        """The share of the rows read that were rejected; None when nothing was read."""
        rejected, read = self.counts()
        return rejected / read if read else None

    def verdict(self, bound: float, tables: Callable[[str], Mapping[str, Iterable[str]]]) -> str | None:
        """The check error when more than ``bound`` of the rows were rejected, else None.

        ``tables(source)`` gives the tables the check read from ``source`` with their columns:
        the error names the column and the config key to set (``sources.S.codes.TABLE.COLUMN``)."""
        rejected, read = self.counts()
        if not read or rejected / read <= bound:
            return None
        (source, reason), _ = self.rejected.most_common(1)[0]
        example = self.examples.get((source, reason), "")
        known = {t: {*columns, *TABLES.get(t, ())} for t, columns in tables(source).items()}
        column = _column(example, _COLUMNS.union(*known.values()))
        where = f" in {column}" if column else ""
        shown = f" ({shape(example, reason == UNMAPPED_CODE)})" if example else ""
        return (
            f"{rejected} of {read} rows rejected ({100 * rejected // read}%), most for {reason}{where}{shown}: "
            + _hint(reason, column, example, _keys(source, column, known))
        )


def _column(example: str, columns: Set[str]) -> str | None:
    """The column an example names first (``severity='一般事件' has no mapping``), if it names one."""
    m = _LEADING.match(example)
    if m is None or not (m.group(2) or m.group(1) in columns):
        return None
    return m.group(1)


def _keys(source: str, column: str | None, read: Mapping[str, Set[str]]) -> Callable[[str], str]:
    """``keys("codes")``: the config keys of the column's mapping in each table the check read
    that has it (``sources.S.codes.incidents.severity``), else of the source's whole mapping."""
    tables = [t for t, columns in read.items() if column in columns]
    if column and not tables:  # a table the check does not say it reads (an optional one)
        tables = [t for t, columns in TABLES.items() if column in columns]
    if not column or not tables:
        return lambda option: f"sources.{source}.{option}"
    return lambda option: " or ".join(f"sources.{source}.{option}.{t}.{column}" for t in tables)


def _hint(reason: str, column: str | None, example: str, keys: Callable[[str], str]) -> str:
    """What to set, by the reason most rows were rejected for."""
    if reason == UNMAPPED_CODE:
        return f"map the platform's codes with {keys('codes')}"
    if column in CODE_COLUMNS and reason == f"bad_{column}":  # a check's own: not a standard value
        return f"the values are not the standard ones: map the platform's codes with {keys('codes')}"
    if reason == BAD_TIMESTAMP and example.endswith(" is NULL"):
        return f"a required time is empty: check the column's mapping, {keys('columns')}"
    if reason == BAD_TIMESTAMP:
        return f"declare how the platform writes the time with {keys('formats')}"
    if reason == FUTURE_TIMESTAMP:
        return f"the times lie after the clock: check the platform's clock, the timezone and {keys('formats')}"
    if reason == UNKNOWN_GRID:
        return f"the grid ids are not in the grid registry: check the column's mapping, {keys('columns')}"
    if reason == DUPLICATE_ID:
        return f"the ids repeat: check the id column's mapping, {keys('columns')}"
    if reason in (NULL_GRID, NULL_ID):
        return f"the column is empty: check its mapping, {keys('columns')}"
    if reason.startswith("unknown_") and column:  # a check's own (unknown_household): ids that match nothing
        return f"the values match nothing gridwatch knows: check the column's mapping, {keys('columns')}"
    return "see gridwatch_source_rows_rejected_total and the rejected-row log for an example"
