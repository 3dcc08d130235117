"""A full read folded in the database: the ``sql`` source's :meth:`~gridwatch.api.Source.read_latest`.

Without it every row of a year of visits crosses the network to be folded into one line per
household in Python. Here the database folds the rows it can vouch for (:class:`gridwatch.api.Latest`:
an id, a grid of the registry, a valid time between ``since`` and ``until``), in one pass that
also counts, per key, the rows it cannot vouch for; every row of such a key (and of a NULL key)
is then read as a row, and :func:`gridwatch.rows.clean` counts it by reason as always. Both
statements run in one snapshot (repeatable read; on SQLite one read transaction), so a write
between them cannot make the groups and the rows disagree.

A table followed by a cursor column (:mod:`gridwatch.sources.sqlcursor`) is folded as far as a
full read by that cursor reads it, and the cursor's bookkeeping is taken in the same snapshot:
the fold hands back the very cursor a full read of rows would, so the next run reads only what
was appended (or changed) since. With an increasing id the fold stops at the greatest id (rows
without one are left out, as a read by the cursor leaves them); a changed-since column bounds
nothing, for the snapshot holds no row changed after its greatest value.

What "valid time" means in SQL, per column type (anything else: None, and the rows are read):

- a native time (PostgreSQL ``timestamp``, ``timestamptz``, ``date``; MySQL ``DATETIME``,
  ``TIMESTAMP``, ``DATE``) is always one; it is compared as the driver hands it over (a
  ``timestamptz`` as an instant, the others as local times), whatever format is declared;
- ``epoch`` / ``epoch_ms`` in a number column: the number, against the bounds as epoch numbers;
- ``iso`` text: ``YYYY-MM-DD``, optionally ``[T ]HH:MM[:SS[.f{1,6}]]`` and ``Z`` or ``±HH:MM``
  (hours up to 14), a real day of the calendar, a year in 1000-8999: a subset of what
  :func:`gridwatch.rows.parse_ts` reads (any other form is handed on, never vouched for).
  It is turned into the local time it names with the zone's offset at ``until``, which
  ``Feed`` guarantees holds since ``since``;
- a ``strptime`` pattern of fixed-width ``%Y %m %d [%H %M [%S]]`` between literal characters,
  as the ``sqlite`` source folds them: rearranged into ISO text, then as above.

Grid and key comparisons are exact on MySQL too (as bytes: ``G1 `` and ``g1`` are not ``G1``,
as they are not in Python, though a ``_ci`` or even a ``_bin`` collation says they are). On a
SQLite database the ``sqlite`` source's rules apply.
"""

from __future__ import annotations

import json
import re
from calendar import monthrange
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from gridwatch.api import Latest
from gridwatch.schema import EPOCH, EPOCH_MS, ISO
from gridwatch.sources.drivervalues import driver_value
from gridwatch.sources.select import select_sql
from gridwatch.sources.sqlite import UNDECODABLE, _bounds, _utf8, vouch_sql

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from gridwatch.sources.sql import SqlSource


def _listed(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# The shapes of ISO text a database can vouch for, digits as 0: a date, and a date with a T or a
# space, HH:MM[:SS[.f{1,6}]] and nothing, Z or an offset; the values are checked afterwards
_TIMES = ["00:00", "00:00:00", *(f"00:00:00.{'0' * k}" for k in range(1, 7))]
_ISO_SHAPES = ["0000-00-00"] + [
    f"0000-00-00{s}{t}{z}" for s in " T" for t in _TIMES for z in ("", "Z", "+00:00", "-00:00")
]
_ISO_REGEX = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
_DAYS = _listed(f"{m:02}-{d:02}" for m in range(1, 13) for d in range(1, monthrange(2024, m)[1] + 1))
_MINUTES = _listed(f"{h:02}:{m:02}" for h in range(24) for m in range(60))
_OFFSETS = _listed(f"{h:02}:{m:02}" for h in range(15) for m in range(60))  # up to 14:59
_MOST_ODD = 100_000  # keys with a doubtful row, beyond which the rows are read instead
_FIELDS = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}


