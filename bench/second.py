"""The bench's second city: the demo's grid work, written the way another platform writes it.

A monitor that is fast only on data shaped like its own demo is not fast. This city holds the
demo city's rows (so the same rule-book situations arise) in another shape: every id is an
``INTEGER PRIMARY KEY`` (the rowid, the most common SQLite id, which has no index of its own),
every time carries an offset and microseconds, some with a ``T`` and some with a space
(``2026-11-20T14:03:42.163001+08:00``, ``2026-11-20 14:03:42.163001+08:00``), and the only
indexes are those a platform keeps for its own lookups: the primary keys and one per foreign
key, none covering a time. Everything is derived without randomness: the same demo city gives
the same second city.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path

from gridwatch.tools import demo

MARK = 0x67770002  # PRAGMA user_version of a second city (the floor and the changes ask it)
OFFSET = "+08:00"  # the bench's time zone, Asia/Shanghai, since 1991

_DDL = """
CREATE TABLE grids (grid_id TEXT PRIMARY KEY, name TEXT NOT NULL, community TEXT NOT NULL,
    street TEXT NOT NULL, zone TEXT, since TEXT);
CREATE TABLE households (household_id INTEGER PRIMARY KEY, grid_id TEXT NOT NULL, category TEXT);
CREATE TABLE household_categories (household_id INTEGER NOT NULL, category TEXT NOT NULL);
CREATE TABLE visits (visit_id INTEGER PRIMARY KEY, household_id INTEGER NOT NULL, grid_id TEXT NOT NULL,
    worker_id TEXT, visited_at TEXT NOT NULL);
CREATE TABLE patrols (patrol_id INTEGER PRIMARY KEY, grid_id TEXT NOT NULL, worker_id TEXT,
    patrolled_at TEXT NOT NULL, role TEXT);
CREATE TABLE incidents (incident_id INTEGER PRIMARY KEY, grid_id TEXT NOT NULL, category TEXT,
    severity TEXT NOT NULL, tier TEXT NOT NULL, reported_at TEXT NOT NULL, accepted_at TEXT,
    dispatched_at TEXT, resolved_at TEXT, closed_at TEXT, reopened_count INTEGER NOT NULL DEFAULT 0,
    extended INTEGER NOT NULL DEFAULT 0);
CREATE TABLE reports (report_id INTEGER PRIMARY KEY, grid_id TEXT NOT NULL, kind TEXT NOT NULL,
    period TEXT, submitted_at TEXT NOT NULL, flag TEXT);
"""
# what a platform indexes for its own screens: a grid's rows, a household's visits
_INDEXES = """
CREATE INDEX households_grid ON households (grid_id);
CREATE INDEX household_categories_household ON household_categories (household_id);
CREATE INDEX visits_household ON visits (household_id);
CREATE INDEX visits_grid ON visits (grid_id);
CREATE INDEX patrols_grid ON patrols (grid_id);
CREATE INDEX incidents_grid ON incidents (grid_id);
CREATE INDEX reports_grid ON reports (grid_id);
"""
INDEXES = tuple(ddl.strip() for ddl in _INDEXES.split(";") if ddl.strip())  # also in PostgreSQL (bench/pgcity.py)


_INCIDENT_TIMES = ("reported_at", "accepted_at", "dispatched_at", "resolved_at", "closed_at")


def stamp(local: str | None, n: int) -> str | None:
    """A demo time (local text to the second) as this platform writes it, with the microseconds
    and separator that row number ``n`` gets; what :func:`_stamp_sql` does in SQL."""
    if local is None:
        return None
    return f"{local[:10]}{'T' if n % 3 == 0 else ' '}{local[11:19]}.{n * 7919 % 1_000_000:06d}{OFFSET}"


def _stamp_sql(col: str, n: str) -> str:
    return (
        f"CASE WHEN {col} IS NULL THEN NULL ELSE substr({col}, 1, 10) || CASE WHEN {n} % 3 = 0 THEN 'T' ELSE ' ' END"
        f" || substr({col}, 12, 8) || printf('.%06d', {n} * 7919 % 1000000) || '{OFFSET}' END"
    )


def is_second(db: Path) -> bool:
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        mark = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return bool(mark == MARK)


def generate(path: Path, *, grids: int, days: int, seed: int, now: datetime) -> dict[str, int]:
    """Write the second city to ``path`` from a demo city of the same parameters."""
    source = path.with_name(f".{path.name}.demo.{os.getpid()}")
    demo.generate(source, grids=grids, seed=seed, now=now, days=days)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(f"PRAGMA user_version = {MARK}")
        conn.execute("ATTACH DATABASE ? AS d", (str(source),))
        conn.execute("BEGIN")
        for ddl in _DDL.split(";"):
            if ddl.strip():
                conn.execute(ddl)
        ts = _stamp_sql
        statements = {
            "grids": "INSERT INTO grids SELECT grid_id, name, community, street, zone, since FROM d.grids",
            "households": "INSERT INTO households SELECT rowid, grid_id, category FROM d.households ORDER BY rowid",
            "household_categories": """INSERT INTO household_categories SELECT h.rowid, c.category
                FROM d.household_categories c JOIN d.households h ON h.household_id = c.household_id""",
            "visits": f"""INSERT INTO visits SELECT v.rowid, h.rowid, v.grid_id, v.worker_id,
                {ts("v.visited_at", "v.rowid")}
                FROM d.visits v JOIN d.households h ON h.household_id = v.household_id ORDER BY v.rowid""",
            "patrols": f"""INSERT INTO patrols SELECT rowid, grid_id, worker_id, {ts("patrolled_at", "rowid")}, role
                FROM d.patrols ORDER BY rowid""",
            "incidents": f"""INSERT INTO incidents SELECT rowid, grid_id, category, severity, tier,
                {", ".join(ts(c, "rowid") for c in _INCIDENT_TIMES)},
                reopened_count, extended FROM d.incidents ORDER BY rowid""",
            "reports": f"""INSERT INTO reports SELECT rowid, grid_id, kind, period, {ts("submitted_at", "rowid")}, flag
                FROM d.reports ORDER BY rowid""",
        }
        for table, sql in statements.items():
            counts[table] = conn.execute(sql).rowcount
        for ddl in INDEXES:
            conn.execute(ddl)
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE d")
        conn.execute("ANALYZE")
        conn.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        source.unlink(missing_ok=True)
    return counts
