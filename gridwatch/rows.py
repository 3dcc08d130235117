"""Turning raw source rows into trustworthy ones: the rule book's bad-row rules in one place.

A row whose timestamp does not parse (in its column's declared format), whose grid is NULL or
unknown, whose id repeats, whose code value the source's ``codes`` do not map, or whose timestamp
lies after the wall clock by more than the tolerance (a clock that is wrong) is counted by reason
and left out of every figure. Checks call :func:`clean` and never see such a row.

Figures are as of ``now`` (DOMAIN.md §5), which may lie before the wall clock (``gridwatch once
--now`` replaying a past day): what is dated after ``now`` had not happened yet. A row whose
required timestamp lies after ``now`` (a visit, a report, the report of a case) is left out, not
rejected; an optional one (the stages of a case: accepted, resolved, closed) reads as NULL, so the
case is taken at the stage it had reached then.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from gridwatch.api import ROW_KEY, GridSet, RunContext
from gridwatch.schema import EPOCH, EPOCH_MS, ISO

# reasons, as they appear in gridwatch_source_rows_rejected_total{reason}
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
NULL_GRID = "null_grid"
UNKNOWN_GRID = "unknown_grid"
DUPLICATE_ID = "duplicate_id"
NULL_ID = "null_id"
BAD_VALUE = "bad_value"
UNMAPPED_CODE = "unmapped_code"

# A timestamp's year must lie in [MIN_YEAR, MAX_YEAR]. Outside, it is a placeholder
# (0001-01-01, 9999-12-31), and near either end of Python's calendar a conversion to the
# configured zone or to UTC, or a check's date arithmetic, raises OverflowError: one such row
# would stop a check for every grid. The margins keep every offset and window inside the calendar.
MIN_YEAR, MAX_YEAR = 1000, 8999


def parse_ts(value: Any, tz: tzinfo, fmt: str = ISO) -> datetime | None:
    """A timestamp as an aware datetime, read as the column's declared format says.

    ``iso`` (the default): ISO 8601 with ``T`` or a space. ``epoch`` / ``epoch_ms``: seconds or
    milliseconds since 1970-01-01 UTC, a number or its text, an instant given in ``tz``. Any
    other format is a ``strptime`` pattern. Without an offset a time is local in ``tz``; a
    value the driver already made a date or datetime is taken as it is, whatever the format.
    Returns None for NULL/empty; raises ValueError for a value the format does not read.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif fmt in (EPOCH, EPOCH_MS):
        dt = _epoch(value, 1 if fmt == EPOCH else 1000).astimezone(tz)
    elif not isinstance(value, str):
        raise ValueError(f"not a timestamp: {type(value).__name__}")
    elif fmt == ISO:
        dt = datetime.fromisoformat(value.strip())
    else:
        dt = datetime.strptime(value.strip(), fmt)
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise ValueError("the year is outside 1000-8999")
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?")