class _Dialect:
    """The SQL that differs between PostgreSQL and MySQL/MariaDB."""

    fence = ""  # keeps a subquery's computed columns from being computed again above it

    def shaped(self, x: str, shapes: Sequence[str], regex: str) -> str:
        """``x`` has one of the ``shapes`` (each digit written 0), which ``regex`` also says."""
        raise NotImplementedError

    def integer(self, x: str) -> str:
        raise NotImplementedError

    def time(self, x: str) -> str:
        raise NotImplementedError

    def local(self, x: str, zulu: str, offset: str, fixed: int) -> str:
        """The naive local time, at ``fixed`` minutes east of UTC, of valid ISO text ``x`` that
        ends in Z when ``zulu``, in an offset when ``offset`` (SQL conditions), else local."""
        raise NotImplementedError

    def text(self, x: str) -> str:
        raise NotImplementedError

    def exact(self, x: str) -> str:
        """``x`` compared and grouped byte for byte."""
        return x

    def nonempty(self, x: str) -> str:
        return f"{x} <> ''"

    def among(self, x: str, name: str, kind: str) -> tuple[str, sa.BindParameter[Any] | None]:
        """``x`` is one of the list parameter ``name`` (of ``kind`` values: text or bigint)."""
        raise NotImplementedError


class _Postgres(_Dialect):
    fence = " OFFSET 0"

    def shaped(self, x: str, shapes: Sequence[str], regex: str) -> str:
        # a hashed list: ten times cheaper than PostgreSQL's regular expressions
        return f"translate({x}, '123456789', '000000000') IN ({_listed(shapes)})"

    def integer(self, x: str) -> str:
        return f"CAST({x} AS integer)"

    def time(self, x: str) -> str:
        return f"CAST({x} AS timestamp)"

    def local(self, x: str, zulu: str, offset: str, fixed: int) -> str:
        at = f"CAST({x} AS timestamptz) AT TIME ZONE INTERVAL '{fixed} minutes'"
        return f"CASE WHEN {zulu} OR {offset} THEN {at} ELSE CAST({x} AS timestamp) END"

    def text(self, x: str) -> str:
        return f"CAST({x} AS text)"

    def among(self, x: str, name: str, kind: str) -> tuple[str, sa.BindParameter[Any] | None]:
        # a hashed subplan: "= ANY(array)" would compare each row with every grid in turn
        return f"{x} IN (SELECT unnest(CAST(:{name} AS {kind}[])))", None


class _MySQL(_Dialect):
    def shaped(self, x: str, shapes: Sequence[str], regex: str) -> str:
        return f"{x} REGEXP '{regex}'"

    def integer(self, x: str) -> str:
        return f"CAST({x} AS SIGNED)"

    def time(self, x: str) -> str:
        return f"CAST({x} AS DATETIME(6))"

    def local(self, x: str, zulu: str, offset: str, fixed: int) -> str:
        # no offsets in MariaDB's datetime literals: the text's own, in minutes, taken off by hand
        n, zone = f"char_length({x})", f"substr({x}, char_length({x}) - 5, 1)"
        minutes = f"CAST(substr({x}, {n} - 4, 2) AS SIGNED) * 60 + CAST(substr({x}, {n} - 1, 2) AS SIGNED)"
        east = f"(CASE WHEN {zone} = '-' THEN -1 ELSE 1 END * ({minutes}))"
        return (
            f"CASE WHEN {zulu} THEN TIMESTAMPADD(MINUTE, {fixed}, {self.time(f'substr({x}, 1, {n} - 1)')})"
            f" WHEN {offset} THEN TIMESTAMPADD(MINUTE, {fixed} - {east}, {self.time(f'substr({x}, 1, {n} - 6)')})"
            f" ELSE {self.time(x)} END"
        )

    def text(self, x: str) -> str:
        return f"CAST({x} AS CHAR)"

    def exact(self, x: str) -> str:
        # bytes: a binary collation still pads (``h1 `` groups with ``h1``); a binary string does not
        return f"CAST(CONVERT({x} USING utf8mb4) AS BINARY)"

    def nonempty(self, x: str) -> str:
        return f"CHAR_LENGTH({x}) > 0"  # '' = ' ' under a PAD SPACE collation

    def among(self, x: str, name: str, kind: str) -> tuple[str, sa.BindParameter[Any] | None]:
        return f"{x} IN :{name}", sa.bindparam(name, expanding=True)


_DIALECTS: dict[str, _Dialect] = {"postgresql": _Postgres(), "mysql": _MySQL(), "mariadb": _MySQL()}


