"""The ``ingest`` source: rows pushed to gridwatch over HTTP, kept in its own SQLite file.

For systems that cannot be polled: they ``POST /api/v1/ingest/{table}`` rows of the standard
schema with ``Authorization: Bearer <token>``. The route calls :meth:`IngestSource.authorized`
first (nothing is stored on a 401), then :meth:`IngestSource.ingest`, which raises
ValueError (a 400 for the client) for anything that is not a list of standard rows, or
SourceUnavailable when the file cannot be written. A request is stored whole or not at all;
a row whose id was pushed before replaces the old row entirely (a column it leaves out
becomes NULL). Checks read the file like any ``sqlite`` source, following each table by rowid:
a replaced row is deleted and stored anew, after every other row, so the next run sees a row
deleted and starts again from a full read (an update in place would keep its rowid, behind the
cursor, unseen until the next resync). A row pushed again unchanged is left as it is.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import sqlite_utils
from pydantic import Field, field_validator, model_validator

from gridwatch.api import Source, SourceUnavailable
from gridwatch.hookspecs import hookimpl
from gridwatch.schema import INTEGER_COLUMNS, STANDARD_SCHEMA
from gridwatch.sources.sqlite import SqliteSource
from gridwatch.tokens import bearer_matches, digest

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_INT64 = (-(2**63), 2**63 - 1)


class IngestSource(SqliteSource):
    """Writes through one lock-guarded connection; reads open the file read-only per query."""

    type = "ingest"

    class Options(SqliteSource.Options):
        path: str = "ingest.db"
        """the SQLite file; a relative path is under the state directory"""
        token: str | None = None
        """the bearer token clients send, usually ``${GRIDWATCH_INGEST_TOKEN}``"""
        token_sha256: str | None = None
        """instead of ``token``: its SHA-256 as hex, so the config holds no secret"""
        max_rows: int = Field(10_000, ge=1)
        """the most rows one request may carry"""

        @field_validator("token")
        @classmethod
        def _token_not_empty(cls, v: str | None) -> str | None:
            if v is not None and not v.strip():
                raise ValueError("token is empty (is its environment variable set to nothing?)")
            return v

        @field_validator("token_sha256")
        @classmethod
        def _hex_digest(cls, v: str | None) -> str | None:
            if v is not None and not _SHA256_HEX.match(v.strip()):
                raise ValueError("token_sha256 must be 64 hex digits (sha256sum of the token)")
            return v.strip().lower() if v is not None else None

        @model_validator(mode="after")
        def _exactly_one_token(self) -> IngestSource.Options:
            if (self.token is None) == (self.token_sha256 is None):
                raise ValueError("set exactly one of token and token_sha256")
            return self

    options: IngestSource.Options

    def __init__(self, name: str, options: Options, env: Any) -> None:
        super().__init__(name, options, env)
        path = Path(options.path).expanduser()
        self.path = path if path.is_absolute() else Path(env.state_dir) / path
        if options.token_sha256 is not None:
            self._digest = options.token_sha256.lower()
        else:
            assert options.token is not None
            self._digest = digest(options.token)
        self._lock = threading.Lock()
        self._db: sqlite_utils.Database | None = None

    accepts_pushes = True

    # -- receiving -----------------------------------------------------------------------------
    def authorized(self, authorization_header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the configured bearer token."""
        return bearer_matches(authorization_header, self._digest)

    def ingest(self, table: str, payload: object) -> int:
        """Store a JSON object or a list of them as rows of ``table``; return how many.

        All or nothing: a ValueError, naming the row and the key, leaves the file unchanged.
        """
        rows = self.validate(table, payload)
        if not rows:
            return 0
        id_column = STANDARD_SCHEMA[table][0]
        with self._lock:
            try:
                db = self._writer()
                with db.atomic():
                    _store(db.conn, table, id_column, rows)
            except sqlite3.Error as exc:
                raise SourceUnavailable(f"cannot store ingested rows: {exc}") from None
        return len(rows)

    def validate(self, table: str, payload: object) -> list[dict[str, Any]]:
        """The payload as complete rows of ``table``, or a ValueError saying what is wrong."""
        if table not in STANDARD_SCHEMA:
            raise ValueError(f"unknown table {table!r}: expected one of {', '.join(STANDARD_SCHEMA)}")
        if isinstance(payload, dict):
            items: list[Any] = [payload]
        elif isinstance(payload, list):
            items = payload
        else:
            raise ValueError("the body must be a JSON object or a list of JSON objects")
        if len(items) > self.options.max_rows:
            raise ValueError(f"{len(items)} rows in one request; the limit is {self.options.max_rows}")
        columns = STANDARD_SCHEMA[table]
        id_column = columns[0]
        rows = []
        for i, item in enumerate(items):
            where = f"row {i}" if isinstance(payload, list) else "the row"
            if not isinstance(item, dict):
                raise ValueError(f"{where} is not a JSON object")
            unknown = [str(k) for k in item if k not in columns]
            if unknown:
                raise ValueError(
                    f"{where}: unknown column(s) {', '.join(unknown)} for table {table} "
                    f"(its columns: {', '.join(columns)})"
                )
            for key, value in item.items():
                if not _scalar(value):
                    raise ValueError(f"{where}: {key} must be a string, a finite number, true/false or null")
                if isinstance(value, str) and not _encodable(value):
                    raise ValueError(f"{where}: {key} is not valid Unicode text (a lone surrogate escape)")
            if item.get(id_column) is None or item.get(id_column) == "":
                raise ValueError(f"{where}: {id_column} is required")
            rows.append({c: _stored(c, item.get(c)) for c in columns})
        return rows

    # -- storage -------------------------------------------------------------------------------
    def _writer(self) -> sqlite_utils.Database:
        """The writing connection, and the standard tables; call with the lock held."""
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=self.options.busy_timeout)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                db = sqlite_utils.Database(conn)
                for table, columns in STANDARD_SCHEMA.items():
                    db.table(table).create(
                        {c: int if c in INTEGER_COLUMNS else str for c in columns},
                        pk=columns[0],
                        if_not_exists=True,
                    )
            except BaseException:
                conn.close()
                raise
            self._db = db
        return self._db

    def connect(self, deadline: float = math.inf) -> sqlite3.Connection:
        if self._db is None:  # created once; then reads never wait for a write in progress
            with self._lock:
                try:
                    self._writer()  # so a source nobody pushed to yet reads as empty, not missing
                except (OSError, sqlite3.Error) as exc:
                    raise SourceUnavailable(f"cannot open {self.path.name}: {exc}") from None
        return super().connect(deadline)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.conn.close()
                self._db = None


