"""The ``sqlite`` source: a read-only connection to a SQLite file."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gridwatch.api import CheckError, Latest, Resync, Source, SourceUnavailable, TableOptions
from gridwatch.durations import Duration
from gridwatch.hookspecs import hookimpl
from gridwatch.sources.select import select_sql

_UNAVAILABLE = (
    "unable to open",
    "database is locked",
    "disk i/o error",
    "no such file",
    "not a database",
)


class SqliteSource(Source["SqliteSource.Options"]):
    """Opens the file read-only per query, so a replaced file is picked up and never written."""

    type = "sqlite"
    latest_fields = frozenset({"split", "earliest"})

    class Options(TableOptions):
        path: str
        busy_timeout: Duration = 5.0

    def __init__(self, name: str, options: Options, env: Any) -> None:
        super().__init__(name, options, env)
        self.path = env.resolve(options.path)

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
        without reading the table), and the suspect keys' rows."""
        conn = self.connect(deadline)
        span = self._span(conn, table, after)
        if span is None:
            conn.close()
            return None
        named = [want.by, want.column, want.id, want.grid, *([want.split] if want.split else [])]
        c = {k: _quote(v) for k, v in self.column_map(table, named).items()}
        by, col, rid, grid = c[want.by], c[want.column], c[want.id], c[want.grid]
        keys = f"{by}, {c[want.split]}" if want.split else by
        least = f", min({col})" if want.earliest else ""
        t = _quote(self.table_name(table))
        params = {
            **span[0],
            "grids": json.dumps(list(want.grids)),
            "since": want.since.isoformat(" ", "seconds"),
            "until": want.until.isoformat(" ", "seconds"),
        }
        # every rule of clean() the row passes for sure; datetime(julianday()) rewrites any other
        # form and rolls an impossible date over (datetime() alone keeps 2026-02-30 as it is)
        sure = (
            f"{rid} IS NOT NULL AND {rid} <> '' AND typeof({grid}) = 'text'"
            f" AND {grid} IN (SELECT value FROM json_each(:grids)) AND typeof({col}) = 'text'"
            f" AND {col} BETWEEN :since AND :until AND datetime(julianday({col})) = {col}"
        )
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
                f"SELECT {keys}, max({col}), count(*){least} FROM {t} WHERE {span_sql} AND {by} IS NOT NULL"
                f" AND {by} NOT IN (SELECT value FROM json_each(:odd)) GROUP BY {keys}",
                params,
            ).fetchall()
            if want.split:
                groups = [((g[0], g[1]), *g[2:]) for g in groups]
        except sqlite3.OperationalError as exc:
            conn.close()
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
            n = conn.execute(f"SELECT count(*) FROM {t} WHERE rowid > ? AND rowid <= ?", [lo, top]).fetchone()[0]
            # the rows up to the cursor, from the whole count: SQLite counts a whole table from its
            # pages without reading the rows, ten times faster than counting a rowid range
            if after is not None and conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] - n != base:
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
        col = self.column_map(table, [column])[column]
        conn = self.connect()
        try:
            t = _quote(self.table_name(table))
            for index in conn.execute(f"PRAGMA index_list({t})").fetchall():
                # (seq, name, unique, origin, partial): a full unique index on exactly this column
                if index[2] and not index[4]:
                    cols = [r[2] for r in conn.execute(f"PRAGMA index_info({_quote(index[1])})")]
                    if cols == [col]:
                        return True
            return False
        except sqlite3.Error:
            return False
        finally:
            conn.close()

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None, *, deadline: float = math.inf
    ) -> list[dict[str, Any]]:
        return list(self._rows(self.connect(deadline), sql, params))

    def _rows(self, conn: sqlite3.Connection, sql: str, params: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        try:
            cur = conn.execute(sql, dict(params or {}))
            cols = [d[0] for d in cur.description or ()]
            while batch := cur.fetchmany(5000):
                for row in batch:
                    yield dict(zip(cols, row, strict=True))
        except sqlite3.OperationalError as exc:
            raise _translated(exc) from None
        except sqlite3.DatabaseError as exc:
            raise SourceUnavailable(str(exc)) from None
        finally:
            conn.close()

    def ping(self) -> None:
        self.query("SELECT 1")


def _translated(exc: sqlite3.OperationalError) -> Exception:
    """A failed query as the core understands it: timed out, unavailable, or the operator's fix."""
    msg = str(exc)
    if msg == "interrupted":
        return TimeoutError("query exceeded the check's timeout")
    if any(s in msg.lower() for s in _UNAVAILABLE):
        return SourceUnavailable(msg)
    return CheckError(f"query failed: {msg}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@hookimpl
def register_source_types() -> list[type[Source]]:
    return [SqliteSource]
