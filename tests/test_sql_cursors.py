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
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gridwatch import config
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Runtime
from gridwatch.store import Store
from tests.test_incremental import CHECKS, START, City, _samples

FOLLOWED = ("households", "household_categories", "visits", "patrols", "reports")


def _follow_by_triggers(db: sa.Connection) -> None:
    """What a platform's schema gives: an increasing id on every table (``seq``), and on incidents
    a changed-since column (``version``, from one counter, set on every insert and update)."""
    db.exec_driver_sql("CREATE TABLE clock (n INTEGER)")
    db.exec_driver_sql("INSERT INTO clock VALUES (0)")
    have = {name for (name,) in db.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in [t for t in (*FOLLOWED, "incidents") if t in have]:
        db.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN seq INTEGER")
        db.exec_driver_sql(f"CREATE UNIQUE INDEX {table}_seq ON {table} (seq)")
        db.exec_driver_sql(
            f"CREATE TRIGGER {table}_seq AFTER INSERT ON {table} BEGIN UPDATE {table} SET seq = "
            f"(SELECT coalesce(max(seq), 0) + 1 FROM {table}) WHERE rowid = NEW.rowid; END"
        )
    db.exec_driver_sql("ALTER TABLE incidents ADD COLUMN version INTEGER")
    for event in ("INSERT", "UPDATE OF accepted_at, dispatched_at, resolved_at, closed_at, reopened_count, extended"):
        name = "incidents_v" + event.split()[0].lower()
        db.exec_driver_sql(
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


def _full(tmp_path: Path, name: str, url: str, now: datetime, host: Any) -> dict[str, Any]:
    settings, _ = config.load(_config(tmp_path, name, "0s", url, ""), host)
    runtime = Runtime(settings, host, clock=now.timestamp)
    try:
        return _samples(runtime, now)
    finally:
        runtime.close()


@pytest.mark.parametrize(
    ("seed", "incidents"),
    [(0, "changed"), (1, "changed"), (2, "changed"), (3, "changed"), (4, "appended"), (5, "appended")],
)
def test_cursors_follow_a_growing_city_as_a_full_read_would(tmp_path: Path, seed: int, incidents: str) -> None:
    """The random city of the incremental property test, behind a ``sql`` source with cursors:
    every step's samples equal a full recomputation's, with deletions now and then. Incidents
    are followed by their changed-since column, or by their increasing id (their edits then found
    by reading again, by key, the cases kept and the open ones)."""
    rnd = random.Random(seed)
    url = f"sqlite:///{tmp_path / 'city.db'}"
    city = City(url, rnd, unique_ids=seed % 2 == 0, optional=seed % 4 != 3)
    _follow_by_triggers(city.db)
    cursors = (
        CITY_CURSORS
        if incidents == "changed"
        else CITY_CURSORS.replace('{ column = "version", kind = "changed" }', '"seq"')
    )
    settings, host = config.load(_config(tmp_path, "kept", None, url, cursors))
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
            if incidents == "changed":
                assert (tracker.last_full == now.timestamp()) == (step == 0 or deleted == "incidents"), step
            else:
                assert kept.sources["db"].follows("incidents").column == "seq"
            gap = timedelta(minutes=rnd.choice([1, 7, 45, 180, 600]))
            now += gap
            city.grow(now, gap + timedelta(hours=2))
            city.move_incidents(now)
            deleted = None
            if step % 4 == 3:  # a row deleted: caught by the counts, read in full
                deleted = rnd.choice([*FOLLOWED[2:], "incidents"])
                city.db.exec_driver_sql(f"DELETE FROM {deleted} WHERE rowid = (SELECT min(rowid) FROM {deleted})")
    finally:
        kept.close()
        state.close()


# -- a small city, by hand, on SQLite and on PostgreSQL --------------------------------------------

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=START.tzinfo)
SMALL_CURSORS = '[sources.db.cursors]\nhouseholds = "id"\nvisits = "id"\nincidents = "updated_at"\n'


class SmallCity:
    """Two grids, three households, incidents with an ``updated_at`` the platform sets on every
    write (here the test writes it, as a platform's application would)."""

    def __init__(self, backend: str, tmp_path: Path, postgres: Any = None) -> None:
        self.backend = backend
        if backend == "sqlite":
            path = tmp_path / "small.db"
            self.url = f"sqlite:///{path}"
            self.db: Any = sqlite3.connect(path, isolation_level=None)
            ident, ts = "id INTEGER PRIMARY KEY", "TEXT"
        else:
            import psycopg

            name = f"cursors_{tmp_path.name.lower().replace('-', '_')}"[:60]
            self.db = psycopg.connect(postgres.createdb(name), autocommit=True)
            self.url = postgres.url_for(name)
            ident, ts = "id serial PRIMARY KEY", "timestamp"
        for sql in (
            "CREATE TABLE grids (grid_id text, name text, community text, street text, zone text)",
            f"CREATE TABLE households ({ident}, household_id text, grid_id text, category text)",
            f"CREATE TABLE visits ({ident}, visit_id text, household_id text, grid_id text, worker_id text,"
            f" visited_at {ts})",
            f"CREATE TABLE incidents ({ident}, incident_id text, grid_id text, category text, severity text,"
            f" tier text, reported_at {ts}, accepted_at {ts}, dispatched_at {ts}, resolved_at {ts},"
            f" closed_at {ts}, reopened_count integer, extended integer, updated_at {ts})",
            "INSERT INTO grids VALUES ('G1', 'G1', 'C', 'S', NULL), ('G2', 'G2', 'C', 'S', NULL)",
            "INSERT INTO households (household_id, grid_id) VALUES ('H1', 'G1'), ('H2', 'G1'), ('H3', 'G2')",
        ):
            self.db.execute(sql)

    def visit(self, vid: str, hid: str, grid: str, at: str) -> None:
        self.db.execute(
            f"INSERT INTO visits (visit_id, household_id, grid_id, worker_id, visited_at)"
            f" VALUES ('{vid}', '{hid}', '{grid}', 'W', '{at}')"
        )

    def incident(self, iid: str, grid: str, severity: str, reported: str, updated: str, accepted: str = "") -> None:
        acc = f"'{accepted}'" if accepted else "NULL"
        self.db.execute(
            "INSERT INTO incidents (incident_id, grid_id, severity, tier, reported_at, accepted_at,"
            f" reopened_count, extended, updated_at) VALUES ('{iid}', '{grid}', '{severity}', 'community',"
            f" '{reported}', {acc}, 0, 0, '{updated}')"
        )

    def edit(self, iid: str, changes: str, updated: str) -> None:
        self.db.execute(f"UPDATE incidents SET {changes}, updated_at = '{updated}' WHERE incident_id = '{iid}'")

    def close(self) -> None:
        self.db.close()


def _small_config(tmp_path: Path, name: str, url: str, cursors: str, resync: str | None = None) -> Path:
    extra = f'resync = "{resync}"\n' if resync is not None else ""
    path = tmp_path / f"{name}.toml"
    path.write_text(
        'timezone = "Asia/Shanghai"\nmax_rejected_ratio = 1\n'
        f'[state]\npath = "{name}-state.db"\n[grids]\nsource = "db"\n'
        f'[sources.db]\ntype = "sql"\nurl = "{url}"\n{cursors}\n'
        f'[[checks]]\nname = "visits"\ntype = "visits"\nsource = "db"\n{extra}'
        f'[[checks]]\nname = "incidents"\ntype = "incidents"\nsource = "db"\n{extra}',
        encoding="utf-8",
    )
    return path


def _figures(samples: list[Any], metric: str) -> dict[tuple[str, ...], float]:
    """``{label values: value}`` of one metric, for the hand-computed expectations."""
    return {tuple(v for _, v in labels): value for m, labels, value in samples if m == metric}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.component)])
