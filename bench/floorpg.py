"""The plain-SQL floor in PostgreSQL's dialect: bench/floor.py's queries on the city as
bench/pgcity.py loads it (``timestamp`` and ``date`` columns, the same indexes).

Same figures, same rule-book details handed in as parameters (the same text as for SQLite,
cast where a time or a date is meant, so query-exporter's config can carry them as strings)
and the same calendar table of working-day deadlines, written into the run's copy. Rows
visited come from ``EXPLAIN (ANALYZE)``: every row a scan of a table looked at (returned or
filtered out), over all its loops.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

from bench.floor import _KINDS, _PERIODIC, _RED, CALENDAR_TABLE, QUERIES, Key, Query, params
from bench.probe import TICK
from gridwatch.calendar import WorkCalendar, incident_deadline

NOW, START = "CAST(:now AS timestamp)", "CAST(:start AS timestamp)"
TODAY, TODAY_AT = "CAST(:today AS date)", "CAST(:today AS timestamp)"

_OK = f"""i.reported_at <= {NOW} AND (i.accepted_at IS NULL OR i.accepted_at <= {NOW})
    AND (i.dispatched_at IS NULL OR i.dispatched_at <= {NOW}) AND (i.resolved_at IS NULL OR i.resolved_at <= {NOW})
    AND (i.closed_at IS NULL OR i.closed_at <= {NOW})
    AND i.severity IN ('normal', 'major') AND i.tier IN ('community', 'subdistrict', 'department', 'special')"""
_DEADLINE = f"""(CASE i.tier
    WHEN 'community' THEN i.reported_at + interval '1 day' * CASE WHEN i.extended <> 0 THEN 2 ELSE 1 END
    WHEN 'subdistrict' THEN i.reported_at + interval '2 days' * CASE WHEN i.extended <> 0 THEN 2 ELSE 1 END
    WHEN 'department' THEN i.reported_at + interval '3 days' * CASE WHEN i.extended <> 0 THEN 2 ELSE 1 END
    ELSE (SELECT CASE WHEN i.extended <> 0 THEN d.due_extended ELSE d.due END
          FROM {CALENDAR_TABLE} d WHERE d.day = CAST(i.reported_at AS date)) END)"""
_SEEN = f"""EXISTS (SELECT 1 FROM visits v WHERE v.household_id = {{h}}.household_id
                       AND v.visited_at BETWEEN {START} AND {NOW})"""
_KEY = """SELECT h.grid_id AS grid, h.household_id AS household_id, trim(h.category) AS category
    FROM households h WHERE trim(coalesce(h.category, '')) <> ''
    UNION SELECT o.grid_id, o.household_id, trim(c.category)
    FROM household_categories c JOIN households o ON o.household_id = c.household_id
    WHERE trim(coalesce(c.category, '')) <> ''"""
_WORKER = "lower(trim(coalesce(p.role, ''))) IN ('', 'worker')"
_LAST_PATROL = f"""(SELECT p.patrolled_at FROM patrols p WHERE p.grid_id = g.grid_id AND p.patrolled_at <= {NOW}
    AND {_WORKER} ORDER BY p.patrolled_at DESC LIMIT 1)"""
_START = "coalesce(g.since, CAST(:history AS date))"
_NO_PERIOD = "({r}.period IS NULL OR {r}.period = '')"
_P_FIRST, _P_LAST = "CAST(nullif(:p_first, '') AS date)", "CAST(nullif(:p_last, '') AS date)"
_EPOCH = "CAST(extract(epoch FROM {}) AS float8)"  # to the microsecond: the second city has fractions

_SQL: dict[str, str] = {
    "visits_coverage": f"""SELECT grid, n AS gridwatch_grid_households,
       n - seen AS gridwatch_visit_unvisited_households, CAST(seen AS float8) / n AS gridwatch_visit_coverage_ratio
FROM (SELECT h.grid_id AS grid, count(*) AS n, sum(CASE WHEN {_SEEN.format(h="h")} THEN 1 ELSE 0 END) AS seen
      FROM households h GROUP BY h.grid_id) t""",
    "visits_key_overdue": f"""WITH k AS MATERIALIZED ({_KEY})
SELECT grid, category, sum(CASE WHEN {_SEEN.format(h="k")} THEN 0 ELSE 1 END) AS gridwatch_visit_key_households_overdue
FROM k GROUP BY grid, category""",
    "patrols_last": f"""WITH l AS MATERIALIZED (SELECT g.grid_id AS grid, {_LAST_PATROL} AS last FROM grids g)
SELECT grid, {_EPOCH.format("last")} - :tz_offset AS gridwatch_patrol_last_timestamp_seconds
FROM l WHERE last IS NOT NULL""",
    "patrols_overdue": f"""WITH l AS MATERIALIZED (
    SELECT g.grid_id AS grid, lower(trim(g.zone)) AS zone, g.since AS since, {_LAST_PATROL} AS last FROM grids g)
