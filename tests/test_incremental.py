"""Incremental runs equal full recomputations, on random data that grows and changes.

One Runtime keeps its checks between steps (what the daemon does); at every step a fresh
Runtime recomputes from scratch on the same file, as of the same instant. Between steps the
random city gains visits, patrols, reports, incidents and households — with the bad rows the
rule book names (bad and future timestamps, unknown grids and households, missing and repeated ids,
mixed timestamp formats: a `T` or a space, fractional seconds, `Z` or an offset) — and incidents
move on: accepted, dispatched, resolved, closed, extended, reopened. Most cities also keep the
optional pieces of the schema: who patrolled (``patrols.role``, bad values too) and the
households' further registers (``household_categories``); some keep their ids as
``INTEGER PRIMARY KEY`` columns. Some rows are dated after the step's instant: within the clock's
tolerance, or beyond it, or (the clock running ahead of the evaluation time, as in a replay) merely
after it; a case closed after the instant becomes closed at a later step with no edit to its row.
The kept runtime is restarted now and then, on its state database. The samples must be the same
at every step.

The city lives in SQLite, PostgreSQL or MariaDB, written through SQLAlchemy the same way on each
(on the servers, text columns and a surrogate auto-increment ``id`` primary key, as a platform
there keeps its tables), and read through the ``sqlite`` or the ``sql`` source: what either can
follow between runs must come to what a full read computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from gridwatch import config
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Runtime
from gridwatch.schema import OPTIONAL_TABLES, STANDARD_SCHEMA, create_sql
from gridwatch.store import Store
from gridwatch.web.selfmetrics import rows_read_families
from tests.cities import create_table, sql_source, sqlite_source

TZ = ZoneInfo("Asia/Shanghai")
GRIDS = ["G1", "G2", "G3", "G4"]
CHECKS = ("visits", "patrols", "incidents", "reports")
START = datetime(2026, 9, 20, 9, 0, tzinfo=TZ)  # the National Day holidays fall inside the run


def _config(tmp_path: Path, name: str, resync: str, source: str = sqlite_source("city.db")) -> Path:
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "db"\nresync = "{resync}"\ntimeout = "60s"\n{extra}\n'
        for c, extra in (
            ("visits", 'window = "7d"\nkey_interval = "3d"\n'),
            ("patrols", 'supervisor_interval = "2d"\n'),
            ("incidents", 'window = "5d"\n'),
            # a look-back short enough that reports sent more than 22 days ago are settled
            ("reports", 'window = "9d"\nlookback = "25d"\nexpect = ["daily", "twice_weekly", "weekly", "monthly"]\n'),
        )
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(
        'timezone = "Asia/Shanghai"\n'
        # figures, not verdicts: a small early step may be mostly bad rows, and a full run is
        # judged on its own while an incremental one keeps its full read's (tests/test_rejected.py)
        "max_rejected_ratio = 1\n"
        f'[state]\npath = "{name}-state.db"\n'
        '[grids]\nsource = "db"\n'
        f"[sources.db]\n{source}\n" + checks,
        encoding="utf-8",
    )
    return path


class City:
    """A random, growing city in a database, changed the way a grid platform changes it."""

    def __init__(
        self, url: str, rnd: random.Random, unique_ids: bool, optional: bool = True, integer_ids: bool = False
    ) -> None:
        self.rnd = rnd
        self.engine = sa.create_engine(url)
        self.db = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        sqlite = self.engine.dialect.name == "sqlite"
        self.row = "rowid" if sqlite else "id"  # how a row is found again to edit it

        assert sqlite or not integer_ids  # SQLite's rowid

        def create(table: str, optional: tuple[str, ...] = (), integer_key: bool = False) -> None:
            if sqlite:
                ddl = create_sql(table, optional=optional)
                if integer_key:  # the rowid itself: unique, and never NULL
                    first = STANDARD_SCHEMA[table][0]
                    ddl = ddl.replace(f"({first} TEXT", f"({first} INTEGER PRIMARY KEY")
                self.db.exec_driver_sql(ddl)
            else:  # text timestamps: the city writes bad ones too
                columns = [*STANDARD_SCHEMA.get(table, OPTIONAL_TABLES.get(table, ())), *optional]
                create_table(self.db, table, columns, timestamps="TEXT")

        create("grids")
        zones = ["red", "yellow", "blue", None]
        for i, g in enumerate(GRIDS):
            self.execute(
                "INSERT INTO grids (grid_id, name, community, street, zone) VALUES (:g, :g, 'C', 'S', :z)",
                g=g,
                z=zones[i % 4],
            )
        for table in STANDARD_SCHEMA:
            if table != "grids":
                create(table, ("role",) if optional and table == "patrols" else (), integer_key=integer_ids)
                if unique_ids and not integer_ids:
                    id_column = STANDARD_SCHEMA[table][0]
                    self.db.exec_driver_sql(f"CREATE UNIQUE INDEX {table}_id ON {table} ({id_column})")
        if optional:
            create("household_categories")
        self.unique_ids, self.optional, self.integer_ids = unique_ids or integer_ids, optional, integer_ids
        self.households: list[Any] = []
        self.n = 0
        self.since = False

    def execute(self, sql: str, **params: Any) -> sa.CursorResult[Any]:
        return self.db.execute(sa.text(sql), params)

    def count(self, table: str) -> int:
        return int(self.execute(f"SELECT count(*) FROM {table}").scalar_one())

    def close(self) -> None:
        self.db.close()
        self.engine.dispose()

    def _id(self, prefix: str) -> Any:
        self.n += 1
        return self.n if self.integer_ids else f"{prefix}{self.n}"

    def _later_id(self) -> Any:
        """The id of a household not registered yet."""
        n = self.n + self.rnd.randint(1, 8)
        return n if self.integer_ids else f"H{n}"

    def _stamp(self, at: datetime) -> Any:
        """A timestamp as platforms write them: mostly local text, sometimes with an offset."""
        r = self.rnd.random()
        if r < 0.03:
            return self.rnd.choice(["yesterday", "2026-13-40 10:00:00", "2026-02-30 10:00:00", "", None])
        if r < 0.1:
            return at.astimezone(ZoneInfo("UTC")).isoformat()
        if r < 0.15:
            return at.strftime("%Y-%m-%dT%H:%M:%S")
        if r < 0.3:  # fractional seconds, an offset or Z, a T or a space: ISO 8601 all
            at = at.replace(microsecond=self.rnd.choice([0, 1, 500_000, self.rnd.randint(0, 999_999)]))
            zone = self.rnd.choice([TZ, ZoneInfo("UTC"), ZoneInfo("America/New_York"), None])
            local = at.astimezone(TZ).replace(tzinfo=None) if zone is None else at.astimezone(zone)
            return local.isoformat(self.rnd.choice("T ")).replace("+00:00", self.rnd.choice(["Z", "+00:00"]))
        return at.strftime("%Y-%m-%d %H:%M:%S")

    def _when(self, now: datetime, back: timedelta, ahead: float = 0.05) -> datetime:
        """A moment in [now − back, now], or now and then (``ahead``) after now: a few minutes
        (inside the clock's tolerance) or up to two days."""
        if self.rnd.random() < ahead:
            if self.rnd.random() < 0.5:
                return now + timedelta(seconds=self.rnd.randint(1, 299))
            return now + timedelta(minutes=self.rnd.randint(1, 3000))
        return now - timedelta(seconds=self.rnd.uniform(0, back.total_seconds()))

    def _grid(self) -> Any:
        r = self.rnd.random()
        return None if r < 0.02 else "G9" if r < 0.04 else self.rnd.choice(GRIDS)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        if self.rnd.random() < 0.02 and not self.integer_ids:  # a row without its id
            row = {**row, next(iter(row)): self.rnd.choice([None, ""])}
        if not self.unique_ids and self.rnd.random() < 0.03:
            self._insert_one(table, row)  # the same row twice: a repeated id
        self._insert_one(table, row)

    def _insert_one(self, table: str, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        with contextlib.suppress(sa.exc.IntegrityError):  # a unique index refuses the repeat
            self.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(f':{c}' for c in row)})", **row)

    def grow(self, now: datetime, back: timedelta) -> None:
        rnd = self.rnd
        for _ in range(rnd.randint(0, 6)):
            hid = self._id("H")
            self.households.append(hid)
            category = rnd.choice([None, "", "elderly", "disabled", None, None])
            self._insert("households", {"household_id": hid, "grid_id": self._grid(), "category": category})
        for _ in range(rnd.randint(0, 25)):
            hid = rnd.choice([*self.households, "H-unknown", None]) if self.households else None
            if rnd.random() < 0.05:
                hid = self._later_id()  # visits a household not registered yet
            row = {"visit_id": self._id("V"), "household_id": hid, "grid_id": self._grid()}
            self._insert("visits", {**row, "visited_at": self._stamp(self._when(now, back))})
        for _ in range(rnd.randint(0, 6) if self.optional else 0):
            # a further register: of a household known, not yet registered, unknown or none
            hid = rnd.choice([*self.households[-20:], self._later_id(), "H-unknown", None])
            category = rnd.choice(["elderly", "disabled", "pregnant", "", None])
            self._insert("household_categories", {"household_id": hid, "category": category})
        for _ in range(rnd.randint(0, 12)):
            row = {"patrol_id": self._id("P"), "grid_id": self._grid()}
            if self.optional:
                row["role"] = rnd.choice([None, None, "", "worker", "supervisor", " Supervisor", "head", "visitor"])
            self._insert("patrols", {**row, "patrolled_at": self._stamp(self._when(now, back))})
        # reports: some grids came into service on a day of their own (grids.since), during the
        # run for G2; G4's is no date. Reports name their period, or name none (NULL or empty)
        if not self.since:
            self.db.exec_driver_sql("ALTER TABLE grids ADD COLUMN since TEXT")
            self.since = True
        for g, since in (("G2", "2026-09-22"), ("G3", "2026-09-12"), ("G4", "soon")):
            self.execute("UPDATE grids SET since = :since WHERE grid_id = :g AND since IS NULL", since=since, g=g)
        from gridwatch.calendar import period_for, previous_period

        for _ in range(rnd.randint(0, 16)):
            kind = rnd.choice(["daily", "daily", "twice_weekly", "twice_weekly", "weekly", "monthly", "bogus"])
            # now and then read late: days late, or so late it was sent before the reports settled
            at = self._when(now, back + timedelta(days=rnd.choice([0, 0, 0, 4, 4] * 6 + [24])))
            named = None
            if kind != "bogus":  # the period of the day sent, or the one before (sent late)
                named = period_for(kind, at.date())
                named = previous_period(kind, named) if rnd.random() < 0.3 else named
            period = rnd.choice([None, None, "", named, named, "1999-99"])
            row = {"report_id": self._id("R"), "grid_id": self._grid(), "kind": kind, "period": period}
            flag = rnd.choice([None, None, None, "ok", "petition", "weird"])
            self._insert("reports", {**row, "submitted_at": self._stamp(at), "flag": flag})
        for _ in range(rnd.randint(0, 6)):
            at = self._when(now, back, ahead=0.15)
            row = {
                "incident_id": self._id("I"),
                "grid_id": self._grid(),
                "severity": rnd.choice(["normal", "normal", "major", "odd"]),
                "tier": rnd.choice(["community", "subdistrict", "department", "special", "nowhere"]),
                "reported_at": self._stamp(at),
                "reopened_count": 0,
                "extended": rnd.choice([0, 0, 0, 1]),
            }
            self._insert("incidents", row)

    def move_incidents(self, now: datetime) -> None:
        """Cases move on: stages advance, some close (sometimes in the future), some reopen."""
        rnd = self.rnd
        rows = self.execute(f"SELECT {self.row}, accepted_at, dispatched_at, resolved_at, closed_at FROM incidents")
        for row, accepted, dispatched, resolved, closed in rows.fetchall():
            if rnd.random() > 0.3:
                continue
            stamp = self._stamp(self._when(now, timedelta(hours=6), ahead=0.25))
            if closed is not None:
                if rnd.random() < 0.2:
                    self.execute(
                        f"UPDATE incidents SET closed_at = NULL, reopened_count = reopened_count + 1 "
                        f"WHERE {self.row} = :row",
                        row=row,
                    )
                continue
            column = next(
                (
                    c
                    for c, v in (("accepted_at", accepted), ("dispatched_at", dispatched), ("resolved_at", resolved))
                    if v is None
                ),
                "closed_at",
            )
            self.execute(f"UPDATE incidents SET {column} = :stamp WHERE {self.row} = :row", stamp=stamp, row=row)
            if rnd.random() < 0.1:
                self.execute(f"UPDATE incidents SET extended = 1 WHERE {self.row} = :row", row=row)