def _iso_local(d: _Dialect, x: str, fixed: int) -> str:
    """SQL: the naive local time (at the fixed offset of ``fixed`` minutes) that the ISO text
    ``x`` names; NULL when ``x`` is not of a form the database vouches for. The ranges are
    compared as text, which cannot fail; the casts run only on text that has passed them."""
    n = f"char_length({x})"
    last = f"ascii(substr({x}, {n}, 1))"
    # a digit or Z last, a T or a space after the date (MySQL's REGEXP ignores case, and lets a
    # newline end the text)
    shape = (
        f"{d.shaped(x, _ISO_SHAPES, _ISO_REGEX)} AND ({last} BETWEEN 48 AND 57 OR {last} = 90)"
        f" AND ({n} = 10 OR ascii(substr({x}, 11, 1)) IN (32, 84))"
    )
    y = d.integer(f"substr({x}, 1, 4)")
    leap = f"mod({y}, 4) = 0 AND (mod({y}, 100) <> 0 OR mod({y}, 400) = 0)"
    zone = f"substr({x}, {n} - 5, 1)"
    offset = f"{n} > 16 AND {zone} IN ('+', '-')"
    # each part among its valid values: a hashed (PostgreSQL) or sorted (MySQL) list of constants
    ranges = (
        f"substr({x}, 1, 1) BETWEEN '1' AND '8'"  # years 1000-8999
        f" AND substr({x}, 6, 5) IN ({_DAYS}) AND (substr({x}, 6, 5) <> '02-29' OR {leap})"
        f" AND ({n} = 10 OR substr({x}, 12, 5) IN ({_MINUTES}))"
        f" AND (substr({x}, 17, 1) <> ':' OR substr({x}, 18, 2) <= '59')"
        f" AND (NOT ({offset}) OR substr({x}, {n} - 4, 5) IN ({_OFFSETS}))"
    )
    local = d.local(x, f"{last} = 90", offset, fixed)
    return f"CASE WHEN {shape} THEN CASE WHEN {ranges} THEN {local} END END"


def _pattern_local(d: _Dialect, x: str, fmt: str, fixed: int) -> str | None:
    """:func:`_iso_local` for text in a ``strptime`` pattern of fixed-width fields (the
    ``sqlite`` source's rule); None for any other pattern."""
    parts = re.findall(r"%(.)|([^%]+)", fmt)
    fields = [f for f, _ in parts if f]
    if fields not in (list("Ymd"), list("YmdHM"), list("YmdHMS")):
        return None
    pos, at, shape, regex = 1, {}, "", "^"
    for field, literal in parts:
        if field:
            at[field] = pos
            pos += _FIELDS[field]
            shape += "0" * _FIELDS[field]
            regex += f"[0-9]{{{_FIELDS[field]}}}"
        else:
            if any(c.isdigit() or c in "\\]^-'[" for c in literal):
                return None
            shape += literal
            regex += "".join(f"[{c}]" for c in literal)
            pos += len(literal)

    def part(f: str) -> str:
        return f"substr({x}, {at[f]}, {_FIELDS[f]})" if f in at else "'00'"

    pieces = [part("Y"), "'-'", part("m"), "'-'", part("d"), "' '", part("H"), "':'", part("M"), "':'", part("S")]
    iso = f"concat({', '.join(pieces)})"
    fits = f"char_length({x}) = {pos - 1} AND {d.shaped(x, [shape], regex + '$')}"
    return f"CASE WHEN {fits} THEN {_iso_local(d, iso, fixed)} END"


class _Kind:
    """What the fold needs to know of a column's type."""

    def __init__(self, t: Any) -> None:
        self.text = isinstance(t, sa.String) and not isinstance(t, sa.CHAR | sa.Enum)  # CHAR pads
        self.integer = isinstance(t, sa.Integer)
        self.number = isinstance(t, sa.Numeric | sa.Float | sa.Integer)
        self.instant = isinstance(t, sa.DateTime) and bool(t.timezone)
        self.native = isinstance(t, sa.DateTime | sa.Date)


def read_latest(
    source: SqlSource, table: str, columns: Sequence[str], want: Latest, deadline: float
) -> tuple[list[tuple[Any, ...]], Iterator[dict[str, Any]], Any] | None:
    """The groups, the odd rows and the cursor a full :meth:`~SqlSource.read_since` would leave
    (None for a table without a cursor column); None when the database cannot vouch."""
    reads = _reads(source, table, columns, want, deadline)
    first = next(reads)
    if first is None:
        reads.close()
        return None
    groups, cursor = first
    return groups, reads, cursor


