"""The ``sqlite`` source: a read-only connection to a SQLite file."""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any, NamedTuple

from gridwatch.api import CheckError, Follow, Latest, Resync, Source, SourceUnavailable, TableOptions
from gridwatch.durations import Duration
from gridwatch.hookspecs import hookimpl
from gridwatch.schema import EPOCH, EPOCH_MS, ISO
from gridwatch.sources.files import BAD_ENCODING, RejectCounter
from gridwatch.sources.select import select_sql

_UNAVAILABLE = (
    "unable to open",
    "database is locked",
    "disk i/o error",
    "no such file",
    "not a database",
)


class Undecodable:
    """A text value whose bytes are not UTF-8 (a stray GBK byte): its row is skipped and counted
    as ``bad_encoding``, and the value is never shown."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not UTF-8>"


UNDECODABLE = Undecodable()


def decode_text(raw: bytes) -> str | Undecodable:
    """A ``text_factory`` that decodes value by value: SQLite's own stops the whole query at the
    first bad byte, with the value in its message."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UNDECODABLE


def undecodable(exc: sqlite3.Error) -> bool:
    """Whether SQLite's text decoding failed ("Could not decode to UTF-8 column 'x' with text ...")."""
    return str(exc).startswith("Could not decode")


class SqliteSource(RejectCounter, Source["SqliteSource.Options"]):
    """Opens the file read-only per query, so a replaced file is picked up and never written.

    Text is decoded by SQLite's fast path; when a value's bytes are not UTF-8 the query is read
    again in the same snapshot, decoding value by value, and the rows holding such a value are
    skipped and counted as ``bad_encoding`` (as the csv source counts a line that does not decode).
    """

    type = "sqlite"
    latest_fields = frozenset({"split", "earliest"})

    class Options(TableOptions):
        path: str
        busy_timeout: Duration = 5.0

    def __init__(self, name: str, options: Options, env: Any) -> None:
        Source.__init__(self, name, options, env)
        RejectCounter.__init__(self)
        self.path = env.resolve(options.path)

    def schema_token(self) -> Any:
        """The file's identity: a database file replaced by another is checked again."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def connect(self, deadline: float = math.inf) -> sqlite3.Connection:
        if not self.path.is_file():
            raise SourceUnavailable(f"{self.path.name}: no such file")
        busy = min(self.options.busy_timeout, max(0.0, deadline - time.monotonic()))
        try:
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=busy, check_same_thread=False)
            conn.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            raise SourceUnavailable(str(exc)) from None
        if deadline != math.inf:
            # the query timeout: SQLite calls this every N VM steps; non-zero aborts the query
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        return conn

    def read(self, table: str, columns: Sequence[str], *, deadline: float = math.inf) -> Iterator[dict[str, Any]]:
        """Streams: a table of millions of rows never sits in memory whole."""
        return self._rows(self.connect(deadline), select_sql(self, table, columns, quote=_quote), None)

    def follows(self, table: str) -> Follow:
        return Follow("rowid", False, "appended")

    def read_since(
        self, table: str, columns: Sequence[str], after: Any = None, *, deadline: float = math.inf
    ) -> tuple[Iterator[dict[str, Any]], Any]:
        """Appended rows by rowid. The cursor is (file identity, last rowid, rows up to it): a
        replaced file, a changed schema or a deleted row makes it stale (:class:`Resync`)."""
        conn = self.connect(deadline)
        span = self._span(conn, table, after)
        if span is None:  # a view or a WITHOUT ROWID table: no appends to follow
            conn.close()
            return self.read(table, columns, deadline=deadline), None
        select = select_sql(self, table, columns, quote=_quote, key="rowid")
        sql = f"{select} WHERE rowid > :lo AND rowid <= :top ORDER BY rowid"
        return self._rows(conn, sql, span[0]), span[1]

    def read_latest(
        self, table: str, columns: Sequence[str], after: Any, want: Latest, *, deadline: float = math.inf
    ) -> tuple[list[tuple[Any, ...]], Iterator[dict[str, Any]], Any] | None:
        """Three queries in one snapshot: the keys with a row SQLite cannot vouch for, the
        others' latest value and count (GROUP BY, which an index on (by, column) answers
        without reading the table), and the suspect keys' rows.

        ISO times fold in every form ``parse_ts`` reads that the rule book names (a ``T`` or a
        space, fractional seconds, ``Z`` or an offset), compared as instants and returned as local
        text to the microsecond. Declared formats fold too: ``epoch`` and ``epoch_ms`` as numbers
        (their greatest is the latest instant), and a ``strptime`` pattern of fixed-width ``%Y %m %d``
        (``%H %M %S``) fields in any order with literal separators (``%Y/%m/%d %H:%M:%S``,
        ``%Y%m%d%H%M%S``, ``%d.%m.%Y %H:%M``), compared as the ISO text of the time it reads.
        SQLite cannot vouch for any other pattern (names of months, 12-hour clocks, offsets,
        fractions of a second): then it returns None and the rows are read one by one."""
        named = [*columns, want.by, want.column, want.id, want.grid, *([want.split] if want.split else [])]
        c = {k: _quote(v) for k, v in self.column_map(table, named).items()}
        vouched = vouch_sql(c, want, self.env.tz)
        if vouched is None:
            return None
        sure, latest, first = vouched.sure, vouched.latest, vouched.least
        conn = self.connect(deadline)
        span = self._span(conn, table, after)
        if span is None:
            conn.close()
            return None
        by = c[want.by]
        keys = f"{by}, {c[want.split]}" if want.split else by
        # a grid is a text label, as clean() makes it (an integer grid_id reads as its digits)
        shown = keys.replace(by, f"CAST({by} AS TEXT)", 1) if want.by == want.grid else keys
        least = f", {first}" if want.earliest else ""
        t = _quote(self.table_name(table))
        params = {**span[0], **vouched.params}
        conn.create_function("gridwatch_utf8", 1, _utf8, deterministic=True)
        span_sql = "rowid > :lo AND rowid <= :top"
        try:
            odd = [
                k
                for (k,) in conn.execute(
                    f"SELECT DISTINCT {by} FROM {t} WHERE {span_sql} AND {by} IS NOT NULL AND ({sure}) IS NOT 1", params
                )
            ]
            if not all(type(k) in (str, int) for k in odd):  # a key JSON cannot carry back (a blob)
                conn.close()
                return None
            params["odd"] = json.dumps(odd)
            groups = conn.execute(
                f"SELECT {shown}, {latest}, count(*){least} FROM {t} WHERE {span_sql} AND {by} IS NOT NULL"
                f" AND {by} NOT IN (SELECT value FROM json_each(:odd)) GROUP BY {keys}",
                params,
            ).fetchall()
            if want.split:
                groups = [((g[0], g[1]), *g[2:]) for g in groups]
        except sqlite3.OperationalError as exc:
            conn.close()
            if undecodable(exc):  # a key or a time that is not UTF-8: the rows say which, one by one
                return None
            raise _translated(exc) from None
        except sqlite3.Error as exc:
            conn.close()
            raise SourceUnavailable(str(exc)) from None
        select = select_sql(self, table, columns, quote=_quote, key="rowid")
        suspect = f"{by} IS NULL OR {by} IN (SELECT value FROM json_each(:odd))"
        sql = f"{select} WHERE {span_sql} AND ({suspect}) ORDER BY rowid"
        return groups, self._rows(conn, sql, params), span[1]

    def _span(self, conn: sqlite3.Connection, table: str, after: Any) -> tuple[dict[str, int], Any] | None:
        """Begin the snapshot of a read since ``after``: the rowid range to read and the next
        cursor; None for a table without rowids."""
        try:
            conn.execute("BEGIN")  # one snapshot for the bookkeeping and the rows
            t = _quote(self.table_name(table))
            try:
                top = conn.execute(f"SELECT max(rowid) FROM {t}").fetchone()[0] or 0
            except sqlite3.OperationalError:
                return None
            st = os.stat(self.path)
            ident = [st.st_dev, st.st_ino, conn.execute("PRAGMA schema_version").fetchone()[0]]
            lo, base = -(2**63), 0
            if after is not None:
                if after[0] != ident or top < after[1]:
                    raise Resync(f"{self.path.name}: {table} was replaced or truncated")
                lo, base = after[1], after[2]
            # SQLite counts a whole table from its pages without reading the rows, five to ten
            # times faster than counting a rowid range: a full read's range is the whole table
            # (top is its greatest rowid, in this snapshot), and the rows up to a cursor are the
            # whole count less those after it
            total = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            n = total
            if after is not None:
                n = conn.execute(f"SELECT count(*) FROM {t} WHERE rowid > ? AND rowid <= ?", [lo, top]).fetchone()[0]
                if total - n != base:
                    raise Resync(f"{self.path.name}: rows of {table} were deleted")
        except sqlite3.Error as exc:
            conn.close()
            raise SourceUnavailable(str(exc)) from None
        except BaseException:
            conn.close()
            raise
        return {"lo": lo, "top": top}, [ident, top, base + n]

    def read_keys(
        self, table: str, columns: Sequence[str], keys: Sequence[Any], *, deadline: float = math.inf
    ) -> Iterator[dict[str, Any]]:
        select = select_sql(self, table, columns, quote=_quote, key="rowid")
        sql = f"{select} WHERE rowid IN (SELECT value FROM json_each(:keys))"
        return self._rows(self.connect(deadline), sql, {"keys": json.dumps(list(keys))})

    def read_open(
        self, table: str, columns: Sequence[str], column: str, *, deadline: float = math.inf
    ) -> Iterator[dict[str, Any]]:
        c = _quote(self.column_map(table, [column])[column])
        select = select_sql(self, table, columns, quote=_quote, key="rowid")
        sql = f"{select} WHERE {c} IS NULL OR {c} = '' ORDER BY rowid"
        return self._rows(self.connect(deadline), sql, None)

    def columns(self, table: str, *, deadline: float = math.inf) -> frozenset[str]:
        conn = self.connect(deadline)
        try:
            actual = [r[1] for r in conn.execute(f"PRAGMA table_info({_quote(self.table_name(table))})")]
        except sqlite3.OperationalError as exc:
            raise _translated(exc) from None
        finally:
            conn.close()
        return self.standard_names(table, actual)

    def unique(self, table: str, column: str) -> bool:
        """Every unique key SQLite declares: a primary key of this column alone — an ``INTEGER
        PRIMARY KEY`` is the rowid itself and has no index of its own — and a full unique index on
        exactly this column (a ``UNIQUE`` constraint, ``CREATE UNIQUE INDEX``). A key of several
        columns does not make one of them unique."""
        col = self.column_map(table, [column])[column]
        conn = self.connect()
        try:
            t = _quote(self.table_name(table))
            # (cid, name, type, notnull, default, pk): pk numbers the primary key's columns
            if [r[1].lower() for r in conn.execute(f"PRAGMA table_info({t})") if r[5]] == [col.lower()]:
                return True
            for index in conn.execute(f"PRAGMA index_list({t})").fetchall():
                # (seq, name, unique, origin, partial): a full unique index on exactly this column
                if index[2] and not index[4]:
                    cols = [r[2] for r in conn.execute(f"PRAGMA index_info({_quote(index[1])})")]
                    if [str(c).lower() for c in cols] == [col.lower()]:
                        return True
            return False
        except sqlite3.Error:
            return False
        finally:
            conn.close()

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None, *, deadline: float = math.inf
    ) -> list[dict[str, Any]]:
        return list(self.query_iter(sql, params, deadline=deadline))

    def query_iter(
        self, sql: str, params: Mapping[str, Any] | None = None, *, deadline: float = math.inf
    ) -> Iterator[dict[str, Any]]:
        return self._rows(self.connect(deadline), sql, params)

    def _rows(self, conn: sqlite3.Connection, sql: str, params: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        values = dict(params or {})
        try:
            if not conn.in_transaction:
                conn.execute("BEGIN")  # one snapshot: a read again after a bad byte sees the same rows
            cur = conn.execute(sql, values)
            cols = [d[0] for d in cur.description or ()]
            fetched, lenient = 0, False
            while True:
                try:
                    batch = cur.fetchmany(5000)
                except sqlite3.OperationalError as exc:
                    if lenient or not undecodable(exc):
                        raise
                    # read again, decoding value by value, and go on after the rows handed on
                    lenient, conn.text_factory = True, decode_text
                    cur = conn.execute(sql, values)
                    skip = fetched
                    while skip > 0 and (passed := len(cur.fetchmany(min(skip, 5000)))):
                        skip -= passed
                    continue
                if not batch:
                    break
                fetched += len(batch)
                for row in batch:
                    if lenient and any(v is UNDECODABLE for v in row):
                        self.count_rejected({BAD_ENCODING: 1})
                        continue
                    yield dict(zip(cols, row, strict=True))
        except sqlite3.OperationalError as exc:
            raise _translated(exc) from None
        except sqlite3.DatabaseError as exc:
            raise SourceUnavailable(str(exc)) from None
        finally:
            conn.close()

    def ping(self) -> None:
        self.query("SELECT 1")


def _utf8(raw: Any) -> bool:
    """SQL ``gridwatch_utf8(CAST(x AS BLOB))``: whether a value's bytes are UTF-8."""
    try:
        bytes(raw or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _translated(exc: sqlite3.OperationalError) -> Exception:
    """A failed query as the core understands it: timed out, unavailable, or the operator's fix."""
    msg = str(exc)
    if undecodable(exc):  # never the value itself: it may be a name or a phone number
        return CheckError("query failed: a text value is not UTF-8")
    if msg == "interrupted":
        return TimeoutError("query exceeded the check's timeout")
    if any(s in msg.lower() for s in _UNAVAILABLE):
        return SourceUnavailable(msg)
    return CheckError(f"query failed: {msg}")


def _quote(name: str) -> str:
    """An identifier in backquotes: SQLite reads an unknown name in double quotes as a string
    constant (a mistyped column would read as its own name in every row); in backquotes it is
    always a name, and an unknown one an error."""
    return "`" + name.replace("`", "``") + "`"


# An ISO time SQLite can vouch for, as clean() reads it: date and time to the second with a `T`
# or a space between, then up to six digits of a second, then `Z` or an offset ±HH:MM, or nothing
# (local time). datetime(julianday()) writes the date and time canonically, so its text equal to
# what is written (a `T` read as a space) proves the form and the calendar (it rolls an impossible
# date over: datetime() alone keeps 2026-02-30 as it is). The rest is matched whole against the
# few shapes its length allows: anchored patterns cost little per row, a search from `*` a lot.
_WHOLE = "substr({col}, 1, 19)"
_DIGIT, _OFFSET = "[0-9]", "[+-][0-9][0-9]:[0-9][0-9]"  # SQLite itself reads no offset beyond ±14:59


def _tail_shapes(length: int) -> list[str]:
    """The patterns a valid rest of ``length`` characters matches (after ``HH:MM:SS``)."""
    shapes = []
    if 2 <= length <= 7:
        shapes.append("." + _DIGIT * (length - 1))
    if length == 1 or 3 <= length <= 8:
        shapes.append(("." + _DIGIT * (length - 2) if length > 1 else "") + "Z")
    if length == 6 or 8 <= length <= 13:
        shapes.append(("." + _DIGIT * (length - 7) if length > 6 else "") + _OFFSET)
    return shapes


_TAIL_OK = (
    "CASE length({col}) - 19"
    + "".join(
        f" WHEN {n} THEN " + " OR ".join(f"substr({{col}}, 20) GLOB '{shape}'" for shape in _tail_shapes(n))
        for n in range(1, 14)
    )
    + " ELSE 0 END"
)
_ZONE_LENGTH = "(CASE WHEN substr({col}, -1) = 'Z' THEN 1 WHEN substr({col}, -3, 1) = ':' THEN 6 ELSE 0 END)"
# The time as the window's local text, to the microsecond as written: offsets are converted with
# the window's fixed offset (:shift), in which local times are the instants they name, so the
# text sorts as the instants and parse_ts reads it to the same one. A time to the second without
# a zone, the common case, is only given its space.
_ISO_KEY = (
    "(CASE WHEN substr({col}, 11, 1) = ' ' AND length({col}) = 19 THEN {col}"
    " WHEN length({col}) = 19 THEN replace({col}, 'T', ' ')"
    # the window's own offset (:own, as +08:00): the time is local as written
    " WHEN substr({col}, -6) = :own THEN replace(substr({col}, 1, length({col}) - 6), 'T', ' ') ELSE"
    f" (CASE {_ZONE_LENGTH} WHEN 0 THEN replace({_WHOLE}, 'T', ' ')"
    f" ELSE datetime({_WHOLE} || substr({{col}}, -{_ZONE_LENGTH}), :shift) END)"
    f" || substr({{col}}, 20, length({{col}}) - 19 - {_ZONE_LENGTH}) END)"
)
# (CASE, not OR: SQLite evaluates both sides of an OR in an expression, and the common case
# should cost no more than it did when it was the only one)
_ISO_SURE = (
    "typeof({col}) = 'text' AND CASE WHEN length({col}) = 19 AND substr({col}, 11, 1) = ' '"
    " THEN {col} BETWEEN :since AND :until AND datetime(julianday({col})) = {col}"
    " WHEN length({col}) = 19 THEN replace({col}, 'T', ' ') BETWEEN :since AND :until"
    " AND datetime(julianday({col})) = replace({col}, 'T', ' ')"
    f" ELSE datetime(julianday({_WHOLE})) = replace({_WHOLE}, 'T', ' ') AND {_TAIL_OK}"
    f" AND {_ISO_KEY} BETWEEN :since AND :until END"
)
_EPOCH_SURE = "typeof({col}) IN ('integer', 'real') AND {col} BETWEEN :since AND :until"
_FIELDS = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}