def _samples(
    runtime: Runtime, now: datetime, checks: tuple[str, ...] = CHECKS
) -> dict[str, list[tuple[str, tuple[tuple[str, str], ...], float]]]:
    """Each check's samples from one run of ``runtime`` as of ``now``, sorted, to compare."""

    async def go() -> dict[str, list[Any]]:
        results = Results()
        results.replace(*runtime.states())
        out = {}
        for name in checks:
            outcome = await runtime.run(runtime.runners[name], now, results)
            assert outcome.outcome == "success", (name, outcome.error)
            out[name] = sorted((s.metric, tuple(sorted(s.labels.items())), round(s.value, 9)) for s in outcome.samples)
        return out

    return asyncio.run(go())


# Every city is tried on SQLite; each seed on a server is a fresh database there, so they take
# fewer: seeds 0-3 still cover unique and repeated ids, the optional pieces kept or not, each lag.
CASES = [("sqlite", seed) for seed in range(10)] + [(db, seed) for db in ("postgresql", "mariadb") for seed in range(4)]
RESTARTS = (4, 8)  # before these steps the kept runtime is restarted on its state database


def _database(request: pytest.FixtureRequest, tmp_path: Path, kind: str, name: str) -> tuple[str, str]:
    """A new empty database: the URL the city is written through, and the source that reads it."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'city.db'}", sqlite_source("city.db")
    server = request.getfixturevalue("postgres" if kind == "postgresql" else kind)
    server.createdb(name)
    url = server.url_for(name)
    return url, sql_source(url)


def _kept(settings: Any, host: Any, clock: Callable[[], float]) -> tuple[Runtime, Store]:
    """The daemon's runtime, on its state database."""
    runtime = Runtime(settings, host, clock=clock)
    runtime.state = state = Store(settings.state_path)
    state.open()
    return runtime, state


