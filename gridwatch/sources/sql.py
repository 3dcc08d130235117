"""The ``sql`` source: any database SQLAlchemy speaks (PostgreSQL, MySQL/MariaDB, SQLite...).

One engine per source, created once, with a connection pool that pings a connection before
lending it. Every query runs in a read-only transaction bounded by the check's deadline:

- PostgreSQL: ``SET TRANSACTION READ ONLY`` and a transaction-local ``statement_timeout``;
- MySQL/MariaDB (best effort): ``SET TRANSACTION READ ONLY`` and ``max_execution_time``
  (MySQL) or ``max_statement_time`` (MariaDB);
- SQLite: ``PRAGMA query_only`` and a progress handler that aborts at the deadline;
- anything else: no server-side limit; the core's timeout still abandons the run.

A table with a cursor column (``cursors``) is followed between runs: a run reads what was
appended, or changed, since the last (:mod:`gridwatch.sources.sqlcursor`); any other is read in
full on every run.

Drivers are optional extras: ``pip install 'gridwatch[postgres]'`` (psycopg 3) or
``'gridwatch[mysql]'`` (PyMySQL). A ``mysql://`` URL without a driver uses PyMySQL.
"""

from __future__ import annotations

import importlib.util
import math
import re
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from gridwatch.api import CheckError, Follow, Latest, Source, SourceUnavailable, TableOptions
from gridwatch.durations import Duration, parse_duration
from gridwatch.hookspecs import hookimpl
from gridwatch.sources import sqlfold
from gridwatch.sources.drivervalues import driver_value
from gridwatch.sources.files import BAD_ENCODING, RejectCounter
from gridwatch.sources.select import select_sql
from gridwatch.sources.sqlcursor import CursorOption, Cursors, key_columns
from gridwatch.sources.sqlite import UNDECODABLE, decode_text

# the extra that installs the driver a backend needs, and that driver
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}
_EXTRA_DRIVERS = {"postgres": "psycopg", "mysql": "pymysql"}

# PostgreSQL SQLSTATEs: the statement was cancelled by statement_timeout; the server is
# going away or out of connections (retry later); a name does not exist (operator's fix)
_PG_CANCELED = "57014"
_PG_UNAVAILABLE_PREFIXES = ("08", "53", "57P", "58")
_PG_UNDEFINED = {"42P01", "42703", "3F000"}
# MySQL/MariaDB error numbers: statement time limits, and lost, refused or killed connections
_MY_TIMEOUT = {3024, 1969}
_MY_UNAVAILABLE = {1040, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2055}
_MYSQL = ("mysql", "mariadb")