def _time_sql(fmt: str) -> tuple[str, str, int] | None:
    """How SQLite vouches for a time in format ``fmt``: the condition (on ``{col}``) under which
    it does, the value whose greatest (least) is the latest (earliest) time, and how many leading
    characters of that greatest (least) to drop for what is left to be the time in a form
    ``parse_ts`` reads in ``fmt``, to that instant; None when SQLite cannot vouch. A pattern
    qualifies when its fields are ``%Y %m %d``, optionally with ``%H %M`` and ``%S``, in any
    order, between literal characters that are neither digits nor ``%``: a text of exactly the
    pattern's width with the literals in place, its fields rearranged into ISO, passes the ISO
    checks, and that ISO text sorts as the times (it goes in front of the text it was read from,
    which the caller gets back)."""
    if fmt == ISO:
        return _ISO_SURE, _ISO_KEY, 0
    if fmt in (EPOCH, EPOCH_MS):
        return _EPOCH_SURE, "{col}", 0
    parts = re.findall(r"%(.)|([^%]+)", fmt)
    fields = [f for f, _ in parts if f]
    if len(set(fields)) != len(fields) or set(fields) not in ({*"Ymd"}, {*"YmdHM"}, {*"YmdHMS"}):
        return None
    if any(c.isdigit() for _, lit in parts for c in lit):
        return None
    pos, at, literals = 1, {}, []
    for field, literal in parts:
        if field:
            at[field] = pos
            pos += _FIELDS[field]
        else:
            literals.append(f"substr({{col}}, {pos}, {len(literal)}) = {_literal(literal)}")
            pos += len(literal)

    def part(f: str) -> str:
        return f"substr({{col}}, {at[f]}, {_FIELDS[f]})" if f in at else "'00'"

    iso = " || ".join(
        [part("Y"), "'-'", part("m"), "'-'", part("d"), "' '", part("H"), "':'", part("M"), "':'", part("S")]
    )
    checks = [f"length({{col}}) = {pos - 1}", *literals, f"({iso}) BETWEEN :since AND :until"]
    checks.append(f"datetime(julianday({iso})) = ({iso})")
    sure = "typeof({col}) = 'text' AND " + " AND ".join(checks)
    if [f for f in "YmdHMS" if f in at] == fields:  # in this order the text itself sorts as the times
        return sure, "{col}", 0
    return sure, f"({iso}) || {{col}}", 19


