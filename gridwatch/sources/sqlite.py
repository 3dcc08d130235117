"""The ``sqlite`` source: a read-only connection to a SQLite file."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gridwatch.api import CheckError, Source, SourceUnavailable, TableOptions
from gridwatch.durations import Duration
from gridwatch.hookspecs import hookimpl
from gridwatch.sql import select_sql

_UNAVAILABLE = (
    "unable to open",
    "database is locked",
    "disk i/o error",
    "no such file",
    "not a database",
)


class SqliteSource(Source):
    """Opens the file read-only per query, so a replaced file is picked up and never written."""

    type = "sqlite"

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

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None, *, deadline: float = math.inf
    ) -> list[dict[str, Any]]:
        return list(self._rows(sql, params, deadline))

    def read(self, table: str, columns: Sequence[str], *, deadline: float = math.inf) -> Iterator[dict[str, Any]]:
        """Streams: a table of millions of rows never sits in memory whole."""
        return self._rows(select_sql(self, table, columns, quote=_quote), None, deadline)

    def _rows(self, sql: str, params: Mapping[str, Any] | None, deadline: float) -> Iterator[dict[str, Any]]:
        conn = self.connect(deadline)
        try:
            cur = conn.execute(sql, dict(params or {}))
            cols = [d[0] for d in cur.description or ()]
            while batch := cur.fetchmany(5000):
                for row in batch:
                    yield dict(zip(cols, row, strict=True))
        except sqlite3.OperationalError as exc:
            msg = str(exc)
            if msg == "interrupted":
                raise TimeoutError("query exceeded the check's timeout") from None
            if any(s in msg.lower() for s in _UNAVAILABLE):
                raise SourceUnavailable(msg) from None
            raise CheckError(f"query failed: {msg}") from None
        except sqlite3.DatabaseError as exc:
            raise SourceUnavailable(str(exc)) from None
        finally:
            conn.close()

    def ping(self) -> None:
        self.query("SELECT 1")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@hookimpl
def register_source_types() -> list[type[Source]]:
    return [SqliteSource]
