"""The plain-SQL floor: every figure of the four domain checks as hand-written SQLite queries.

What a careful person would write to get the same per-grid numbers straight from the source
database, using its indexes: the least work any monitor of that database can do in one full
evaluation. The same queries are query-exporter's configuration (bench/qe.py), so the peer
gets the best SQL there is, and their answers check gridwatch's.

Rule-book details plain SQL cannot express are handed in as parameters computed in Python
(the evaluation instant as local text, the patrol windows, the expected report periods, the
date the reports' history starts), and the working-day deadlines of ``special`` cases come
from a calendar table the bench writes into its copy of the database
(``bench_special_deadlines``), as a data warehouse would keep one. The queries read the
standard schema's optional parts the demo city writes (``grids.since``, ``patrols.role``,
``household_categories``). Known gaps, none of which the demo city exercises: a grid without
households gets no household figures here, and a household of an unknown grid is counted;
the report columns ``kind``, ``flag`` and ``period`` are compared as written (no trimming or
case folding: they lead the index) and timestamps as the demo writes them (local text with a
space); on the second city (bench/second.py) each time is made such text first (:func:`queries`).
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench import second
from gridwatch.calendar import WorkCalendar, expected_periods, incident_deadline

WINDOW = timedelta(days=30)  # the rule book's default for coverage, key households, KPIs, reports
CUTOFF = clock(20, 0)
WORK_START, WORK_END = clock(7, 15), clock(20, 15)
_FMT = "%Y-%m-%d %H:%M:%S"  # the standard schema's local-time text
CALENDAR_TABLE = "bench_special_deadlines"

Key = tuple[str, tuple[tuple[str, str], ...]]  # (metric, sorted label pairs)


@dataclass(frozen=True)
class Query:
    """One query: value columns named like gridwatch's metrics, label columns, and for the
    rows-visited count the table behind each alias and what a SEARCH of an alias visits."""

    name: str
    sql: str
    metrics: tuple[str, ...]
    labels: tuple[str, ...]
    tables: Mapping[str, str]
    searched: Mapping[str, str] = field(default_factory=dict)  # alias -> SQL counting the rows it visits


_OK = """i.reported_at <= :now AND coalesce(i.accepted_at, '') <= :now AND coalesce(i.dispatched_at, '') <= :now
    AND coalesce(i.resolved_at, '') <= :now AND coalesce(i.closed_at, '') <= :now
    AND i.severity IN ('normal', 'major') AND i.tier IN ('community', 'subdistrict', 'department', 'special')"""

# the fraction of a second a time has (the second city's), kept where SQLite's date functions drop it
_FRACTION = "substr(i.reported_at, 20)"
_SECONDS = "coalesce(CAST(nullif(substr({t}, 20), '') AS REAL), 0)"
# "Nd" is N x 24 h after the report, "Nwd" 24:00 of the N-th working day after its date; an
# approved extension doubles N (the rule book's default limits)
_DEADLINE = f"""(CASE i.tier
    WHEN 'community' THEN datetime(i.reported_at, printf('+%d days', 1 * (1 + (i.extended <> 0)))) || {_FRACTION}
    WHEN 'subdistrict' THEN datetime(i.reported_at, printf('+%d days', 2 * (1 + (i.extended <> 0)))) || {_FRACTION}
    WHEN 'department' THEN datetime(i.reported_at, printf('+%d days', 3 * (1 + (i.extended <> 0)))) || {_FRACTION}
    ELSE (SELECT CASE WHEN i.extended <> 0 THEN d.due_extended ELSE d.due END
          FROM {CALENDAR_TABLE} d WHERE d.day = date(i.reported_at)) END)"""

_SEEN = """EXISTS (SELECT 1 FROM visits v WHERE v.household_id = {h}.household_id
                       AND v.visited_at BETWEEN :start AND :now)"""
# a household's key categories: households.category and each one household_categories adds,
# once each (UNION), of registered households; each category's cadence applies on its own
_KEY = """SELECT h.grid_id AS grid, h.household_id AS household_id, trim(h.category) AS category
    FROM households h WHERE trim(coalesce(h.category, '')) <> ''
    UNION SELECT o.grid_id, o.household_id, trim(c.category)
    FROM household_categories c JOIN households o ON o.household_id = c.household_id
    WHERE trim(coalesce(c.category, '')) <> ''"""
# only the grid's own workers' patrols count (role NULL, empty or worker, case and spaces
# forgiven): the index on (grid, time) is walked back from now to the first one
_WORKER = "lower(trim(coalesce(p.role, ''))) IN ('', 'worker')"
_LAST_PATROL = f"""(SELECT p.patrolled_at FROM patrols p WHERE p.grid_id = g.grid_id AND p.patrolled_at <= :now
    AND {_WORKER} ORDER BY p.patrolled_at DESC LIMIT 1)"""
# a grid's start: grids.since, else the date the reports' history starts (DOMAIN.md §5)
_START = "coalesce(date(g.since), :history)"
_RED = "('major_dispute', 'early_warning', 'petition')"
_PERIODIC = "('twice_weekly', 'weekly', 'monthly', 'quarterly', 'annual')"
_KINDS = "('daily', 'twice_weekly', 'weekly', 'monthly', 'quarterly', 'annual')"
# a daily report without a period counts for the local date it was sent
_NO_PERIOD = "({r}.period IS NULL OR {r}.period = '')"

# What a SEARCH visits, over the whole query: an EXISTS stops at its first row, a lookup by key
# reads one row per outer row.
_VISITED_HOUSEHOLDS = f"SELECT count(*) FROM households h WHERE {_SEEN.format(h='h')}"
_VISITED_KEY_HOUSEHOLDS = f"SELECT count(*) FROM ({_KEY}) k WHERE {_SEEN.format(h='k')}"
# from now back to (and with) the last worker's patrol, or every patrol until now if none
# (each grid's last patrol found once: per patrol joined, it is a walk of the grid's patrols,
# without an index on (grid, time) a sort of them)
_PATROLS_WALKED = f"""WITH l AS MATERIALIZED (
    SELECT g.grid_id AS grid, coalesce({_LAST_PATROL}, '') AS last FROM grids g)