class Vouched(NamedTuple):
    """What SQLite vouches for in a fold (:func:`vouch_sql`)."""

    sure: str
    """the condition a row passes only when ``clean()`` surely hands it on"""
    latest: str
    """the greatest time, as ``parse_ts`` reads it in the column's format"""
    least: str
    """the least time, likewise"""
    params: dict[str, Any]
    """what they bind (they also call ``gridwatch_utf8``, :func:`_utf8`)"""


def vouch_sql(c: Mapping[str, str], want: Latest, tz: tzinfo) -> Vouched | None:
    """The SQL of a fold of ``want`` over the quoted columns ``c`` (standard name → quoted
    source name), shared by the ``sqlite`` source and the ``sql`` source on SQLite; None when
    SQLite cannot vouch for the column's format."""
    time_sql = _time_sql(want.format)
    if time_sql is None:
        return None
    sure_time, key_time, cut = time_sql
    col, rid, grid = c[want.column], c[want.id], c[want.grid]
    # the columns read but not folded must decode too (else the row is bad_encoding); text that
    # is all ASCII surely does, the rest is tried byte by byte
    decodes = "".join(
        f" AND (typeof({q}) <> 'text' OR {q} NOT GLOB :wide OR gridwatch_utf8(CAST({q} AS BLOB)))"
        for k, q in c.items()
        if k not in (want.by, want.column, want.grid)
    )
    # every rule of clean() the row passes for sure; a grid is a text label, as clean() makes it
    # (an integer grid_id reads as its digits)
    sure = (
        f"{rid} IS NOT NULL AND {rid} <> '' AND typeof({grid}) IN ('text', 'integer')"
        f" AND CAST({grid} AS TEXT) IN (SELECT value FROM json_each(:grids))"
        f" AND {sure_time.format(col=col)}{decodes}"
    )
    # the key sorts as the times; what follows its first ``cut`` characters is the time parse_ts reads
    at = key_time.format(col=col)
    latest, least = (
        (f"max({at})", f"min({at})") if not cut else (f"substr(max({at}), {cut + 1})", f"substr(min({at}), {cut + 1})")
    )
    params = {"grids": json.dumps(list(want.grids)), **_bounds(want, tz), "wide": "*[^\x01-\x7f]*"}
    return Vouched(sure, latest, least, params)