def small_city(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    postgres = request.getfixturevalue("postgres") if request.param == "postgres" else None
    city = SmallCity(request.param, tmp_path, postgres)
    yield city
    city.close()


def test_a_steady_run_reads_the_changed_rows_and_gives_the_figures_by_hand(tmp_path: Path, small_city: Any) -> None:
    city = small_city
    city.visit("V1", "H1", "G1", "2026-11-19 09:00:00")
    city.incident("I1", "G1", "normal", "2026-11-20 08:00:00", "2026-11-20 08:00:00")
    city.incident("I2", "G2", "normal", "2026-11-18 09:00:00", "2026-11-18 10:00:00", accepted="2026-11-18 10:00:00")
    settings, host = config.load(_small_config(tmp_path, "kept", city.url, SMALL_CURSORS))
    kept = Runtime(settings, host, clock=lambda: now.timestamp())
    source = kept.sources["db"]
    checks = ("visits", "incidents")

    def step(at: datetime) -> dict[str, Any]:
        got = _samples(kept, at, checks)
        full_settings, _ = config.load(_small_config(tmp_path, f"full{at:%H%M}", city.url, "", "0s"), host)
        full = Runtime(full_settings, host, clock=at.timestamp)
        try:
            assert got == _samples(full, at, checks)
        finally:
            full.close()
        return {name: samples for name, samples in got.items()}

    try:
        now = T0
        got = step(now)
        # G1: H1 of H1, H2 visited; G2: H3 not. I1 open (deadline 11-21 08:00); I2 accepted,
        # past its 1-day deadline (11-19 09:00) since 25 hours: overdue, and due in the window
        assert _figures(got["visits"], "gridwatch_visit_coverage_ratio") == {("G1",): 0.5, ("G2",): 0.0}
        opened = _figures(got["incidents"], "gridwatch_incidents_open")
        assert opened == {("G1", "normal", "reported"): 1, ("G2", "normal", "accepted"): 1}
        assert _figures(got["incidents"], "gridwatch_incidents_overdue") == {("G1",): 0, ("G2",): 1}
        assert _figures(got["incidents"], "gridwatch_incidents_due_closed") == {("G1",): 0, ("G2",): 0}
        assert dict(source.rows_read) == {"households": 3, "visits": 1, "incidents": 2}
        source.rows_read.clear()

        # I2 closed at 10:05, late; I3, major, reported at 10:02; H2 visited
        now = T0 + timedelta(minutes=10)
        city.edit("I2", "closed_at = '2026-11-20 10:05:00'", "2026-11-20 10:05:00")
        city.incident("I3", "G1", "major", "2026-11-20 10:02:00", "2026-11-20 10:02:00")
        city.visit("V2", "H2", "G1", "2026-11-20 10:01:00")
        got = step(now)
        assert _figures(got["visits"], "gridwatch_visit_coverage_ratio") == {("G1",): 1.0, ("G2",): 0.0}
        opened = _figures(got["incidents"], "gridwatch_incidents_open")
        assert opened == {("G1", "normal", "reported"): 1, ("G1", "major", "reported"): 1}
        assert _figures(got["incidents"], "gridwatch_incidents_overdue") == {("G1",): 0, ("G2",): 0}
        assert _figures(got["incidents"], "gridwatch_incidents_due_closed") == {("G1",): 0, ("G2",): 1}
        assert _figures(got["incidents"], "gridwatch_incidents_due_closed_on_time") == {("G1",): 0, ("G2",): 0}
        # the rows changed, and nothing else: no open case read again, no household
        assert source.rows_read["incidents"] == 2 and source.rows_read["visits"] == 1
        assert source.rows_read["households"] == 0
        source.rows_read.clear()

        # I1 extended (its deadline doubles to 11-22 08:00), I2 reopened: open and overdue again
        now = T0 + timedelta(minutes=20)
        city.edit("I1", "extended = 1", "2026-11-20 10:12:00")
        city.edit("I2", "closed_at = NULL, reopened_count = 1", "2026-11-20 10:15:00")
        got = step(now)
        opened = _figures(got["incidents"], "gridwatch_incidents_open")
        assert opened == {
            ("G1", "normal", "reported"): 1,
            ("G1", "major", "reported"): 1,
            ("G2", "normal", "accepted"): 1,
        }
        assert _figures(got["incidents"], "gridwatch_incidents_overdue") == {("G1",): 0, ("G2",): 1}
        assert _figures(got["incidents"], "gridwatch_incidents_due_closed") == {("G1",): 0, ("G2",): 0}
        assert source.rows_read["incidents"] == 2 and source.rows_read["visits"] == 0
        source.rows_read.clear()

        # I3 deleted: the counts say so, the run reads every incident again
        now = T0 + timedelta(minutes=30)
        city.db.execute("DELETE FROM incidents WHERE incident_id = 'I3'")
        got = step(now)
        opened = _figures(got["incidents"], "gridwatch_incidents_open")
        assert opened == {("G1", "normal", "reported"): 1, ("G2", "normal", "accepted"): 1}
        assert source.rows_read["incidents"] == 2
        source.rows_read.clear()

        # the table emptied and written anew: one case, read in full
        now = T0 + timedelta(minutes=40)
        city.db.execute("TRUNCATE incidents" if city.backend == "postgres" else "DELETE FROM incidents")
        city.incident("I9", "G2", "major", "2026-11-20 10:35:00", "2026-11-20 10:35:00")
        got = step(now)
        assert _figures(got["incidents"], "gridwatch_incidents_open") == {("G2", "major", "reported"): 1}
        assert _figures(got["incidents"], "gridwatch_incidents_overdue") == {("G1",): 0, ("G2",): 0}
        assert source.rows_read["incidents"] == 1
    finally:
        kept.close()


def test_check_config_connect_says_how_each_table_is_read_and_names_a_wrong_cursor(tmp_path: Path) -> None:
    city = SmallCity("sqlite", tmp_path)
    city.close()
    good = _small_config(tmp_path, "good", city.url, '[sources.db.cursors]\nvisits = "id"\nincidents = "updated_at"\n')
    out = subprocess.run(
        [sys.executable, "-m", "gridwatch", "check-config", "--connect", "-c", str(good)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "sources.db: visits: each run reads the appended rows since the last, by id" in lines
    assert "sources.db: incidents: each run reads the appended and changed rows since the last, by updated_at" in lines
    assert (
        "sources.db: households: read in full on every run: no cursor column configured"
        " (sources.db.cursors.households)" in lines
    )
    assert not any(line.startswith("sources.db: grids") for line in lines)  # the registry reads it in full
    bad = _small_config(tmp_path, "bad", city.url, '[sources.db.cursors]\nvisits = "seq"\n')
    out = subprocess.run(
        [sys.executable, "-m", "gridwatch", "check-config", "--connect", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert f"{bad}: sources.db.cursors.visits: cursor column 'seq' not found in table 'visits'" in out.stderr
    assert "Traceback" not in out.stderr
    # the daemon's first run: the check fails, naming the key
    settings, host = config.load(bad)
    runtime = Runtime(settings, host)
    try:

        async def run() -> Any:
            results = Results()
            results.replace(*runtime.states())
            return await runtime.run(runtime.runners["visits"], T0, results)

        outcome = asyncio.run(run())
        assert outcome.outcome == "failure"
        assert "cursor column 'seq' not found in table 'visits'" in outcome.error
        assert outcome.error.endswith("set it in cursors.visits")
    finally:
        runtime.close()


def test_the_status_api_says_which_tables_are_followed(tmp_path: Path) -> None:
    city = SmallCity("sqlite", tmp_path)
    city.close()
    settings, host = config.load(_small_config(tmp_path, "kept", city.url, '[sources.db.cursors]\nvisits = "id"\n'))
    runtime = Runtime(settings, host)
    try:
        _samples(runtime, T0, ("visits",))
        _, sources = runtime.states()
        assert sources["db"].as_dict()["tables"] == [
            {"table": "households", "read": "full", "cursor": None, "why": "no_cursor"},
            {"table": "incidents", "read": "full", "cursor": None, "why": "no_cursor"},
            {"table": "visits", "read": "appended", "cursor": "id", "why": None},
        ]
    finally:
        runtime.close()


def test_without_edits_followed_the_resync_is_daily_at_three(tmp_path: Path) -> None:
    """Visits are followed by an increasing id, which sees no edit: a full read once a day at
    03:00 local time (not every hour); incidents followed by their changed-since column: never."""
    city = SmallCity("sqlite", tmp_path)
    city.visit("V1", "H1", "G1", "2026-11-19 09:00:00")
    city.incident("I1", "G1", "normal", "2026-11-19 08:00:00", "2026-11-19 08:00:00")
    settings, host = config.load(_small_config(tmp_path, "kept", city.url, SMALL_CURSORS))
    evening = datetime(2026, 11, 19, 22, 0, tzinfo=START.tzinfo)
    runtime = Runtime(settings, host, clock=lambda: evening.timestamp() + 86400)
    source = runtime.sources["db"]
    try:
        fulls = []
        for minutes in (0, 60, 120, 240, 290, 299, 300, 360, 1500, 1560, 1740):  # 22:00 .. next day 02:00 and 03:00
            source.rows_read.clear()
            _samples(runtime, evening + timedelta(minutes=minutes), ("visits", "incidents"))
            fulls.append((minutes, source.rows_read["households"] > 0, source.rows_read["incidents"] > 0))
        # a full read at the first run, at the first run at or after 03:00 (22:00 + 300 min), and
        # the day after (22:00 + 29 h = 03:00); incidents only at the first
        assert [m for m, visits, _ in fulls if visits] == [0, 300, 1740]
        assert [m for m, _, incidents in fulls if incidents] == [0]
    finally:
        runtime.close()
        city.close()


def test_a_lower_id_committed_late_is_read_and_one_far_behind_reads_in_full(tmp_path: Path, small_city: Any) -> None:
    """Two clerks save at once: the one with the lower id commits after the cursor passed the
    higher. Within ``cursor_lookback`` ids it is read by the next run; further back, the counts
    see it and the run reads in full. Either way the coverage is right: G1 has H1 and H2."""
    city = small_city
    cursors = 'cursor_lookback = 5\n[sources.db.cursors]\nvisits = "id"\nhouseholds = "id"\n'
    settings, host = config.load(_small_config(tmp_path, "kept", city.url, cursors))
    kept = Runtime(settings, host, clock=lambda: T0.timestamp())
    source = kept.sources["db"]

    def coverage(at: datetime) -> dict[tuple[str, ...], float]:
        return _figures(_samples(kept, at, ("visits",))["visits"], "gridwatch_visit_coverage_ratio")

    try:
        if city.backend == "postgres":  # a real transaction, holding id 1 while id 2 commits
            import psycopg

            slow = psycopg.connect(city.db.info.dsn)
            slow.execute(
                "INSERT INTO visits (visit_id, household_id, grid_id, visited_at)"
                " VALUES ('V1', 'H1', 'G1', '2026-11-20 09:00:00')"
            )
            city.visit("V2", "H3", "G2", "2026-11-20 09:01:00")
            assert coverage(T0) == {("G1",): 0.0, ("G2",): 1.0}
            slow.commit()
            slow.close()
        else:
            city.db.execute(
                "INSERT INTO visits (id, visit_id, household_id, grid_id, visited_at)"
                " VALUES (2, 'V2', 'H3', 'G2', '2026-11-20 09:01:00')"
            )
            assert coverage(T0) == {("G1",): 0.0, ("G2",): 1.0}
            city.db.execute(
                "INSERT INTO visits (id, visit_id, household_id, grid_id, visited_at)"
                " VALUES (1, 'V1', 'H1', 'G1', '2026-11-20 09:00:00')"
            )
        source.rows_read.clear()
        assert coverage(T0 + timedelta(minutes=1)) == {("G1",): 0.5, ("G2",): 1.0}
        assert source.rows_read["visits"] == 1  # the late row alone

        # ids 3..20 go by; then id 0, far below the look-back, commits: a full read
        for i in range(3, 21):
            city.db.execute(
                f"INSERT INTO visits (id, visit_id, household_id, grid_id, visited_at)"
                f" VALUES ({i}, 'V{i}', 'H3', 'G2', '2026-11-20 09:02:00')"
            )
        assert coverage(T0 + timedelta(minutes=2)) == {("G1",): 0.5, ("G2",): 1.0}
        city.db.execute(
            "INSERT INTO visits (id, visit_id, household_id, grid_id, visited_at)"
            " VALUES (0, 'V0', 'H2', 'G1', '2026-11-20 09:03:00')"
        )
        source.rows_read.clear()
        assert coverage(T0 + timedelta(minutes=3)) == {("G1",): 1.0, ("G2",): 1.0}
        assert source.rows_read["visits"] == 21  # every visit: the counts below the cursor changed
    finally:
        kept.close()