SELECT count(*) FROM l JOIN patrols q ON q.grid_id = l.grid AND q.patrolled_at BETWEEN l.last AND :now"""
_SPECIAL = "SELECT count(*) FROM incidents WHERE tier = 'special'"
_TODAYS_DAILY = f"""SELECT count(*) FROM reports r WHERE r.kind = 'daily'
    AND (r.period = :today OR {_NO_PERIOD.format(r="r")})"""

QUERIES: tuple[Query, ...] = (
    Query(
        "visits_coverage",
        f"""SELECT grid, n AS gridwatch_grid_households, n - seen AS gridwatch_visit_unvisited_households,
       seen * 1.0 / n AS gridwatch_visit_coverage_ratio
FROM (SELECT h.grid_id AS grid, count(*) AS n, sum({_SEEN.format(h="h")}) AS seen
      FROM households h GROUP BY h.grid_id)""",
        ("gridwatch_grid_households", "gridwatch_visit_unvisited_households", "gridwatch_visit_coverage_ratio"),
        ("grid",),
        {"h": "households", "v": "visits"},
        {"v": _VISITED_HOUSEHOLDS},
    ),
    Query(
        "visits_key_overdue",
        f"""WITH k AS MATERIALIZED ({_KEY})
SELECT grid, category, sum(NOT {_SEEN.format(h="k")}) AS gridwatch_visit_key_households_overdue
FROM k GROUP BY grid, category""",
        ("gridwatch_visit_key_households_overdue",),
        ("grid", "category"),
        {"h": "households", "c": "household_categories", "o": "households", "v": "visits"},
        {"o": "SELECT count(*) FROM household_categories", "v": _VISITED_KEY_HOUSEHOLDS},
    ),
    Query(
        "patrols_last",
        f"""WITH l AS MATERIALIZED (SELECT g.grid_id AS grid, {_LAST_PATROL} AS last FROM grids g)
