"""The ``sql`` source follows tables by the cursor columns the operator names (issue 19).

On SQLite files through SQLAlchemy (always here) and on a real PostgreSQL: appends by an
increasing id, edits through a changed-since column (an incident closed, extended, reopened),
deletions and a truncated table (a full read, with the right figures), what a steady run reads,
the daily resync, and what ``check-config --connect`` and the status API say of each table.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gridwatch import config
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Runtime
from gridwatch.store import Store
from tests.test_incremental import CHECKS, START, City

FOLLOWED = ("households", "household_categories", "visits", "patrols", "reports")


def _follow_by_triggers(db: sqlite3.Connection) -> None:
    """What a platform's schema gives: an increasing id on every table (``seq``), and on incidents
    a changed-since column (``version``, from one counter, set on every insert and update)."""
    db.execute("CREATE TABLE clock (n INTEGER)")
    db.execute("INSERT INTO clock VALUES (0)")
    have = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in [t for t in (*FOLLOWED, "incidents") if t in have]:
        db.execute(f"ALTER TABLE {table} ADD COLUMN seq INTEGER")
        db.execute(f"CREATE UNIQUE INDEX {table}_seq ON {table} (seq)")
        db.execute(
            f"CREATE TRIGGER {table}_seq AFTER INSERT ON {table} BEGIN UPDATE {table} SET seq = "
            f"(SELECT coalesce(max(seq), 0) + 1 FROM {table}) WHERE rowid = NEW.rowid; END"
        )
    db.execute("ALTER TABLE incidents ADD COLUMN version INTEGER")
    for event in ("INSERT", "UPDATE OF accepted_at, dispatched_at, resolved_at, closed_at, reopened_count, extended"):
        name = "incidents_v" + event.split()[0].lower()
        db.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON incidents BEGIN UPDATE clock SET n = n + 1; "
            "UPDATE incidents SET version = (SELECT n FROM clock) WHERE rowid = NEW.rowid; END"
        )


def _config(tmp_path: Path, name: str, resync: str | None, url: str, cursors: str) -> Path:
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "db"\ntimeout = "60s"\n{extra}\n'
        + (f'resync = "{resync}"\n' if resync is not None else "")
        for c, extra in (
            ("visits", 'window = "7d"\nkey_interval = "3d"\n'),
            ("patrols", 'supervisor_interval = "2d"\n'),
            ("incidents", 'window = "5d"\n'),
            ("reports", 'window = "9d"\nlookback = "25d"\nexpect = ["daily", "twice_weekly", "weekly", "monthly"]\n'),
        )
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(
        'timezone = "Asia/Shanghai"\nmax_rejected_ratio = 1\n'
        f'[state]\npath = "{name}-state.db"\n'
        '[grids]\nsource = "db"\n'
        f'[sources.db]\ntype = "sql"\nurl = "{url}"\n{cursors}\n' + checks,
        encoding="utf-8",
    )
    return path


CITY_CURSORS = (
    "[sources.db.cursors]\n"
    + "".join(f'{t} = "seq"\n' for t in FOLLOWED)
    + 'incidents = { column = "version", kind = "changed" }\n'
)


def _samples(runtime: Runtime, now: datetime, checks: tuple[str, ...] = CHECKS) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        results = Results()
        results.replace(*runtime.states())
        out = {}
        for name in checks:
            outcome = await runtime.run(runtime.runners[name], now, results)
            assert outcome.outcome == "success", (name, outcome.error)
            out[name] = sorted((s.metric, tuple(sorted(s.labels.items())), round(s.value, 9)) for s in outcome.samples)
        return out

    return asyncio.run(go())


def _full(tmp_path: Path, name: str, url: str, now: datetime, host: Any) -> dict[str, Any]:
    settings, _ = config.load(_config(tmp_path, name, "0s", url, ""), host)
    runtime = Runtime(settings, host, clock=now.timestamp)
    try:
        return _samples(runtime, now)
    finally:
        runtime.close()


@pytest.mark.parametrize("seed", range(4))
def test_cursors_follow_a_growing_city_as_a_full_read_would(tmp_path: Path, seed: int) -> None:
    """The random city of the incremental property test, behind a ``sql`` source with cursors:
    every step's samples equal a full recomputation's, with deletions now and then."""
    rnd = random.Random(seed)
    city = City(tmp_path / "city.db", rnd, unique_ids=seed % 2 == 0, optional=seed % 4 != 3)
    _follow_by_triggers(city.db)
    url = f"sqlite:///{tmp_path / 'city.db'}"
    settings, host = config.load(_config(tmp_path, "kept", None, url, CITY_CURSORS))
    kept = Runtime(settings, host, clock=lambda: now.timestamp())
    kept.state = state = Store(settings.state_path)
    state.open()
    now = START
    city.grow(now, timedelta(days=20))
    deleted = None
    try:
        for step in range(12):
            expected = _full(tmp_path, f"full{step}", url, now, host)
            got = _samples(kept, now)
            for name in CHECKS:
                assert got[name] == expected[name], f"seed {seed}, step {step}, check {name}"
            # incidents follow their edits: a full read only first and after a deletion
            tracker = kept.runners["incidents"].check.tracker
            assert (tracker.last_full == now.timestamp()) == (step == 0 or deleted == "incidents"), step
            gap = timedelta(minutes=rnd.choice([1, 7, 45, 180, 600]))
            now += gap
            city.grow(now, gap + timedelta(hours=2))
            city.move_incidents(now)
            deleted = None
            if step % 4 == 3:  # a row deleted: caught by the counts, read in full
                deleted = rnd.choice([*FOLLOWED[2:], "incidents"])
                city.db.execute(f"DELETE FROM {deleted} WHERE rowid = (SELECT min(rowid) FROM {deleted})")
    finally:
        kept.close()
        state.close()