class SqlSource(RejectCounter, Source["SqlSource.Options"]):
    """Reads through SQLAlchemy; identifiers are quoted by the dialect, values always bound.

    Text is decoded value by value where it comes as bytes (SQLite's text, and binary columns on
    any database: a platform keeping names in ``VARBINARY`` or ``BLOB``): a row holding bytes
    that are not UTF-8 is skipped and counted as ``bad_encoding``, and the bytes are never shown.
    PostgreSQL and MySQL keep text columns valid in their encoding; a driver that cannot decode a
    value fails the read without quoting it.
    """

    type = "sql"
    latest_fields = frozenset({"split", "earliest"})

    class Options(TableOptions):
        url: str
        """a SQLAlchemy URL, e.g. ``postgresql://gridwatch:${PGPASSWORD}@db/grid``"""
        pool_size: int = Field(5, ge=1)
        max_overflow: int = Field(5, ge=0)
        connect_timeout: Duration = 10.0
        """how long to wait for a new connection (PostgreSQL and MySQL drivers)"""
        cursors: dict[str, str | CursorOption] = {}
        """standard table name -> the column a run follows it by: an increasing id, or a
        changed-since time (``{column = "...", kind = "appended" | "changed"}`` to say which)"""
        cursor_overlap: Duration = parse_duration("5m")
        """how far back a changed-since cursor looks again for a time committed late"""
        cursor_lookback: int = Field(100, ge=0)
        """how many ids below an increasing-id cursor are looked at again for a late commit"""

    def __init__(self, name: str, options: Options, env: Any) -> None:
        Source.__init__(self, name, options, env)
        RejectCounter.__init__(self)
        try:
            url = make_url(options.url)
        except sa_exc.ArgumentError:
            raise CheckError(
                f"source {name}: url is not a SQLAlchemy URL (dialect+driver://user:password@host:port/database)"
            ) from None
        self.url = _with_installed_driver(url)
        self.safe_url = url.render_as_string(hide_password=True)  # as the operator wrote it
        self.backend = self.url.get_backend_name()
        try:
            self.engine: Engine = sa.create_engine(
                self.url,
                pool_size=options.pool_size,
                max_overflow=options.max_overflow,
                pool_pre_ping=True,
                pool_timeout=max(options.connect_timeout, 1.0),
                connect_args=self._connect_args(),
            )
        except ImportError as exc:
            raise CheckError(f"source {name}: {_missing_driver(self.url, exc)}") from None
        except sa_exc.NoSuchModuleError:
            raise CheckError(f"source {name}: SQLAlchemy knows no database {self.url.drivername!r}") from None
        except (sa_exc.ArgumentError, TypeError) as exc:
            raise CheckError(f"source {name}: {self._scrub(str(exc))}") from None
        if self.backend == "sqlite":
            sa.event.listen(self.engine, "connect", _decode_per_value)
        self.cursors = Cursors(self)

    def _connect_args(self) -> dict[str, Any]:
        if "connect_timeout" in self.url.query:
            return {}
        seconds = max(1, math.ceil(self.options.connect_timeout))
        if self.backend == "postgresql" and self.url.get_driver_name() in ("psycopg", "psycopg2"):
            return {"connect_timeout": max(2, seconds)}  # libpq ignores values below 2
        if self.backend in _MYSQL and self.url.get_driver_name() == "pymysql":
            return {"connect_timeout": seconds}
        return {}

    # -- the Source contract -------------------------------------------------------------------
    def query(
        self, sql: str, params: Mapping[str, Any] | None = None, *, deadline: float = math.inf
    ) -> list[dict[str, Any]]:
        return list(self._query(sql, params, deadline, stream=False))

    def query_iter(
        self, sql: str, params: Mapping[str, Any] | None = None, *, deadline: float = math.inf
    ) -> Iterator[dict[str, Any]]:
        """Rows through a server-side cursor where the driver has one (psycopg, PyMySQL), so a
        caller that stops early leaves the rest on the server."""
        return self._query(sql, params, deadline, stream=True)

    def _query(
        self, sql: str, params: Mapping[str, Any] | None, deadline: float, stream: bool
    ) -> Iterator[dict[str, Any]]:
        with self.translated(deadline), self.transaction(deadline) as conn:
            if stream:
                conn = conn.execution_options(stream_results=True, max_row_buffer=1000)
            result = conn.execute(sa.text(sql), dict(params or {}))
            if not result.returns_rows:
                return
            yield from self.dicts(result)

    @contextmanager
    def translated(self, deadline: float) -> Iterator[None]:
        """Driver errors as the core understands them: down, timed out, or the operator's fix."""
        try:
            yield
        except sa_exc.DBAPIError as exc:
            raise self._translate(exc, deadline) from None
        except sa_exc.SQLAlchemyError as exc:  # e.g. a bound parameter without a value
            raise CheckError(f"query failed: {self._scrub(_first_line(exc))}") from None
        except UnicodeDecodeError:  # a driver decoding text: its message would quote the bytes
            raise CheckError(
                f"query failed: source {self.name} returned text that is not valid in the connection's encoding"
            ) from None

    def dicts(self, result: Any) -> Iterator[dict[str, Any]]:
        """A result's rows as the checks take them; a row with text that is not UTF-8 (SQLite's
        text, or any backend's binary text) is skipped and counted."""
        keys = list(result.keys())
        try:
            for row in result:
                values = [driver_value(v) for v in row]
                if any(v is UNDECODABLE for v in values):
                    self.count_rejected({BAD_ENCODING: 1})
                    continue
                yield dict(zip(keys, values, strict=True))
        finally:
            result.close()  # a caller that stopped early: the server-side cursor goes now

    def quote(self, name: str) -> str:
        """An identifier quoted for the backend (on SQLite in backquotes, never taken for a string)."""
        if self.backend == "sqlite":  # a double-quoted unknown name would read as a string constant
            return _backquoted(name)
        return str(self.engine.dialect.identifier_preparer.quote(name))

    def read(self, table: str, columns: Sequence[str], *, deadline: float = math.inf) -> list[dict[str, Any]]:
        try:
            return self.query(select_sql(self, table, columns, quote=self.quote), deadline=deadline)
        except CheckError as exc:
            raise self._explain_missing(table, columns) or exc from None

    def follows(self, table: str) -> Follow:
        return self.cursors.follows(table)

    def read_since(
        self, table: str, columns: Sequence[str], after: Any = None, *, deadline: float = math.inf
    ) -> tuple[Iterable[dict[str, Any]], Any]:
        """With a cursor column for the table, what changed since ``after``; else every row."""
        since = self.cursors.read_since(table, columns, after, deadline)
        return since if since is not None else (self.read(table, columns, deadline=deadline), None)

    def read_keys(
        self, table: str, columns: Sequence[str], keys: Sequence[Any], *, deadline: float = math.inf
    ) -> Iterable[dict[str, Any]]:
        plan = self.cursors.plan(table, deadline)
        if not keys or plan is None or isinstance(plan, str):  # no keys were handed out without a plan
            return []
        sql = f"{select_sql(self, table, columns, quote=self.quote, key=plan.key)} WHERE {plan.key} IN :keys"
        return self._keyed(
            sa.text(sql).bindparams(sa.bindparam("keys", expanding=True)), {"keys": list(keys)}, deadline
        )

    def read_open(
        self, table: str, columns: Sequence[str], column: str, *, deadline: float = math.inf
    ) -> Iterable[dict[str, Any]]:
        plan = self.cursors.plan(table, deadline)
        if plan is None or isinstance(plan, str):
            return super().read_open(table, columns, column, deadline=deadline)
        c = self.quote(self.column_map(table, [column])[column])
        as_text = sa.cast(sa.literal_column(c), sa.String()).compile(dialect=self.engine.dialect)
        sql = f"{select_sql(self, table, columns, quote=self.quote, key=plan.key)} WHERE {c} IS NULL OR {as_text} = ''"
        return self._keyed(sa.text(sql), {}, deadline)

    def _keyed(self, stmt: Any, params: dict[str, Any], deadline: float) -> Iterator[dict[str, Any]]:
        with self.translated(deadline), self.transaction(deadline) as conn:
            yield from self.dicts(conn.execute(stmt, params))

    def missing(self, table: str, columns: Sequence[str], *, deadline: float = math.inf) -> list[tuple[str, str]]:
        """The table's columns as every source checks them, then its cursor column."""
        found = super().missing(table, columns, deadline=deadline)
        return found or self.cursors.problems(table, deadline)

    def forget_columns(self, table: str | None = None) -> None:
        """After a failed read the schema may have changed: the cursors' plans are made again too."""
        super().forget_columns(table)
        if table is None:
            self.cursors.plans.clear()
        else:
            self.cursors.plans.pop(table, None)

    def read_latest(
        self, table: str, columns: Sequence[str], after: Any, want: Latest, *, deadline: float = math.inf
    ) -> tuple[list[tuple[Any, ...]], Iterator[dict[str, Any]], Any] | None:
        """A full read folded in the database where it can vouch for the rows
        (:mod:`gridwatch.sources.sqlfold`), with the cursor a full read leaves: the next run reads
        what was appended or changed since. A read since a cursor is not folded: its rows are few."""
        return None if after is not None else sqlfold.read_latest(self, table, columns, want, deadline)

    def unique(self, table: str, column: str) -> bool:
        """Whether the database declares ``column`` unique: a one-column primary key, unique
        constraint or unique index."""
        name, col = self.table_name(table), self.column_map(table, [column])[column]
        try:
            with self.translated(math.inf), self.transaction(math.inf) as conn:
                inspector = sa.inspect(conn)
                declared = key_columns(inspector, name)
        except (CheckError, SourceUnavailable, TimeoutError, sa_exc.SQLAlchemyError):
            return False
        return [col] in declared

    def columns(self, table: str, *, deadline: float = math.inf) -> frozenset[str]:
        src_table = self.table_name(table)
        try:
            with self.transaction(deadline) as conn:
                inspector = sa.inspect(conn)
                if not inspector.has_table(src_table):
                    return frozenset()
                actual = [c["name"] for c in inspector.get_columns(src_table)]
        except sa_exc.DBAPIError as exc:
            raise self._translate(exc, deadline) from None
        return self.standard_names(table, actual)

    def ping(self) -> None:
        self._connect().close()

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions and limits ---------------------------------------------------------------
    @contextmanager
    def transaction(self, deadline: float, snapshot: bool = False) -> Iterator[Connection]:
        """A read-only transaction bounded by ``deadline``; with ``snapshot`` every statement in
        it sees the same committed data (repeatable read), as a read in several statements needs."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"source {self.name}: the check's deadline passed before the query")
        conn = self._connect()
        try:
            if snapshot and self.backend != "sqlite":
                conn.execution_options(isolation_level="REPEATABLE READ")
            self._limit(conn, remaining)
            if snapshot and self.backend == "sqlite":
                raw: Any = conn.connection.dbapi_connection
                if not raw.in_transaction:
                    raw.execute("BEGIN")  # a snapshot from the first read on
            yield conn
        finally:
            try:
                if self.backend == "sqlite":
                    conn.connection.dbapi_connection.set_progress_handler(None, 0)  # type: ignore[union-attr]
                conn.rollback()  # read-only: there is never anything to commit
            finally:
                conn.close()

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except sa_exc.DBAPIError as exc:
            raise SourceUnavailable(
                f"cannot connect to {self.safe_url}: {self._scrub(_first_line(exc.orig))}"
            ) from None
        except sa_exc.TimeoutError:
            raise SourceUnavailable(
                f"no free connection to {self.safe_url}: all "
                f"{self.options.pool_size + self.options.max_overflow} connections are busy"
            ) from None
        except (TypeError, UnicodeError):  # e.g. psycopg hands a SQL_ASCII server's text over as bytes
            raise CheckError(
                f"cannot read the server's answers at {self.safe_url} as text: if the database's encoding is "
                "SQL_ASCII, add client_encoding=utf8 to the url"
            ) from None

    def _limit(self, conn: Connection, remaining: float) -> None:
        """Make the transaction read-only and bounded by the deadline, as the backend allows."""
        ms = None if remaining == math.inf else max(1, int(remaining * 1000))
        if self.backend == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            if ms is not None:
                conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(ms)})
        elif self.backend in _MYSQL:
            for statement in (
                f"SET SESSION max_execution_time = {ms or 0}",  # MySQL: milliseconds
                f"SET SESSION max_statement_time = {(ms or 0) / 1000}",  # MariaDB: seconds
                "SET TRANSACTION READ ONLY",  # applies to the next transaction: the query's
            ):
                with suppress(sa_exc.DBAPIError):  # not this flavour or version: best effort
                    conn.exec_driver_sql(statement)
        elif self.backend == "sqlite":
            raw: Any = conn.connection.dbapi_connection
            raw.execute("PRAGMA query_only = 1")
            if ms is not None:
                stop = time.monotonic() + remaining
                raw.set_progress_handler(lambda: int(time.monotonic() > stop), 10_000)

    # -- errors --------------------------------------------------------------------------------
    def _translate(self, exc: sa_exc.DBAPIError, deadline: float) -> Exception:
        """A driver error as the core understands it: down, timed out, or the operator's fix."""
        orig = exc.orig
        msg = self._scrub(_first_line(orig))
        if isinstance(orig, UnicodeError) or msg.startswith("Could not decode"):  # never the value itself
            return CheckError("query failed: a text value is not valid in the connection's encoding")
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        errno = orig.args[0] if orig is not None and orig.args else None
        errno = errno if isinstance(errno, int) else None
        if code == _PG_CANCELED or errno in _MY_TIMEOUT or msg == "interrupted":
            if time.monotonic() >= deadline - 0.05:
                return TimeoutError(f"query exceeded the check's timeout ({msg})")
            return SourceUnavailable(f"query cancelled by the server: {msg}")
        if exc.connection_invalidated:
            return SourceUnavailable(f"lost the connection to {self.safe_url}: {msg}")
        if isinstance(code, str) and code.startswith(_PG_UNAVAILABLE_PREFIXES):
            return SourceUnavailable(f"{self.safe_url}: {msg}")
        if errno in _MY_UNAVAILABLE:
            return SourceUnavailable(f"{self.safe_url}: {msg}")
        # PyMySQL calls every server error it has no class for an OperationalError (an unknown
        # column, a write refused in a read-only transaction): the numbers above say which are
        # the server's trouble, the rest are the operator's
        if isinstance(exc, sa_exc.OperationalError) and code not in _PG_UNDEFINED and self.backend not in _MYSQL:
            lowered = msg.lower()
            if self.backend != "sqlite" or any(
                s in lowered for s in ("unable to open", "locked", "disk i/o", "not a database")
            ):
                return SourceUnavailable(f"{self.safe_url}: {msg}")
        return CheckError(f"query failed: {msg}")

    def _explain_missing(self, table: str, columns: Sequence[str]) -> CheckError | None:
        """After a failed read: is the table or a column missing? Say which and how to map it."""
        src_table = self.table_name(table)
        try:
            with self.engine.connect() as conn:
                inspector = sa.inspect(conn)
                if not inspector.has_table(src_table):
                    return CheckError(
                        f"table {table!r} not found in source {self.name}"
                        + (f" (looked for {src_table!r})" if src_table != table else "")
                        + f": map it with tables.{table}"
                    )
                have = {c["name"] for c in inspector.get_columns(src_table)}
        except (sa_exc.SQLAlchemyError, TypeError, UnicodeError):  # the first error says it better
            return None
        for std, src in self.column_map(table, columns).items():
            if src not in have:
                return CheckError(
                    f"column {std!r} of table {table!r} not found in source {self.name}"
                    + (f" (looked for {src!r} in {src_table!r})" if src != std else "")
                    + f": map it with columns.{table}.{std}"
                )
        return None

    def _scrub(self, message: str) -> str:
        password = self.url.password
        if password:
            plain = str(password)
            for form in {plain, urllib.parse.quote(plain, safe=""), urllib.parse.quote_plus(plain)}:
                message = message.replace(form, "***")
        return message