SELECT grid, CAST(strftime('%s', last) AS INTEGER) - :tz_offset + {_SECONDS.format(t="last")}
    AS gridwatch_patrol_last_timestamp_seconds
FROM l WHERE last IS NOT NULL""",
        ("gridwatch_patrol_last_timestamp_seconds",),
        ("grid",),
        {"g": "grids", "p": "patrols"},
        {"p": _PATROLS_WALKED},
    ),
    Query(
        "patrols_overdue",
        f"""WITH l AS MATERIALIZED (SELECT g.grid_id AS grid, lower(trim(g.zone)) AS zone, date(g.since) AS since,
    {_LAST_PATROL} AS last FROM grids g)
SELECT grid, CASE
    WHEN (since IS NULL OR since <= :passed) AND (last IS NULL OR last < :daily_deadline) THEN 1
    WHEN :working AND zone IN ('red', 'yellow', 'blue') AND (since IS NULL OR since <= :today)
         AND CAST(strftime('%s', :now) AS INTEGER)
             - CAST(strftime('%s', max(coalesce(last, :start_today), :start_today)) AS INTEGER)
             > CASE zone WHEN 'red' THEN 3600 WHEN 'yellow' THEN 7200 ELSE 14400 END THEN 1
    ELSE 0 END AS gridwatch_patrol_overdue
FROM l""",
        ("gridwatch_patrol_overdue",),
        ("grid",),
        {"g": "grids", "p": "patrols"},
        {"p": _PATROLS_WALKED},
    ),
    Query(
        "incidents_open",
        f"""SELECT i.grid_id AS grid, i.severity AS severity,
       CASE WHEN i.resolved_at IS NOT NULL THEN 'resolved' WHEN i.dispatched_at IS NOT NULL THEN 'dispatched'
            WHEN i.accepted_at IS NOT NULL THEN 'accepted' ELSE 'reported' END AS stage,
       count(*) AS gridwatch_incidents_open
FROM incidents i WHERE i.closed_at IS NULL AND {_OK}
GROUP BY 1, 2, 3""",
        ("gridwatch_incidents_open",),
        ("grid", "severity", "stage"),
        {"i": "incidents"},
    ),
    Query(
        "incidents_overdue",
        f"""SELECT g.grid_id AS grid, coalesce(t.n, 0) AS gridwatch_incidents_overdue
FROM grids g LEFT JOIN (
    SELECT i.grid_id AS grid_id, count(*) AS n FROM incidents i
    WHERE i.closed_at IS NULL AND {_OK} AND {_DEADLINE} < :now
    GROUP BY i.grid_id) t ON t.grid_id = g.grid_id""",
        ("gridwatch_incidents_overdue",),
        ("grid",),
        {"g": "grids", "i": "incidents", "d": CALENDAR_TABLE},
        {"d": f"{_SPECIAL} AND closed_at IS NULL"},
    ),
    Query(
        "incidents_oldest",
        f"""SELECT i.grid_id AS grid,
       CAST(strftime('%s', :now) AS INTEGER) - CAST(strftime('%s', min(i.reported_at)) AS INTEGER)
           - {_SECONDS.format(t="min(i.reported_at)")} AS gridwatch_incident_oldest_open_age_seconds
FROM incidents i WHERE i.closed_at IS NULL AND {_OK}
GROUP BY i.grid_id""",
        ("gridwatch_incident_oldest_open_age_seconds",),
        ("grid",),
        {"i": "incidents"},
    ),
    Query(
        "incidents_due",
        f"""WITH c AS MATERIALIZED (
    SELECT i.grid_id AS grid, i.closed_at IS NOT NULL AS closed, i.closed_at AS closed_at,
           i.extended <> 0 AS ext, {_DEADLINE} AS deadline
    FROM incidents i WHERE {_OK})
