"""What happens to the city in a few minutes: new rows and case updates, for the steady run.

A monitor that keeps state between runs should read about what changed, not the history
again. So the bench inserts a small fraction of new visits, patrols, daily reports and
incidents, all timed between the first run's ``now`` and the next one's, and moves a matching
number of open incidents along (closes them or advances their stage), the way a case system
updates rows in place. Drawn from a seeded generator: the same inputs change the same rows.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench import second

_FMT = "%Y-%m-%d %H:%M:%S"
_TIERS = ("community", "subdistrict", "department", "special")
_STAGES = ("accepted_at", "dispatched_at", "resolved_at", "closed_at")


def apply(
    db: Path, since: datetime, until: datetime, tz: ZoneInfo, fraction: float = 0.001, seed: int = 1
) -> dict[str, int]:
    """Insert ``fraction`` of each event table's rows again as new rows and update as many open
    incidents, with times in (since, until]; returns {what: rows} (``incidents_updated``
    counts the updates)."""
    rng = random.Random(f"gridwatch-bench:{seed}")
    span = max(1, int((until - since).total_seconds()))
    other = second.is_second(db)  # integer ids the database gives, times with offsets

    def when() -> str:
        return (since + timedelta(seconds=rng.randint(1, span))).astimezone(tz).strftime(_FMT)

    def written(local: str | None) -> str | None:
        return second.stamp(local, rng.randint(0, 2**31)) if other else local

    def key(text: str) -> str | None:
        return None if other else text  # an INTEGER PRIMARY KEY: the next rowid

    changed: dict[str, int] = {}
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        households = conn.execute("SELECT count(*) FROM households").fetchone()[0]
        grids = [r[0] for r in conn.execute("SELECT grid_id FROM grids ORDER BY grid_id")]

        def share(table: str) -> int:
            return max(1, round(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] * fraction))

        n = share("visits")
        picks = [rng.randint(1, households) for _ in range(n)]  # rowids: households are never deleted
        sql = "SELECT household_id, grid_id FROM households WHERE rowid = ?"
        homes = [conn.execute(sql, (r,)).fetchone() for r in picks]
        conn.executemany(
            "INSERT INTO visits (visit_id, household_id, grid_id, worker_id, visited_at) VALUES (?, ?, ?, ?, ?)",
            [(key(f"BV{k:08d}"), hid, gid, "WBENCH", written(when())) for k, (hid, gid) in enumerate(homes, 1)],
        )
        changed["visits"] = n

        n = share("patrols")
        conn.executemany(
            "INSERT INTO patrols (patrol_id, grid_id, worker_id, patrolled_at) VALUES (?, ?, ?, ?)",
            [(key(f"BP{k:08d}"), rng.choice(grids), "WBENCH", written(when())) for k in range(1, n + 1)],
        )
        changed["patrols"] = n

        n = share("reports")
        rows = []
        for k in range(1, n + 1):
            at = when()
            rows.append((key(f"BR{k:08d}"), rng.choice(grids), "daily", at[:10], written(at), "ok"))
        conn.executemany(
            "INSERT INTO reports (report_id, grid_id, kind, period, submitted_at, flag) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        changed["reports"] = n

        n = share("incidents")
        conn.executemany(
            "INSERT INTO incidents (incident_id, grid_id, category, severity, tier, reported_at, reopened_count, "
            "extended) VALUES (?, ?, 'sanitation', 'normal', ?, ?, 0, 0)",
            [(key(f"BE{k:07d}"), rng.choice(grids), rng.choice(_TIERS), written(when())) for k in range(1, n + 1)],
        )
        changed["incidents"] = n

        cols = ", ".join(("incident_id", *_STAGES))
        open_ = conn.execute(
            f"SELECT {cols} FROM incidents WHERE closed_at IS NULL"
            " AND replace(substr(reported_at, 1, 19), 'T', ' ') <= ?",
            (since.astimezone(tz).strftime(_FMT),),
        ).fetchall()
        updated = 0
        for row in rng.sample(open_, min(len(open_), n)):
            iid, stamps = row[0], dict(zip(_STAGES, row[1:], strict=True))
            first, last = sorted((when(), when()))
            if rng.random() < 0.5:  # closed: resolved (if it was not yet) and verified
                stamps["resolved_at"] = stamps["resolved_at"] or first
                stamps["closed_at"] = last
            else:  # moved on by one stage
                stage = next(s for s in _STAGES if stamps[s] is None)
                stamps[stage] = first
            sets = ", ".join(f"{s} = ?" for s in _STAGES)
            moved = [stamps[s] if row[1 + i] == stamps[s] else written(stamps[s]) for i, s in enumerate(_STAGES)]
            conn.execute(f"UPDATE incidents SET {sets} WHERE incident_id = ?", (*moved, iid))
            updated += 1
        changed["incidents_updated"] = updated
        conn.execute("COMMIT")
    finally:
        conn.close()
    return changed
