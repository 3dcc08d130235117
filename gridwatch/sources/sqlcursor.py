"""Following a ``sql`` source's tables between runs by a column the operator names.

A platform's database has no rowid to follow, so the operator names, per table, a cursor column
(``[sources.NAME.cursors] visits = "visit_id"``, standard or the table's own name):

- an **increasing id** (a number column: a serial, an auto-increment) follows appends. A run reads
  in one snapshot ``max(id)`` first and then the rows ``> last`` and ``<= max``, so a row
  committed during the read waits for the next run. A transaction that took a lower id and
  commits after a later one (two clerks saving at once) would fall behind the cursor: the last
  ``cursor_lookback`` ids below the cursor are looked at again, by key only, and a row among them
  not seen before is read then. Edits are not seen: a mutable table (incidents) re-reads the
  rows it keeps by key, as on SQLite;
- a **changed-since** column (a time the platform sets on every insert and update, like
  ``updated_at``; any column that is not a number, unless ``kind`` says otherwise) follows
  appends and edits alike. A run reads the rows whose column is at least the last greatest value
  less ``cursor_overlap`` (a transaction may commit an earlier time late); a row read before
  with the same value is skipped (the cursor keeps the keys and values of that overlap), one
  read before with another value is an edit, handed on marked :data:`gridwatch.api.ROW_EDITED`.
  Telling an edit from a new row takes the table's key: its primary key, or a unique column.
  Nothing read before is read again to see an edit, and no periodic resync is needed.

Deletions and rewritten history are caught by cheap checks in the same snapshot, never by
reading again: for an id, the rows at or below the settled part of the cursor are counted and
the least id compared; for a changed-since column, the rows whose key is at most the greatest
key seen are counted and the least key compared (a new row whose key sorts below the greatest,
as text keys may, reads as a deletion: a full read, correct and slower); rows with no cursor
value are counted too (such a row cannot be followed). A mismatch raises
:class:`gridwatch.api.Resync`, and the check starts again from a full read.

A cursor is a tuple of plain values (numbers and strings; a time as ``("time", iso text)``), so
it can be kept across a restart. A table without a cursor is read in full on every run, as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gridwatch.api import ROW_EDITED, ROW_KEY, CheckError, Follow, Options, Resync
from gridwatch.sources.select import select_sql

if TYPE_CHECKING:
    from gridwatch.sources.sql import SqlSource

APPENDED, CHANGED = "appended", "changed"
_MAX_KEYS = 20_000  # changed rows named by key in one query at most (SQLite allows 32,766 values)


class CursorOption(Options):
    """A cursor column with its kind said outright (an epoch-seconds ``updated_at`` is a number
    that changes, not an increasing id)."""

    column: str
    kind: Literal["appended", "changed"] | None = None
    """``appended`` (an increasing id) or ``changed`` (a changed-since column); by default a
    number column is an increasing id and any other a changed-since column"""


@dataclass(frozen=True)
class Plan:
    """How one table is followed: the source's cursor and key columns, quoted, and the kind."""

    column: str  # the source's column, as named
    kind: str
    cur: str  # quoted
    key: str  # quoted: the row's key (ROW_KEY)