SELECT grid, avg(closed) AS gridwatch_incidents_closure_ratio,
       avg(closed AND closed_at <= deadline) AS gridwatch_incidents_on_time_closure_ratio,
       avg(ext) AS gridwatch_incidents_extension_ratio
FROM c WHERE deadline BETWEEN :start AND :now
GROUP BY grid""",
        (
            "gridwatch_incidents_closure_ratio",
            "gridwatch_incidents_on_time_closure_ratio",
            "gridwatch_incidents_extension_ratio",
        ),
        ("grid",),
        {"i": "incidents", "d": CALENDAR_TABLE},
        {"d": _SPECIAL},
    ),
    Query(
        "incidents_rework",
        f"""SELECT i.grid_id AS grid, avg(i.reopened_count > 0) AS gridwatch_incidents_rework_ratio
FROM incidents i WHERE {_OK} AND i.closed_at IS NOT NULL AND i.closed_at >= :start
GROUP BY i.grid_id""",
        ("gridwatch_incidents_rework_ratio",),
        ("grid",),
        {"i": "incidents"},
    ),
    Query(
        "reports_daily_status",
        f"""SELECT g.grid_id AS grid, CASE
    WHEN EXISTS (SELECT 1 FROM reports r WHERE r.grid_id = g.grid_id AND r.kind = 'daily'
                 AND (r.period = :today OR {_NO_PERIOD.format(r="r")} AND r.submitted_at >= :today)
                 AND r.flag IN {_RED} AND r.submitted_at <= :now)
      OR EXISTS (SELECT 1 FROM reports q WHERE q.grid_id = g.grid_id AND q.kind IN {_PERIODIC}
                 AND q.flag IN {_RED} AND q.submitted_at BETWEEN :today AND :now) THEN 3
    WHEN EXISTS (SELECT 1 FROM reports s WHERE s.grid_id = g.grid_id AND s.kind = 'daily'
                 AND (s.period = :today OR {_NO_PERIOD.format(r="s")} AND s.submitted_at >= :today)
                 AND s.submitted_at <= :today_due AND s.submitted_at <= :now) THEN 0
    WHEN :before_cutoff THEN 1 ELSE 2 END AS gridwatch_report_daily_status
FROM grids g WHERE {_START} <= :today""",
        ("gridwatch_report_daily_status",),
        ("grid",),
        {"g": "grids", "r": "reports", "q": "reports", "s": "reports"},
        {
            # the index (grid_id, kind, period) leads to today's daily reports and those without
            # a period, and to every periodic report of the grid (the flag and the day are
            # checked row by row)
            "r": _TODAYS_DAILY,
            "q": f"SELECT count(*) FROM reports WHERE kind IN {_PERIODIC}",
            "s": _TODAYS_DAILY,
        },
    ),
    Query(
        "reports_on_time",
        # the days owed are the window's daily periods from the grid's start on: a run of days
        f"""WITH s AS MATERIALIZED (
    SELECT g.grid_id AS grid, max(:p_first, {_START}) AS first FROM grids g WHERE :n_expected > 0)
SELECT grid, 'daily' AS kind,
       (SELECT count(DISTINCT coalesce(nullif(r.period, ''), date(r.submitted_at))) FROM reports r
        WHERE r.grid_id = s.grid AND r.kind = 'daily' AND r.submitted_at <= :now
          AND (r.period BETWEEN s.first AND :p_last AND r.submitted_at <= r.period || :cutoff
               OR {_NO_PERIOD.format(r="r")} AND date(r.submitted_at) BETWEEN s.first AND :p_last
                  AND r.submitted_at <= date(r.submitted_at) || :cutoff))
       / (julianday(:p_last) - julianday(first) + 1) AS gridwatch_report_on_time_ratio
