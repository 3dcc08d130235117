"""What happens to the city in a few minutes: new rows and case updates, for the steady run.

A monitor that keeps state between runs should read about what changed, not the history
again. So the bench inserts a small fraction of new visits, patrols, daily reports and
incidents, all timed between the first run's ``now`` and the next one's, and moves a matching
number of open incidents along (closes them or advances their stage), the way a case system
updates rows in place. Drawn from a seeded generator: the same inputs change the same rows.
The changes are planned once from the unchanged city and then made in each database's copy
(SQLite, PostgreSQL), so both see the very same rows. On the second city (bench/second.py) the
new rows get the next integer ids and every time written is that platform's text.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench import second

_FMT = "%Y-%m-%d %H:%M:%S"
_TIERS = ("community", "subdistrict", "department", "special")
_STAGES = ("accepted_at", "dispatched_at", "resolved_at", "closed_at")


Changes = dict[str, Any]
"""{"inserts": {table: {"columns": [...], "rows": [[...]]}}, "updates": {"columns": [...],
"rows": [[incident_id, *stamps]]}, "changed": {what: rows}}: JSON, so one plan made from the
pristine city changes each database's copy alike."""


def plan(db: Path, since: datetime, until: datetime, tz: ZoneInfo, fraction: float = 0.001, seed: int = 1) -> Changes:
    """Draw ``fraction`` of each event table's rows again as new rows and as many updates of
    open incidents, with times in (since, until], from the (unchanged) city ``db``;
    ``changed`` counts them (``incidents_updated``: the updates)."""
    rng = random.Random(f"gridwatch-bench:{seed}")
    span = max(1, int((until - since).total_seconds()))
    other = second.is_second(db)  # integer ids, times with offsets and microseconds

    def when() -> str:
        return (since + timedelta(seconds=rng.randint(1, span))).astimezone(tz).strftime(_FMT)

    def written(local: str | None) -> str | None:
        return second.stamp(local, rng.randint(0, 2**31)) if other else local

    inserts: dict[str, dict[str, Any]] = {}
    changed: dict[str, int] = {}
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        households = conn.execute("SELECT count(*) FROM households").fetchone()[0]
        grids = [r[0] for r in conn.execute("SELECT grid_id FROM grids ORDER BY grid_id")]

        def share(table: str) -> int:
            return max(1, round(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] * fraction))

        def insert(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
            inserts[table] = {"columns": list(columns), "rows": [list(r) for r in rows]}
            changed[table] = len(rows)

        def key(table: str, text: str, k: int) -> str | int:
            """The k-th new id: the demo's text, or the next integers after the second city's last
            (given, not left to the database, so every database's copy gets the same ids)."""
            if not other:
                return text
            return int(conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0]) + k

        n = share("visits")
        picks = [rng.randint(1, households) for _ in range(n)]  # rowids: households are never deleted
        sql = "SELECT household_id, grid_id FROM households WHERE rowid = ?"
        homes = [conn.execute(sql, (r,)).fetchone() for r in picks]
        insert(
            "visits",
            ("visit_id", "household_id", "grid_id", "worker_id", "visited_at"),
            [
                (key("visits", f"BV{k:08d}", k), hid, gid, "WBENCH", written(when()))
                for k, (hid, gid) in enumerate(homes, 1)
            ],
        )

        n = share("patrols")
        insert(
            "patrols",
            ("patrol_id", "grid_id", "worker_id", "patrolled_at"),
            [(key("patrols", f"BP{k:08d}", k), rng.choice(grids), "WBENCH", written(when())) for k in range(1, n + 1)],
        )

        n = share("reports")
        rows = []
        for k in range(1, n + 1):
            at = when()
            rows.append((key("reports", f"BR{k:08d}", k), rng.choice(grids), "daily", at[:10], written(at), "ok"))
        insert("reports", ("report_id", "grid_id", "kind", "period", "submitted_at", "flag"), rows)

        n = share("incidents")
        insert(
            "incidents",
            ("incident_id", "grid_id", "category", "severity", "tier", "reported_at", "reopened_count", "extended"),
            [(key("incidents", f"BE{k:07d}", k), rng.choice(grids), "sanitation", "normal", rng.choice(_TIERS),
              written(when()), 0, 0)
             for k in range(1, n + 1)],
        )  # fmt: skip

        cols = ", ".join(("incident_id", *_STAGES))
        open_ = conn.execute(
            f"SELECT {cols} FROM incidents WHERE closed_at IS NULL"
            " AND replace(substr(reported_at, 1, 19), 'T', ' ') <= ? ORDER BY rowid",
            (since.astimezone(tz).strftime(_FMT),),
        ).fetchall()
        updates = []
        for row in rng.sample(open_, min(len(open_), n)):
            iid, stamps = row[0], dict(zip(_STAGES, row[1:], strict=True))
            first, last = sorted((when(), when()))
            if rng.random() < 0.5:  # closed: resolved (if it was not yet) and verified
                stamps["resolved_at"] = stamps["resolved_at"] or first
                stamps["closed_at"] = last
            else:  # moved on by one stage
                stage = next(s for s in _STAGES if stamps[s] is None)
                stamps[stage] = first
            moved = [stamps[s] if row[1 + i] == stamps[s] else written(stamps[s]) for i, s in enumerate(_STAGES)]
            updates.append([iid, *moved])
        changed["incidents_updated"] = len(updates)
    finally:
        conn.close()
    return {"inserts": inserts, "updates": {"columns": list(_STAGES), "rows": updates}, "changed": changed}


def apply_sqlite(db: Path, changes: Changes) -> dict[str, int]:
    """Make the planned changes in one transaction; returns what changed."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for table, ins in changes["inserts"].items():
            cols = ins["columns"]
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            conn.executemany(sql, ins["rows"])
        sets = ", ".join(f"{s} = ?" for s in changes["updates"]["columns"])
        conn.executemany(
            f"UPDATE incidents SET {sets} WHERE incident_id = ?", [(*r[1:], r[0]) for r in changes["updates"]["rows"]]
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return dict(changes["changed"])


def apply_postgres(dsn: str, changes: Changes) -> dict[str, int]:
    """The same on PostgreSQL, times as ``timestamp`` values (local wall-clock time)."""
    import psycopg

    def typed(cols: list[str], row: list[Any]) -> list[Any]:
        # a written offset (the second city's, the bench's zone) is dropped: ``timestamp`` is local
        return [
            datetime.fromisoformat(v).replace(tzinfo=None) if c.endswith("_at") and v else v
            for c, v in zip(cols, row, strict=True)
        ]

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table, ins in changes["inserts"].items():
            cols = ins["columns"]
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
            cur.executemany(sql, [typed(cols, r) for r in ins["rows"]])
        stages = changes["updates"]["columns"]
        sets = ", ".join(f"{s} = %s" for s in stages)
        cur.executemany(
            f"UPDATE incidents SET {sets} WHERE incident_id = %s",
            [(*typed(stages, r[1:]), r[0]) for r in changes["updates"]["rows"]],
        )
    return dict(changes["changed"])


def apply(target: str, changes: Changes) -> dict[str, int]:
    """``target``: an SQLite file's path, or a ``postgresql://`` DSN."""
    if target.startswith("postgresql://"):
        return apply_postgres(target, changes)
    return apply_sqlite(Path(target), changes)