SELECT grid, CASE
    WHEN (since IS NULL OR since <= CAST(:passed AS date))
         AND (last IS NULL OR last < CAST(:daily_deadline AS timestamp)) THEN 1
    WHEN :working = 1 AND zone IN ('red', 'yellow', 'blue') AND (since IS NULL OR since <= {TODAY})
         AND {_EPOCH.format(f"{NOW} - greatest(last, CAST(:start_today AS timestamp))")}
             > CASE zone WHEN 'red' THEN 3600 WHEN 'yellow' THEN 7200 ELSE 14400 END THEN 1
    ELSE 0 END AS gridwatch_patrol_overdue
FROM l""",
    "incidents_open": f"""SELECT i.grid_id AS grid, i.severity AS severity,
       CASE WHEN i.resolved_at IS NOT NULL THEN 'resolved' WHEN i.dispatched_at IS NOT NULL THEN 'dispatched'
            WHEN i.accepted_at IS NOT NULL THEN 'accepted' ELSE 'reported' END AS stage,
       count(*) AS gridwatch_incidents_open
FROM incidents i WHERE i.closed_at IS NULL AND {_OK}
GROUP BY 1, 2, 3""",
    "incidents_overdue": f"""SELECT g.grid_id AS grid, coalesce(t.n, 0) AS gridwatch_incidents_overdue
FROM grids g LEFT JOIN (
    SELECT i.grid_id AS grid_id, count(*) AS n FROM incidents i
    WHERE i.closed_at IS NULL AND {_OK} AND {_DEADLINE} < {NOW}
    GROUP BY i.grid_id) t ON t.grid_id = g.grid_id""",
    "incidents_oldest": f"""SELECT i.grid_id AS grid,
       {_EPOCH.format(f"{NOW} - min(i.reported_at)")} AS gridwatch_incident_oldest_open_age_seconds
FROM incidents i WHERE i.closed_at IS NULL AND {_OK}
GROUP BY i.grid_id""",
    "incidents_due": f"""WITH c AS MATERIALIZED (
    SELECT i.grid_id AS grid, i.closed_at IS NOT NULL AS closed, i.closed_at AS closed_at,
           i.extended <> 0 AS ext, {_DEADLINE} AS deadline
    FROM incidents i WHERE {_OK})
SELECT grid, avg(CASE WHEN closed THEN 1 ELSE 0 END) AS gridwatch_incidents_closure_ratio,
       avg(CASE WHEN closed AND closed_at <= deadline THEN 1 ELSE 0 END) AS gridwatch_incidents_on_time_closure_ratio,
       avg(CASE WHEN ext THEN 1 ELSE 0 END) AS gridwatch_incidents_extension_ratio
FROM c WHERE deadline BETWEEN {START} AND {NOW}
GROUP BY grid""",
    "incidents_rework": f"""SELECT i.grid_id AS grid,
       avg(CASE WHEN i.reopened_count > 0 THEN 1 ELSE 0 END) AS gridwatch_incidents_rework_ratio
FROM incidents i WHERE {_OK} AND i.closed_at IS NOT NULL AND i.closed_at >= {START}
GROUP BY i.grid_id""",
    "reports_daily_status": f"""SELECT g.grid_id AS grid, CASE
    WHEN EXISTS (SELECT 1 FROM reports r WHERE r.grid_id = g.grid_id AND r.kind = 'daily'
                 AND (r.period = :today OR {_NO_PERIOD.format(r="r")} AND r.submitted_at >= {TODAY_AT})
                 AND r.flag IN {_RED} AND r.submitted_at <= {NOW})
      OR EXISTS (SELECT 1 FROM reports q WHERE q.grid_id = g.grid_id AND q.kind IN {_PERIODIC}
                 AND q.flag IN {_RED} AND q.submitted_at BETWEEN {TODAY_AT} AND {NOW}) THEN 3
    WHEN EXISTS (SELECT 1 FROM reports s WHERE s.grid_id = g.grid_id AND s.kind = 'daily'
                 AND (s.period = :today OR {_NO_PERIOD.format(r="s")} AND s.submitted_at >= {TODAY_AT})
                 AND s.submitted_at <= CAST(:today_due AS timestamp) AND s.submitted_at <= {NOW}) THEN 0
    WHEN :before_cutoff = 1 THEN 1 ELSE 2 END AS gridwatch_report_daily_status
FROM grids g WHERE {_START} <= {TODAY}""",
    "reports_on_time": f"""WITH s AS MATERIALIZED (
    SELECT g.grid_id AS grid, greatest({_P_FIRST}, {_START}) AS first FROM grids g WHERE :n_expected > 0)
