"""Turning raw source rows into trustworthy ones: the rule book's bad-row rules in one place.

A row whose timestamp does not parse, whose grid is NULL or unknown, whose id repeats, or
whose timestamp lies after the evaluation time is counted by reason and left out of every
figure. Checks call :func:`clean` and never see such a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, tzinfo
from typing import Any

from gridwatch.api import GridSet, RunContext

# reasons, as they appear in gridwatch_source_rows_rejected_total{reason}
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
NULL_GRID = "null_grid"
UNKNOWN_GRID = "unknown_grid"
DUPLICATE_ID = "duplicate_id"
NULL_ID = "null_id"
BAD_VALUE = "bad_value"

# A timestamp's year must lie in [MIN_YEAR, MAX_YEAR]. Outside, it is a placeholder
# (0001-01-01, 9999-12-31), and near either end of Python's calendar a conversion to the
# configured zone or to UTC, or a check's date arithmetic, raises OverflowError: one such row
# would stop a check for every grid. The margins keep every offset and window inside the calendar.
MIN_YEAR, MAX_YEAR = 1000, 8999


def parse_ts(value: Any, tz: tzinfo) -> datetime | None:
    """ISO 8601 with ``T`` or a space; without an offset it is local time in ``tz``.

    Returns None for NULL/empty; raises ValueError for text that is not a timestamp.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        dt = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"not a timestamp: {type(value).__name__}")
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise ValueError("the year is outside 1000-8999")
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


def clean(
    ctx: RunContext,
    source: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    id_column: str | None,
    timestamps: Sequence[str] = (),
    required: Sequence[str] = (),
    grid_column: str | None = "grid_id",
    grids: Mapping[str, Any] | None = None,
    seen: set[Any] | None = None,
    unique: bool = False,
    later: list[dict[str, Any]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield rows with ``timestamps`` parsed to aware datetimes; reject and count the rest.

    ``required`` timestamps must be present; the others may be NULL. Each reason keeps an
    example naming the offending column and value; the log shows only its shape
    (:func:`gridwatch.pipeline.results.shape`), never a name, number or identifier.
    ``seen`` carries the ids met in earlier reads; ``unique`` says the source guarantees
    them unique, so none are remembered (millions of ids cost memory);
    ``later`` receives the rows dated after now, unchanged, so they can count once their
    time has come; their id is not taken until then.
    """
    fresh: set[Any] = set() if seen is None else seen
    now = ctx.now
    elsewhere = grids.elsewhere if isinstance(grids, GridSet) else frozenset()  # another shard's: not ours
    for raw in rows:
        row = dict(raw)
        if id_column is not None:
            rid = row.get(id_column)
            if rid is None or rid == "":
                ctx.reject(source, NULL_ID, f"{id_column} is NULL")
                continue
            if not unique:
                if rid in fresh:
                    ctx.reject(source, DUPLICATE_ID, f"{id_column} repeats")
                    continue
                fresh.add(rid)
        if grid_column is not None:
            g = row.get(grid_column)
            if g is None or g == "":
                ctx.reject(source, NULL_GRID, f"{grid_column} is NULL")
                continue
            g = row[grid_column] = str(g)
            if grids is not None and g not in grids:
                if g not in elsewhere:
                    ctx.reject(source, UNKNOWN_GRID, f"{grid_column}={g}")
                continue
        ok = True
        for col in timestamps:
            try:
                ts = parse_ts(row.get(col), ctx.tz)
            except (ValueError, TypeError):
                ctx.reject(source, BAD_TIMESTAMP, f"{col}={str(row.get(col))[:40]!r}")
                ok = False
                break
            if ts is None and col in required:
                ctx.reject(source, BAD_TIMESTAMP, f"{col} is NULL")
                ok = False
                break
            if ts is not None and ts > now:
                ctx.reject(source, FUTURE_TIMESTAMP, f"{col} after the evaluation time")
                if later is not None:
                    later.append(dict(raw))
                    if id_column is not None:
                        fresh.discard(row[id_column])
                ok = False
                break
            row[col] = ts
        if ok:
            yield row