class _Fold(NamedTuple):
    head: str  # the GROUP BY up to its table, and after it: the rows' condition goes between
    tail: str
    params: dict[str, Any]
    binds: list[sa.BindParameter[Any]]
    integer_key: bool  # the ``by`` column holds integers (else text)

    def sql(self, where: str) -> str:
        return f"{self.head} WHERE {where}{self.tail}"


def _reads(
    source: SqlSource, table: str, columns: Sequence[str], want: Latest, deadline: float
) -> Generator[Any, None, None]:
    """First the groups and the cursor (None when the database cannot vouch), then the odd rows,
    in one snapshot. A table with a cursor column is folded as far as a full read by the cursor
    would read it (an increasing id: up to its greatest), and the cursor's bookkeeping is taken
    in the same snapshot: the next run reads what came after, as after a full read of rows."""
    plan = source.cursors.ready(table, deadline)  # asked of the schema once, outside the snapshot
    with source.translated(deadline), source.transaction(deadline, snapshot=True) as conn:
        fold = _plan(source, conn, table, columns, want)
        if fold is None:
            yield None
            return
        where, bounds, cursor = ("1 = 1", {}, None) if plan is None else source.cursors.span(conn, table, plan, None)
        params = {**fold.params, **bounds}
        result = conn.execute(sa.text(fold.sql(where)).bindparams(*fold.binds), params)
        groups, odd = _groups(source, want, result)
        if groups is None or len(odd) > _MOST_ODD or any(type(k) not in (str, int, type(None)) for k in odd):
            yield None  # reading every row costs no more than naming that many keys back
            return
        yield groups, cursor
        if not odd:  # every row folded (a NULL key, grouped too, is odd): no second pass
            return
        # keyed as read_since's rows are (a mutable table's rows are re-read by key)
        select = select_sql(source, table, columns, quote=source.quote, key=None if plan is None else plan.key)
        by = source.quote(source.column_map(table, [want.by])[want.by])
        d, keys = _DIALECTS.get(source.backend), sorted((k for k in odd if k is not None), key=repr)
        if d is None:  # SQLite
            among, bind = f"{by} IN (SELECT value FROM json_each(:odd))", None
            params = {**bounds, "odd": json.dumps(keys)}
        else:
            kind = "bigint" if fold.integer_key else "text"
            among, bind = d.among(by if fold.integer_key else d.exact(by), "odd", kind)
            params = {**bounds, "odd": keys}
        stmt = sa.text(f"{select} WHERE ({where}) AND ({f'{by} IS NULL OR ' if None in odd else ''}{among})")
        if bind is not None:
            stmt = stmt.bindparams(bind)
        yield from source.dicts(conn.execution_options(stream_results=True, max_row_buffer=1000).execute(stmt, params))


def _groups(source: SqlSource, want: Latest, result: Any) -> tuple[list[tuple[Any, ...]] | None, set[Any]]:
    """The groups of the keys all of whose rows passed, and the other keys (as the database
    holds them); None for a group holding text that does not decode (SQLite: its rows say
    which, one by one)."""
    split = want.split is not None
    groups: list[tuple[Any, ...]] = []
    odd: set[Any] = set()
    for row in result:
        if any(v is UNDECODABLE for v in row):
            return None, odd
        key, rest = _text(row[0]), row[2:] if split else row[1:]
        latest, n, *first, bad = (driver_value(v) for v in rest)
        if bad or key is None:  # a NULL key's rows are never folded
            odd.add(key)
            continue
        groups.append((key, _text(driver_value(row[1])) if split else None, latest, n, *first))
    to_text = want.by == want.grid  # as clean() hands a grid on
    return [
        ((str(k) if to_text else k, s) if split else str(k) if to_text else k, *values)
        for k, s, *values in groups
        if k not in odd
    ], odd