class Cursors:
    """The cursor columns of one ``sql`` source, checked against the database once per table."""

    def __init__(self, source: SqlSource) -> None:
        self.source = source
        self.plans: dict[str, Plan] = {}  # table -> plan, until the schema may have changed

    # -- configuration ---------------------------------------------------------------------------
    def configured(self, table: str) -> tuple[str, str | None] | None:
        """(the source's column, the kind said) for ``table``, or None without a cursor."""
        option = self.source.options.cursors.get(table)
        if option is None:
            return None
        column, kind = (option, None) if isinstance(option, str) else (option.column, option.kind)
        return self.source.column_map(table, [column])[column], kind

    def follows(self, table: str) -> Follow:
        said = self.configured(table)
        if said is None:
            return Follow(None, False, "no_cursor")
        plan = self.plans.get(table)
        kind = plan.kind if isinstance(plan, Plan) else said[1]
        return Follow(said[0], kind == CHANGED, kind or APPENDED)

    def problems(self, table: str, deadline: float) -> list[tuple[str, str]]:
        """What is wrong with the table's cursor, as :meth:`gridwatch.api.Source.missing` says it."""
        plan = self.plan(table, deadline)
        return [(f"cursors.{table}", f"{plan}; set it in cursors.{table}")] if isinstance(plan, str) else []

    def plan(self, table: str, deadline: float = math.inf) -> Plan | str | None:
        """The table's plan (asked of the database once), what is wrong with it, or None."""
        said = self.configured(table)
        if said is None:
            return None
        if table in self.plans:
            return self.plans[table]
        plan = self._plan(table, *said, deadline=deadline)
        if isinstance(plan, Plan):  # what is wrong is asked again: the operator may mend it
            self.plans[table] = plan
        return plan

    def _plan(self, table: str, column: str, kind: str | None, deadline: float) -> Plan | str:
        src = self.source
        name = src.table_name(table)
        with src.translated(deadline), src.transaction(deadline) as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(name):
                return f"table {table!r} not found in source {src.name}, so it cannot be followed"
            types = {c["name"]: c["type"] for c in inspector.get_columns(name)}
            declared = key_columns(inspector, name)
        if column not in types:
            return (
                f"cursor column {column!r} not found in table {name!r} of source {src.name}; "
                f"the table has: {', '.join(sorted(types))}"
            )
        number = isinstance(types[column], sa.Integer | sa.Numeric)
        kind = kind or (APPENDED if number else CHANGED)
        if kind == APPENDED and not number:
            return f"cursor column {column!r} of {name!r} is not a number: an increasing id must be one"
        # a key whose new values sort after the old tells a new row from an edit: an integer key
        # (a serial) rather than text ("I100" sorts before "I99"), the primary key first
        singles = sorted((c[0] for c in declared if len(c) == 1), key=lambda c: not isinstance(types[c], sa.Integer))
        key = singles[0] if singles else column if kind == APPENDED else None
        if key is None:
            return (
                f"table {name!r} has no primary key or unique column: a changed-since cursor "
                f"({column!r}) needs one to tell an edited row from a new one"
            )
        quote = src.quote
        return Plan(column, kind, quote(column), quote(key))

    def ready(self, table: str, deadline: float) -> Plan | None:
        """The table's plan, None without a cursor; a wrong cursor is the operator's to mend."""
        plan = self.plan(table, deadline)
        if isinstance(plan, str):
            raise CheckError(f"{plan}: see sources.{self.source.name}.cursors.{table}")
        return plan

    # -- reading -------------------------------------------------------------------------------
    def read_since(
        self, table: str, columns: Sequence[str], after: Any, deadline: float
    ) -> tuple[Iterator[dict[str, Any]], Any] | None:
        """The rows since ``after`` and the next cursor, or None when the table has no cursor."""
        plan = self.ready(table, deadline)
        if plan is None:
            return None
        src = self.source
        stack = ExitStack()
        try:
            stack.enter_context(src.translated(deadline))
            conn = stack.enter_context(src.transaction(deadline, snapshot=True))
            where, params, cursor = self.span(conn, table, plan, after)
        except BaseException:
            stack.close()
            raise
        select = select_sql(src, table, columns, quote=src.quote, key=plan.key)
        order = f" ORDER BY {plan.cur}" if plan.kind == APPENDED else ""
        stmt = sa.text(f"{select} WHERE {where}{order}")
        if "keys" in params:
            stmt = stmt.bindparams(sa.bindparam("keys", expanding=True))
        only = params.pop("only", None)
        edits = None if plan.kind == APPENDED or after is None or after[2] is None else after[4]
        return self._rows(stack, conn, stmt, params, edits, only), cursor

    def span(self, conn: Connection, table: str, plan: Plan, after: Any) -> tuple[str, dict[str, Any], Any]:
        """In the snapshot open on ``conn``: the rows to read since ``after`` (a condition and its
        parameters) and the next cursor. A full read's condition (``after`` None) names no keys:
        it bounds a fold in the database as well (:mod:`gridwatch.sources.sqlfold`)."""
        if after is not None and tuple(after[:2]) != (plan.kind, plan.column):
            raise Resync(f"the cursor of {table} changed in the configuration")
        fetch = _Fetch(conn, self.source.quote(self.source.table_name(table)), plan)
        if plan.kind == APPENDED:
            return self._appended(fetch, table, after)
        return self._changed(fetch, table, after)

    def _appended(self, fetch: _Fetch, table: str, after: Any) -> tuple[str, dict[str, Any], Any]:
        """Rows past an increasing id, and those that committed late just below it."""
        lookback = self.source.options.cursor_lookback
        top, first, nulls = fetch.one(f"SELECT max({fetch.cur}), min({fetch.cur}), {fetch.nulls} FROM {fetch.t}")
        where, params = f"{fetch.cur} <= :top", {"top": top}
        if after is not None:
            _, _, was_top, low, n_low, was_first, was_nulls, overlap = after
            if nulls != was_nulls:
                raise Resync(f"rows of {table} without a cursor value were added or deleted")
            if was_top is not None:
                # the least id moved below the look-back (the look-back itself is checked by key)
                if top is None or top < was_top or (first != was_first and min(first, was_first) <= low):
                    raise Resync(f"rows of {table} were deleted or rewritten")
                counted = fetch.one(f"SELECT count(*) FROM {fetch.t} WHERE {fetch.cur} <= :low", low=low)[0]
                near = set(fetch.keys(f"{fetch.cur} > :low AND {fetch.cur} <= :was", low=low, was=was_top))
                if counted != n_low or not near >= set(overlap):
                    raise Resync(f"rows of {table} were deleted or rewritten")
                late = sorted(near - set(overlap))
                where, params = f"{fetch.cur} > :was AND {fetch.cur} <= :top", {"top": top, "was": was_top}
                if late:  # committed after a later id was read: read now
                    where, params["keys"] = f"({where} OR {fetch.key} IN :keys)", late
        if top is None:
            return "1 = 0", {}, (APPENDED, fetch.plan.column, None, None, 0, None, nulls, ())
        low = top - lookback
        n_low = fetch.one(f"SELECT count(*) FROM {fetch.t} WHERE {fetch.cur} <= :low", low=low)[0]
        overlap = tuple(fetch.keys(f"{fetch.cur} > :low AND {fetch.cur} <= :top", low=low, top=top))
        return where, params, (APPENDED, fetch.plan.column, top, low, n_low, first, nulls, overlap)

    def _changed(self, fetch: _Fetch, table: str, after: Any) -> tuple[str, dict[str, Any], Any]:
        """Rows changed since the last greatest value less the overlap, but those read as they are.

        The keys and values of the changed rows are looked at first (two columns), and only the
        rows new or changed since are read whole: the overlap costs no row read."""
        top, kmin, kmax, n, nulls = fetch.one(
            f"SELECT max({fetch.cur}), min({fetch.key}), max({fetch.key}), count(*), {fetch.nulls} FROM {fetch.t}"
        )
        where, params = "1 = 1", dict[str, Any]()
        if top is None:
            pairs: list[tuple[Any, Any]] = []
        elif after is None or after[2] is None:
            pairs = fetch.pairs(self._low(top))
        else:
            _, _, was_top, was_kmin, was_kmax, was_n, was_nulls, overlap = after
            upto = fetch.one(f"SELECT count(*) FROM {fetch.t} WHERE {fetch.key} <= :k", k=was_kmax)[0]
            if _before(top, _restored(was_top)) or kmin != was_kmin or upto != was_n or nulls != was_nulls:
                raise Resync(f"rows of {table} were deleted or rewritten")
            pairs = fetch.pairs(self._low(_restored(was_top)))
            seen = set(overlap)
            changed = sorted({k for k, v in pairs if (k, _plain(v)) not in seen}, key=repr)
            if not changed:
                where = "1 = 0"
            elif len(changed) <= _MAX_KEYS:
                where, params = f"{fetch.key} IN :keys", {"keys": changed}
            else:  # too many to name: the changed rows' range, the others left out as they come
                where = f"{fetch.cur} >= :low"
                params = {"low": self._low(_restored(was_top)), "only": frozenset(changed)}
        if after is not None and after[2] is None and nulls != after[6]:
            raise Resync(f"rows of {table} without a cursor value were added or deleted")
        if top is None:
            return "1 = 0", {}, (CHANGED, fetch.plan.column, None, None, None, 0, nulls, ())
        low = self._low(top)
        overlap = tuple((k, _plain(v)) for k, v in pairs if not _before(v, low))
        return where, params, (CHANGED, fetch.plan.column, _plain(top), kmin, kmax, n, nulls, overlap)

    def _low(self, top: Any) -> Any:
        """``top`` less the overlap, in the form the column holds it."""
        seconds = self.source.options.cursor_overlap
        if isinstance(top, datetime):
            return top - timedelta(seconds=seconds)
        if isinstance(top, int | float):  # epoch seconds, or milliseconds
            return top - seconds * (1000 if top > 10**11 else 1)
        if isinstance(top, str):
            try:
                at = datetime.fromisoformat(top)
            except ValueError:
                return top  # a text that is not a time: no overlap
            sep = "T" if len(top) > 10 and top[10] == "T" else " "
            spec = "microseconds" if "." in top[19:] else "seconds"
            return (at - timedelta(seconds=seconds)).isoformat(sep, spec)
        return top

    def _rows(
        self, stack: ExitStack, conn: Connection, stmt: Any, params: dict[str, Any], kmax: Any, only: Any
    ) -> Iterator[dict[str, Any]]:
        """The rows, on a changed-since cursor each edit marked: a key at most the greatest read
        before (a new row whose key sorts below it is taken for an edit: a mutable table reads it
        as one, an append-only table reads in full)."""
        with stack:
            for row in self.source.dicts(conn.execute(stmt, params)):
                if only is not None and row[ROW_KEY] not in only:
                    continue
                if kmax is not None:
                    try:
                        edited = row[ROW_KEY] <= kmax
                    except TypeError:
                        edited = True
                    if edited:
                        row[ROW_EDITED] = True
                yield row