@pytest.mark.parametrize(("database", "seed"), CASES)
def test_incremental_runs_equal_full_recomputation(
    request: pytest.FixtureRequest, tmp_path: Path, database: str, seed: int
) -> None:
    rnd = random.Random(seed)
    url, source = _database(request, tmp_path, database, f"incremental_{seed}")
    # an INTEGER PRIMARY KEY (SQLite's rowid) for ids on some SQLite cities
    city = City(
        url, rnd, unique_ids=seed % 2 == 0, optional=seed % 4 != 3, integer_ids=database == "sqlite" and seed % 4 == 1
    )
    settings, host = config.load(_config(tmp_path, "kept", resync="3650d", source=source))
    # the wall clock: at the evaluation time (a daemon), or ahead of it (a replay)
    lag = [timedelta(0), timedelta(hours=1), timedelta(days=2)][seed % 3]

    def wall() -> float:  # the kept runtime's clock follows the steps
        return (now + lag).timestamp()

    kept, kept_state = _kept(settings, host, clock=wall)
    now = START
    city.grow(now, timedelta(days=20))
    try:
        for step in range(12):
            full_settings, _ = config.load(_config(tmp_path, f"full{step}", resync="0s", source=source), host)
            full = Runtime(full_settings, host, clock=lambda at=now: (at + lag).timestamp())
            full.state = full_state = Store(full_settings.state_path)
            full_state.open()
            try:
                expected = _samples(full, now)
                expected_lights = _lights(full_settings.state_path)
            finally:
                full.close()
                full_state.close()
            if step in RESTARTS:
                kept.close()
                kept_state.close()
                kept, kept_state = _kept(settings, host, clock=wall)
            got = _samples(kept, now)
            for name in CHECKS:
                assert got[name] == expected[name], f"{database}, seed {seed}, step {step}, check {name}"
            assert any(expected[name] for name in CHECKS)
            # the daily lights kept for the assessment: each day a full run stores, as it stores it
            lights = _lights(settings.state_path)
            assert expected_lights
            assert {k: lights.get(k) for k in expected_lights} == expected_lights, f"seed {seed}, step {step}"
            gap = timedelta(minutes=rnd.choice([1, 7, 45, 180, 600, 1500, 2900]))
            now += gap
            city.grow(now, gap + timedelta(hours=2))
            city.move_incidents(now)
    finally:
        kept.close()
        kept_state.close()
        city.close()