def _backquoted(name: str) -> str:
    """A SQLite identifier that is never taken for a string (as ``"name"`` is when unknown)."""
    return "`" + name.replace("`", "``") + "`"


def _decode_per_value(dbapi_connection: Any, _record: Any) -> None:
    """SQLite connections decode text value by value (see :func:`gridwatch.sources.sqlite.decode_text`)."""
    dbapi_connection.text_factory = decode_text


def _with_installed_driver(url: URL) -> URL:
    """``mysql://`` means MySQLdb to SQLAlchemy, and ``postgresql://`` psycopg2 before 2.1; the
    extras install PyMySQL and psycopg 3."""
    if url.drivername in ("mysql", "mariadb") and importlib.util.find_spec("MySQLdb") is None:
        return url.set(drivername=f"{url.drivername}+pymysql")
    if url.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        return url.set(drivername="postgresql+psycopg")
    return url


def _missing_driver(url: URL, exc: ImportError) -> str:
    """What to install: the extra when it brings the URL's driver; else that driver, or the
    extra's driver named in the URL (an extra installing psycopg does not help ``+pg8000``)."""
    missing = f"the database driver for {url.drivername} is not installed ({exc.name or exc})"
    extra = _EXTRAS.get(url.get_backend_name())
    if extra is None:
        return missing
    driver = _EXTRA_DRIVERS[extra]
    if url.get_driver_name() == driver:
        return f"{missing}: pip install 'gridwatch[{extra}]'"
    return f"{missing}: install it, or write {url.get_backend_name()}+{driver}:// and pip install 'gridwatch[{extra}]'"


def _first_line(exc: BaseException | None) -> str:
    """The message without SQLAlchemy's ``(sqlalchemy.exc.X)`` prefix, SQL text or links."""
    text = str(exc).strip() if exc is not None else ""
    line = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"^\([\w.]+\)\s*", "", line)


@hookimpl
def register_source_types() -> list[type[Source]]:
    return [SqlSource]