def key_columns(inspector: Any, table: str) -> list[list[str]]:
    """The column lists the database declares unique on ``table``: its primary key first, then
    its unique constraints and unique indexes (an ``INTEGER PRIMARY KEY`` is the first)."""
    declared = [inspector.get_pk_constraint(table).get("constrained_columns") or []]
    declared += [u["column_names"] for u in inspector.get_unique_constraints(table)]
    declared += [
        i["column_names"]
        # a partial index leaves its other rows free to repeat (its condition is a clause, which
        # has no truth value: only whether there is one counts)
        for i in inspector.get_indexes(table)
        if i.get("unique")
        and not any(v is not None for k, v in i.get("dialect_options", {}).items() if k.endswith("_where"))
    ]
    return [[str(c) for c in cols] for cols in declared if cols and None not in cols]


class _Fetch:
    """Small bookkeeping queries on the snapshot's connection."""

    def __init__(self, conn: Connection, t: str, plan: Plan) -> None:
        self.conn, self.t, self.plan, self.cur, self.key = conn, t, plan, plan.cur, plan.key
        self.nulls = f"count(*) - count({plan.cur})"

    def one(self, sql: str, **params: Any) -> tuple[Any, ...]:
        return tuple(self.conn.execute(sa.text(sql), params).one())

    def keys(self, where: str, **params: Any) -> list[Any]:
        return [r[0] for r in self.conn.execute(sa.text(f"SELECT {self.key} FROM {self.t} WHERE {where}"), params)]

    def pairs(self, low: Any) -> list[tuple[Any, Any]]:
        sql = f"SELECT {self.key}, {self.cur} FROM {self.t} WHERE {self.cur} >= :low"
        return [(k, v) for k, v in self.conn.execute(sa.text(sql), {"low": low})]


def _plain(value: Any) -> Any:
    """A cursor value as plain data: a time as ``("time", iso text)``."""
    return ("time", value.isoformat()) if isinstance(value, datetime) else value


def _restored(value: Any) -> Any:
    if isinstance(value, tuple | list) and len(value) == 2 and value[0] == "time":
        return datetime.fromisoformat(value[1])
    return value


def _before(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:
        return True
