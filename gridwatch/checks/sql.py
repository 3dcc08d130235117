"""The ``sql`` check: one query, one metric; the value column is the value, the rest are labels.

In the spirit of query-exporter, so an operator with a database and a question needs no code.
The query runs as written: the source's ``tables``, ``columns``, ``formats`` and ``codes`` map the
standard tables the domain checks read, not SQL someone wrote against the platform's own names
(so ``reads`` declares nothing for ``check-config --connect`` to look up).

Each row is a series, so ``sample_limit`` bounds them, as Prometheus' ``sample_limit`` bounds a
scrape: a query grouped by the wrong column (300,000 label values cost 518 MB) fails its run
instead of filling memory. Rows are streamed, and reading stops at the limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from gridwatch.api import LABEL_NAME, METRIC_NAME, Check, CheckError, Options, RunContext, Sample
from gridwatch.hookspecs import hookimpl


def query_params(ctx: RunContext, extra: dict[str, Any]) -> dict[str, Any]:
    """Bound parameters every query may use, so no one formats time into SQL strings."""
    local = ctx.now.astimezone(ctx.tz)
    return {
        **extra,
        "now": local.strftime("%Y-%m-%d %H:%M:%S"),  # the standard schema's local timestamp text
        "now_epoch": ctx.now.timestamp(),
        "today": local.strftime("%Y-%m-%d"),
    }


class SqlOptions(Options):
    metric: str = Field(pattern=METRIC_NAME.pattern)
    help: str = ""
    value: str
    query: str
    params: dict[str, str | int | float | bool] = {}
    sample_limit: int = Field(100_000, ge=0)
    """the most rows (series) one run may return; more fail the run; 0: no limit"""


class SqlCheck(Check[SqlOptions]):
    type = "sql"
    Options = SqlOptions

    @classmethod
    def produces(cls, options: SqlOptions) -> set[str]:
        return {options.metric}

    def metric_help(self) -> dict[str, str]:
        return {self.options.metric: self.options.help or f"{self.options.metric} (sql check {self.name})"}

    def run(self, ctx: RunContext) -> Iterator[Sample]:
        opts = self.options
        assert self.source is not None
        rows = self.source.query_iter(opts.query, query_params(ctx, opts.params), deadline=ctx.deadline)
        try:
            yield from self._samples(ctx, rows)
        finally:
            close = getattr(rows, "close", None)  # a generator: its connection goes back now
            if close is not None:
                close()

    def _samples(self, ctx: RunContext, rows: Iterator[dict[str, Any]]) -> Iterator[Sample]:
        opts = self.options
        assert self.source is not None
        for n, row in enumerate(rows, 1):
            ctx.read[self.source.name] += 1  # what the share rejected is of: a row without a number is bad
            if opts.sample_limit and n > opts.sample_limit:
                raise CheckError(
                    f"check {self.name}: the query returned more than {opts.sample_limit} rows (sample_limit); "
                    "group it by fewer labels, or raise sample_limit (0: no limit)"
                )
            if opts.value not in row:
                raise CheckError(f"the query returned no column {opts.value!r} (columns: {', '.join(row)})")
            value = row[opts.value]
            if value is None or isinstance(value, bool | str):
                try:
                    value = float(value)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    ctx.reject(self.source.name, "bad_value", f"{opts.value}={value!r}")
                    continue
            if isinstance(value, float) and math.isnan(value):
                ctx.reject(self.source.name, "bad_value", "NaN")
                continue
            labels = {}
            for col, v in row.items():
                if col == opts.value:
                    continue
                if not LABEL_NAME.match(col):
                    raise CheckError(f"column {col!r} is not a valid label name: alias it in the query")
                labels[col] = "" if v is None else str(v)
            yield Sample(opts.metric, labels, float(value))


@hookimpl
def register_check_types() -> list[type[Check]]:
    return [SqlCheck]