def _epoch(value: Any, per_second: int) -> datetime:
    """An epoch number (``per_second`` units a second) as a UTC datetime, to the microsecond:
    integers and decimal text exactly, floats as Python rounds them."""
    if isinstance(value, bool):
        raise ValueError("not a timestamp: bool")
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = Decimal(value.strip())
    try:
        if isinstance(value, int):
            return _UNIX + timedelta(microseconds=value * (1_000_000 // per_second))
        if isinstance(value, Decimal):
            return _UNIX + timedelta(microseconds=int((value * (1_000_000 // per_second)).to_integral_value()))
        if isinstance(value, float) and math.isfinite(value):
            return _UNIX + timedelta(seconds=value / per_second)
    except (OverflowError, ArithmeticError):
        raise ValueError("epoch value out of range") from None
    raise ValueError(f"not an epoch number: {type(value).__name__}")


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
    masked: set[Any] | None = None,
    formats: Mapping[str, str] | None = None,
    codes: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield rows with ``timestamps`` parsed to aware datetimes; reject and count the rest.

    ``formats`` and ``codes`` are the source's declarations for the table
    (:meth:`gridwatch.api.Source.time_formats`, :meth:`~gridwatch.api.Source.code_map`): a
    timestamp is read in its column's format (``iso`` if none), and a column with a code
    mapping gets the standard value, or the row is rejected as ``unmapped_code`` (NULL and
    empty stay as they are). Converting here, where every row passes, gives every check the
    same standard rows whatever the platform wrote.

    Every row given counts as read in ``ctx.read``, what the share of rows rejected is of.
    ``required`` timestamps must be present; the others may be NULL. Each reason keeps an
    example naming the offending column and value; the log shows only its shape
    (:func:`gridwatch.pipeline.results.shape`), never a name, number or identifier (the value of
    an unmapped code excepted: what to add to the mapping).
    ``seen`` carries the ids met in earlier reads; ``unique`` says the source guarantees
    them unique, so none are remembered (millions of ids cost memory);
    ``later`` receives the rows left out for a required timestamp after now (and those rejected
    for one after the clock), unchanged, so they can count once their time has come; their id is
    not taken until then. ``masked`` receives the :data:`~gridwatch.api.ROW_KEY` of each row
    handed on with an optional timestamp read as NULL for lying after now: read again later, the
    same row reads differently.
    """
    fresh: set[Any] = set() if seen is None else seen
    now = ctx.now
    limit = datetime.fromtimestamp(ctx.clock() + ctx.future_tolerance, UTC)  # later: a wrong clock
    stamps = [(col, (formats or {}).get(col, ISO)) for col in timestamps]
    elsewhere = grids.elsewhere if isinstance(grids, GridSet) else frozenset()  # another shard's: not ours
    n = 0  # rows given: the run counts them read (RunContext.read)
    try:
        for raw in rows:
            n += 1
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
            if codes and not _decoded(ctx, source, row, codes):
                continue
            bad = waits = hidden = False
            for col, fmt in stamps:
                try:
                    ts = parse_ts(row.get(col), ctx.tz, fmt)
                except (ValueError, TypeError, OverflowError):
                    ctx.reject(source, BAD_TIMESTAMP, f"{col}={str(row.get(col))[:40]!r}")
                    bad = True
                    break
                if ts is None and col in required:
                    ctx.reject(source, BAD_TIMESTAMP, f"{col} is NULL")
                    bad = True
                    break
                if ts is not None and ts > limit:  # a clock that is wrong, not a future: a bad row
                    ctx.reject(source, FUTURE_TIMESTAMP, f"{col} after the clock")
                    waits = True  # (it may yet count, should the clock catch up)
                    break
                if ts is not None and ts > now:  # it had not happened yet at now
                    if col in required:
                        waits = True  # the row's fact itself: left out until its time
                    else:
                        hidden, ts = True, None  # a later stage: not reached yet
                row[col] = ts
            if bad:
                continue
            if waits:
                if later is not None:
                    later.append(dict(raw))
                    if id_column is not None:
                        fresh.discard(row[id_column])
                continue
            if hidden and masked is not None:
                masked.add(row.get(ROW_KEY))
            yield row
    finally:
        ctx.read[source] += n


def _decoded(ctx: RunContext, source: str, row: dict[str, Any], codes: Mapping[str, Mapping[str, str]]) -> bool:
    """Put the standard value in each mapped column of ``row``; False (counted) when a value
    has no mapping. The example shows the value, short, except in an id column."""
    for col, mapping in codes.items():
        value = row.get(col)
        if value is None or value == "":
            continue
        text = value if isinstance(value, str) else str(value)
        to = mapping.get(text)
        if to is None:
            to = mapping.get(text.strip())
        if to is None:
            shown = "" if col.endswith("_id") else f"={text.strip()[:20]!r}"
            ctx.reject(source, UNMAPPED_CODE, f"{col}{shown} has no mapping in codes")
            return False
        row[col] = to
    return True