def _lights(state: Path) -> dict[tuple[str, str], str]:
    with contextlib.closing(sqlite3.connect(state)) as db:
        return {(g, d): light for g, d, light in db.execute("SELECT grid_id, day, light FROM reports_daily_lights")}


def test_steady_runs_read_only_what_was_appended(tmp_path: Path) -> None:
    """After the first run, a run reads the appended rows (plus the incidents that can still
    move a figure), not the history."""
    rnd = random.Random(7)
    city = City(f"sqlite:///{tmp_path / 'city.db'}", rnd, unique_ids=True)
    for day in range(20, 0, -1):
        city.grow(START - timedelta(days=day), timedelta(days=1))
        for _ in range(4):  # most cases close: a steady run re-reads only the open and recent ones
            city.move_incidents(START - timedelta(days=day))
    settings, host = config.load(_config(tmp_path, "kept", resync="3650d"))
    kept = Runtime(settings, host)
    try:
        _samples(kept, START)
        source = kept.sources["db"]
        first = dict(source.rows_read)
        assert first["visits"] == city.count("visits")
        source.rows_read.clear()
        check = kept.runners["incidents"].check
        watched = len(check.cases) + len(check.feed.refused)  # cases in reach, and bad rows an edit may mend
        before = {t: city.count(t) for t in first}
        city.grow(START + timedelta(minutes=5), timedelta(minutes=5))
        appended = {t: city.count(t) - before[t] for t in first}
        _samples(kept, START + timedelta(minutes=5))
        for table in ("households", "visits", "patrols", "reports"):
            assert source.rows_read[table] == appended[table], table
        (family,) = rows_read_families(kept.sources)
        exposed = {s.labels["table"]: s.value for s in family.samples if s.name.endswith("_total")}
        assert family.name == "gridwatch_source_rows_read"
        assert exposed["visits"] == appended["visits"]
        # an appended case still open comes back once more with the open ones
        assert source.rows_read["incidents"] <= 2 * appended["incidents"] + watched
    finally:
        kept.close()
        city.close()