def _store(conn: sqlite3.Connection, table: str, id_column: str, rows: list[dict[str, Any]]) -> None:
    """Store ``rows`` (the last one per id counts): new ids are appended; a stored id whose row
    changed is deleted and appended anew, with a rowid above every rowid there was, so no reader's
    cursor can pass it by; an unchanged one is left alone (no needless full read)."""
    columns = STANDARD_SCHEMA[table]
    latest = {row[id_column]: tuple(row[c] for c in columns) for row in rows}
    t, key = _quote(table), _quote(id_column)
    stored: dict[Any, tuple[Any, ...]] = {}
    ids = list(latest)
    for i in range(0, len(ids), 500):  # bound one by one: JSON would cut an id at a NUL character
        part = ids[i : i + 500]
        found = conn.execute(
            f"SELECT {', '.join(map(_quote, columns))} FROM {t} WHERE {key} IN ({', '.join('?' * len(part))})", part
        )
        stored.update((r[0], tuple(r)) for r in found)
    fresh = [values for rid, values in latest.items() if stored.get(rid) != values]
    if not fresh:
        return
    top = conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {t}").fetchone()[0]
    conn.executemany(f"DELETE FROM {t} WHERE {key} = ?", [(v[0],) for v in fresh if v[0] in stored])
    names = ", ".join(["rowid", *map(_quote, columns)])
    conn.executemany(
        f"INSERT INTO {t} ({names}) VALUES ({', '.join('?' * (len(columns) + 1))})",
        [(top + i, *values) for i, values in enumerate(fresh, 1)],
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _stored(column: str, value: object) -> object:
    """A number or true/false in a text column is kept as the JSON text the client sent: SQLite
    would turn 0.30000000000000004 into '0.3' (15 digits), making two ids one, and true into '1'."""
    if column in INTEGER_COLUMNS or value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _scalar(value: object) -> bool:
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    if isinstance(value, float):
        return math.isfinite(value)
    return False


@hookimpl
def register_source_types() -> list[type[Source]]:
    return [IngestSource]
