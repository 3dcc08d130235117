"""A city in a server database, as a platform keeps it, and the samples gridwatch gives on it.

The same city is read from SQLite and from PostgreSQL or MariaDB; the samples must not differ.
(It can be copied into another SQLite file too, to be read through the ``sql`` source.)
The tables are copied from a SQLite file (the demo city, or one a test writes) through
SQLAlchemy, with the column types a platform on that database would use: a surrogate
auto-increment ``id`` primary key on every table (what a platform's ORM adds, and what a cursor
can follow), real timestamp and date columns (or text, as some platforms keep them), integers,
and text in the database's encoding (utf8mb4 on MariaDB, where ``TEXT`` cannot be indexed whole,
hence ``VARCHAR``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gridwatch.schema import INTEGER_COLUMNS

NOW = "2026-10-13T20:30:00+08:00"  # the National Day cases are inside every window
CHECK_TYPES = ("visits", "patrols", "incidents", "reports")

# per dialect: the surrogate key, and the types of text and integers
_ID = {
    "postgresql": "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "mysql": "id INT AUTO_INCREMENT PRIMARY KEY",
    "sqlite": "id INTEGER PRIMARY KEY",
}
_TEXT = {"postgresql": "TEXT", "mysql": "VARCHAR(191)", "sqlite": "TEXT"}
_TIMESTAMP = {"postgresql": "TIMESTAMP", "mysql": "DATETIME(6)", "sqlite": "TEXT"}


def column_type(dialect: str, column: str, timestamps: str | None = None) -> str:
    """The type a platform on ``dialect`` gives a standard column; ``timestamps`` overrides the
    dialect's timestamp type (``"TEXT"`` keeps them as text)."""
    if column in INTEGER_COLUMNS:
        return "INTEGER"
    if column.endswith("_at"):
        stamp = timestamps or _TIMESTAMP[dialect]
        return _TEXT[dialect] if stamp == "TEXT" else stamp
    if column == "since" and timestamps != "TEXT":
        return "DATE"
    return _TEXT[dialect]


def create_table(conn: sa.Connection, table: str, columns: list[str], timestamps: str | None = None) -> None:
    """``CREATE TABLE`` with the surrogate ``id`` first, then ``columns`` typed for the dialect."""
    dialect = conn.dialect.name
    typed = ", ".join(f"{c} {column_type(dialect, c, timestamps)}" for c in columns)
    conn.exec_driver_sql(f"CREATE TABLE {table} ({_ID[dialect]}, {typed})")


def copy_city(sqlite_path: Path, url: str, *, timestamps: str | None = None) -> None:
    """Copy every table of the SQLite file into the (empty) database at ``url``."""
    engine = sa.create_engine(url)
    try:
        with contextlib.closing(sqlite3.connect(sqlite_path)) as src, engine.begin() as conn:
            tables = [t for (t,) in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                columns = [c[1] for c in src.execute(f"PRAGMA table_info({table})")]
                create_table(conn, table, columns, timestamps)
                rows = src.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
                if rows:
                    values = ", ".join(f":{c}" for c in columns)
                    insert = sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})")
                    conn.execute(insert, [dict(zip(columns, row, strict=True)) for row in rows])
    finally:
        engine.dispose()


def once(directory: Path, name: str, source: str, now: str = NOW, checks: tuple[str, ...] = CHECK_TYPES) -> Any:
    """``gridwatch once --json`` on a city whose grids and tables come from ``source`` (the TOML
    body of ``[sources.city]``), as of ``now``."""
    body = "".join(f'[[checks]]\nname = "{t}"\ntype = "{t}"\nsource = "city"\ntimeout = "60s"\n' for t in checks)
    cfg = directory / f"{name}.toml"
    cfg.write_text(
        f'[state]\npath = "{name}-state.db"\n[grids]\nsource = "city"\n[sources.city]\n{source}\n{body}',
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "gridwatch", "once", "-c", str(cfg), "--json", "--now", now],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def sqlite_source(path: str) -> str:
    return f'type = "sqlite"\npath = "{path}"'


def sql_source(url: str) -> str:
    return f'type = "sql"\nurl = "{url}"'


def assert_same_answers(got: Any, expected: Any) -> None:
    """The same samples (in any order), the same grids and no errors."""

    def key(s: dict[str, Any]) -> tuple[Any, ...]:
        return s["check"], s["metric"], sorted(s["labels"].items())

    assert sorted(got["samples"], key=key) == sorted(expected["samples"], key=key)
    assert got["grids"] == expected["grids"]
    assert got["errors"] == expected["errors"] == []