def test_a_case_turned_away_when_appended_and_closed_before_the_next_run_counts(tmp_path: Path) -> None:
    """A case appended with a stage past the clock is a bad row (future_timestamp); the platform
    then mends the time and closes the case before the next run. The case is no longer open and
    was never kept, so only the feed's refused keys bring it back: it must count as closed.

    Now 2026-10-10 12:00 UTC; window 5d. Run 0 at now reads an empty table in full. Run 1 at
    now reads what was appended since: I1 reported 10-10 08:00, accepted
    10-11 08:00 (20 h past the clock, more than the 5-minute tolerance): rejected, no case.
    Run 2 at 12:10: accepted 10-10 09:00 and closed 10-10 12:05 — one case of G1 closed in
    the window (gridwatch_incidents_closed 1), not reworked (rework ratio 0)."""
    db_path = tmp_path / "city.db"
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("CREATE TABLE grids (grid_id TEXT PRIMARY KEY, name TEXT, community TEXT, street TEXT, zone TEXT)")
        db.execute("INSERT INTO grids VALUES ('G1', 'G1', 'C', 'S', NULL)")
        db.execute(
            "CREATE TABLE incidents (incident_id TEXT PRIMARY KEY, grid_id TEXT, category TEXT, severity TEXT,"
            " tier TEXT, reported_at TEXT, accepted_at TEXT, dispatched_at TEXT, resolved_at TEXT, closed_at TEXT,"
            " reopened_count INTEGER, extended INTEGER)"
        )
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        'timezone = "UTC"\nmax_rejected_ratio = 1\n[state]\npath = "state.db"\n[grids]\nsource = "db"\n'
        f"[sources.db]\n{sqlite_source('city.db')}\n"
        '[[checks]]\nname = "incidents"\ntype = "incidents"\nsource = "db"\nresync = "3650d"\nwindow = "5d"\n',
        encoding="utf-8",
    )
    settings, host = config.load(cfg)
    now = datetime(2026, 10, 10, 12, 0, tzinfo=ZoneInfo("UTC"))
    runtime = Runtime(settings, host, clock=lambda: now.timestamp())

    def closed() -> tuple[float | None, float | None]:
        async def go() -> list[Any]:
            results = Results()
            outcome = await runtime.run(runtime.runners["incidents"], now, results)
            assert outcome.outcome == "success", outcome.error
            return outcome.samples

        samples = {(s.metric, s.labels.get("grid")): s.value for s in asyncio.run(go())}
        return samples.get(("gridwatch_incidents_closed", "G1")), samples.get(
            ("gridwatch_incidents_rework_ratio", "G1")
        )

    try:
        assert closed() == (0, None)  # the first run reads in full: a steady run appends I1
        with contextlib.closing(sqlite3.connect(db_path)) as db, db:
            db.execute(
                "INSERT INTO incidents VALUES ('I1', 'G1', NULL, 'normal', 'community', '2026-10-10 08:00:00',"
                " '2026-10-11 08:00:00', NULL, NULL, NULL, 0, 0)"
            )
        assert closed() == (0, None)
        with contextlib.closing(sqlite3.connect(db_path)) as db, db:
            db.execute(
                "UPDATE incidents SET accepted_at = '2026-10-10 09:00:00', closed_at = '2026-10-10 12:05:00'"
                " WHERE incident_id = 'I1'"
            )
        now += timedelta(minutes=10)
        assert closed() == (1, 0)
    finally:
        runtime.close()