SELECT grid, 'daily' AS kind,
       CAST((SELECT count(DISTINCT coalesce(nullif(r.period, ''), to_char(r.submitted_at, 'YYYY-MM-DD')))
        FROM reports r
        WHERE r.grid_id = s.grid AND r.kind = 'daily' AND r.submitted_at <= {NOW}
          AND (r.period BETWEEN to_char(s.first, 'YYYY-MM-DD') AND :p_last
               AND r.submitted_at <= CAST(r.period || :cutoff AS timestamp)
               OR {_NO_PERIOD.format(r="r")} AND CAST(r.submitted_at AS date) BETWEEN s.first AND {_P_LAST}
                  AND r.submitted_at <= CAST(r.submitted_at AS date) + CAST(:cutoff AS time))) AS float8)
       / ({_P_LAST} - first + 1) AS gridwatch_report_on_time_ratio
FROM s WHERE first <= {_P_LAST}""",
}

QUERIES_PG: tuple[Query, ...] = tuple(
    Query(q.name, _SQL[q.name], q.metrics, q.labels, {a: t for a, t in q.tables.items() if t != CALENDAR_TABLE})
    for q in QUERIES
)
_SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")


def psycopg_sql(sql: str) -> str:
    """``:name`` parameters (SQLAlchemy's, query-exporter's) as psycopg's ``%(name)s``."""
    return re.sub(r"(?<![:\w]):(\w+)(?!:)", r"%(\1)s", sql)


def history_start(conn: Any) -> date | None:
    """As :func:`bench.floor.history_start`, on PostgreSQL."""
    sql = f"""SELECT min(r.submitted_at) FROM reports r
        WHERE r.kind IN {_KINDS} AND r.grid_id IN (SELECT grid_id FROM grids)"""
    first = conn.execute(sql).fetchone()[0]
    return None if first is None else first.date()


def pg_params(conn: Any, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    return params(now, tz, history_start(conn))


def install_calendar(conn: Any, tz: ZoneInfo, special: str = "5wd") -> int:
    """As :func:`bench.floor.install_calendar`, with ``date`` and ``timestamp`` columns."""
    cal = WorkCalendar()
    conn.execute(f"DROP TABLE IF EXISTS {CALENDAR_TABLE}")
    conn.execute(
        f"CREATE TABLE {CALENDAR_TABLE} (day date PRIMARY KEY, due timestamp NOT NULL, due_extended timestamp)"
    )
    first, last = conn.execute("SELECT min(reported_at)::date, max(reported_at)::date FROM incidents").fetchone()
    rows = []
    if first is not None:
        day, end = first, last + timedelta(days=7)
        while day <= end:
            noon = datetime.combine(day, clock(12), tzinfo=tz)
            due, ext = (incident_deadline(noon, special, cal, e).replace(tzinfo=None) for e in (False, True))
            rows.append((day, due, ext))
            day += timedelta(days=1)
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {CALENDAR_TABLE} VALUES (%s, %s, %s)", rows)
    conn.execute(f"ANALYZE {CALENDAR_TABLE}")
    return len(rows)


def run(
    conn: Any, now: datetime, tz: ZoneInfo, server_ticks: Callable[[], int]
) -> tuple[dict[Key, float], float, float]:
    """Every query once as of ``now``: ({(metric, labels): value}, wall seconds, the server's
    CPU seconds meanwhile)."""
    p = pg_params(conn, now, tz)
    values: dict[Key, float] = {}
    ticks, wall = server_ticks(), time.perf_counter()
    results = [(q, conn.execute(psycopg_sql(q.sql), p).fetchall()) for q in QUERIES_PG]
    wall, ticks = time.perf_counter() - wall, server_ticks() - ticks
    for q, rows in results:
        n = len(q.labels)
        for row in rows:
            labels = tuple(sorted(zip(q.labels, (str(v) for v in row[:n]), strict=True)))
            for metric, value in zip(q.metrics, row[n:], strict=True):
                values[(metric, labels)] = float(value)
    return values, wall, ticks * TICK


def rows_visited(conn: Any, now: datetime, tz: ZoneInfo) -> tuple[int, dict[str, int]]:
    """Rows the scans of each query visit, from ``EXPLAIN (ANALYZE, FORMAT JSON)``: returned
    plus removed by a filter, times the node's loops. Returns (total, per query)."""
    p = pg_params(conn, now, tz)
    per: dict[str, int] = {}
    for q in QUERIES_PG:
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + psycopg_sql(q.sql), p).fetchone()[0]
        per[q.name] = _visited(plan[0]["Plan"])
    return sum(per.values()), per


def _visited(node: Mapping[str, Any]) -> int:
    n = 0
    if node.get("Node Type") in _SCANS:
        seen = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        seen += node.get("Rows Removed by Index Recheck", 0)
        n += round(seen * node.get("Actual Loops", 1))
    return n + sum(_visited(child) for child in node.get("Plans", ()))
