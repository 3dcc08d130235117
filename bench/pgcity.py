"""The bench's city in PostgreSQL: a private server (Debian's), the city loaded once, its CPU.

The server is the test suite's (``tests/components.py``: initdb as the ``postgres`` user when
root, trust on 127.0.0.1, durability off). Its cluster is kept under the bench's work
directory, so a city loaded once is reused: each city is a database named for the SQLite file
it was copied from and this loader, and each run works on a copy of it (``CREATE DATABASE …
TEMPLATE``), since the runs change it, dropped at the end.

The columns get the types a platform would use, not the demo's text: ``timestamp`` (without
time zone: local wall-clock time, as the standard schema's timestamps without an offset are)
for every ``*_at`` column, ``date`` for ``grids.since``, ``integer`` for the counts and flags,
``text`` for ids, codes and periods; primary keys on the ids, and the demo's secondary
indexes (a platform's lookups by grid, household and time). The second city (bench/second.py)
keeps its shape here too: ``integer`` ids and only its own indexes; its times, written with the
bench's offset, are the same local ``timestamp`` values. Then ``ANALYZE``, as a platform's
autovacuum would have done.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import second
from bench.probe import tree_ticks
from gridwatch.schema import INTEGER_COLUMNS
from gridwatch.tools import demo
from tests.components import PostgresServer, postgres_missing

BASE_DB = "bench"  # the server's own database: where the others are created from
RUN_DB = "run"
_SOCKET_PATH_MAX = 90  # the unix socket's path (directory + /.s.PGSQL.NNNNN) must stay below 108

_PRIMARY = {
    "grids": "grid_id",
    "households": "household_id",
    "visits": "visit_id",
    "patrols": "patrol_id",
    "incidents": "incident_id",
    "reports": "report_id",
}
_TEXT_IDS = ("grid_id", "worker_id")  # codes on the second city too
_INDEXES = (
    "CREATE INDEX households_grid ON households (grid_id)",
    "CREATE INDEX household_categories_household ON household_categories (household_id)",
    "CREATE INDEX visits_grid_time ON visits (grid_id, visited_at)",
    "CREATE INDEX visits_household_time ON visits (household_id, visited_at)",
    "CREATE INDEX patrols_grid_time ON patrols (grid_id, patrolled_at)",
    "CREATE INDEX incidents_grid ON incidents (grid_id)",
    "CREATE INDEX reports_grid_kind_period ON reports (grid_id, kind, period)",
)


def column_type(column: str, integer_ids: bool = False) -> str:
    if column in INTEGER_COLUMNS or (integer_ids and column.endswith("_id") and column not in _TEXT_IDS):
        return "integer"
    if column.endswith("_at"):
        return "timestamp"
    return "date" if column == "since" else "text"


def start(work: Path) -> PostgresServer:
    """The bench's server, its cluster kept in ``work/pg`` when the postgres user can reach it
    and the socket's path is short enough (else a throw-away one)."""
    absent = postgres_missing()
    if absent is not None:
        raise RuntimeError(absent)
    kept = work / "pg"
    usable = len(str(kept)) <= _SOCKET_PATH_MAX and (os.geteuid() != 0 or _reachable(kept.parent))
    server = PostgresServer(dbname=BASE_DB, directory=kept if usable else None, startup_timeout=120.0)
    return server.start()


def _reachable(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents))


def connect(server: PostgresServer, dbname: str) -> Any:
    import psycopg

    return psycopg.connect(server.dsn_for(dbname), autocommit=True)


def load(server: PostgresServer, city: Path, log: Callable[[str], None]) -> str:
    """The city's database on the server (loaded now unless it already is); returns its name.
    Cities of this kind (demo, second) loaded before from other files are dropped: each holds
    gigabytes."""
    made_by = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:6]
    kind = "second" if second.is_second(city) else "demo"
    name = f"city_{kind}_" + hashlib.sha256(f"{city.name}:{made_by}".encode()).hexdigest()[:12]
    with connect(server, BASE_DB) as conn:
        have = {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'city\\_%'")}
        kept = {h for h in have if h.startswith("city_") and not h.startswith(f"city_{kind}_")}  # the other city's
        for old in have - kept - {name}:
            conn.execute(f'DROP DATABASE "{old}"')
        if name in have:
            log(f"postgresql: reusing the loaded city ({name})")
            return name
        conn.execute(f'DROP DATABASE IF EXISTS "{name}_loading"')
        conn.execute(f'CREATE DATABASE "{name}_loading"')
    started = time.monotonic()
    log(f"postgresql: loading {city.name} (once; kept in the bench's cluster)")
    _copy(city, server, f"{name}_loading")
    with connect(server, BASE_DB) as conn:
        conn.execute(f'ALTER DATABASE "{name}_loading" RENAME TO "{name}"')
    log(f"postgresql: loaded in {time.monotonic() - started:.0f}s")
    return name


def _copy(city: Path, server: PostgresServer, dbname: str) -> None:
    other = second.is_second(city)
    src = sqlite3.connect(f"{city.resolve().as_uri()}?mode=ro", uri=True)
    try:
        with connect(server, dbname) as pg:
            for table, cols in demo.SCHEMA.items():
                defs = [
                    f"{c} {column_type(c, other)}" + (" PRIMARY KEY" if _PRIMARY.get(table) == c else "") for c in cols
                ]
                pg.execute(f"CREATE TABLE {table} ({', '.join(defs)})")
                names = ", ".join(cols)
                with pg.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in src.execute(f"SELECT {names} FROM {table}"):
                        copy.write_row(row)
            for sql in second.INDEXES if other else _INDEXES:
                pg.execute(sql)
            pg.execute("ANALYZE")
    finally:
        src.close()


def fresh_copy(server: PostgresServer, city_db: str) -> str:
    """A new copy of the loaded city for one run (the runs change it); returns its name."""
    with connect(server, BASE_DB) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{RUN_DB}"')
        conn.execute(f'CREATE DATABASE "{RUN_DB}" TEMPLATE "{city_db}"')
    return RUN_DB


def drop(server: PostgresServer, dbname: str) -> None:
    """Drop a run's copy once every client has left: it holds as much as the city."""
    with connect(server, BASE_DB) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')


def sizes(server: PostgresServer, dbname: str, tables: tuple[str, ...]) -> dict[str, int]:
    with connect(server, dbname) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def version(server: PostgresServer) -> str:
    with connect(server, BASE_DB) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]


def server_ticks(server: PostgresServer) -> Callable[[], int]:
    """The server's CPU so far, in clock ticks (:func:`bench.probe.tree_ticks` of the postmaster)."""
    postmaster = server.pid
    if postmaster is None:
        raise RuntimeError("the PostgreSQL server is not running")
    return lambda: tree_ticks(postmaster)