def _literal(text: str) -> str:
    """A SQL string constant, braces doubled for the ``{col}`` template it goes into."""
    return "'" + text.replace("'", "''").replace("{", "{{").replace("}", "}}") + "'"


def _bounds(want: Latest, tz: tzinfo) -> dict[str, Any]:
    """``since`` and ``until`` as the column holds times: ISO text, or epoch numbers. The
    bounds are naive local times; whole seconds, so a row in ``until``'s last second is read
    as a row (a narrower bound only hands more rows on). ``shift`` turns UTC into the window's
    local time, whose offset :meth:`Feed.latest` guarantees fixed; ``own`` is that offset as
    written (``+08:00``), with which a time is local already."""
    if want.format in (EPOCH, EPOCH_MS):
        scale = 1 if want.format == EPOCH else 1000
        return {
            "since": math.ceil(want.since.replace(tzinfo=tz).timestamp()) * scale,
            "until": math.floor(want.until.replace(tzinfo=tz).timestamp()) * scale,
        }
    offset = want.until.replace(tzinfo=tz).utcoffset() or timedelta(0)  # the window's, fixed
    minutes = round(offset.total_seconds()) // 60
    return {
        "since": want.since.isoformat(" ", "seconds"),
        "until": want.until.isoformat(" ", "seconds"),
        "shift": f"{offset.total_seconds():+.0f} seconds",
        "own": f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        if offset.total_seconds() % 60 == 0
        else "",
    }


@hookimpl
def register_source_types() -> list[type[Source]]:
    return [SqliteSource]