def _text(value: Any) -> Any:
    """A key grouped byte for byte (MySQL), as the text it is."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _plan(source: SqlSource, conn: Connection, table: str, columns: Sequence[str], want: Latest) -> _Fold | None:
    """The one-pass GROUP BY: per key, its latest (and earliest) good time, its rows, and how
    many of them the database cannot vouch for."""
    named = [*columns, want.by, want.column, want.id, want.grid, *([want.split] if want.split else [])]
    src = source.column_map(table, named)
    c = {k: source.quote(v) for k, v in src.items()}
    col, rid, grid = c[want.column], c[want.id], c[want.grid]
    t = source.quote(source.table_name(table))
    if source.backend == "sqlite":
        register_functions(conn)
        return _plan_sqlite(source, c, t, want)
    d = _DIALECTS.get(source.backend)
    if d is None:
        return None
    types = {i["name"]: _Kind(i["type"]) for i in sa.inspect(conn).get_columns(source.table_name(table))}
    kind = {k: types.get(v) for k, v in src.items()}
    keys = [want.by, *([want.split] if want.split else [])]
    if any(k is None for k in kind.values()) or not all(kind[k].text or kind[k].integer for k in (*keys, want.grid)):  # type: ignore[union-attr]
        return None
    time_kind = kind[want.column]
    assert time_kind is not None
    tz = source.env.tz
    fixed = want.until.replace(tzinfo=tz).utcoffset()
    assert fixed is not None
    minutes = int(fixed.total_seconds() // 60)
    since: Any
    until: Any
    if time_kind.native:
        at, since, until = col, want.since, want.until
        if time_kind.instant:
            since, until = want.since.replace(tzinfo=tz), want.until.replace(tzinfo=tz)
    elif time_kind.number and want.format in (EPOCH, EPOCH_MS):
        at, bounds = col, _bounds(want, tz)
        since, until = bounds["since"], bounds["until"]
    elif time_kind.text and want.format == ISO:
        at, since, until = _iso_local(d, col, minutes), want.since, want.until
    elif time_kind.text and want.format not in (EPOCH, EPOCH_MS):
        local = _pattern_local(d, col, want.format, minutes)
        if local is None:
            return None
        at, since, until = local, want.since, want.until
    else:
        return None
    id_ok = f"{rid} IS NOT NULL" + (f" AND {d.nonempty(rid)}" if kind[want.id].text else "")  # type: ignore[union-attr]
    grid_ok, bind = d.among(d.exact(d.text(grid)), "grids", "text")
    exact = {k: d.exact(c[k]) if kind[k].text else c[k] for k in keys}  # type: ignore[union-attr]
    inner = ", ".join(f"{exact[k]} AS k{i}" for i, k in enumerate(keys))
    outer = ", ".join(f"k{i}" for i in range(len(keys)))
    first = ", min(v)" if want.earliest else ""
    # v: the time of a row that passes every rule, else NULL (t is computed once, under the fence)
    head = (
        f"SELECT {outer}, max(v), count(*){first}, count(*) - count(v) FROM (SELECT {outer},"
        " CASE WHEN g = 1 AND t >= :since AND t <= :until THEN t END AS v"
        f" FROM (SELECT {inner}, {at} AS t, CASE WHEN {id_ok} AND {grid_ok} THEN 1 ELSE 0 END AS g"
        f" FROM {t}"
    )
    tail = f"{d.fence}) AS r) AS f GROUP BY {outer}"
    params = {"since": since, "until": until, "grids": list(want.grids)}
    return _Fold(head, tail, params, [bind] if bind is not None else [], bool(kind[want.by].integer))  # type: ignore[union-attr]


def _plan_sqlite(source: SqlSource, c: dict[str, str], t: str, want: Latest) -> _Fold | None:
    """On a SQLite database, the ``sqlite`` source's rules, in one pass."""
    vouched = vouch_sql(c, want, source.env.tz)
    if vouched is None:
        return None
    keys = f"{c[want.by]}, {c[want.split]}" if want.split else c[want.by]
    first = f", {vouched.least}" if want.earliest else ""
    head = f"SELECT {keys}, {vouched.latest}, count(*){first}, sum(({vouched.sure}) IS NOT 1) FROM {t}"
    return _Fold(head, f" GROUP BY {keys}", vouched.params, [], False)


def register_functions(conn: Connection) -> None:
    """SQLite: the UTF-8 test :func:`_plan_sqlite` calls."""
    raw: Any = conn.connection.dbapi_connection
    raw.create_function("gridwatch_utf8", 1, _utf8, deterministic=True)