FROM s WHERE first <= :p_last""",
        ("gridwatch_report_on_time_ratio",),
        ("grid", "kind"),
        {"g": "grids", "r": "reports"},
        {
            "r": f"""SELECT count(*) FROM grids g JOIN reports r ON r.grid_id = g.grid_id AND r.kind = 'daily'
    AND (r.period BETWEEN max(:p_first, {_START}) AND :p_last OR {_NO_PERIOD.format(r="r")})"""
        },
    ),
)

METRICS: frozenset[str] = frozenset(m for q in QUERIES for m in q.metrics)

_TIMES = re.compile(
    r"\b\w+\.(?:visited_at|patrolled_at|reported_at|accepted_at|dispatched_at|resolved_at|closed_at|submitted_at)\b"
)


def queries(db: Path) -> tuple[Query, ...]:
    """The queries for this city. On the second city (bench/second.py) every time is written with
    its offset, +08:00, microseconds and a `T` or a space: each is first made local text to the
    microsecond, as someone who knows the platform writes one offset would (no index covers a
    time there anyway)."""
    if not second.is_second(db):
        return QUERIES

    def local(sql: str) -> str:
        return _TIMES.sub(lambda m: f"replace(substr({m[0]}, 1, 26), 'T', ' ')", sql)

    return tuple(replace(q, sql=local(q.sql), searched={k: local(v) for k, v in q.searched.items()}) for q in QUERIES)


def local_text(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime(_FMT)


def history_start(db: Path) -> date | None:
    """The local date of the earliest report of a known grid and kind: a grid without
    ``grids.since`` owes nothing before it (DOMAIN.md §5). Looked up once, outside the timed
    queries, as a data warehouse knows when its history starts."""
    conn = connect(db)
    try:
        sql = f"""SELECT min(r.submitted_at) FROM reports r
            WHERE r.kind IN {_KINDS} AND r.grid_id IN (SELECT grid_id FROM grids)"""
        first = conn.execute(sql).fetchone()[0]
    finally:
        conn.close()
    return None if first is None else date.fromisoformat(str(first)[:10])


def params(now: datetime, tz: ZoneInfo, history: date | None = None) -> dict[str, Any]:
    """The queries' parameters as of ``now`` (aware): what the rule book computes around SQL.
    ``history`` is :func:`history_start` (None: no report yet, so the history starts today)."""
    local = now.astimezone(tz)
    today = local.date()

    def at(day: Any, t: clock) -> datetime:
        return datetime.combine(day, t, tzinfo=tz)

    start_today, end_today = at(today, WORK_START), at(today, WORK_END)
    passed = today if local > end_today else today - timedelta(days=1)  # the last working window that ended
    start = local - WINDOW
    periods = expected_periods("daily", start, local, CUTOFF)
    offset = local.utcoffset()
    assert offset is not None
    return {
        "now": local.strftime(_FMT),
        "start": start.strftime(_FMT),
        "today": today.isoformat(),
        "today_due": at(today, CUTOFF).strftime(_FMT),
        "before_cutoff": int(local < at(today, CUTOFF)),
        "tz_offset": int(offset.total_seconds()),
        "history": (history or today).isoformat(),
        "passed": passed.isoformat(),
        "daily_deadline": at(passed, WORK_START).strftime(_FMT),
        "start_today": start_today.strftime(_FMT),
        "working": int(start_today <= local <= end_today),
        "p_first": periods[0][0] if periods else "",
        "p_last": periods[-1][0] if periods else "",
        "n_expected": len(periods),
        "cutoff": CUTOFF.strftime(" %H:%M:%S"),
    }


def install_calendar(db: Path, tz: ZoneInfo, special: str = "5wd") -> int:
    """Write the ``special`` tier's deadline (plain and extended) for every report date of the
    incidents, from gridwatch's statutory calendar; returns the number of days."""
    cal = WorkCalendar()
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {CALENDAR_TABLE}")
        conn.execute(
            f"CREATE TABLE {CALENDAR_TABLE} (day TEXT PRIMARY KEY, due TEXT NOT NULL, due_extended TEXT NOT NULL)"
        )
        first, last = conn.execute("SELECT min(date(reported_at)), max(date(reported_at)) FROM incidents").fetchone()
        rows = []
        if first is not None:
            day, end = datetime.fromisoformat(first).date(), datetime.fromisoformat(last).date() + timedelta(days=7)
            while day <= end:
                noon = datetime.combine(day, clock(12), tzinfo=tz)
                due, ext = (incident_deadline(noon, special, cal, e).strftime(_FMT) for e in (False, True))
                rows.append((day.isoformat(), due, ext))
                day += timedelta(days=1)
        conn.executemany(f"INSERT INTO {CALENDAR_TABLE} VALUES (?, ?, ?)", rows)
    conn.close()
    return len(rows)


def connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)


def run(db: Path, now: datetime, tz: ZoneInfo) -> tuple[dict[Key, float], float, float]:
    """Every query once as of ``now``: ({(metric, labels): value}, wall seconds, CPU seconds)."""
    p = params(now, tz, history_start(db))
    values: dict[Key, float] = {}
    conn = connect(db)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        results = [(q, conn.execute(q.sql, p).fetchall()) for q in queries(db)]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        conn.close()
    for q, rows in results:
        n = len(q.labels)
        for row in rows:
            labels = tuple(sorted(zip(q.labels, (str(v) for v in row[:n]), strict=True)))
            for metric, value in zip(q.metrics, row[n:], strict=True):
                values[(metric, labels)] = float(value)
    return values, wall, cpu


def plan(conn: sqlite3.Connection, q: Query, p: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(SCAN|SEARCH, alias) of each base-table access in the query's plan."""
    out = []
    for row in conn.execute("EXPLAIN QUERY PLAN " + q.sql, p).fetchall():
        m = re.match(r"(SCAN|SEARCH) (\w+)", row[-1])
        if m and m.group(2) in q.tables:
            out.append((m.group(1), m.group(2)))
    return out


def rows_visited(db: Path, now: datetime, tz: ZoneInfo) -> tuple[int, dict[str, int]]:
    """Rows the database visits to answer every query once (see docs/performance.md): a SCAN of
    a table visits all its rows, a SEARCH the rows it returns. Returns (total, per query)."""
    p = params(now, tz, history_start(db))
    conn = connect(db)
    try:
        sizes: dict[str, int] = {}
        per: dict[str, int] = {}
        for q in queries(db):
            n = 0
            counted: set[str] = set()
            for op, alias in plan(conn, q, p):
                table = q.tables[alias]
                if op == "SEARCH" and alias in q.searched:
                    # once per alias: the count covers every search of a MULTI-INDEX OR
                    if alias not in counted:
                        counted.add(alias)
                        n += conn.execute(q.searched[alias], p).fetchone()[0]
                else:  # a SCAN, or a SEARCH with no better count: the whole table, an upper bound
                    if table not in sizes:
                        sizes[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    n += sizes[table]
            per[q.name] = n
    finally:
        conn.close()
    return sum(per.values()), per


def used_params(sql: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters ``sql`` names (query-exporter wants exactly those)."""
    names = set(re.findall(r"(?<![:\w]):(\w+)", sql))
    return {k: v for k, v in p.items() if k in names}


def compare(
    want: Mapping[Key, float], got: Iterable[tuple[str, Mapping[str, str], float]], metrics: Iterable[str] = METRICS
) -> tuple[int, int, list[str]]:
    """Compare per-series values of ``metrics``: (series compared, mismatches, a few examples).
    A series on one side only is a mismatch."""
    keep = set(metrics)
    have: dict[Key, float] = {}
    for metric, labels, value in got:
        if metric in keep:
            have[(metric, tuple(sorted(labels.items())))] = value
    wanted = {k: v for k, v in want.items() if k[0] in keep}
    bad: list[str] = []
    for key in sorted(wanted.keys() | have.keys()):
        a, b = wanted.get(key), have.get(key)
        if a is None or b is None or not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
            bad.append(f"{key[0]}{dict(key[1])}: expected {a}, got {b}")
    return len(wanted.keys() | have.keys()), len(bad), bad[:10]
